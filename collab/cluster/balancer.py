"""A small HTTP and WebSocket load balancer for ``collab cluster``.

Why it exists: a developer who wants to see several nodes work together in a
browser needs one address that spreads requests and sockets over the nodes,
the way a reverse proxy does in production. Installing and configuring
Caddy or nginx for that is a chore, so the launcher runs this one in-process.
It is not meant for production: there, Caddy or nginx sits in front
(see docker/Caddyfile).

What it does: round-robin over the nodes whose ``/healthz`` answered the last
check (one check a second); method, path, query, headers (cookies included)
and body are passed on as they come, bodies streamed both ways;
``X-Forwarded-For`` and ``X-Forwarded-Proto`` are set (the nodes trust
127.0.0.1 through ``--trusted-proxies``); WebSocket frames are relayed both
ways, text and binary, and a close code from either side reaches the other.
Each response names the node that answered in ``X-Collab-Node``, so a
developer (and the tests) can see the spreading. A node that is draining
(stopped with SIGTERM) answers 503 with ``X-Collab-Draining``: its ``/healthz``
takes it out of the rotation, and a socket or bodiless request it refuses in
the meantime is tried on the next node instead of reaching the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from collab.ops.drain import DRAINING_HEADER

log = logging.getLogger("collab.cluster.balancer")

NODE_HEADER = "X-Collab-Node"
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 0.8
# Headers that belong to one connection, not to the request: never forwarded.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
# The upstream WebSocket handshake is made afresh by the client library.
WS_HANDSHAKE = frozenset(
    h.lower()
    for h in (
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Protocol",
    )
)


# Either end of a proxied socket.
AnySocket = aiohttp.ClientWebSocketResponse | web.WebSocketResponse


@dataclass
class Upstream:
    """One node: its name, its base URL and whether its last health check passed."""

    node_id: str
    url: str
    healthy: bool = True


class NoUpstream(Exception):
    """Every node failed its health check (or refused the connection)."""


class Draining(Exception):
    """The node refused the request because it is draining; nothing of it was used."""


class Balancer:
    """Round-robin proxy over ``upstreams``; build with :meth:`app`."""

    def __init__(self, upstreams: list[Upstream]) -> None:
        self.upstreams = upstreams
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._checker: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        # No overall timeout: downloads and sockets last as long as they last.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=5),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        await self.check_health()
        self._checker = asyncio.create_task(self._check_forever())

    async def _stop(self, _app: web.Application) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "the balancer is not started"
        return self._session

    # -- health -------------------------------------------------------------------------------

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            await self.check_health()

    async def check_health(self) -> None:
        await asyncio.gather(*(self._check(upstream) for upstream in self.upstreams))

    async def _check(self, upstream: Upstream) -> None:
        try:
            async with self.session.get(
                f"{upstream.url}/healthz", timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT)
            ) as response:
                healthy = response.status == 200
                draining = DRAINING_HEADER in response.headers
        except (aiohttp.ClientError, TimeoutError):
            healthy = draining = False
        if healthy != upstream.healthy:
            state = "back" if healthy else "draining" if draining else "down"
            log.warning("node %s is %s", upstream.node_id, state)
        upstream.healthy = healthy

    def _candidates(self) -> list[Upstream]:
        """Healthy nodes, starting with the one whose turn it is."""
        healthy = [u for u in self.upstreams if u.healthy]
        if not healthy:
            raise NoUpstream
        start = next(self._turn) % len(healthy)
        return healthy[start:] + healthy[:start]

    # -- proxying -----------------------------------------------------------------------------

    def _forward_headers(self, request: web.Request, *, websocket: bool) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or (websocket and lowered in WS_HANDSHAKE):
                continue
            if lowered in {"x-forwarded-for", "x-forwarded-proto"}:
                continue
            headers.add(name, value)
        previous = request.headers.get("X-Forwarded-For")
        remote = request.remote or "127.0.0.1"
        headers["X-Forwarded-For"] = f"{previous}, {remote}" if previous else remote
        headers["X-Forwarded-Proto"] = request.headers.get("X-Forwarded-Proto", request.scheme)
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            candidates = self._candidates()
        except NoUpstream:
            return web.Response(status=503, text="no healthy collab node\n")
        draining = False
        for upstream in candidates:
            try:
                if websocket:
                    return await self._websocket(request, upstream)
                return await self._http(request, upstream)
            except aiohttp.ClientConnectorError:
                # Nothing reached the node (so nothing of the body was used): try the next.
                upstream.healthy = False
                log.warning("node %s refused a connection", upstream.node_id)
            except Draining:
                # Out of the rotation until its health check says otherwise.
                upstream.healthy = False
                draining = True
        if draining:
            return web.json_response(
                {"error": {"code": "draining", "message": "Every collab node is stopping."}},
                status=503,
            )
        return web.Response(status=502, text="no collab node answered\n")

    async def _http(self, request: web.Request, upstream: Upstream) -> web.StreamResponse:
        headers = self._forward_headers(request, websocket=False)
        async with self.session.request(
            request.method,
            f"{upstream.url}{request.rel_url}",
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as answer:
            if (
                answer.status == 503
                and DRAINING_HEADER in answer.headers
                and not request.body_exists
            ):
                raise Draining
            out_headers: CIMultiDict[str] = CIMultiDict(
                (k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP
            )
            out_headers[NODE_HEADER] = upstream.node_id
            response = web.StreamResponse(
                status=answer.status, reason=answer.reason, headers=out_headers
            )
            await response.prepare(request)
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, upstream: Upstream) -> web.StreamResponse:
        headers = self._forward_headers(request, websocket=True)
        offered = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        try:
            node_ws = await self.session.ws_connect(
                f"{upstream.url}{request.rel_url}",
                headers=headers,
                protocols=offered,
                autoping=True,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 503 and exc.headers and DRAINING_HEADER in exc.headers:
                raise Draining from None
            # The node said no (not signed in, shutting down...): pass its answer on.
            return web.Response(
                status=exc.status, text=exc.message, headers={NODE_HEADER: upstream.node_id}
            )
        client_ws = web.WebSocketResponse(
            protocols=[node_ws.protocol] if node_ws.protocol else (),
            autoping=True,
            max_msg_size=0,
        )
        client_ws.headers[NODE_HEADER] = upstream.node_id
        await client_ws.prepare(request)

        async def pump(source: AnySocket, sink: AnySocket, default_code: int) -> None:
            """Frames one way, then the source's close code (or ``default_code``)."""
            async for message in source:
                if message.type == aiohttp.WSMsgType.TEXT:
                    await sink.send_str(message.data)
                elif message.type == aiohttp.WSMsgType.BINARY:
                    await sink.send_bytes(message.data)
            await sink.close(code=source.close_code or default_code)

        tasks = [
            asyncio.create_task(pump(node_ws, client_ws, aiohttp.WSCloseCode.GOING_AWAY)),
            asyncio.create_task(pump(client_ws, node_ws, aiohttp.WSCloseCode.OK)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await node_ws.close()
            await client_ws.close()
        return client_ws
