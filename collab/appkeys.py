"""Typed keys for what ``create_app`` puts on the application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

    from collab.accounts.service import AccountService
    from collab.calls.failover import CallNodes
    from collab.calls.service import CallService
    from collab.chat.service import ChatService
    from collab.config import Config
    from collab.files.service import FileService
    from collab.media import MediaServer
    from collab.ops.metrics import Metrics
    from collab.presence.calendars import CalendarService
    from collab.presence.service import PresenceService
    from collab.search.service import SearchService
    from collab.store import Store
    from collab.webhooks.service import WebhookService
    from signaling.bus import LocalBus, RedisBus
    from signaling.ws import SocketServer

CONFIG: web.AppKey[Config] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
BUS: web.AppKey[LocalBus | RedisBus] = web.AppKey("bus")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
CLOCK: web.AppKey[Callable[[], int]] = web.AppKey("clock")
ACCOUNTS: web.AppKey[AccountService] = web.AppKey("accounts")
SOCKETS: web.AppKey[SocketServer] = web.AppKey("sockets")
CHAT: web.AppKey[ChatService] = web.AppKey("chat")
FILES: web.AppKey[FileService] = web.AppKey("files")
SEARCH: web.AppKey[SearchService] = web.AppKey("search")
WEBHOOKS: web.AppKey[WebhookService] = web.AppKey("webhooks")
PRESENCE: web.AppKey[PresenceService] = web.AppKey("presence")
CALENDARS: web.AppKey[CalendarService] = web.AppKey("calendars")
CALLS: web.AppKey[CallService] = web.AppKey("calls")
CALL_NODES: web.AppKey[CallNodes] = web.AppKey("call_nodes")
MEDIA: web.AppKey[MediaServer | None] = web.AppKey("media")
