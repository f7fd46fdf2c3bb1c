"""The rules of files: who may upload where, how much, and who may download what.

An upload belongs to one room. Until it is attached to a message only its
uploader can fetch it (an unsent upload is nobody else's business); once
attached, every member of the room can, until the message is deleted.
Strangers and unknown ids get the same 404, so ids reveal nothing.

Bytes are stored once per content (see ``blobs``); the database has one row
per upload, and a user's quota counts every one of their uploads at full size.
An upload never sent is deleted after a day (``sweep_unsent``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from collab.accounts.models import Identity
from collab.api.errors import ApiError, Forbidden, NotFound
from collab.chat.models import FileRef, file_ref
from collab.chat.service import ChatService
from collab.config import Config
from collab.files import images, kinds
from collab.files.blobs import Blobs, TooLarge
from collab.store import Store
from collab.store import files as file_sql
from collab.store import messages as message_sql
from collab.store import rooms as room_sql
from collab.store.files import FileRecord

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Room for the multipart boundaries and part headers around the file itself.
MULTIPART_SLACK = 64 * 1024
# Decoding images takes memory and CPU; a few at a time per node is plenty.
THUMBNAILS_AT_ONCE = 2
# An upload not attached to a message within this long is deleted: the composer it was
# made in is long gone, and it should not count against its uploader's quota forever.
UNSENT_UPLOAD_TTL_MS = 24 * 3600 * 1000
# A blob stored or reused this recently stays even when no upload refers to it: an
# upload of the same bytes may be between finding it on disk and writing its row.
BLOB_REUSE_GRACE_S = 3600.0


class Download(msgspec.Struct, frozen=True):
    """What the HTTP layer needs to send a file: the bytes' path and how to label them."""

    path: Path
    content_type: str
    name: str
    inline: bool


def _megabytes(size: int) -> str:
    return f"{size // MB} MB" if size % MB == 0 else f"{size / MB:.1f} MB"


