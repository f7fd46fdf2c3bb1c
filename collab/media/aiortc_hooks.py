"""Every touch of aiortc's (and aioice's) private state, in one place.

aiortc has no public hook for encoded media: a receiver always depacketizes
and decodes, a sender always encodes (or re-packetizes) what a track gives
it, and keyframe requests from the far end only set a flag on the encode
path. A forwarding server needs to sit between the wire and those objects,
so this module does exactly that and nothing else:

* :func:`tap_receiver` hands each RTP packet of a publisher to a callback
  *before* the receiver's own handling (which still sends receiver reports,
  REMB and NACKs upstream and keeps the public ``getStats()`` figures), and
  parks the decoder thread the receiver starts, since nothing is decoded.
* :func:`tap_sender_feedback` lets a callback consume a subscriber's RTCP
  feedback (PLI, FIR, NACK) before the sender ignores it; reports still reach
  the sender so ``getStats()`` shows loss and round-trip time.
* :class:`RtpSink` sends ready-made RTP through a DTLS transport without a
  coroutine hop per layer: SRTP protect, then ``sendto`` on the selected
  candidate pair's socket.
* :func:`record_sent` keeps a sender's counters right, so its RTCP sender
  reports carry real packet counts and timestamps (receivers use them for
  lip sync and round-trip time).
* :func:`add_local_candidates` adds host candidates aioice leaves out
  (``127.0.0.1``) and announced public addresses.

The versions this was written against are pinned in ``pyproject.toml``;
``tests/test_media_hooks.py`` checks every attribute used here so an
upgrade fails loudly there rather than silently in a call.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any

import aioice
import aioice.ice
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtp import AnyRtcpPacket, RtpPacket, is_rtcp

from .errors import MediaUnavailable

SUPPORTED_AIORTC = ("1.16",)

PacketCallback = Callable[[RtpPacket], None]
FeedbackCallback = Callable[[AnyRtcpPacket], bool]


def check_aiortc() -> None:
    """Raise :class:`MediaUnavailable` if aiortc lacks what this module uses."""
    import aiortc

    missing = [name for name, ok in _requirements() if not ok]
    if not aiortc.__version__.startswith(SUPPORTED_AIORTC) or missing:
        raise MediaUnavailable(
            f"aiortc {aiortc.__version__} is not supported by the media server"
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )


def _requirements() -> list[tuple[str, bool]]:
    """The private names relied on, each with whether it is present."""
    receiver_attrs = ("_handle_rtp_packet", "_send_rtcp_pli", "receive")
    sender_attrs = ("_handle_rtcp_packet",)
    checks = [(f"RTCRtpReceiver.{a}", hasattr(RTCRtpReceiver, a)) for a in receiver_attrs]
    checks += [
        ("RTCRtpReceiver.__stop_decoder", hasattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder"))
    ]
    checks += [(f"RTCRtpSender.{a}", hasattr(RTCRtpSender, a)) for a in sender_attrs]
    checks += [
        ("RTCDtlsTransport._send_rtp", hasattr(RTCDtlsTransport, "_send_rtp")),
        ("aioice.ice.StunProtocol", hasattr(aioice.ice, "StunProtocol")),
        ("aioice.Connection.sendto", hasattr(aioice.Connection, "sendto")),
    ]
    return checks


# -- receivers (the publish side) ------------------------------------------------------------


def tap_receiver(receiver: RTCRtpReceiver, on_packet: PacketCallback) -> None:
    """Call ``on_packet`` with every RTP packet the receiver gets, undecoded.

    The callback runs synchronously before aiortc's own handling, so the
    fan-out to subscribers happens in the same call as the packet's arrival,
    with no queue in between. The receiver's decoder thread is stopped as
    soon as ``receive()`` starts it: frames are never decoded.
    """
    original_handle = receiver._handle_rtp_packet
    original_receive = receiver.receive

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        on_packet(packet)
        await original_handle(packet, arrival_time_ms)

    async def receive(parameters: Any) -> None:
        await original_receive(parameters)
        receiver._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]
    receiver.receive = receive  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the publisher of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs (with payload types) agreed for this transceiver."""
    return list(transceiver._codecs)


def negotiated_header_extensions(
    transceiver: RTCRtpTransceiver,
) -> list[RTCRtpHeaderExtensionParameters]:
    """The RTP header extensions (with ids) agreed for this transceiver."""
    return list(transceiver._headerExtensions)


