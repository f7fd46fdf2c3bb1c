"""Keeps each user's calendar busy times fresh, so presence can say "in a meeting".

A calendar is an http(s) address the server polls, or an uploaded ``.ics``
file kept in the data directory. Either way, every poll turns it into the
busy intervals of the next days and stores them with the user's presence
settings, where every node reads them. Polls are claimed in the database,
so in a cluster each calendar is fetched by one node per interval. A
calendar that cannot be fetched or read keeps its last good busy times and
shows the error in the user's settings; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from collab.presence.calendar import (
    CalendarError,
    CalendarFetcher,
    parse_busy,
)
from collab.presence.service import PresenceService
from collab.store import Store
from collab.store import presence as presence_sql
from collab.store import users as user_sql
from collab.store.presence import PresenceSettings

log = logging.getLogger(__name__)

WINDOW_BEFORE = timedelta(hours=1)
WINDOW_AFTER = timedelta(days=14)
CLAIM_BATCH = 20
LOOP_INTERVAL_S = 15.0


class CalendarService:
    def __init__(
        self,
        store: Store,
        presence: PresenceService,
        clock: Callable[[], int],
        *,
        data_dir: Path,
        poll_ms: int,
        timeout_s: float,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._presence = presence
        self._clock = clock
        self._dir = data_dir / "calendars"
        self._poll_ms = poll_ms
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None
        self._fetcher: CalendarFetcher | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._fetcher = CalendarFetcher(
            self._session, timeout=self._timeout_s, max_bytes=self._max_bytes
        )
        self._task = asyncio.create_task(self._poll_forever(), name="calendar-poll")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    def _file(self, user_id: int) -> Path:
        return self._dir / f"{user_id}.ics"

    # -- the user's own changes --------------------------------------------------

    async def use_url(self, user_id: int, url: str) -> PresenceSettings:
        """Set a calendar address and read it at once, so a mistake shows now."""
        assert self._fetcher is not None
        result = await self._fetcher.fetch(url)  # CalendarError goes to the caller
        assert result.body is not None
        busy = await self._parse(user_id, result.body)
        await self._keep(user_id, result.body)
        await self._save(
            user_id,
            calendar_kind="url",
            calendar_url=url,
            calendar_busy=busy,
            calendar_error=None,
            calendar_etag=result.etag,
            calendar_last_modified=result.last_modified,
        )
        return (await self._presence.settings_of([user_id]))[user_id]

    async def use_file(self, user_id: int, ics: bytes) -> PresenceSettings:
        if len(ics) > self._max_bytes:
            raise CalendarError(
                "calendar_too_large",
                f"The calendar file is larger than {self._max_bytes // 1024} KB.",
            )
        busy = await self._parse(user_id, ics)
        await self._keep(user_id, ics)
        await self._save(
            user_id,
            calendar_kind="file",
            calendar_url=None,
            calendar_busy=busy,
            calendar_error=None,
            calendar_etag=None,
            calendar_last_modified=None,
        )
        return (await self._presence.settings_of([user_id]))[user_id]

    async def remove(self, user_id: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._file(user_id).unlink)
        await self._save(
            user_id,
            calendar_kind=None,
            calendar_url=None,
            calendar_busy=None,
            calendar_error=None,
            calendar_etag=None,
            calendar_last_modified=None,
            calendar_next_poll=None,
        )

    async def _keep(self, user_id: int, ics: bytes) -> None:
        """Keep the calendar's text: recurring events are expanded again at each poll,
        also when the server answers "not modified"."""
        self._dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._file(user_id).write_bytes, ics)

    async def _save(self, user_id: int, **fields: Any) -> None:
        now = self._clock()
        fields.setdefault("calendar_next_poll", now + self._poll_ms)
        fields["calendar_checked_at"] = now
        await self._presence.update_settings(user_id, **fields)

    async def _parse(self, user_id: int, ics: bytes) -> list[dict[str, Any]]:
        async with self._store.read() as conn:
            user = await user_sql.by_id(conn, user_id)
            settings = await presence_sql.get(conn, user_id)
        owners = {user.email} if user and user.email else set()
        now = datetime.fromtimestamp(self._clock() / 1000, tz=UTC)
        intervals = await asyncio.to_thread(
            parse_busy,
            ics,
            window_start=now - WINDOW_BEFORE,
            window_end=now + WINDOW_AFTER,
            owner_emails=owners,
            default_tz=settings.time_zone,
            max_bytes=self._max_bytes,
        )
        return [{"start": i.start, "end": i.end, "summary": i.summary} for i in intervals]

    # -- polling ------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            try:
                await self.poll_due()
            except Exception:
                log.exception("calendar poll failed; will retry")
            await asyncio.sleep(LOOP_INTERVAL_S)

    async def poll_due(self) -> int:
        """Refresh every calendar whose time has come; returns how many were tried."""
        now = self._clock()
        async with self._store.transaction() as conn:
            due = await presence_sql.claim_calendars(
                conn, now=now, next_poll=now + self._poll_ms, limit=CLAIM_BATCH
            )
        for settings in due:
            await self._refresh(settings)
        return len(due)

    async def _refresh(self, settings: PresenceSettings) -> None:
        user_id = settings.user_id
        try:
            if settings.calendar_kind == "file":
                ics = await asyncio.to_thread(self._file(user_id).read_bytes)
                busy = await self._parse(user_id, ics)
                await self._save(user_id, calendar_busy=busy, calendar_error=None)
                return
            assert self._fetcher is not None and settings.calendar_url is not None
            result = await self._fetcher.fetch(
                settings.calendar_url,
                etag=settings.calendar_etag,
                last_modified=settings.calendar_last_modified,
            )
            if result.not_modified:
                # The same calendar, but time moved on: expand it again for the new window.
                ics = await asyncio.to_thread(self._file(user_id).read_bytes)
                busy = await self._parse(user_id, ics)
                await self._save(user_id, calendar_busy=busy, calendar_error=None)
                return
            assert result.body is not None
            busy = await self._parse(user_id, result.body)
            await self._keep(user_id, result.body)
            await self._save(
                user_id,
                calendar_busy=busy,
                calendar_error=None,
                calendar_etag=result.etag,
                calendar_last_modified=result.last_modified,
            )
        except CalendarError as exc:
            log.info("calendar of user %s: %s", user_id, exc.message)
            await self._save(user_id, calendar_error=exc.message)
        except FileNotFoundError:
            await self._save(
                user_id,
                calendar_error="The stored calendar is missing; set the calendar again.",
                calendar_etag=None,
                calendar_last_modified=None,
            )
