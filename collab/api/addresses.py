"""The address a request came from, believing X-Forwarded-For only from our own proxies."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from collab.appkeys import CONFIG


def _parse(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(raw.strip())
    except ValueError:
        return None


def client_address(request: web.Request) -> str:
    """The first address, walking X-Forwarded-For from the right, that is not a trusted proxy."""
    peer = _parse(request.remote or "")
    if peer is None:
        return "0.0.0.0"  # noqa: S104 - a unix socket peer; only used as a throttle key
    networks = [ipaddress.ip_network(n, strict=False) for n in request.app[CONFIG].trusted_proxies]
    if not networks or not any(peer in net for net in networks):
        return str(peer)
    hops = [h for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break
        if not any(address in net for net in networks):
            return str(address)
    return str(peer)
