"""Health, readiness and metrics endpoints for load balancers and Prometheus."""

from __future__ import annotations

import asyncio
import ipaddress

from aiohttp import web

from collab.api.addresses import client_address
from collab.api.body import json_response
from collab.api.errors import Forbidden
from collab.api.public import public
from collab.appkeys import BUS, CONFIG, METRICS, STORE
from collab.ops.drain import DRAIN, DRAINING_HEADER

READY_CHECK_TIMEOUT = 2.0


@public
async def healthz(request: web.Request) -> web.Response:
    if request.app[DRAIN].active:
        return _draining({"status": "draining"})
    return json_response({"status": "ok"})


def _draining(body: dict[str, object]) -> web.Response:
    """503 while the node drains, marked so a proxy retries the request elsewhere."""
    response = json_response(body, status=503)
    response.headers[DRAINING_HEADER] = "true"
    return response


@public
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, probe in (("store", request.app[STORE].ping), ("bus", request.app[BUS].ping)):
        try:
            await asyncio.wait_for(probe(), READY_CHECK_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    if request.app[DRAIN].active:
        return _draining({"status": "draining", "checks": checks})
    ready = all(value == "ok" for value in checks.values())
    return json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


@public
async def metrics(request: web.Request) -> web.Response:
    address = ipaddress.ip_address(client_address(request))
    allowed = request.app[CONFIG].metrics_allow_from
    if not any(address in ipaddress.ip_network(net, strict=False) for net in allowed):
        raise Forbidden("Metrics are not served to this address.", code="forbidden")
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": request.app[METRICS].content_type})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
