"""RTP forwarding: one ingress per published track, one egress per subscriber.

Packets are never decoded. The ingress receives each RTP packet of a
publisher's track (from :func:`aiortc_hooks.tap_receiver`), keeps the last
packets in a ring for retransmissions, notes keyframe starts, and hands the
packet to every egress in the same call: no task and no queue per
subscriber, so a slow subscriber costs a dropped packet, never memory.

An egress rewrites what differs per subscriber — SSRC, payload type,
sequence number and timestamp (offset so each subscriber sees one continuous
stream even when the publisher's SSRC changes) and the audio-level header
extension id — and writes the packet through the subscriber's transport. A
video egress is held until a keyframe starts, since nothing before one can
be decoded; while any egress waits, the ingress asks the publisher for a
keyframe (one PLI, repeated every ``keyframe_retry_s`` while someone still
waits), however many subscribers asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable

from aiortc import clock
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)
from aiortc.utils import uint16_gt

from . import aiortc_hooks as hooks
from .packets import OPUS, is_keyframe_start, opus_level_guess

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_ONE_BYTE_PROFILE = b"\xbe\xde\x00\x01"
_VIDEO_FRAME_TICKS = 3000  # 1/30 s at 90 kHz: the gap left when a stream is rebased
_AUDIO_FRAME_TICKS = 960  # 20 ms at 48 kHz
_MIN_PLI_GAP_S = 0.1  # a burst of requests (many subscribers) makes one PLI

KeyframeSender = Callable[[int], Awaitable[None]]
LevelCallback = Callable[[int], None]


class Ingress:
    """One published track: learns its SSRC, caches packets, fans them out."""

    def __init__(
        self,
        kind: str,
        codecs: list[RTCRtpCodecParameters],
        send_pli: KeyframeSender,
        *,
        keyframe_retry_s: float = 0.4,
        cache_size: int = 1024,
        on_level: LevelCallback | None = None,
    ) -> None:
        self.kind = kind
        self.codecs = {c.payloadType: c for c in codecs}
        media = [c for c in codecs if not is_rtx(c)]
        self.mime = media[0].mimeType.lower() if media else ""
        self.clock_rate = media[0].clockRate if media else 90000
        self.ssrc: int | None = None
        self.egresses: list[Egress] = []
        self.packets_received = 0
        self.keyframes = 0
        self.closed = False
        self._send_pli = send_pli
        self._retry_s = keyframe_retry_s
        self._cache: list[RtpPacket | None] = [None] * cache_size
        self._cache_size = cache_size
        self._on_level = on_level
        self._keyframe_wanted = False
        self._keyframe_task: asyncio.Task[None] | None = None
        self.plis_sent = 0
        self.now_ntp = 0
        self._last_pli_at = 0.0
        self._keyframe_urgent = asyncio.Event()

    # -- packets in ----------------------------------------------------------------------

    def on_packet(self, packet: RtpPacket) -> None:
        """Called by the receiver tap for every RTP packet, before aiortc's handling."""
        if self.closed:
            return
        codec = self.codecs.get(packet.payload_type)
        if codec is None:
            return
        if is_rtx(codec):
            apt = codec.parameters.get("apt")
            if self.ssrc is None or len(packet.payload) < 2 or apt not in self.codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=self.ssrc)
        elif packet.ssrc != self.ssrc:
            if self.ssrc is not None:
                for egress in self.egresses:
                    egress.rebase()
            self.ssrc = packet.ssrc
        self.packets_received += 1
        self.now_ntp = clock.current_ntp_time()  # once per packet, not per subscriber
        self._cache[packet.sequence_number % self._cache_size] = packet
        key = self.kind == "video" and is_keyframe_start(self.mime, packet.payload)
        if key:
            self.keyframes += 1
            self._keyframe_wanted = False
        if self._on_level is not None:
            level = packet.extensions.audio_level
            if level is not None:
                self._on_level(level[1])
            elif self.mime == OPUS:
                self._on_level(opus_level_guess(packet.payload))
        for egress in self.egresses:
            egress.forward(packet, key)

    def cached(self, sequence_number: int) -> RtpPacket | None:
        """The packet with this (publisher) sequence number, if still held."""
        packet = self._cache[sequence_number % self._cache_size]
        if packet is not None and packet.sequence_number == sequence_number:
            return packet
        return None

    # -- egresses ------------------------------------------------------------------------

    def attach(self, egress: Egress) -> None:
        """Start fanning out to ``egress`` (it stays held until activated)."""
        self.egresses.append(egress)

    def detach(self, egress: Egress) -> None:
        """Stop fanning out to ``egress``."""
        with contextlib.suppress(ValueError):
            self.egresses.remove(egress)

    def close(self) -> None:
        """The publisher stopped: drop subscribers and stop asking for keyframes."""
        self.closed = True
        for egress in list(self.egresses):
            egress.close()
        self.egresses.clear()
        if self._keyframe_task is not None:
            self._keyframe_task.cancel()

    # -- keyframes -----------------------------------------------------------------------

    def want_keyframe(self) -> None:
        """Ask for a keyframe, collapsed: one PLI now, at most one per
        ``_MIN_PLI_GAP_S`` however many ask, and one per retry interval while
        anyone still waits."""
        if self.kind != "video" or self.closed:
            return
        self._keyframe_wanted = True
        if self._keyframe_task is None or self._keyframe_task.done():
            self._keyframe_task = asyncio.ensure_future(self._request_keyframes())
        else:
            self._keyframe_urgent.set()

    def _still_waiting(self) -> bool:
        return self._keyframe_wanted or any(e.waiting for e in self.egresses)

    async def _request_keyframes(self) -> None:
        """Send PLIs while anyone waits: a new request wakes the loop early."""
        try:
            while not self.closed and self._still_waiting():
                if self.ssrc is not None:
                    self.plis_sent += 1
                    self._last_pli_at = time.monotonic()
                    with contextlib.suppress(ConnectionError):
                        await self._send_pli(self.ssrc)
                self._keyframe_urgent.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._keyframe_urgent.wait(), self._retry_s)
                gap = self._last_pli_at + _MIN_PLI_GAP_S - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
        except asyncio.CancelledError:
            pass


