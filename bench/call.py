"""Call benchmark: join-to-picture time, and the media server's forwarding cost.

Starts the media server in a child process (this script with ``--serve``,
speaking JSON over one local WebSocket, as a stand-in for the signaling
layer) so its CPU time can be read from ``/proc``; the aiortc clients run in
this process. Prints one JSON line per measurement on stdout, progress on
stderr:

1. ``setup``: one publisher (aiortc encoding 320x240 VP8, so it answers
   keyframe requests like a browser) is in the call; ``--joins`` times a new
   participant joins, and the time from ``join`` to its first decoded video
   frame is taken; p50 and p95.
2. ``forward``: one publisher sends pre-encoded VP8 (640x480, 30 fps, about
   1 Mbit/s) and Opus from a WebM file this script makes with PyAV
   (``MediaPlayer(decode=False)``, no loop). N subscribers (1, 2, 4, … up to
   ``--max-subscribers``) count packets without decoding, except one that
   decodes to prove the stream is valid. Per N: the server's CPU seconds per
   second, video frames delivered per subscriber per second, and
   ``subscriber_streams_per_core`` = N / server cores used. Stops when the
   subscribers get less than 90 % of the source's frames.
3. ``relay``: the same with aiortc's ``MediaRelay`` (decode once, re-encode
   per subscriber), the usual aiortc way to fan out, as the baseline.
4. ``summary``: the targets next to what was reached, with ``ratio_to_relay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiortc import RTCSessionDescription  # noqa: E402
from aiortc.contrib.media import MediaPlayer, MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from collab.media import MediaServer, MediaSettings  # noqa: E402
from collab.media.peers import new_peer_connection, set_local  # noqa: E402

CALL = "bench"
SETTINGS = MediaSettings()
SOURCE_FPS = 30
CLIP_S = 10
TARGETS = {"setup_p50_s": 1.0, "subscriber_streams_per_core": 100, "ratio_to_relay": 20}


def log(*args: Any) -> None:
    print(*args, file=sys.stderr, flush=True)


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


# -- the server child process -------------------------------------------------------------


class RelayServer:
    """The baseline: aiortc's MediaRelay, decoding once and encoding per subscriber."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.tracks: list[Any] = []
        self.pcs: dict[tuple[str, str], Any] = {}
        self.on_signal: Any = None

    async def join(self, call_id: str, pid: str) -> None:
        if self.tracks:
            pc = self.pcs[(pid, "sub")] = new_peer_connection(SETTINGS)
            for track in self.tracks:
                pc.addTransceiver(self.relay.subscribe(track), direction="sendonly")
            sdp = await set_local(pc, SETTINGS, "offer")
            await self.on_signal(call_id, pid, {"pc": "subscribe", "type": "offer", "sdp": sdp})

    async def publish_offer(self, call_id: str, pid: str, sdp: str) -> str:
        pc = self.pcs[(pid, "pub")] = new_peer_connection(SETTINGS)
        pc.on("track", self.tracks.append)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        return await set_local(pc, SETTINGS, "answer")

    async def subscribe_answer(self, call_id: str, pid: str, sdp: str) -> None:
        await self.pcs[(pid, "sub")].setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def leave(self, call_id: str, pid: str) -> None:
        for key in [(pid, "pub"), (pid, "sub")]:
            pc = self.pcs.pop(key, None)
            if pc is not None:
                await pc.close()

    async def close(self) -> None:
        for pc in self.pcs.values():
            await pc.close()


