"""The media server with real aiortc peers on loopback: no mocks.

Each client publishes audio and video through its publish connection and
decodes what arrives on its subscribe connection; the tests count decoded
frames per sender. The server forwards RTP without decoding (checked in
tests/test_media_hooks.py), so decoded frames here prove the forwarded
stream is valid.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest
from aiortc import RTCSessionDescription

from collab.media import (
    BadCandidate,
    BadSdp,
    BadTrackInfo,
    InvalidState,
    MediaError,
    MediaServer,
    UnknownCall,
    UnknownParticipant,
)
from collab.media.peers import set_local
from tests.media_helpers import CLIENT_SETTINGS, Client, ColourVideo, wait_for, wire

CALL = "call-1"


@pytest.fixture
async def media():
    server = MediaServer()
    yield server
    await server.close()


@pytest.fixture
async def call(media):
    clients, events = wire(media)
    yield media, clients, events
    for client in list(clients.values()):
        await client.close()


async def _join(media, clients, pid, **kwargs) -> Client:
    client = clients[pid] = Client(media, CALL, pid, **kwargs)
    await client.join()
    return client


def _everyone_receives(clients: dict[str, Client], kinds=("audio", "video"), at_least=1) -> bool:
    return all(
        c.frames_from(other, kind) >= at_least
        for c in clients.values()
        for other in clients
        if other != c.id
        for kind in kinds
    )


async def test_two_participants_receive_each_others_audio_and_video(call):
    media, clients, events = call
    green = await _join(media, clients, "a", colour=(0, 200, 0), loud=True)
    red = await _join(media, clients, "b", colour=(200, 0, 0))

    await wait_for(lambda: _everyone_receives(clients, at_least=10), timeout=10)

    # What arrives is what was sent: the Y level of green vs red frames.
    frame_from_green = next(r for r in red.received.values() if r.kind == "video").last_frame
    frame_from_red = next(r for r in green.received.values() if r.kind == "video").last_frame
    y_green = bytes(frame_from_green.planes[0])[100]
    y_red = bytes(frame_from_red.planes[0])[100]
    assert abs(y_green - green.tracks[1].yuv[0]) < 25
    assert abs(y_red - red.tracks[1].yuv[0]) < 25

    # The server knows every track, and who speaks (only "a" sends a tone).
    tracks = media.tracks(CALL)
    assert sorted((t["participant"], t["kind"], t["source"]) for t in tracks) == [
        ("a", "audio", "mic"),
        ("a", "video", "camera"),
        ("b", "audio", "mic"),
        ("b", "video", "camera"),
    ]
    await wait_for(lambda: ("speaking", ["a"]) in events, timeout=3)
    await wait_for(lambda: any(e[0] == "quality" for e in events), timeout=5)
    quality = [e[1] for e in events if e[0] == "quality"]
    assert {pid for pid, _, _ in quality} <= {"a", "b"}
    assert all(level in ("good", "fair", "poor") for _, level, _ in quality)


async def test_three_participants_receive_everyone_else(call):
    media, clients, _ = call
    for pid in ("a", "b", "c"):
        await _join(media, clients, pid)
    await wait_for(lambda: _everyone_receives(clients, at_least=5), timeout=15)
    for client in clients.values():
        assert {r.info["participant"] for r in client.received.values()} == set(clients) - {
            client.id
        }


async def test_late_joiner_gets_a_picture_within_a_second(call):
    media, clients, _ = call
    await _join(media, clients, "a")
    await _join(media, clients, "b")
    await wait_for(lambda: _everyone_receives(clients, kinds=("video",)), timeout=10)
    # aiortc's encoder makes a keyframe only every 3000 frames on its own: by now
    # only a keyframe the server asks for lets a newcomer decode anything.
    await asyncio.sleep(1.5)

    late = await _join(media, clients, "late")
    took = await wait_for(
        lambda: late.frames_from("a", "video") > 0 and late.frames_from("b", "video") > 0,
        timeout=5,
    )
    assert took < 1.0, f"late joiner waited {took:.2f} s for a picture"


async def test_screen_track_added_mid_call_reaches_the_others(call):
    media, clients, events = call
    a = await _join(media, clients, "a")
    b = await _join(media, clients, "b")
    await wait_for(lambda: _everyone_receives(clients, kinds=("video",)), timeout=10)
    offers_before = b.offers

    await a.add_track(ColourVideo((0, 0, 200), size=(320, 180)), {"source": "screen"})

    def screen_frames() -> int:
        return sum(r.frames for r in b.received.values() if r.info.get("source") == "screen")

    await wait_for(lambda: screen_frames() > 5, timeout=10)
    assert b.offers > offers_before  # the server renegotiated; nobody rejoined
    assert b.frames_from("a", "video") > screen_frames()  # the camera still flows
    last_tracks = [e[1] for e in events if e[0] == "tracks"][-1]
    assert [(t["participant"], t["kind"]) for t in last_tracks if t["source"] == "screen"] == [
        ("a", "video")
    ]


async def test_mute_state_is_reported(call):
    media, clients, events = call
    a = await _join(media, clients, "a")
    audio_mid = next(t.mid for t in a.publish_pc.getTransceivers() if t.kind == "audio")
    media.set_track_info(CALL, "a", {audio_mid: {"muted": True}})
    assert any(t["muted"] for t in media.tracks(CALL) if t["kind"] == "audio")
    assert [e for e in events if e[0] == "tracks"][-1][1][0]["muted"] is True
    with pytest.raises(BadTrackInfo):
        media.set_track_info(CALL, "a", {audio_mid: "muted"})


async def test_leaving_ends_the_others_tracks_cleanly(call):
    media, clients, _ = call
    a = await _join(media, clients, "a")
    await _join(media, clients, "b")
    c = await _join(media, clients, "c")
    await wait_for(lambda: _everyone_receives(clients, kinds=("video",)), timeout=15)

    await media.leave(CALL, "b")
    b = clients.pop("b")
    await b.close()

    await wait_for(lambda: not a.live("b") and not c.live("b"), timeout=5)
    assert all(t["participant"] != "b" for t in media.tracks(CALL))
    assert media.participants(CALL) == ["a", "c"]
    # a and c still see each other.
    before = a.frames_from("c", "video")
    await wait_for(lambda: a.frames_from("c", "video") > before + 5, timeout=5)


async def test_bad_input_gives_media_errors(call):
    media, clients, _ = call
    with pytest.raises(UnknownCall) as unknown_call:
        await media.publish_offer("nope", "a", "v=0\r\n")
    assert unknown_call.value.code == "unknown_call"

    await media.join(CALL, "a")
    with pytest.raises(UnknownParticipant):
        await media.publish_offer(CALL, "stranger", "v=0\r\n")
    with pytest.raises(UnknownParticipant):
        await media.leave(CALL, "stranger")
    for bad in ("", "hello", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "v=0\r\nm=\r\n"):
        with pytest.raises(BadSdp) as error:
            await media.publish_offer(CALL, "a", bad)
        assert error.value.code == "bad_sdp" and error.value.message
    with pytest.raises(InvalidState):
        await media.subscribe_answer(CALL, "a", _valid_offer_sdp())
    with pytest.raises(BadCandidate):
        await media.add_candidate(CALL, "a", "publish", {"candidate": "candidate:garbage"})
    with pytest.raises(BadCandidate):
        await media.add_candidate(CALL, "a", "sideways", None)
    with pytest.raises(BadCandidate):
        await media.add_candidate(CALL, "a", "publish", 42)
    with pytest.raises(MediaError):  # no remote description yet
        await media.add_candidate(
            CALL, "a", "publish",
            {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0"},
        )  # fmt: skip

    # After all that the participant can still publish normally.
    client = clients["a"] = Client(media, CALL, "a")
    for track in client.tracks:
        client.publish_pc.addTransceiver(track, direction="sendonly")
    await client.negotiate_publish()
    assert len(media.tracks(CALL)) == 2


def _valid_offer_sdp() -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
        "a=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:active\r\n"
    )


async def test_trickled_candidates_connect_a_publisher(call):
    """A browser trickles: its offer carries no candidates, they follow one by one."""
    media, clients, _ = call
    await media.join(CALL, "a")
    client = clients["a"] = Client(media, CALL, "a", video=False)
    client.publish_pc.addTransceiver(client.tracks[0], direction="sendonly")
    offer = await set_local(client.publish_pc, CLIENT_SETTINGS, "offer")
    lines = offer.split("\r\n")
    candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
    bare = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-cand"))]
    answer = await media.publish_offer(CALL, "a", "\r\n".join(bare))
    await client.publish_pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for line in candidates:
        await media.add_candidate(CALL, "a", "publish", {"candidate": line, "sdpMid": "0"})
    await media.add_candidate(CALL, "a", "publish", {"candidate": "", "sdpMid": "0"})
    await wait_for(lambda: client.publish_pc.connectionState == "connected", timeout=5)
    track = media._calls[CALL].participants["a"].published["0"]
    await wait_for(lambda: track.ingress.packets_received > 10, timeout=5)


async def test_server_peers_are_closed_after_leave_and_close():
    threads_before = {t.ident for t in threading.enumerate()}
    media = MediaServer()
    clients, _ = wire(media)
    for pid in ("a", "b"):
        clients[pid] = Client(media, CALL, pid)
        await clients[pid].join()
    await wait_for(lambda: _everyone_receives(clients, kinds=("video",)), timeout=10)
    server_pcs = [
        pc
        for p in media._calls[CALL].participants.values()
        for pc in (p.publish_pc, p.subscribe_pc)
    ]
    await media.leave(CALL, "a")
    await media.leave(CALL, "b")
    assert media.calls() == []
    assert all(pc.connectionState == "closed" for pc in server_pcs)
    for client in clients.values():
        await client.close()
    await media.close()
    with pytest.raises(MediaError):
        await media.join(CALL, "a")

    # No decoder or encoder thread is left behind, and no task but ours.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gc.collect()
        leftover = [
            t for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()
        ]
        if not any(t.name.endswith(("decoder", "encoder")) for t in leftover):
            break
        await asyncio.sleep(0.1)
    assert not [t.name for t in leftover if t.name.endswith(("decoder", "encoder"))]
    await asyncio.sleep(0.1)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not pending, pending
