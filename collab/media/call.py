"""One call on this media server: its participants, tracks and reports.

The call owns the list of published tracks (every participant subscribes
to all tracks but their own), tells participants to renegotiate when that
list changes, and runs one small periodic task for the whole call that
reports who is speaking (at most once per ``speaking_interval_s``, only on
change) and each participant's connection quality (every
``quality_interval_s``, only on change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .participant import Participant, PublishedTrack
from .quality import LinkStats, classify, worst
from .settings import MediaSettings
from .speaking import SpeakingDetector

logger = logging.getLogger(__name__)

Emit = Callable[..., None]


class Call:
    """Participants and tracks of one call, and its periodic reports."""

    def __init__(self, call_id: str, settings: MediaSettings, emit: Emit) -> None:
        self.id = call_id
        self.settings = settings
        self.participants: dict[str, Participant] = {}
        self.speaking = SpeakingDetector()
        self._emit = emit
        self._speakers: set[str] = set()
        self._quality: dict[str, str] = {}
        self._last_counts: dict[tuple[str, str], tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None

    # -- membership ----------------------------------------------------------------------

    def add(self, participant_id: str) -> Participant:
        """A new participant: subscribe it to everything already published."""
        participant = Participant(self, participant_id)
        self.participants[participant_id] = participant
        if self._task is None:
            self._task = asyncio.ensure_future(self._report_loop())
        if self.tracks_except(participant_id):
            participant.want_offer()
        return participant

    async def remove(self, participant_id: str) -> None:
        """Close a participant's connections; the others lose its tracks."""
        participant = self.participants.pop(participant_id, None)
        if participant is None:
            return
        had_tracks = bool(participant.published)
        await participant.close()
        participant.published.clear()
        self.speaking.forget(participant_id)
        self._quality.pop(participant_id, None)
        if had_tracks:
            self.tracks_changed()

    async def close(self) -> None:
        """Close every participant and stop the reports."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        participants = list(self.participants.values())
        self.participants.clear()
        await asyncio.gather(*(p.close() for p in participants), return_exceptions=True)

    # -- tracks --------------------------------------------------------------------------

    def tracks(self) -> list[PublishedTrack]:
        """Every published track of the call."""
        return [t for p in self.participants.values() for t in p.published.values()]

    def tracks_except(self, participant_id: str) -> list[PublishedTrack]:
        """The tracks ``participant_id`` should receive."""
        return [t for t in self.tracks() if t.participant != participant_id]

    def tracks_changed(self) -> None:
        """Renegotiate every subscriber and tell the signaling layer."""
        for participant in self.participants.values():
            participant.want_offer()
        self.info_changed()

    def info_changed(self) -> None:
        """Sources or mute states changed (or tracks did): report the call's tracks."""
        self._emit("tracks", self.id, [t.info() for t in self.tracks()])

    def emit_signal(self, participant_id: str, message: dict[str, Any]) -> None:
        """A server-made offer for ``participant_id``."""
        self._emit("signal", self.id, participant_id, message)

    # -- reports -------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        interval = self.settings.speaking_interval_s
        every = max(1, round(self.settings.quality_interval_s / interval))
        tick = 0
        while True:
            await asyncio.sleep(interval)
            tick += 1
            try:
                speakers = self.speaking.update() & set(self.participants)
                if speakers != self._speakers:
                    self._speakers = speakers
                    self._emit("speaking", self.id, sorted(speakers))
                if tick % every == 0:
                    await self._report_quality()
            except Exception:
                logger.exception("call %s: report failed", self.id)

    async def _report_quality(self) -> None:
        for participant in list(self.participants.values()):
            stats = await self._link_stats(participant)
            if stats.loss is None and stats.rtt_s is None and stats.jitter_s is None:
                continue
            level = classify(stats)
            if self._quality.get(participant.id) != level:
                self._quality[participant.id] = level
                self._emit("quality", self.id, participant.id, level, stats.as_dict())

    async def _link_stats(self, participant: Participant) -> LinkStats:
        """Uplink loss/jitter from what we receive, downlink loss/RTT from their reports."""
        result = LinkStats()
        for track in list(participant.published.values()):
            report = await track.receiver.getStats()
            for stat in report.values():
                if stat.type != "inbound-rtp":
                    continue
                key = (participant.id, track.id)
                lost, received = stat.packetsLost, stat.packetsReceived
                prev_lost, prev_received = self._last_counts.get(key, (0, 0))
                self._last_counts[key] = (lost, received)
                expected = (received - prev_received) + (lost - prev_lost)
                if expected > 0:
                    result.loss = worst(result.loss, max(0, lost - prev_lost) / expected)
                result.jitter_s = worst(result.jitter_s, stat.jitter / track.codec.clockRate)
        for sub in list(participant.subscriptions.values()):
            if sub.egress is None or not sub.egress.active:
                continue
            report = await sub.transceiver.sender.getStats()
            for stat in report.values():
                if stat.type != "remote-inbound-rtp":
                    continue
                result.loss = worst(result.loss, stat.fractionLost / 256)
                if stat.roundTripTime is not None:
                    result.rtt_s = worst(result.rtt_s, stat.roundTripTime)
        return result
