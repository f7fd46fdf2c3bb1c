"""A bare aiohttp WebSocket fan-out server: the floor that collab is compared with.

No authentication, no storage, no envelope checks, no per-connection queue:
a client connects to ``/ws?rooms=1,2``, gets ``{"type":"hello"}``, and every
text frame it sends is forwarded, as the same bytes, to every socket in the
frame's room (the sender's own socket included, as collab does). The only
per-message work besides writing is reading ``room`` out of the frame.

Run: ``python bench/bare_fanout.py --port 8099`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import contextlib

import msgspec
from aiohttp import WSMsgType, web


class _Room(msgspec.Struct):
    room: int = 0


_decode_room = msgspec.json.Decoder(_Room).decode
ROOMS: web.AppKey[dict[int, set[web.WebSocketResponse]]] = web.AppKey("rooms", dict)
HELLO = b'{"type":"hello"}'


async def websocket(request: web.Request) -> web.WebSocketResponse:
    rooms = request.app[ROOMS]
    mine = [int(r) for r in request.query.get("rooms", "").split(",") if r]
    ws = web.WebSocketResponse(heartbeat=25.0, compress=False, max_msg_size=1024 * 1024)
    await ws.prepare(request)
    for room in mine:
        rooms.setdefault(room, set()).add(ws)
    await ws.send_frame(HELLO, WSMsgType.TEXT)
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            payload = message.data.encode()
            listeners = rooms.get(_decode_room(payload).room)
            if not listeners:
                continue
            for other in tuple(listeners):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await other.send_frame(payload, WSMsgType.TEXT)
    finally:
        for room in mine:
            members = rooms.get(room)
            if members is not None:
                members.discard(ws)
    return ws


def create_app() -> web.Application:
    app = web.Application()
    app[ROOMS] = {}
    app.router.add_get("/ws", websocket)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
