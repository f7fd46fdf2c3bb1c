"""Settings of the media server.

Kept as a small frozen dataclass of its own so the media package does not
depend on the node's whole configuration; ``create_app`` builds one from
``collab.config`` (see the package docstring for the mapping).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server the *media server's own* ICE agent may use.

    Empty by default: the server only offers host candidates and never
    reaches out to the public internet on its own.
    """

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclasses.dataclass(frozen=True)
class MediaSettings:
    """How the media server talks to the network and how often it reports.

    ``host_addresses`` are local addresses bound as extra host candidates
    next to the ones aioice finds itself: aioice leaves ``127.0.0.1`` out,
    so loopback clients (tests, a browser on the same machine) need it.
    ``public_addresses`` are announced (as server-reflexive candidates on
    the ports of the real host candidates) for a node behind a 1:1 NAT or in
    a container: ``--media-public-ip``.
    """

    ice_servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] = ("127.0.0.1",)
    public_addresses: tuple[str, ...] = ()
    keyframe_retry_s: float = 0.4
    speaking_interval_s: float = 0.33
    quality_interval_s: float = 2.0
    packet_cache_size: int = 1024
