"""Prometheus metrics for one app instance.

Each app owns its registry (no module-level collectors), so two apps in one
process, as in tests, never share counts. Domains add their own metrics here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class _ReadCounter(Collector):
    """A counter whose value lives elsewhere (a plain int on a hot path), read at scrape."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._name = name
        self._documentation = documentation
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=self._read())


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "collab_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "collab_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.open_sockets = Gauge(
            "collab_websockets_open",
            "WebSocket connections open on this node",
            registry=self.registry,
        )
        self.sign_ins = Counter(
            "collab_sign_ins",
            "Sign-in attempts by outcome",
            ["outcome"],
            registry=self.registry,
        )

        self.chat_messages = Counter(
            "collab_chat_messages",
            "Chat messages stored, by kind (user, bot, system)",
            ["kind"],
            registry=self.registry,
        )

    def read_counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.registry.register(_ReadCounter(name, documentation, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
