"""ICE servers for a caller, with TURN credentials minted per user.

coturn's ``use-auth-secret`` (the "TURN REST API" scheme) needs no user
database: the username is ``<expiry unix time>:<user id>`` and the password
is ``base64(HMAC-SHA1(secret, username))``. coturn recomputes the HMAC with
the same secret and refuses usernames whose time has passed, so a leaked
credential is only good until it expires and names whose it was.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec


class IceServer(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of ``RTCConfiguration.iceServers``, as the browser takes it."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


def turn_credential(secret: str, user_id: int, *, now_s: int, ttl_s: int) -> tuple[str, str]:
    """The (username, password) coturn accepts until ``now_s + ttl_s``."""
    username = f"{now_s + ttl_s}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    *,
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    turn_secret: str,
    turn_ttl_s: int,
    user_id: int,
    now_ms: int,
) -> list[IceServer]:
    """STUN servers as they are; TURN servers with a fresh credential for this user.
    Empty when none are configured: browsers then use host candidates only."""
    servers = []
    if stun_urls:
        servers.append(IceServer(urls=list(stun_urls)))
    if turn_urls and turn_secret:
        username, password = turn_credential(
            turn_secret, user_id, now_s=now_ms // 1000, ttl_s=turn_ttl_s
        )
        servers.append(IceServer(urls=list(turn_urls), username=username, credential=password))
    return servers
