"""Requests between nodes over the bus, on each node's ``node:<id>`` topic.

A call lives on its media node; a socket on another node reaches it by
asking that node. A request names an operation and carries plain
arguments; the answer comes back on the asking node's topic. A refusal
travels as its code, message, HTTP status and extra fields and is raised
again on the asking side, so the client sees the same error wherever its
socket is. A node that does not answer in time is ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from collab.api.errors import ApiError, Unavailable
from signaling.bus import Bus, BusUnavailable, Subscription
from signaling.protocol import CommandError

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


def node_topic(node: str) -> str:
    return f"node:{node}"


class Message(msgspec.Struct, omit_defaults=True):
    kind: str  # "request", "notice" (no answer wanted) or "answer"
    id: str
    sender: str = ""
    op: str = ""
    args: dict[str, Any] = {}
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class NodeRelay:
    """This node's end of the node-to-node requests: it sends them, answers the ones
    addressed to it with the handlers registered, and matches answers to waiters."""

    def __init__(self, bus: Bus, node: str, *, timeout_s: float = 5.0) -> None:
        self._bus = bus
        self.node = node
        self.timeout_s = timeout_s
        self._handlers: dict[str, Handler] = {}
        self._waiting: dict[str, asyncio.Future[Message]] = {}
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder(Message)

    def handle(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(node_topic(self.node), self._received)

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()
        for task in list(self._tasks):
            task.cancel()
        for future in self._waiting.values():
            future.cancel()

    async def request(
        self, node: str, op: str, args: dict[str, Any], *, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Ask ``node`` to do ``op``; its answer, or its refusal raised here."""
        message = Message("request", secrets.token_hex(8), self.node, op, args)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[message.id] = future
        try:
            await self._bus.publish(node_topic(node), self._encoder.encode(message))
            async with asyncio.timeout(timeout_s or self.timeout_s):
                answer = await future
        except (BusUnavailable, TimeoutError):
            raise Unavailable(
                "The node that holds this call does not answer; try again in a moment.",
                code="unavailable",
            ) from None
        finally:
            self._waiting.pop(message.id, None)
        if answer.error is not None:
            error = dict(answer.error)
            status = error.pop("status", 400)
            code = error.pop("code", "bad_request")
            text = error.pop("message", "Refused.")
            raise ApiError(text, code=code, status=status, **error)
        return answer.result or {}

    async def notify(self, node: str, op: str, args: dict[str, Any]) -> None:
        """Tell ``node`` something; nobody waits for an answer."""
        message = Message("notice", secrets.token_hex(8), self.node, op, args)
        try:
            await self._bus.publish(node_topic(node), self._encoder.encode(message))
        except BusUnavailable:
            log.warning("%s to node %s not sent: bus unavailable", op, node)

    def _received(self, topic: str, payload: bytes) -> None:
        try:
            message = self._decoder.decode(payload)
        except msgspec.ValidationError:
            log.warning("unreadable node message on %s", topic)
            return
        if message.kind == "answer":
            future = self._waiting.get(message.id)
            if future is not None and not future.done():
                future.set_result(message)
            return
        task = asyncio.get_running_loop().create_task(self._run(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: Message) -> None:
        handler = self._handlers.get(message.op)
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        if handler is None:
            error = {"code": "internal", "message": f"unknown node operation {message.op}"}
        else:
            try:
                result = (await handler(message.args)) or {}
            except CommandError as exc:
                status = getattr(exc, "status", 400)
                error = {"code": exc.code, "message": exc.message, "status": status, **exc.extra}
            except Exception:
                log.exception("node operation %s failed", message.op)
                error = {
                    "code": "internal",
                    "message": "The call's node failed to do this.",
                    "status": 500,
                }
        if message.kind != "request":
            return
        answer = Message("answer", message.id, self.node, result=result, error=error)
        try:
            await self._bus.publish(node_topic(message.sender), self._encoder.encode(answer))
        except BusUnavailable:
            log.warning("answer to node %s lost: bus unavailable", message.sender)
