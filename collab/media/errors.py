"""Errors the media server raises to the signaling layer.

Every failure a client can cause (a bad SDP, a candidate for a call that does
not exist, a participant that never joined) is a :class:`MediaError` with a
stable ``code`` and a readable message, so the signaling layer can answer
with an error frame instead of letting an exception reach the node.
"""

from __future__ import annotations


class MediaError(Exception):
    """Base of every error the media server raises on purpose."""

    code = "media_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownCall(MediaError):
    """No call with this id is held by this media server."""

    code = "unknown_call"


class UnknownParticipant(MediaError):
    """The call exists but the participant has not joined it (or has left)."""

    code = "unknown_participant"


class BadSdp(MediaError):
    """An offer or answer that cannot be parsed or negotiated."""

    code = "bad_sdp"


class BadCandidate(MediaError):
    """An ICE candidate that cannot be parsed or applied."""

    code = "bad_candidate"


class InvalidState(MediaError):
    """The request is valid but not now (e.g. an answer with no offer pending)."""

    code = "invalid_state"


class MediaUnavailable(MediaError):
    """The media server is closed or the installed aiortc is not supported."""

    code = "media_unavailable"


class BadTrackInfo(MediaError):
    """Track info that is not ``{mid: {"source": ..., "muted": ...}}``."""

    code = "bad_track_info"