async def serve(impl: str) -> None:
    """Run one media server behind a WebSocket until stdin closes."""
    media: Any = MediaServer(SETTINGS) if impl == "forward" else RelayServer()
    sockets: list[web.WebSocketResponse] = []
    pending: set[asyncio.Future[None]] = set()

    async def on_signal(call_id: str, pid: str, message: dict[str, Any]) -> None:
        for ws in sockets:
            await ws.send_json({"event": "signal", "participant": pid, "sdp": message["sdp"]})

    media.on_signal = on_signal

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sockets.append(ws)
        async for msg in ws:
            task = asyncio.ensure_future(dispatch(ws, json.loads(msg.data)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        return ws

    async def dispatch(ws: web.WebSocketResponse, cmd: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"re": cmd["id"], "ok": True}
        try:
            op, pid = cmd["op"], cmd["participant"]
            if op == "join":
                await media.join(CALL, pid)
            elif op == "publish_offer":
                answer["sdp"] = await media.publish_offer(CALL, pid, cmd["sdp"])
            elif op == "subscribe_answer":
                await media.subscribe_answer(CALL, pid, cmd["sdp"])
            elif op == "leave":
                await media.leave(CALL, pid)
        except Exception as exc:
            answer = {"re": cmd["id"], "ok": False, "error": repr(exc)}
        await ws.send_json(answer)

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await media.close()
    await runner.cleanup()


# -- the client side ----------------------------------------------------------------------


class Link:
    """The bench's one WebSocket to the server child, with request/answer matching."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count()
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.pending: set[asyncio.Future[None]] = set()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "re" in data:
                self.waiting.pop(data["re"]).set_result(data)
            elif data.get("event") == "signal":
                sub = self.subscribers.get(data["participant"])
                if sub is not None:
                    task = asyncio.ensure_future(sub.on_offer(data["sdp"]))
                    self.pending.add(task)
                    task.add_done_callback(self.pending.discard)

    async def call(self, op: str, participant: str, **fields: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future = self.waiting[ident] = asyncio.get_running_loop().create_future()
        await self.ws.send_json({"id": ident, "op": op, "participant": participant, **fields})
        answer = await future
        if not answer["ok"]:
            raise RuntimeError(f"{op} failed: {answer['error']}")
        return answer


class Subscriber:
    """Receives everything; decodes video only if asked, else counts RTP packets."""

    def __init__(self, link: Link, pid: str, decode: bool) -> None:
        self.link = link
        self.id = pid
        self.decode = decode
        self.pc = new_peer_connection(SETTINGS)
        self.video_frames = 0
        self.audio_packets = 0
        self.first_video_at: float | None = None
        self.first_video = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)
        link.subscribers[pid] = self

    async def join(self) -> None:
        await self.link.call("join", self.id)

    async def on_offer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
        answer = await set_local(self.pc, SETTINGS, "answer")
        await self.link.call("subscribe_answer", self.id, sdp=answer)

    def _on_track(self, track: Any) -> None:
        if self.decode and track.kind == "video":
            self.tasks.append(asyncio.ensure_future(self._decode(track)))
            return
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)

        # Count only: replace aiortc's per-packet handling (bench clients only).
        async def count(packet: Any, arrival_time_ms: int) -> None:
            if track.kind == "audio":
                self.audio_packets += 1
            elif packet.marker:
                self.video_frames += 1
                if self.first_video_at is None:
                    self.first_video_at = time.monotonic()
                    self.first_video.set()

        receiver._handle_rtp_packet = count

    async def _decode(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                await track.recv()
                self.video_frames += 1
                if self.first_video_at is None:
                    self.first_video_at = time.monotonic()
                    self.first_video.set()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        self.link.subscribers.pop(self.id, None)


async def publish(link: Link, pid: str, tracks: list[Any]) -> Any:
    pc = new_peer_connection(SETTINGS)
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await link.call("join", pid)
    offer = await set_local(pc, SETTINGS, "offer")
    answer = await link.call("publish_offer", pid, sdp=offer)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """The media server child: started, connected to, and stopped."""

    def __init__(self, impl: str) -> None:
        self.impl = impl

    async def __aenter__(self) -> ServerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--serve",
            self.impl,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        port = int(line.split()[1])
        self.session = aiohttp.ClientSession()
        ws = await self.session.ws_connect(f"http://127.0.0.1:{port}/", max_msg_size=0)
        self.link = Link(ws)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.ws.close()
        self.link.task.cancel()
        await self.session.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


# -- measurements -------------------------------------------------------------------------


async def measure_setup(joins: int) -> dict[str, Any]:
    """join → first decoded remote video frame, for ``joins`` newcomers."""
    sys.path.insert(0, str(ROOT / "tests"))
    from media_helpers import ColourVideo, ToneAudio

    times = []
    async with ServerProcess("forward") as server:
        tracks = [ToneAudio(loud=False), ColourVideo(size=(320, 240))]
        pub = await publish(server.link, "publisher", tracks)
        await asyncio.sleep(1.0)
        for i in range(joins):
            sub = Subscriber(server.link, f"s{i}", decode=True)
            start = time.monotonic()
            await sub.join()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.first_video.wait(), 10)
            if sub.first_video_at is not None:
                times.append(sub.first_video_at - start)
            log(f"setup join {i}: {times[-1] if times else None}")
            await server.link.call("leave", sub.id)
            await sub.close()
        for track in tracks:
            track.stop()
        await pub.close()
    times.sort()
    return {
        "bench": "call",
        "measure": "setup",
        "joins": joins,
        "completed": len(times),
        "p50_s": round(statistics.median(times), 3) if times else None,
        "p95_s": round(times[max(0, int(len(times) * 0.95) - 1)], 3) if times else None,
        "max_s": round(times[-1], 3) if times else None,
    }


def make_media_file(path: Path, seconds: int) -> float:
    """A WebM with VP8 640x480 30 fps (~1 Mbit/s) and Opus; returns video Mbit/s.

    A short clip is encoded once and its packets repeated with shifted
    timestamps (each repetition starts with a keyframe), so a long file
    costs a few seconds to make.
    """
    import av

    clip_frames = CLIP_S * SOURCE_FPS
    video_packets: list[Any] = []
    audio_packets: list[Any] = []
    encoder = av.open(os.devnull, "w", format="webm")
    v = encoder.add_stream(
        "libvpx", rate=SOURCE_FPS, options={"deadline": "realtime", "cpu-used": "8", "g": "60"}
    )
    v.width, v.height, v.pix_fmt, v.bit_rate = 640, 480, "yuv420p", 500_000
    a = encoder.add_stream("libopus", rate=48000)
    a.bit_rate = 32_000
    source = av.open(f"testsrc2=size=640x480:rate={SOURCE_FPS}", format="lavfi")
    for i, frame in enumerate(source.decode(video=0)):
        if i >= clip_frames:
            break
        video_packets += v.encode(frame)
    video_packets += v.encode(None)
    tone = av.open("sine=frequency=440:sample_rate=48000", format="lavfi")
    samples = 0
    for frame in tone.decode(audio=0):
        if samples >= 48000 * CLIP_S:
            break
        audio_packets += a.encode(frame)
        samples += frame.samples
    audio_packets += a.encode(None)
    encoder.close()

    out = av.open(str(path), "w")
    ov = out.add_stream("libvpx", rate=SOURCE_FPS)
    ov.width, ov.height = 640, 480
    oa = out.add_stream("libopus", rate=48000)
    v_step = int(CLIP_S / video_packets[0].time_base)
    a_step = int(CLIP_S / audio_packets[0].time_base)
    video_bytes = 0
    for rep in range(seconds // CLIP_S + 1):
        pairs = [(p, ov, v_step) for p in video_packets] + [(p, oa, a_step) for p in audio_packets]
        pairs.sort(key=lambda x: float((x[0].pts or 0) * x[0].time_base))
        for packet, stream, step in pairs:
            if packet.pts is None:
                continue
            copy = av.Packet(bytes(packet))
            copy.pts = copy.dts = packet.pts + rep * step
            copy.time_base = packet.time_base
            copy.is_keyframe = packet.is_keyframe
            copy.stream = stream
            out.mux(copy)
            if stream is ov and rep == 0:
                video_bytes += packet.size
    out.close()
    return round(video_bytes * 8 / CLIP_S / 1e6, 2)


async def measure_fanout(
    impl: str, media_file: Path, max_subscribers: int, window: float
) -> list[dict[str, Any]]:
    """Forwarding (or relay) cost for N = 1, 2, 4, … subscribers."""
    records = []
    async with ServerProcess(impl) as server:
        player = MediaPlayer(str(media_file), decode=False)
        pub = await publish(server.link, "publisher", [player.audio, player.video])
        subs: list[Subscriber] = []
        n = 1
        while n <= max_subscribers:
            while len(subs) < n:
                sub = Subscriber(server.link, f"s{len(subs)}", decode=not subs)
                subs.append(sub)
                await sub.join()
            # Settle: everyone connected and past a keyframe (one every 2 s in the file).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.first_video.wait() for s in subs)), 15)
            await asyncio.sleep(1.0)
            frames0 = [s.video_frames for s in subs]
            audio0 = [s.audio_packets for s in subs]
            cpu0, me0, t0 = server.cpu(), cpu_seconds(os.getpid()), time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - t0
            server_cores = (server.cpu() - cpu0) / elapsed
            client_cores = (cpu_seconds(os.getpid()) - me0) / elapsed
            fps = [(s.video_frames - f) / elapsed for s, f in zip(subs, frames0, strict=True)]
            audio_pps = [(s.audio_packets - a) / elapsed for s, a in zip(subs, audio0, strict=True)]
            counting = fps[1:] or fps
            kept_up = min(fps) >= 0.9 * SOURCE_FPS
            base = records[0] if records else None
            marginal = (
                (server_cores - base["server_cpu_s_per_s"]) / (n - base["subscribers"])
                if base and n > base["subscribers"]
                else None
            )
            record = {
                "bench": "call",
                "measure": impl,
                "subscribers": n,
                "server_cpu_s_per_s": round(server_cores, 4),
                "server_cpu_per_stream": round(server_cores / n, 5),
                "subscriber_streams_per_core": round(n / server_cores, 1) if server_cores else None,
                "marginal_cpu_per_stream": round(marginal, 5) if marginal else None,
                "fps_per_subscriber_min": round(min(counting), 1),
                "fps_per_subscriber_mean": round(statistics.mean(counting), 1),
                "decoding_subscriber_fps": round(fps[0], 1),
                "audio_packets_per_s_mean": round(statistics.mean(audio_pps), 1),
                "client_process_cpu_s_per_s": round(client_cores, 3),
                "kept_up": kept_up,
            }
            emit(record)
            records.append(record)
            log(f"{impl} N={n}: server {server_cores:.3f} cores, fps min {min(fps):.1f}")
            if not kept_up:
                break
            n *= 2
        for sub in subs:
            await sub.close()
        await pub.close()
        for track in (player.audio, player.video):
            track.stop()
    return records


def best_streams_per_core(records: list[dict[str, Any]]) -> float | None:
    """Streams per core at the largest N that still kept up."""
    good = [r for r in records if r["kept_up"] and r["subscriber_streams_per_core"]]
    return good[-1]["subscriber_streams_per_core"] if good else None


async def run(args: argparse.Namespace) -> None:
    summary: dict[str, Any] = {"bench": "call", "measure": "summary", "targets": TARGETS}
    if args.mode in ("all", "setup"):
        setup = await measure_setup(args.joins)
        emit(setup)
        summary["setup_p50_s"] = setup["p50_s"]
    forward: list[dict[str, Any]] = []
    relay: list[dict[str, Any]] = []
    if args.mode in ("all", "forward", "relay"):
        with tempfile.TemporaryDirectory(prefix="collab-call-bench-") as tmp:
            media_file = Path(tmp) / "source.webm"
            steps = max(1, args.max_subscribers).bit_length()
            seconds = int(steps * (args.window + 8) + 30)
            log(f"making a {seconds} s VP8/Opus file")
            summary["source_video_mbit_s"] = make_media_file(media_file, seconds)
            if args.mode in ("all", "forward"):
                forward = await measure_fanout(
                    "forward", media_file, args.max_subscribers, args.window
                )
            if args.mode in ("all", "relay"):
                relay = await measure_fanout("relay", media_file, args.relay_max, args.window)
    if forward:
        summary["subscriber_streams_per_core"] = best_streams_per_core(forward)
        summary["forward_max_subscribers_kept_up"] = max(
            (r["subscribers"] for r in forward if r["kept_up"]), default=0
        )
        summary["forward_fell_behind_at"] = next(
            (r["subscribers"] for r in forward if not r["kept_up"]), None
        )
    if relay:
        summary["relay_streams_per_core"] = best_streams_per_core(relay)
        summary["relay_fell_behind_at"] = next(
            (r["subscribers"] for r in relay if not r["kept_up"]), None
        )
    if summary.get("subscriber_streams_per_core") and summary.get("relay_streams_per_core"):
        summary["ratio_to_relay"] = round(
            summary["subscriber_streams_per_core"] / summary["relay_streams_per_core"], 1
        )
    emit(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("all", "setup", "forward", "relay"), default="all")
    parser.add_argument("--joins", type=int, default=20)
    parser.add_argument("--max-subscribers", type=int, default=64)
    parser.add_argument("--relay-max", type=int, default=16)
    parser.add_argument("--window", type=float, default=5.0, help="seconds measured per N")
    parser.add_argument("--serve", choices=("forward", "relay"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
