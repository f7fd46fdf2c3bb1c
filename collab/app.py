"""The composition root: ``create_app(config)`` builds one node.

Everything the node needs (store, bus, services, routes) is created here and
hung on the application under typed keys; nothing lives in module globals,
so tests can run several nodes in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from collab import realtime
from collab.accounts import http as accounts_http
from collab.accounts.auth import authenticate
from collab.accounts.passwords import Passwords
from collab.accounts.service import DAY_MS, HOUR_MS, AccountService
from collab.accounts.socket_expiry import SocketExpiry
from collab.accounts.throttle import LoginThrottle
from collab.api import openapi
from collab.api.middleware import add_security_headers, json_errors, request_context
from collab.api.unavailable import as_unavailable
from collab.appkeys import (
    ACCOUNTS,
    BUS,
    CALENDARS,
    CALL_NODES,
    CALLS,
    CHAT,
    CLOCK,
    CONFIG,
    FILES,
    MEDIA,
    METRICS,
    PRESENCE,
    SEARCH,
    SOCKETS,
    STORE,
    WEBHOOKS,
)
from collab.calls import http as calls_http
from collab.calls.failover import CallFailover, CallNodes
from collab.calls.placement import RedisPlacement
from collab.calls.realtime import CallSockets
from collab.calls.relay import NodeRelay
from collab.calls.router import CallRouter
from collab.calls.service import CallService
from collab.chat import http as chat_http
from collab.chat.realtime import ChatSockets, install_search
from collab.chat.service import ChatService
from collab.clock import wall_clock_ms
from collab.config import Config
from collab.files import http as files_http
from collab.files.service import FileService
from collab.media import IceServer as MediaIceServer
from collab.media import MediaError, MediaServer, MediaSettings
from collab.ops import http as ops_http
from collab.ops.drain import DRAIN, Drain
from collab.ops.metrics import Metrics
from collab.presence import http as presence_http
from collab.presence.calendars import CalendarService
from collab.presence.notify import Notifier
from collab.presence.realtime import PresenceSockets
from collab.presence.registry import LocalRegistry, RedisRegistry, Registry
from collab.presence.service import PresenceService
from collab.search import http as search_http
from collab.search.service import SearchService
from collab.store import migrate, open_store
from collab.store import sessions as session_sql
from collab.webhooks import http as webhooks_http
from collab.webhooks.service import WebhookService
from signaling.bus import create_bus
from signaling.hub import Hub
from signaling.ws import SocketServer

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SWEEP_INTERVAL_S = 600.0


def create_app(
    config: Config,
    *,
    clock: Callable[[], int] = wall_clock_ms,
    passwords: Passwords | None = None,
    announce_first_run: bool = True,
) -> web.Application:
    app = web.Application(
        middlewares=[request_context, json_errors, authenticate],
        client_max_size=1024**2,
    )
    store = open_store(config.effective_database_url)
    bus = create_bus(config.redis_url)
    metrics = Metrics()
    throttle = LoginThrottle(store, clock, config.login_max_failures)
    accounts = AccountService(
        store,
        bus,
        passwords or Passwords(),
        throttle,
        clock,
        session_ttl_ms=int(config.session_days * DAY_MS),
        invitation_ttl_ms=int(config.invitation_hours * HOUR_MS),
        public_url=config.effective_public_url,
    )
    hub = Hub(bus)
    sockets = SocketServer(
        config.effective_node_id,
        hub,
        heartbeat=config.ws_heartbeat,
        commands_per_second=config.ws_commands_per_second,
        command_burst=config.ws_command_burst,
    )
    sockets.on_count.append(metrics.open_sockets.set)
    sockets.error_mapper = as_unavailable
    chat = ChatService(store, bus, clock, on_message=metrics.chat_messages.labels)
    metrics.read_counter(
        "collab_ws_deliveries", "Events queued to local sockets", lambda: hub.delivered
    )
    ChatSockets(chat, hub).install(sockets)
    SocketExpiry(accounts, clock).install(sockets)
    instance = f"{config.effective_node_id}#{secrets.token_hex(4)}"
    registry: Registry = (
        RedisRegistry(config.redis_url, instance, config.presence_node_ttl)
        if config.redis_url
        else LocalRegistry()
    )
    presence = PresenceService(
        store,
        bus,
        registry,
        clock,
        idle_ms=int(config.idle_minutes * 60_000),
        instance=instance,
        sweep_interval_s=max(1.0, config.presence_node_ttl / 3),
    )
    PresenceSockets(presence, chat, hub, clock).install(sockets)
    calendars = CalendarService(
        store,
        presence,
        clock,
        data_dir=config.data_dir,
        poll_ms=int(config.calendar_poll_minutes * 60_000),
        timeout_s=config.calendar_timeout,
        max_bytes=config.calendar_max_kb * 1024,
    )
    notifier = Notifier(store, bus, presence, clock)
    chat.after_send.append(notifier.message_sent)
    search = SearchService(store, chat)
    install_search(sockets, search)
    calls = CallService(
        store,
        bus,
        chat,
        presence,
        clock,
        node=config.effective_node_id,
        ring_timeout_s=config.call_ring_timeout,
        rejoin_grace_s=config.call_rejoin_grace,
        stun_urls=config.stun_urls,
        turn_urls=config.turn_urls,
        turn_secret=config.turn_secret,
        turn_ttl_s=config.turn_ttl,
    )
    media = _media_server(config)
    if media is not None:
        calls.attach_media(media)
    relay = NodeRelay(bus, config.effective_node_id)
    calls.ask_node = relay.request
    if config.redis_url:
        calls.placement = RedisPlacement(
            config.redis_url,
            config.effective_node_id,
            has_media=media is not None,
            load=calls.load,
            held=calls.held_ids,
            lost=calls.lost,
        )
    CallSockets(calls, CallRouter(calls, relay, store), relay, hub).install(sockets)
    app[CALL_NODES] = CallNodes(relay, CallFailover(calls))

    app[CONFIG] = config
    app[CLOCK] = clock
    app[STORE] = store
    app[BUS] = bus
    app[METRICS] = metrics
    app[ACCOUNTS] = accounts
    app[SOCKETS] = sockets
    app[CHAT] = chat
    app[PRESENCE] = presence
    app[CALENDARS] = calendars
    app[CALLS] = calls
    app[MEDIA] = media
    app[SEARCH] = search
    app[WEBHOOKS] = WebhookService(store, chat, clock, public_url=config.effective_public_url)
    app[FILES] = FileService.from_config(config, store, chat, clock)
    app[DRAIN] = Drain(
        sockets, calls.hand_over, drain_time=config.drain_time, node_id=config.effective_node_id
    )

    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.append(_lifecycle(announce_first_run and config.first_run_link, throttle))
    app.on_shutdown.append(_close_sockets)

    ops_http.add_routes(app)
    accounts_http.add_routes(app)
    chat_http.add_routes(app)
    presence_http.add_routes(app)
    search_http.add_routes(app)
    webhooks_http.add_routes(app)
    calls_http.add_routes(app)
    files_http.add_routes(app)
    openapi.add_routes(app)
    realtime.add_routes(app)
    _add_web_client(app)
    return app


def _media_server(config: Config) -> MediaServer | None:
    """The node's media server. Without a usable aiortc the node still runs: calls ring,
    start and end, and ``call.signal`` answers ``media_unavailable``."""
    settings = MediaSettings(
        ice_servers=tuple(MediaIceServer(urls=(url,)) for url in config.stun_urls),
        public_addresses=(config.media_public_ip,) if config.media_public_ip else (),
    )
    try:
        return MediaServer(settings)
    except MediaError as exc:
        log.warning("media server off: %s", exc)
        return None


def _lifecycle(
    announce_first_run: bool, throttle: LoginThrottle
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store, bus = app[STORE], app[BUS]
        await migrate.upgrade(store)
        await bus.start()
        await app[PRESENCE].start()
        await app[CALENDARS].start()
        await app[CALL_NODES].relay.start()
        await app[CALLS].placement.start()
        await app[CALLS].recover()
        await app[CALL_NODES].failover.start()
        if announce_first_run:
            link = await app[ACCOUNTS].first_run_link()
            if link:
                log.warning(
                    "No users yet. Open this one-time link to create the first "
                    "administrator (valid 24 hours): %s",
                    link,
                )
        sweeper = asyncio.create_task(_sweep_forever(app, throttle), name="collab-sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await app[CALL_NODES].failover.close()
            await app[CALLS].close()
            await app[CALLS].placement.close()
            await app[CALL_NODES].relay.close()
            if app[MEDIA] is not None:
                await app[MEDIA].close()
            await app[CALENDARS].close()
            await app[PRESENCE].close()
            await bus.close()
            await store.close()

    return lifecycle


async def _sweep_forever(app: web.Application, throttle: LoginThrottle) -> None:
    """Delete expired sessions, stale throttle counts and uploads never sent; one task
    per node, not per row."""
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            async with app[STORE].transaction() as conn:
                await session_sql.delete_expired(conn, now=app[CLOCK]())
            await throttle.sweep()
            await app[FILES].sweep_unsent()
        except Exception:
            log.exception("periodic sweep failed; will retry")


async def _close_sockets(app: web.Application) -> None:
    await app[SOCKETS].close_all()


def _add_web_client(app: web.Application) -> None:
    index = WEB_DIR / "index.html"

    async def serve_index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", serve_index)
    for folder in ("css", "js", "img"):
        if (WEB_DIR / folder).is_dir():
            app.router.add_static(f"/{folder}/", WEB_DIR / folder, append_version=False)
