"""The rules of incoming webhooks.

A member of a room makes a webhook for it and is shown its URL once:
``<public_url>/hooks/<secret>``. Anyone holding the URL may post text to the
room as the webhook's bot, so the secret is 256 random bits stored only as
its SHA-256 (like API tokens), and the URL is all a script needs: no
account, no cookie, no CSRF token.

Who the message is from: the webhook's creator is its ``sender`` and the
message has ``kind: "bot"`` and the webhook's ``bot_name``; clients show the
bot name. We chose the creator over no sender because

* someone answers for what a webhook posts (their name is on it, they can
  delete its messages, an admin sees whose integration it is);
* the hook posts with exactly the creator's rights, through the same
  ``ChatService.send`` as everyone: a room they left or an account that was
  switched off stops the hook (``webhook_disabled``), no separate rules;
* ``client_msg_id`` idempotency works: it is unique per sender, and NULL
  senders would never collide. Each webhook's ids are kept apart from the
  creator's own (and other hooks') by a ``hook/<secret hash prefix>/`` prefix,
  which people's own ids cannot have (``/`` is not allowed in them). Not the
  webhook's id: SQLite gives a deleted webhook's id to the next one made, which
  must not find the old one's messages.

Each webhook has its own token bucket on each node (5 posts a second, bursts
of 20), so a runaway script floods neither the room nor the database; on a
cluster of N nodes behind a balancer the ceiling is N times that.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import msgspec

from collab.accounts import secrets
from collab.accounts.models import Identity
from collab.api.errors import BadRequest, Conflict, Forbidden, NotFound, RateLimited
from collab.chat.models import MessageView, UserRef
from collab.chat.service import ChatService
from collab.store import Store
from collab.store import rooms as room_sql
from collab.store import users as user_sql
from collab.store import webhooks as webhook_sql
from collab.store.webhooks import WebhookRecord
from signaling.ratelimit import PerKeyBuckets

# Keeps a hook's client_msg_ids apart from its creator's own, which cannot contain "/".
HOOK_ID_PREFIX = "hook/"
# How much of the secret's hash names a webhook in its client_msg_ids: 40 bits, and
# "hook/" + 10 + "/" + a 48-character id fills the 64-character column.
HOOK_KEY_CHARS = 10

MAX_WEBHOOKS_PER_ROOM = 25
MAX_BOT_NAME = 64
POSTS_PER_SECOND = 5.0
POST_BURST = 20.0
HOOKS_PATH = "/hooks/"
# new_secret() makes 43 URL-safe characters; anything else cannot be a webhook.
_SECRET = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class WebhookView(msgspec.Struct, frozen=True):
    """A webhook as members see it: never its secret (shown once, at creation)."""

    id: int
    room: int
    bot_name: str
    created_at: int
    created_by: UserRef | None


def _not_found() -> NotFound:
    return NotFound(
        "There is no such webhook: the URL is wrong or the webhook was deleted.",
        code="webhook_not_found",
    )


def _clean_bot_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise BadRequest("A webhook needs a bot name.", code="missing_field", field="bot_name")
    if len(name) > MAX_BOT_NAME:
        raise BadRequest(
            f"A bot name is at most {MAX_BOT_NAME} characters.", code="too_long", field="bot_name"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise BadRequest(
            "The bot name contains control characters.", code="invalid_field", field="bot_name"
        )
    return name


class WebhookService:
    def __init__(
        self,
        store: Store,
        chat: ChatService,
        clock: Callable[[], int],
        *,
        public_url: str,
        posts_per_second: float = POSTS_PER_SECOND,
        burst: float = POST_BURST,
    ) -> None:
        self._store = store
        self._chat = chat
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._buckets = PerKeyBuckets(posts_per_second, burst)

    async def _views(self, records: list[WebhookRecord]) -> list[WebhookView]:
        async with self._store.read() as conn:
            people = await user_sql.by_ids(conn, {r.created_by for r in records if r.created_by})
        views = []
        for r in records:
            user = people.get(r.created_by) if r.created_by else None
            creator = UserRef(user.id, user.username, user.display_name) if user else None
            views.append(WebhookView(r.id, r.room_id, r.bot_name, r.created_at, creator))
        return views

    async def create(
        self, identity: Identity, room_id: int, bot_name: str
    ) -> tuple[WebhookView, str]:
        """Make a webhook; returns it and its URL, the only time the secret is told."""
        if identity.user.role == "guest":
            raise Forbidden("Guests cannot make webhooks.")
        name = _clean_bot_name(bot_name)
        room = await self._chat.require_member(identity, room_id)
        if room.archived_at is not None:
            raise Forbidden(
                "This room is archived; it can be read but not changed.", code="archived"
            )
        secret = secrets.new_secret()
        async with self._store.transaction() as conn:
            if await webhook_sql.count_of_room(conn, room.id) >= MAX_WEBHOOKS_PER_ROOM:
                raise Conflict(
                    f"A room can have at most {MAX_WEBHOOKS_PER_ROOM} webhooks; "
                    "delete one you no longer use.",
                    code="too_many_webhooks",
                )
            record = await webhook_sql.insert(
                conn,
                room_id=room.id,
                secret_hash=secrets.digest(secret),
                bot_name=name,
                created_by=identity.user.id,
                now=self._clock(),
            )
        [view] = await self._views([record])
        return view, f"{self._public_url}{HOOKS_PATH}{secret}"

    async def of_room(self, identity: Identity, room_id: int) -> list[WebhookView]:
        await self._chat.require_member(identity, room_id)
        async with self._store.read() as conn:
            records = await webhook_sql.of_room(conn, room_id)
        return await self._views(records)

    async def delete(self, identity: Identity, room_id: int, webhook_id: int) -> None:
        """Its creator, the room's owner or an administrator may delete a webhook; its
        URL stops working at once. Others in the room are told no; strangers are
        told nothing exists."""
        async with self._store.transaction() as conn:
            hook = await webhook_sql.by_id(conn, webhook_id)
            if hook is None or hook.room_id != room_id:
                raise _not_found()
            mine = await room_sql.member(conn, room_id, identity.user.id)
            allowed = (
                identity.is_admin
                or hook.created_by == identity.user.id
                or (mine is not None and mine.role == "owner")
            )
            if not allowed:
                if mine is None:
                    raise _not_found()
                raise Forbidden(
                    "Only the webhook's creator, the room's owner or an administrator "
                    "can delete it."
                )
            await webhook_sql.delete(conn, hook.id)

    async def post(
        self, secret: str, text: str, *, client_msg_id: str | None = None
    ) -> tuple[MessageView, bool]:
        """Post ``text`` to the webhook's room as its bot. Returns the message and whether
        it is new (a repeated ``client_msg_id`` returns the first one)."""
        if not _SECRET.match(secret):
            raise _not_found()
        async with self._store.read() as conn:
            secret_hash = secrets.digest(secret)
            hook = await webhook_sql.by_secret_hash(conn, secret_hash)
            if hook is None:
                raise _not_found()
            # Keyed by the secret, not the id, for the reason in the module docstring.
            wait = self._buckets.take(secret_hash)
            if wait > 0:
                raise RateLimited("This webhook is posting too fast; slow down.", retry_after=wait)
            creator = await user_sql.by_id(conn, hook.created_by) if hook.created_by else None
            member = (
                await room_sql.member(conn, hook.room_id, creator.id)
                if creator is not None and creator.active
                else None
            )
        if member is None:
            raise Forbidden(
                "This webhook no longer works: the person who made it has left the room "
                "or their account was switched off. Make a new one.",
                code="webhook_disabled",
            )
        assert creator is not None
        return await self._chat.send(
            Identity(user=creator),
            hook.room_id,
            text,
            client_msg_id=(
                f"{HOOK_ID_PREFIX}{secret_hash[:HOOK_KEY_CHARS]}/{client_msg_id}"
                if client_msg_id
                else None
            ),
            bot_name=hook.bot_name,
        )