# -- senders (the subscribe side) ------------------------------------------------------------


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC the sender announced in SDP; forwarded packets must use it."""
    return sender._ssrc


def tap_sender_feedback(sender: RTCRtpSender, on_rtcp: FeedbackCallback) -> None:
    """Offer each RTCP packet for this sender to ``on_rtcp`` first.

    When the callback returns True the packet is consumed (PLI, FIR, NACK:
    the sender would only set a flag nobody reads, or look in an empty
    history); otherwise aiortc handles it (receiver reports feed the
    sender's ``getStats()``).
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: AnyRtcpPacket) -> None:
        if not on_rtcp(packet):
            await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def record_sent(sender: RTCRtpSender, ntp_time: int, rtp_timestamp: int, octets: int) -> None:
    """Account one forwarded packet in the sender, as if it had sent it.

    The sender's RTCP loop builds its sender reports (and so the receiver's
    round-trip time and lip sync) from these counters. ``ntp_time`` is
    :func:`aiortc.clock.current_ntp_time` taken once per incoming packet by
    the caller: it costs more than the rest of this function.
    """
    sender._RTCRtpSender__ntp_timestamp = ntp_time  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += octets  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]


class RtpSink:
    """Sends serialized RTP packets through one DTLS transport, synchronously.

    ``RTCDtlsTransport._send_rtp`` awaits through the ICE transport and
    aioice for every packet; a fan-out loop over many subscribers pays for
    those coroutine hops each time. Here the packet is protected with the
    transport's SRTP session and written straight to the socket of the
    selected candidate pair. A pair that is not a plain UDP socket (a TURN
    relay) falls back to aioice's own coroutine.
    """

    __slots__ = ("_dtls", "_ice", "_pending")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        self._dtls = dtls
        self._ice: aioice.Connection = dtls.transport._connection
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """True once DTLS is connected (SRTP keys exist) and a pair is chosen."""
        return self._dtls.state == "connected" and 1 in self._ice._nominated

    def send(self, data: bytes) -> bool:
        """Protect and send one RTP or RTCP packet; False if not connected."""
        pair = self._ice._nominated.get(1)
        if pair is None or self._dtls.state != "connected":
            return False
        srtp = self._dtls._tx_srtp
        protected = srtp.protect_rtcp(data) if is_rtcp(data) else srtp.protect(data)
        protocol = pair.protocol
        transport = getattr(protocol, "transport", None)
        if type(protocol) is aioice.ice.StunProtocol and transport is not None:
            transport.sendto(protected, pair.remote_addr)
        else:
            task = asyncio.ensure_future(protocol.send_data(protected, pair.remote_addr))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return True


# -- ICE candidates --------------------------------------------------------------------------


async def add_local_candidates(
    gatherer: RTCIceGatherer,
    host_addresses: tuple[str, ...],
    public_addresses: tuple[str, ...],
) -> None:
    """Gather, then add host candidates on ``host_addresses`` and announce
    ``public_addresses`` on the ports of the host candidates.

    Must run before ``setLocalDescription`` so the SDP carries them (aiortc
    does not trickle). Idempotent: addresses already present are skipped.
    """
    await gatherer.gather()
    connection: aioice.Connection = gatherer._connection
    have = {(c.host, c.component) for c in connection._local_candidates}
    loop = asyncio.get_running_loop()
    for address in host_addresses:
        if (address, 1) in have:
            continue
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(connection), local_addr=(address, 0)
            )
        except OSError:
            continue
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=1,
            transport="udp",
            priority=candidate_priority(1, "host"),
            host=host,
            port=port,
            type="host",
        )
        connection._protocols.append(protocol)
        connection._local_candidates.append(protocol.local_candidate)
        have.add((host, 1))
    hosts = [
        c
        for c in connection._local_candidates
        if c.type == "host" and not ipaddress.ip_address(c.host).is_loopback
    ]
    for address in public_addresses:
        for base in hosts:
            if ipaddress.ip_address(base.host).version != ipaddress.ip_address(address).version:
                continue
            connection._local_candidates.append(
                aioice.Candidate(
                    foundation=candidate_foundation("srflx", "udp", base.host),
                    component=1,
                    transport="udp",
                    priority=candidate_priority(1, "srflx"),
                    host=address,
                    port=base.port,
                    type="srflx",
                    related_address=base.host,
                    related_port=base.port,
                )
            )


def has_decoder_thread(receiver: RTCRtpReceiver) -> bool:
    """Whether the receiver still runs a decoder thread (it should not)."""
    return receiver._RTCRtpReceiver__decoder_thread is not None  # type: ignore[attr-defined]
