"""Who is making a request, and the public views of accounts sent to clients."""

from __future__ import annotations

import msgspec

from collab.store.invitations import InvitationRecord
from collab.store.sessions import SessionRecord
from collab.store.tokens import TokenRecord
from collab.store.users import UserRecord

ROLES = ("admin", "member", "guest")


class Identity(msgspec.Struct, frozen=True):
    """The authenticated caller: a user, and how they proved it (session or token)."""

    user: UserRecord
    session: SessionRecord | None = None
    token: TokenRecord | None = None
    # The session's expiry was just pushed back: the browser's cookie is set again
    # with a fresh lifetime, or it would run out at sign-in time plus the lifetime.
    renewed: bool = False

    @property
    def is_admin(self) -> bool:
        return self.user.role == "admin"

    @property
    def credential(self) -> str:
        """Names what proved this identity, as revocation events name it."""
        if self.session is not None:
            return f"session:{self.session.id}"
        if self.token is not None:
            return f"token:{self.token.id}"
        return "none"


class UserView(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str
    role: str
    active: bool


class UserDetailView(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str
    email: str | None
    role: str
    active: bool
    created_at: int


class TokenView(msgspec.Struct, frozen=True):
    id: int
    name: str
    prefix: str
    created_at: int
    last_used_at: int | None
    expires_at: int | None


class InvitationView(msgspec.Struct, frozen=True):
    id: int
    role: str
    email: str | None
    created_at: int
    expires_at: int


def user_view(user: UserRecord) -> UserView:
    return UserView(user.id, user.username, user.display_name, user.role, user.active)


def user_detail(user: UserRecord) -> UserDetailView:
    return UserDetailView(
        user.id,
        user.username,
        user.display_name,
        user.email,
        user.role,
        user.active,
        user.created_at,
    )


def token_view(token: TokenRecord) -> TokenView:
    return TokenView(
        token.id, token.name, token.prefix, token.created_at, token.last_used_at, token.expires_at
    )


def invitation_view(invitation: InvitationRecord) -> InvitationView:
    return InvitationView(
        invitation.id,
        invitation.role,
        invitation.email,
        invitation.created_at,
        invitation.expires_at,
    )