class FileService:
    def __init__(
        self,
        store: Store,
        chat: ChatService,
        clock: Callable[[], int],
        *,
        root: Path,
        max_bytes: int,
        quota_bytes: int,
    ) -> None:
        """``quota_bytes`` 0 means no quota."""
        self._store = store
        self._chat = chat
        self._clock = clock
        self._blobs = Blobs(root)
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self._thumbnailing = asyncio.Semaphore(THUMBNAILS_AT_ONCE)

    @classmethod
    def from_config(
        cls, config: Config, store: Store, chat: ChatService, clock: Callable[[], int]
    ) -> FileService:
        return cls(
            store,
            chat,
            clock,
            root=config.data_dir.resolve() / "files",
            max_bytes=config.upload_max_mb * MB,
            quota_bytes=config.user_quota_mb * MB,
        )

    # -- limits ---------------------------------------------------------------

    def _too_large(self) -> ApiError:
        return ApiError(
            f"The file is larger than the limit of {_megabytes(self.max_bytes)}.",
            code="file_too_large",
            status=413,
            limit_bytes=self.max_bytes,
        )

    def _over_quota(self) -> ApiError:
        return ApiError(
            "This upload would take your files past your storage quota of "
            f"{_megabytes(self.quota_bytes)}.",
            code="quota_exceeded",
            status=413,
            quota_bytes=self.quota_bytes,
        )

    def _room_left(self, used: int) -> int:
        return self.quota_bytes - used if self.quota_bytes else self.max_bytes

    # -- upload ----------------------------------------------------------------

    async def upload(
        self,
        identity: Identity,
        room_id: int,
        *,
        name: str | None,
        chunks: AsyncIterable[bytes],
        declared_length: int | None = None,
    ) -> FileRef:
        """Stream an upload to disk and record it, not yet attached to a message.

        ``declared_length`` (the request's Content-Length, if any) lets an
        upload that is plainly too big be refused before a byte is read.
        """
        await self._writable_room(identity, room_id)
        async with self._store.read() as conn:
            used = await file_sql.usage_of(conn, identity.user.id)
        room_left = self._room_left(used)
        if declared_length is not None and declared_length > self.max_bytes + MULTIPART_SLACK:
            raise self._too_large()
        if room_left < 0 or (
            declared_length is not None and declared_length > room_left + MULTIPART_SLACK
        ):
            raise self._over_quota()
        clean = kinds.clean_name(name)
        async with self._blobs.incoming() as incoming:
            try:
                await incoming.receive(chunks, min(self.max_bytes, room_left))
            except TooLarge:
                raise (
                    self._too_large() if incoming.size > self.max_bytes else self._over_quota()
                ) from None
            content_type = kinds.sniff(
                incoming.head, clean, complete=incoming.size <= len(incoming.head)
            )
            # The upload may have taken minutes: is the caller still in the room?
            await self._writable_room(identity, room_id)
            path = await incoming.keep()
        try:
            info = await self._inspect(path, content_type, incoming.sha256)
            async with self._store.transaction() as conn:
                # Checked again under a lock: two uploads finishing together cannot
                # both slip under the quota.
                used = await file_sql.usage_of(conn, identity.user.id, lock=True)
                if self.quota_bytes and used + incoming.size > self.quota_bytes:
                    raise self._over_quota()
                record = await file_sql.insert(
                    conn,
                    sha256=incoming.sha256,
                    size=incoming.size,
                    content_type=content_type,
                    name=clean,
                    uploader_id=identity.user.id,
                    room_id=room_id,
                    width=info.width,
                    height=info.height,
                    has_thumbnail=info.thumbnail,
                    now=self._clock(),
                )
        except Exception:
            # Over the quota at the last check, or the database failed: the bytes this
            # upload stored are nobody's (the sweep finds only uploads with a row).
            await incoming.abandon()
            raise
        log.info(
            "file uploaded id=%s room=%s by=%s size=%s type=%s",
            record.id,
            room_id,
            identity.user.username,
            record.size,
            content_type,
        )
        return file_ref(record)

    async def sweep_unsent(self) -> int:
        """Delete the uploads never sent within ``UNSENT_UPLOAD_TTL_MS`` (they no longer
        count against their uploader's quota) and the bytes no other upload shares.
        Returns how many uploads went. Safe on several nodes at once."""
        async with self._store.transaction() as conn:
            gone = await file_sql.delete_unattached(
                conn, before=self._clock() - UNSENT_UPLOAD_TTL_MS
            )
            shared = await file_sql.hashes_in_use(conn, gone)
        freed = 0
        for sha256 in set(gone) - shared:
            freed += await self._blobs.forget(sha256, used_after=time.time() - BLOB_REUSE_GRACE_S)
        if gone:
            log.info("unsent uploads deleted: %d, blobs freed: %d", len(gone), freed)
        return len(gone)

    async def _writable_room(self, identity: Identity, room_id: int) -> None:
        room = await self._chat.require_member(identity, room_id)
        if room.archived_at is not None:
            raise Forbidden(
                "This room is archived; nothing new can be shared in it.", code="archived"
            )

    async def _inspect(self, path: Path, content_type: str, sha256: str) -> images.ImageInfo:
        if content_type not in kinds.IMAGE_TYPES:
            return images.NOT_AN_IMAGE
        async with self._thumbnailing:
            return await asyncio.to_thread(
                images.inspect, path, content_type, self._blobs.thumbnail_of(sha256)
            )

    # -- download -----------------------------------------------------------------

    async def _visible(self, identity: Identity, file_id: int) -> FileRecord:
        async with self._store.read() as conn:
            record = await file_sql.by_id(conn, file_id)
            if record is not None and await self._may_see(conn, identity, record):
                return record
        raise NotFound("There is no such file, or you cannot see it.", code="file_not_found")

    @staticmethod
    async def _may_see(conn: AsyncConnection, identity: Identity, record: FileRecord) -> bool:
        if await room_sql.member(conn, record.room_id, identity.user.id) is None:
            return False
        if record.message_id is None:
            return record.uploader_id == identity.user.id
        message = await message_sql.by_id(conn, record.message_id)
        return message is not None and message.deleted_at is None

    async def download(self, identity: Identity, file_id: int) -> Download:
        record = await self._visible(identity, file_id)
        return Download(
            path=self._blobs.path_of(record.sha256),
            content_type=kinds.served_type(record.content_type),
            name=record.name,
            inline=kinds.is_inline(record.content_type),
        )

    async def thumbnail(self, identity: Identity, file_id: int) -> Download:
        record = await self._visible(identity, file_id)
        if not record.has_thumbnail:
            raise NotFound("This file has no thumbnail.", code="thumbnail_not_found")
        stem = record.name.rsplit(".", 1)[0] if "." in record.name[1:] else record.name
        return Download(
            path=self._blobs.thumbnail_of(record.sha256),
            content_type="image/jpeg",
            name=f"{stem}.thumbnail.jpg",
            inline=True,
        )
