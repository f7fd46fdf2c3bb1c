"""File bytes on disk, named by their SHA-256: the same bytes are stored once.

Layout under ``<data_dir>/files``: ``tmp/`` for uploads in progress,
``<aa>/<bb>/<sha256>`` for the blobs (two levels keep folders small), and
``thumbs/<sha256>.jpg`` for image thumbnails. An upload is written to a temp
file while it arrives and is only moved into place once it is complete, so a
blob at its final name is always whole. Every disk operation runs in a worker
thread: the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

FLUSH_BYTES = 1024 * 1024
HEAD_BYTES = 4096


class TooLarge(Exception):
    """More bytes arrived than the upload was allowed."""


class Blobs:
    """Where blobs and thumbnails live; knows nothing about who may read them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.thumbs = root / "thumbs"

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def thumbnail_of(self, sha256: str) -> Path:
        return self.thumbs / f"{sha256}.jpg"

    async def forget(self, sha256: str, *, used_after: float) -> bool:
        """Delete a blob no upload refers to any more, and its thumbnail; True if it went.

        A blob stored or reused after ``used_after`` (epoch seconds) stays: an upload
        of the same bytes may have found it on disk and not yet written its row.
        """
        return await asyncio.to_thread(_forget, self, sha256, used_after)

    def incoming(self) -> Incoming:
        """A temp file to stream one upload into; use as ``async with``."""
        return Incoming(self)

    def _open_temp(self) -> tuple[Path, BinaryIO]:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=".part")
        return Path(name), os.fdopen(fd, "wb")

    def _adopt(self, temp: Path, sha256: str) -> float | None:
        """Move a complete temp file to its blob name. Returns the new blob's time of last
        use, or None if those bytes were stored already."""
        final = self.path_of(sha256)
        try:
            # Marks the blob as just used, so a sweep running now spares it (``_forget``).
            os.utime(final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, final)
            return final.stat().st_mtime
        temp.unlink()
        return None


def _forget(blobs: Blobs, sha256: str, used_after: float) -> bool:
    """Moved aside first, then judged by its time of last use: an upload that touched
    the blob before the move is seen (the blob goes back), one after it finds no blob
    and stores its own bytes."""
    path = blobs.path_of(sha256)
    doomed = path.with_name(path.name + ".forget")
    try:
        os.replace(path, doomed)
    except FileNotFoundError:
        return False
    if doomed.stat().st_mtime > used_after:
        os.replace(doomed, path)
        return False
    doomed.unlink()
    with contextlib.suppress(FileNotFoundError):
        blobs.thumbnail_of(sha256).unlink()
    return True


def _remove_opened(opening: asyncio.Future[tuple[Path, BinaryIO]]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        return
    path, handle = opening.result()
    handle.close()
    path.unlink(missing_ok=True)


class Incoming:
    """One upload on its way to disk: hashed and counted as it is written.

    Leaving the ``async with`` block without ``keep()`` (an error, a request
    cut off, a limit passed, a cancelled task) deletes the temp file. The
    deletion is synchronous so that it happens even while the task is being
    cancelled.
    """

    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs
        self._path: Path | None = None
        self._handle: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.sha256 = ""
        self.stored_at: float | None = None

    async def __aenter__(self) -> Incoming:
        opening = asyncio.ensure_future(asyncio.to_thread(self._blobs._open_temp))
        try:
            self._path, self._handle = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # __aexit__ will not run: remove the temp file once the thread has made it.
            opening.add_done_callback(_remove_opened)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._discard()

    def _discard(self) -> None:
        handle, path = self._handle, self._path
        self._handle = self._path = None
        if handle is not None:
            with contextlib.suppress(OSError, ValueError):
                handle.close()
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _write(self, data: bytearray) -> None:
        assert self._handle is not None
        self._hash.update(data)
        self._handle.write(data)

    def _finish(self, data: bytearray) -> None:
        assert self._handle is not None
        self._write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        self._handle = None

    async def receive(self, chunks: AsyncIterable[bytes], limit: int) -> None:
        """Write everything ``chunks`` yields; raise TooLarge as soon as it passes ``limit``.

        At most about ``FLUSH_BYTES`` are held in memory, whatever the file's size.
        """
        pending = bytearray()
        async for chunk in chunks:
            self.size += len(chunk)
            if self.size > limit:
                raise TooLarge(self.size)
            if len(self.head) < HEAD_BYTES:
                self.head += chunk[: HEAD_BYTES - len(self.head)]
            pending += chunk
            if len(pending) >= FLUSH_BYTES:
                full, pending = pending, bytearray()
                await asyncio.to_thread(self._write, full)
        await asyncio.to_thread(self._finish, pending)
        self.sha256 = self._hash.hexdigest()

    async def keep(self) -> Path:
        """Store the received bytes under their hash (once) and return the blob's path.
        ``stored_at`` is then the blob's time of last use if this upload stored it."""
        assert self._path is not None and self.sha256, "receive() first"
        self.stored_at = await asyncio.to_thread(self._blobs._adopt, self._path, self.sha256)
        self._path = None
        return self._blobs.path_of(self.sha256)

    async def abandon(self) -> None:
        """The upload failed after ``keep``: delete the blob it stored, unless another
        upload has used the same bytes since."""
        if self.stored_at is not None:
            await self._blobs.forget(self.sha256, used_after=self.stored_at)
