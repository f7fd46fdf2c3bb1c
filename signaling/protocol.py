"""The frame envelope of the realtime socket and its validation.

A client command is ``{"id": "c1", "type": "domain.verb", ...}`` and gets
exactly one answer: ``{"re": "c1", "ok": true, ...}`` or
``{"re": "c1", "error": {"code", "message"}}``. Server events carry a
``type`` and no ``re``. Validation happens here, before any handler runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

MAX_FRAME_BYTES = 64 * 1024

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
CommandType = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Envelope(msgspec.Struct):
    """The part of every command that the fabric reads; the rest is the handler's."""

    id: CommandId
    type: CommandType


SESSION_ENDED_CLOSE_CODE = 4001
"""Close code for a socket whose sign-in was ended: the client must sign in again."""

RESUME_CLOSE_CODE = 4000
"""Close code for a socket the server cut off (it read too slowly, or the node lost
events): the client reconnects at once and sends ``sync`` to get what it missed."""


class CommandError(Exception):
    """A command the server refuses; becomes an error answer, the socket stays open."""

    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


class Revocation(msgspec.Struct, tag="auth.revoked", tag_field="type"):
    """Published on ``user:<id>`` when some of a user's credentials stop being valid.

    ``scope`` is ``all`` (deactivated), ``sessions`` (every browser session
    except ``keep``: a password change) or ``credential`` (just ``credential``:
    a sign-out or a revoked token). Credentials are ``session:<id>`` or
    ``token:<id>``.

    ``changed`` (a new role) ends no credential but every socket's view of the
    user: a socket checks its rights against the identity it was opened with,
    so each one is closed for its client to reconnect at once and be checked
    again (see :attr:`renews`).
    """

    scope: str
    credential: str | None = None
    keep: str | None = None

    @property
    def renews(self) -> bool:
        """The credential stays valid: the socket is to reconnect, not sign out."""
        return self.scope == "changed"

    def ends(self, credential: str) -> bool:
        if self.scope in ("all", "changed"):
            return True
        if self.scope == "sessions":
            return credential.startswith("session:") and credential != self.keep
        return credential == self.credential


class _Typed(msgspec.Struct):
    type: str = ""


def user_topic(user_id: int) -> str:
    return f"user:{user_id}"


def read_revocation(payload: bytes) -> Revocation | None:
    """The revocation in a bus payload, or None if the payload is some other event."""
    try:
        if msgspec.json.decode(payload, type=_Typed).type != "auth.revoked":
            return None
        return msgspec.json.decode(payload, type=Revocation)
    except msgspec.MsgspecError:
        return None


class Command(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every command struct: the envelope fields, then the command's own."""

    id: CommandId
    type: CommandType


class FrameError(Exception):
    def __init__(self, code: str, message: str, command_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command_id = command_id


_encoder = msgspec.json.Encoder()

# A JSON \u0000 escape (not a literal backslash followed by "u0000"): databases refuse NUL.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_json_nul(data: bytes) -> bool:
    """Whether raw JSON encodes a NUL character (which PostgreSQL cannot store)."""
    return _JSON_NUL.search(data) is not None


def encode(frame: Any) -> bytes:
    return _encoder.encode(frame)


def parse_envelope(raw: str | bytes) -> tuple[Envelope, bytes]:
    """Check size, JSON and envelope; returns the envelope and the raw bytes for the handler."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"A frame may be at most {MAX_FRAME_BYTES} bytes.")
    try:
        generic = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise FrameError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(generic, dict):
        raise FrameError("bad_frame", "A frame is a JSON object with 'id' and 'type'.")
    raw_id = generic.get("id")
    command_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 64 else None
    if has_json_nul(data):
        raise FrameError("bad_frame", "Text may not contain NUL characters.", command_id)
    try:
        envelope = msgspec.convert(generic, Envelope)
    except msgspec.ValidationError as exc:
        raise FrameError(
            "bad_frame", f"The frame is not a valid command: {exc}.", command_id
        ) from None
    return envelope, data


def ok(command_id: str, **fields: Any) -> bytes:
    return encode({"re": command_id, "ok": True, **fields})


def error(command_id: str | None, code: str, message: str, **extra: Any) -> bytes:
    return encode({"re": command_id, "error": {"code": code, "message": message, **extra}})
