"""collab's media server: a selective forwarding unit built on aiortc.

Every call participant holds two WebRTC connections to the node (see
:mod:`collab.media.participant`): a *publish* connection the client offers,
carrying its microphone, camera and screen as separate tracks, and a
*subscribe* connection the server offers, carrying every other
participant's tracks and renegotiated by the server when tracks come or go.
Media is forwarded as RTP without decoding or re-encoding
(:mod:`collab.media.forwarding`); keyframe requests are collapsed per
publisher and sent upstream.

API for the signaling layer (all in :class:`MediaServer`)::

    media = MediaServer(MediaSettings(...), on_signal=..., on_tracks=...,
                        on_speaking=..., on_quality=...)
    await media.join(call_id, participant_id)
    answer_sdp = await media.publish_offer(call_id, participant_id, offer_sdp)
    await media.subscribe_answer(call_id, participant_id, answer_sdp)
    media.set_track_info(call_id, participant_id, {mid: {"source": "screen", "muted": False}})
    await media.add_candidate(call_id, participant_id, "publish" | "subscribe", candidate)
    await media.leave(call_id, participant_id)
    await media.close()

Events: ``on_signal(call_id, participant_id, {"pc": "subscribe", "type":
"offer", "sdp", "tracks": {mid: info}})``, ``on_tracks(call_id, [info])``
with ``info = {"participant", "track", "kind", "source", "muted"}``,
``on_speaking(call_id, [participant_id])``, ``on_quality(call_id,
participant_id, "good" | "fair" | "poor", {"loss", "jitter_ms",
"rtt_ms"})``.

Errors are :class:`MediaError` subclasses with a ``code``: ``unknown_call``,
``unknown_participant``, ``bad_sdp``, ``bad_candidate``, ``bad_track_info``,
``invalid_state``, ``media_unavailable``.
"""

from .errors import (
    BadCandidate,
    BadSdp,
    BadTrackInfo,
    InvalidState,
    MediaError,
    MediaUnavailable,
    UnknownCall,
    UnknownParticipant,
)
from .server import MediaServer
from .settings import IceServer, MediaSettings

__all__ = [
    "BadCandidate",
    "BadSdp",
    "BadTrackInfo",
    "IceServer",
    "InvalidState",
    "MediaError",
    "MediaServer",
    "MediaSettings",
    "MediaUnavailable",
    "UnknownCall",
    "UnknownParticipant",
]