class Egress:
    """One subscriber's copy of one published track."""

    def __init__(
        self,
        ingress: Ingress,
        sink: hooks.RtpSink,
        sender: object,
        payload_type: int,
        audio_level_id: int | None = None,
    ) -> None:
        self.ingress = ingress
        self.sink = sink
        self.sender = sender
        self.ssrc = hooks.sender_ssrc(sender)  # type: ignore[arg-type]
        self.payload_type = payload_type
        self.audio_level_id = audio_level_id
        self.active = False
        self.closed = False
        self.waiting = False
        self.packets_sent = 0
        self.frames_sent = 0
        self.retransmits = 0
        self._started = False
        self._first_seq = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = secrets.randbelow(0x8000)  # low half: no early wrap
        self._last_ts = secrets.randbits(32)
        self._rebase = False

    def activate(self) -> None:
        """The subscriber's transport is up: start sending (from a keyframe)."""
        if self.closed:
            return
        self.active = True
        if self.ingress.kind == "video":
            self.waiting = True
            self.ingress.want_keyframe()

    def rebase(self) -> None:
        """The publisher's stream restarted (new SSRC): continue our numbering."""
        self._rebase = True
        if self.ingress.kind == "video" and self.active:
            self.waiting = True
            self.ingress.want_keyframe()

    def close(self) -> None:
        """Stop for good (the subscriber left or the track ended)."""
        self.closed = True
        self.active = False
        self.ingress.detach(self)

    def forward(self, packet: RtpPacket, keyframe_start: bool) -> None:
        """Rewrite and send one packet of the ingress (hot path)."""
        if not self.active:
            return
        if self.waiting:
            if not keyframe_start:
                return
            self.waiting = False
        seq_in = packet.sequence_number
        if not self._started or self._rebase:
            step = _VIDEO_FRAME_TICKS if self.ingress.kind == "video" else _AUDIO_FRAME_TICKS
            next_seq = (self._last_seq + 1) & 0xFFFF
            next_ts = (self._last_ts + (step if self._started else 0)) & 0xFFFFFFFF
            self._seq_offset = (next_seq - seq_in) & 0xFFFF
            self._ts_offset = (next_ts - packet.timestamp) & 0xFFFFFFFF
            self._first_seq = seq_in
            self._started = True
            self._rebase = False
        elif uint16_gt(self._first_seq, seq_in):
            return  # older than where this subscriber started
        self._send(packet)
        if packet.marker:
            self.frames_sent += 1

    def _send(self, packet: RtpPacket) -> bool:
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        level = packet.extensions.audio_level if self.audio_level_id is not None else None
        if level is not None:
            header = _HEADER.pack(
                0x90,
                (packet.marker << 7) | self.payload_type,
                seq,
                ts,
                self.ssrc,
            )
            ext = bytes(
                (self.audio_level_id << 4, (0x80 if level[0] else 0) | (level[1] & 0x7F), 0, 0)  # type: ignore[operator]
            )
            data = header + _ONE_BYTE_PROFILE + ext + packet.payload
        else:
            header = _HEADER.pack(
                0x80, (packet.marker << 7) | self.payload_type, seq, ts, self.ssrc
            )
            data = header + packet.payload
        if not self.sink.send(data):
            return False
        if uint16_gt(seq, self._last_seq) or not self.packets_sent:
            self._last_seq = seq
            self._last_ts = ts
        self.packets_sent += 1
        hooks.record_sent(self.sender, self.ingress.now_ntp, ts, len(packet.payload))  # type: ignore[arg-type]
        return True

    # -- feedback from the subscriber ----------------------------------------------------

    def on_rtcp(self, packet: AnyRtcpPacket) -> bool:
        """Handle the subscriber's PLI/FIR/NACK; True if consumed."""
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.ingress.want_keyframe()
            return True
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            for seq_out in packet.lost:
                self._retransmit(seq_out)
            return True
        return False

    def _retransmit(self, seq_out: int) -> None:
        """Resend a packet the subscriber lost, from the ingress's ring."""
        if not self.active:
            return
        seq_in = (seq_out - self._seq_offset) & 0xFFFF
        packet = self.ingress.cached(seq_in)
        if packet is not None and self._send(packet):
            self.retransmits += 1
