"""What clients see of rooms and messages: the same structs over REST and the socket."""

from __future__ import annotations

import msgspec

from collab.store.files import FileRecord

ROOM_KINDS = ("channel", "private", "dm", "group")


class UserRef(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str


class ReplyRef(msgspec.Struct, frozen=True):
    id: int
    seq: int
    sender: UserRef | None
    excerpt: str
    deleted: bool


class ReactionView(msgspec.Struct, frozen=True):
    emoji: str
    count: int
    users: list[str]


class FileRef(msgspec.Struct, frozen=True):
    id: int
    name: str
    size: int
    content_type: str
    url: str
    thumbnail_url: str | None
    width: int | None
    height: int | None


def file_ref(record: FileRecord) -> FileRef:
    """How a stored file appears in messages and upload answers."""
    return FileRef(
        id=record.id,
        name=record.name,
        size=record.size,
        content_type=record.content_type,
        url=f"/api/v1/files/{record.id}",
        thumbnail_url=f"/api/v1/files/{record.id}/thumbnail" if record.has_thumbnail else None,
        width=record.width,
        height=record.height,
    )


class MessageView(msgspec.Struct, frozen=True):
    id: int
    room: int
    seq: int
    kind: str
    sender: UserRef | None
    bot_name: str | None
    body: str
    created_at: int
    edited_at: int | None
    deleted: bool
    reply_to: ReplyRef | None
    mentions: list[str]
    mentions_room: bool
    reactions: list[ReactionView]
    files: list[FileRef]
    client_msg_id: str | None
    change: int
    meta: dict[str, object] | None


class RoomView(msgspec.Struct, frozen=True):
    id: int
    kind: str
    name: str | None
    topic: str
    archived: bool
    created_at: int
    last_seq: int
    last_change: int
    members: list[UserRef] | None  # for DMs and group DMs; channels list members separately
    member_count: int


class RoomSummary(msgspec.Struct, frozen=True):
    """A room in the user's own list: with where they are in it."""

    room: RoomView
    unread: int
    mentions: int
    last_read_seq: int
    last_message: MessageView | None
    role: str  # in the room: owner or member
    notify: str  # the user's notification level for the room


class ChannelListing(msgspec.Struct, frozen=True):
    id: int
    name: str | None
    topic: str
    member_count: int
    joined: bool


class MemberView(msgspec.Struct, frozen=True):
    id: int
    username: str
    display_name: str
    role: str
    joined_at: int


def event(kind: str, body: msgspec.Struct | None = None, **fields: object) -> dict[str, object]:
    """An event payload: ``{"type": kind, ...fields of body, ...fields}``."""
    data: dict[str, object] = {"type": kind}
    if body is not None:
        data.update(msgspec.structs.asdict(body))
    data.update(fields)
    return data
