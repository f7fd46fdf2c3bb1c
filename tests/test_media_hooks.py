"""The aiortc private state the media server relies on, checked directly.

If an aiortc or aioice upgrade renames or changes any of it, these tests
fail here, with the name of what moved, before a call breaks silently.
Real peer connections on loopback; no mocks.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect

import aiortc
import av
import pytest
from aiortc import RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription, clock
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtpPacket

from collab.media import MediaSettings
from collab.media import aiortc_hooks as hooks
from collab.media.packets import is_keyframe_start, opus_level_guess
from collab.media.peers import new_peer_connection, set_local
from tests.media_helpers import ColourVideo, wait_for

SETTINGS = MediaSettings(public_addresses=("203.0.113.7",))


def test_installed_aiortc_is_the_supported_one():
    assert aiortc.__version__.startswith(hooks.SUPPORTED_AIORTC)
    assert [name for name, ok in hooks._requirements() if not ok] == []
    hooks.check_aiortc()


def test_private_signatures_are_as_expected():
    handle = inspect.signature(RTCRtpReceiver._handle_rtp_packet)
    assert list(handle.parameters) == ["self", "packet", "arrival_time_ms"]
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]
    assert list(inspect.signature(RTCRtpSender._handle_rtcp_packet).parameters) == [
        "self",
        "packet",
    ]
    assert list(inspect.signature(RTCDtlsTransport._send_rtp).parameters) == ["self", "data"]


@pytest.fixture
async def pair():
    """A sender pc (VP8 from aiortc's encoder) and a recvonly pc with tapped receiver."""
    sender_pc = new_peer_connection(SETTINGS)
    receiver_pc = new_peer_connection(SETTINGS)
    track = ColourVideo()
    sender_pc.addTransceiver(track, direction="sendonly")
    offer = await set_local(sender_pc, SETTINGS, "offer")
    await receiver_pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    transceiver = receiver_pc.getTransceivers()[0]
    packets: list[RtpPacket] = []
    hooks.tap_receiver(transceiver.receiver, packets.append)
    answer = await set_local(receiver_pc, SETTINGS, "answer")
    await sender_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    yield sender_pc, receiver_pc, transceiver, packets, offer
    track.stop()
    await sender_pc.close()
    await receiver_pc.close()


async def test_tap_receiver_sees_packets_and_parks_the_decoder(pair):
    _, _, transceiver, packets, _ = pair
    await wait_for(lambda: len(packets) > 20, timeout=5)
    receiver = transceiver.receiver
    assert not hooks.has_decoder_thread(receiver)
    # aiortc's own handling still runs: stats count what the tap saw.
    await asyncio.sleep(0.1)
    report = await receiver.getStats()
    inbound = [s for s in report.values() if s.type == "inbound-rtp"]
    assert inbound and inbound[0].packetsReceived >= 20
    codecs = hooks.negotiated_codecs(transceiver)
    assert codecs[0].mimeType == "video/VP8"
    assert packets[0].payload_type == codecs[0].payloadType
    uris = {e.uri for e in hooks.negotiated_header_extensions(transceiver)}
    assert "urn:ietf:params:rtp-hdrext:sdes:mid" in uris


async def test_pli_reaches_the_sender_tap_and_brings_a_keyframe(pair):
    sender_pc, _, transceiver, packets, _ = pair
    seen: list[object] = []
    sender = sender_pc.getTransceivers()[0].sender

    def on_rtcp(packet: object) -> bool:
        seen.append(packet)
        return False  # let aiortc force the keyframe

    hooks.tap_sender_feedback(sender, on_rtcp)
    await wait_for(lambda: len(packets) > 20, timeout=5)
    await asyncio.sleep(0.3)
    keyframes_before = sum(is_keyframe_start("video/VP8", p.payload) for p in packets)
    await hooks.send_pli(transceiver.receiver, packets[-1].ssrc)
    await wait_for(
        lambda: any(isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI for p in seen),
        timeout=2,
    )
    await wait_for(
        lambda: sum(is_keyframe_start("video/VP8", p.payload) for p in packets) > keyframes_before,
        timeout=2,
    )


async def test_rtp_sink_and_record_sent(pair):
    sender_pc, _, _, packets, _ = pair
    await wait_for(lambda: len(packets) > 5, timeout=5)
    sender = sender_pc.getTransceivers()[0].sender
    sink = hooks.RtpSink(sender.transport)
    assert sink.ready
    marker = RtpPacket(
        payload_type=packets[0].payload_type,
        sequence_number=(packets[-1].sequence_number + 3000) & 0xFFFF,
        timestamp=packets[-1].timestamp,
        ssrc=hooks.sender_ssrc(sender),
        payload=b"\x10forwarded",
    )
    assert sink.send(marker.serialize())
    await wait_for(lambda: any(p.payload == b"\x10forwarded" for p in packets), timeout=2)

    before = next(s for s in (await sender.getStats()).values() if s.type == "outbound-rtp")
    hooks.record_sent(sender, clock.current_ntp_time(), 1234, 60)
    hooks.record_sent(sender, clock.current_ntp_time(), 1234, 40)
    after = next(s for s in (await sender.getStats()).values() if s.type == "outbound-rtp")
    assert after.packetsSent == before.packetsSent + 2
    assert after.bytesSent == before.bytesSent + 100


async def test_local_candidates_include_loopback_and_public_addresses(pair):
    *_, offer = pair
    candidates = [line for line in offer.splitlines() if line.startswith("a=candidate:")]
    assert any(" 127.0.0.1 " in c and "typ host" in c for c in candidates)
    assert any(" 203.0.113.7 " in c and "typ srflx" in c for c in candidates)


def test_vp8_keyframes_are_recognised_in_real_encoder_output():
    encoder = Vp8Encoder()
    keys = []
    for i in range(6):
        frame = av.VideoFrame(160, 120, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([100 + i]) * plane.buffer_size)
        frame.pts = i * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=i in (0, 4))
        keys.append([is_keyframe_start("video/VP8", p) for p in payloads])
    assert [any(k) for k in keys] == [True, False, False, False, True, False]
    assert all(not any(k[1:]) for k in keys)  # only the first packet starts it


def test_h264_and_other_codecs():
    assert is_keyframe_start("video/H264", bytes([0x67, 1, 2]))  # SPS
    assert is_keyframe_start("video/H264", bytes([0x65, 1, 2]))  # IDR
    assert not is_keyframe_start("video/H264", bytes([0x61, 1, 2]))  # non-IDR slice
    stap_a = bytes([0x78, 0, 2, 0x67, 0, 0, 2, 0x68, 0])
    assert is_keyframe_start("video/H264", stap_a)
    assert is_keyframe_start("video/H264", bytes([0x7C, 0x85, 0]))  # FU-A start of IDR
    assert not is_keyframe_start("video/H264", bytes([0x7C, 0x05, 0]))  # FU-A middle
    assert is_keyframe_start("audio/opus", b"\x00")  # audio is never held back
    assert opus_level_guess(b"\x00" * 3) == 127
    assert opus_level_guess(b"\x00" * 80) < 60
