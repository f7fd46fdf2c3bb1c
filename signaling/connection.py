"""One live socket: who is on the other end, and a bounded queue of frames to send.

Events are pushed without waiting; a writer task drains the queue. When a
client stops reading and its queue fills, the connection is closed with
``RESUME_CLOSE_CODE`` instead of letting the server's memory grow: the
client reconnects and asks for what it missed with ``sync``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable

from aiohttp import WSMsgType, web

from signaling.protocol import RESUME_CLOSE_CODE

log = logging.getLogger(__name__)

MAX_QUEUED_FRAMES = 512
MAX_QUEUED_BYTES = 4 * 1024 * 1024


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        user_id: int,
        username: str,
        credential: str,
        context: object = None,
        max_frames: int = MAX_QUEUED_FRAMES,
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.username = username
        self.credential = credential
        self.context = context  # the product's own record of who this is
        self.state: dict[str, object] = {}  # per-connection values products keep
        self.topics: set[str] = set()
        # (frame, counted): answers are queued uncounted, events count toward the bounds.
        self._queue: collections.deque[tuple[bytes, bool]] = collections.deque()
        self._queued_bytes = 0
        self._queued_frames = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._held: list[bytes] | None = None
        self.after_answer: list[Callable[[], None]] = []
        self.closing = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_forever(), name=f"ws-writer-{self.username}")

    def hold(self) -> None:
        """Keep live events back (while a ``sync`` answer is being put together)."""
        if self._held is None:
            self._held = []

    @property
    def held(self) -> bool:
        return self._held is not None

    def release(self, keep: Callable[[bytes], bool]) -> None:
        """Send the events held back, except those ``keep`` says the client already has."""
        held, self._held = self._held or [], None
        for frame in held:
            if keep(frame):
                self.push(frame)

    def push_answer(self, frame: bytes) -> bool:
        """Queue a command's answer: it goes out even while live events are held, and
        is not counted against the queue's bounds (the client asked for it, and an
        answer that could never fit would otherwise cut the client off forever)."""
        if self.closing:
            return False
        self._queue.append((frame, False))
        self._wakeup.set()
        return True

    def push(self, frame: bytes) -> bool:
        """Queue a text frame (UTF-8 JSON bytes, shared by all recipients). False if cut off."""
        if self.closing:
            return False
        if self._held is not None:
            if len(self._held) >= self._max_frames:
                self.close_soon(RESUME_CLOSE_CODE, b"too many events during sync; sync again")
                return False
            self._held.append(frame)
            return True
        if (
            self._queued_frames >= self._max_frames
            or self._queued_bytes + len(frame) > self._max_bytes
        ):
            log.warning("socket of %s is not reading; closing it so it resumes", self.username)
            self.close_soon(RESUME_CLOSE_CODE, b"too slow; reconnect and sync")
            return False
        self._queue.append((frame, True))
        self._queued_bytes += len(frame)
        self._queued_frames += 1
        self._wakeup.set()
        return True

    async def _write_forever(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                frame, counted = self._queue.popleft()
                if counted:
                    self._queued_bytes -= len(frame)
                    self._queued_frames -= 1
                await self.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionResetError, RuntimeError, asyncio.CancelledError):
            return
        except Exception:
            log.exception("socket writer failed for %s", self.username)

    def close_soon(self, code: int, message: bytes) -> None:
        """Close from synchronous code (a bus callback): queued frames are dropped."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._queued_frames = 0
        if self._writer is not None:
            self._writer.cancel()
        asyncio.get_running_loop().create_task(self._close(code, message))

    async def _close(self, code: int, message: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)

    async def stop(self) -> None:
        """The socket is finished: stop the writer."""
        self.closing = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
