"""The rules of accounts: who may sign in, with what, and who may change whom.

Sessions and tokens are checked against the database on every request, so a
sign-out, a password change or a deactivation takes effect at once on every
node of a cluster, with no cache to expire.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from collab.accounts import secrets
from collab.accounts.models import ROLES, Identity
from collab.accounts.passwords import Passwords, password_problem
from collab.accounts.throttle import LoginThrottle
from collab.api.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    Unauthenticated,
)
from collab.store import Store
from collab.store import invitations as invitation_sql
from collab.store import sessions as session_sql
from collab.store import tokens as token_sql
from collab.store import users as user_sql
from collab.store.invitations import InvitationRecord
from collab.store.sessions import SessionRecord
from collab.store.tokens import TokenRecord
from collab.store.users import UserRecord
from signaling.bus import Bus, BusUnavailable
from signaling.protocol import Revocation, encode, user_topic

log = logging.getLogger(__name__)

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
RESERVED_USERNAMES = frozenset(
    {"all", "room", "here", "channel", "everyone", "system", "collab", "bot"}
)
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
SESSION_TOUCH_INTERVAL_MS = 5 * 60 * 1000
MAX_INVITATION_HOURS = 30 * 24
MAX_TOKEN_DAYS = 3650


def normalise_username(raw: str) -> str:
    username = raw.strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise BadRequest(
            "A username is 1 to 32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            code="invalid_username",
            field="username",
        )
    if username in RESERVED_USERNAMES:
        raise BadRequest(
            f"'{username}' is reserved; choose another username.",
            code="invalid_username",
            field="username",
        )
    return username


def clean_display_name(raw: str | None, fallback: str) -> str:
    name = " ".join((raw or "").split())
    if len(name) > 64:
        raise BadRequest(
            "A display name is at most 64 characters.", code="invalid_field", field="display_name"
        )
    return name or fallback


def clean_email(raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    email = raw.strip()
    if len(email) > 254 or not re.match(r"^[^@\s]+@[^@\s]+$", email):
        raise BadRequest("That is not an e-mail address.", code="invalid_field", field="email")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise BadRequest(
            f"A role is one of {', '.join(ROLES)}.", code="invalid_field", field="role"
        )
    return role


def check_new_password(password: str, username: str, field: str = "password") -> None:
    problem = password_problem(password, username=username)
    if problem:
        raise BadRequest(problem, code="weak_password", field=field)


class SignedIn:
    """A new session: the secret for the cookie and what the client needs to know."""

    def __init__(self, user: UserRecord, session: SessionRecord, secret: str) -> None:
        self.user = user
        self.session = session
        self.secret = secret


class AccountService:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        passwords: Passwords,
        throttle: LoginThrottle,
        clock: Callable[[], int],
        *,
        session_ttl_ms: int,
        invitation_ttl_ms: int,
        public_url: str,
    ) -> None:
        self._store = store
        self._bus = bus
        self._passwords = passwords
        self._throttle = throttle
        self._clock = clock
        self._session_ttl_ms = session_ttl_ms
        self._invitation_ttl_ms = invitation_ttl_ms
        self._public_url = public_url

    # -- sign-in and sessions -------------------------------------------------

    async def login(
        self, username: str, password: str, *, address: str, user_agent: str
    ) -> SignedIn:
        lookup = username.strip().lower()[:64]
        await self._throttle.begin_attempt(lookup, address)
        async with self._store.read() as conn:
            user = await user_sql.by_username(conn, lookup)
        valid = await self._passwords.verify(user.password_hash if user else None, password)
        if not valid or user is None or not user.active:
            raise Unauthenticated("The username or password is not right.", code="bad_credentials")
        await self._throttle.succeeded(lookup, address)
        if user.password_hash and self._passwords.needs_rehash(user.password_hash):
            await self._set_password_hash(user, await self._passwords.hash(password))
        return await self._open_session(user, address=address, user_agent=user_agent)

    async def _open_session(self, user: UserRecord, *, address: str, user_agent: str) -> SignedIn:
        secret = secrets.new_secret()
        now = self._clock()
        async with self._store.transaction() as conn:
            session = await session_sql.insert(
                conn,
                token_hash=secrets.digest(secret),
                user_id=user.id,
                csrf_token=secrets.new_secret(),
                now=now,
                expires_at=now + self._session_ttl_ms,
                user_agent=user_agent,
                address=address,
            )
        log.info("session opened user=%s session=%s", user.username, session.id)
        return SignedIn(user, session, secret)

    async def logout(self, identity: Identity) -> None:
        if identity.session is None:
            return
        async with self._store.transaction() as conn:
            await session_sql.delete(conn, identity.session.id)
        await self._announce(
            identity.user.id, Revocation(scope="credential", credential=identity.credential)
        )

    async def _announce(self, user_id: int, revocation: Revocation) -> None:
        """Tell every node to close sockets that used ended credentials (after the commit).

        The database already refuses the credential; if the bus is down, open
        sockets notice at their next reconnect instead of now.
        """
        try:
            await self._bus.publish(user_topic(user_id), encode(revocation))
        except BusUnavailable:
            log.warning("could not announce ended sessions of user %s: bus unavailable", user_id)

    async def identify_session(self, secret: str) -> Identity | None:
        """The identity behind a session cookie, or None if it is unknown or over."""
        now = self._clock()
        async with self._store.read() as conn:
            session = await session_sql.by_token_hash(conn, secrets.digest(secret))
            if session is None or session.expires_at <= now:
                return None
            user = await user_sql.by_id(conn, session.user_id)
        if user is None or not user.active:
            return None
        renewed = now - session.last_used_at > SESSION_TOUCH_INTERVAL_MS
        if renewed:
            async with self._store.transaction() as conn:
                await session_sql.touch(
                    conn, session.id, now=now, expires_at=now + self._session_ttl_ms
                )
        return Identity(user=user, session=session, renewed=renewed)

    async def renew_session(self, session_id: int) -> int | None:
        """Keep a session that an open socket is using from running out: its new expiry,
        or None when it is already over (signed out, its user deactivated, expired)."""
        now = self._clock()
        expires_at = now + self._session_ttl_ms
        async with self._store.transaction() as conn:
            renewed = await session_sql.renew(conn, session_id, now=now, expires_at=expires_at)
        return expires_at if renewed else None

    @property
    def session_ttl_ms(self) -> int:
        return self._session_ttl_ms

    async def identify_token(self, secret: str) -> Identity | None:
        if not secret.startswith(secrets.API_TOKEN_PREFIX):
            return None
        now = self._clock()
        async with self._store.read() as conn:
            token = await token_sql.by_token_hash(conn, secrets.digest(secret))
            if token is None or (token.expires_at is not None and token.expires_at <= now):
                return None
            user = await user_sql.by_id(conn, token.user_id)
        if user is None or not user.active:
            return None
        if token.last_used_at is None or now - token.last_used_at > SESSION_TOUCH_INTERVAL_MS:
            async with self._store.transaction() as conn:
                await token_sql.touch(conn, token.id, now=now)
        return Identity(user=user, token=token)

    async def change_password(
        self, identity: Identity, current: str, new: str, *, address: str, user_agent: str
    ) -> SignedIn | None:
        """Change the password and end every other session; returns the caller's new one."""
        user = identity.user
        if not await self._passwords.verify(user.password_hash, current):
            raise Forbidden("The current password is not right.", code="bad_credentials")
        check_new_password(new, user.username, field="new_password")
        await self._set_password_hash(user, await self._passwords.hash(new))
        async with self._store.transaction() as conn:
            ended = await session_sql.delete_for_user(conn, user.id)
        log.info("password changed user=%s sessions_ended=%d", user.username, ended)
        signed_in = None
        if identity.session is not None:
            signed_in = await self._open_session(user, address=address, user_agent=user_agent)
        keep = f"session:{signed_in.session.id}" if signed_in else None
        await self._announce(user.id, Revocation(scope="sessions", keep=keep))
        return signed_in

    async def _set_password_hash(self, user: UserRecord, password_hash: str) -> None:
        async with self._store.transaction() as conn:
            await user_sql.update(conn, user.id, now=self._clock(), password_hash=password_hash)

    async def update_profile(
        self, identity: Identity, *, display_name: str | None, email: str | None
    ) -> UserRecord:
        fields: dict[str, object] = {}
        if display_name is not None:
            fields["display_name"] = clean_display_name(display_name, identity.user.username)
        if email is not None:
            fields["email"] = clean_email(email)
        if not fields:
            return identity.user
        async with self._store.transaction() as conn:
            return await user_sql.update(conn, identity.user.id, now=self._clock(), **fields)

    # -- API tokens -----------------------------------------------------------

    async def create_token(
        self, identity: Identity, name: str, expires_in_days: int | None
    ) -> tuple[TokenRecord, str]:
        name = " ".join(name.split())
        if not name or len(name) > 64:
            raise BadRequest(
                "Give the token a name of 1 to 64 characters.", code="invalid_field", field="name"
            )
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
            raise BadRequest(
                f"expires_in_days is from 1 to {MAX_TOKEN_DAYS}.",
                code="invalid_field",
                field="expires_in_days",
            )
        secret = secrets.new_api_token()
        now = self._clock()
        expires_at = now + expires_in_days * DAY_MS if expires_in_days else None
        async with self._store.transaction() as conn:
            token = await token_sql.insert(
                conn,
                token_hash=secrets.digest(secret),
                user_id=identity.user.id,
                name=name,
                prefix=secret[: len(secrets.API_TOKEN_PREFIX) + 4],
                now=now,
                expires_at=expires_at,
            )
        return token, secret

    async def list_tokens(self, identity: Identity) -> list[TokenRecord]:
        async with self._store.read() as conn:
            return await token_sql.list_for_user(conn, identity.user.id)

    async def revoke_token(self, identity: Identity, token_id: int) -> None:
        async with self._store.transaction() as conn:
            if not await token_sql.delete_for_user(conn, token_id, identity.user.id):
                raise NotFound("You have no token with that id.", code="token_not_found")
        await self._announce(
            identity.user.id, Revocation(scope="credential", credential=f"token:{token_id}")
        )

    # -- invitations and first run -------------------------------------------

    def invitation_url(self, code: str) -> str:
        return f"{self._public_url}/#/invite/{code}"

    async def create_invitation(
        self,
        identity: Identity | None,
        *,
        role: str = "member",
        email: str | None = None,
        expires_in_hours: float | None = None,
    ) -> tuple[InvitationRecord, str]:
        check_role(role)
        if identity is not None and not identity.is_admin:
            raise Forbidden("Only administrators can invite people.")
        hours = expires_in_hours
        if hours is not None and not 0 < hours <= MAX_INVITATION_HOURS:
            raise BadRequest(
                f"expires_in_hours is more than 0 and at most {MAX_INVITATION_HOURS}.",
                code="invalid_field",
                field="expires_in_hours",
            )
        ttl = int(hours * HOUR_MS) if hours is not None else self._invitation_ttl_ms
        code = secrets.new_secret()
        now = self._clock()
        async with self._store.transaction() as conn:
            invitation = await invitation_sql.insert(
                conn,
                code_hash=secrets.digest(code),
                role=role,
                email=clean_email(email),
                created_by=identity.user.id if identity else None,
                now=now,
                expires_at=now + ttl,
            )
        return invitation, code

    async def list_invitations(self) -> list[InvitationRecord]:
        async with self._store.read() as conn:
            return await invitation_sql.list_pending(conn, now=self._clock())

    async def revoke_invitation(self, invitation_id: int) -> None:
        async with self._store.transaction() as conn:
            if not await invitation_sql.revoke(conn, invitation_id, now=self._clock()):
                raise NotFound("No pending invitation has that id.", code="invitation_not_found")

    async def usable_invitation(self, code: str) -> InvitationRecord:
        async with self._store.read() as conn:
            invitation = await invitation_sql.by_code_hash(conn, secrets.digest(code))
        return self._check_usable(invitation)

    def _check_usable(self, invitation: InvitationRecord | None) -> InvitationRecord:
        if invitation is None or invitation.revoked_at is not None:
            raise NotFound(
                "This invitation link is not valid. Ask an administrator for a new one.",
                code="invitation_not_found",
            )
        if invitation.used_at is not None:
            raise Gone(
                "This invitation link has already been used. Sign in, or ask for a new link.",
                code="invitation_used",
            )
        if invitation.expires_at <= self._clock():
            raise Gone(
                "This invitation link has expired. Ask an administrator for a new one.",
                code="invitation_expired",
            )
        return invitation

    async def accept_invitation(
        self,
        code: str,
        *,
        username: str,
        password: str,
        display_name: str | None,
        address: str,
        user_agent: str,
    ) -> SignedIn:
        """Create the account the invitation is for; the invitation is used up atomically."""
        name = normalise_username(username)
        check_new_password(password, name)
        password_hash = await self._passwords.hash(password)
        now = self._clock()
        try:
            async with self._store.transaction() as conn:
                invitation = self._check_usable(
                    await invitation_sql.by_code_hash(conn, secrets.digest(code))
                )
                if not await invitation_sql.claim(conn, invitation.id, now=now):
                    raise Gone(
                        "This invitation link has already been used.", code="invitation_used"
                    )
                user = await user_sql.insert(
                    conn,
                    username=name,
                    display_name=clean_display_name(display_name, name),
                    email=invitation.email,
                    role=invitation.role,
                    password_hash=password_hash,
                    now=now,
                )
                await invitation_sql.set_used_by(conn, invitation.id, user.id)
        except IntegrityError:
            raise self._username_taken(name) from None
        log.info("invitation accepted user=%s role=%s", user.username, user.role)
        return await self._open_session(user, address=address, user_agent=user_agent)

    async def first_run_link(self) -> str | None:
        """A one-time link to create the first administrator, while there are no users."""
        async with self._store.read() as conn:
            if await user_sql.count(conn) > 0:
                return None
        async with self._store.transaction() as conn:
            await invitation_sql.revoke_unused_admin_setups(conn, now=self._clock())
        _, code = await self.create_invitation(None, role="admin", expires_in_hours=24)
        return self.invitation_url(code)

    # -- user administration ---------------------------------------------------

    @staticmethod
    def _username_taken(username: str) -> ApiError:
        return Conflict(
            f"The username '{username}' is taken; choose another.",
            code="username_taken",
            field="username",
        )

    async def create_user(
        self,
        *,
        username: str,
        password: str,
        display_name: str | None = None,
        email: str | None = None,
        role: str = "member",
    ) -> UserRecord:
        name = normalise_username(username)
        check_role(role)
        check_new_password(password, name)
        password_hash = await self._passwords.hash(password)
        try:
            async with self._store.transaction() as conn:
                user = await user_sql.insert(
                    conn,
                    username=name,
                    display_name=clean_display_name(display_name, name),
                    email=clean_email(email),
                    role=role,
                    password_hash=password_hash,
                    now=self._clock(),
                )
        except IntegrityError:
            raise self._username_taken(name) from None
        log.info("user created user=%s role=%s", user.username, user.role)
        return user

    async def get_user(self, username: str) -> UserRecord:
        async with self._store.read() as conn:
            user = await user_sql.by_username(conn, username.strip().lower())
        if user is None:
            raise NotFound(f"There is no user '{username}'.", code="user_not_found")
        return user

    async def list_users(
        self, *, after: str | None, limit: int, include_inactive: bool
    ) -> list[UserRecord]:
        async with self._store.read() as conn:
            return await user_sql.list_page(
                conn, after=after, limit=limit, include_inactive=include_inactive
            )

    async def update_user(
        self,
        actor: Identity,
        username: str,
        *,
        role: str | None = None,
        active: bool | None = None,
        display_name: str | None = None,
    ) -> UserRecord:
        """Change a user's role, active flag or name; never leaves the server without an admin."""
        target = await self.get_user(username)
        fields: dict[str, object] = {}
        if role is not None:
            fields["role"] = check_role(role)
        if active is not None:
            fields["active"] = active
        if display_name is not None:
            fields["display_name"] = clean_display_name(display_name, target.username)
        if not fields:
            return target
        loses_admin = (
            target.role == "admin"
            and target.active
            and ((role is not None and role != "admin") or active is False)
        )
        async with self._store.transaction() as conn:
            if loses_admin and await user_sql.count_active_admins(conn) <= 1:
                raise Conflict(
                    "This is the last active administrator; make someone else an "
                    "administrator first.",
                    code="last_admin",
                )
            updated = await user_sql.update(conn, target.id, now=self._clock(), **fields)
            if active is False:
                await session_sql.delete_for_user(conn, target.id)
        if active is False:
            await self._announce(target.id, Revocation(scope="all"))
        elif updated.role != target.role:
            await self._announce(target.id, Revocation(scope="changed"))
        log.info(
            "user updated user=%s by=%s fields=%s",
            target.username,
            actor.user.username,
            ",".join(sorted(fields)),
        )
        return updated
