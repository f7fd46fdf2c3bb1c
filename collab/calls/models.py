"""What clients see of calls: the same structs in socket events, answers and REST."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from collab.chat.models import UserRef

SOURCES = ("mic", "camera", "screen")
Source = Literal["mic", "camera", "screen"]
TrackId = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")]


class TrackInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One track a participant publishes, as they declare it with ``call.tracks``."""

    source: Source
    muted: bool = False


class ParticipantView(msgspec.Struct, frozen=True):
    id: str  # the participant id: one join of one user from one socket
    user: UserRef
    joined_at: int
    connected: bool  # false while their socket is away (the rejoin grace period)
    tracks: dict[str, TrackInfo]
    # Derived from tracks, so a client need not work them out: the microphone is off
    # (no unmuted mic track), the camera is on, the screen is shared.
    muted: bool
    camera: bool
    screen: bool
    quality: str | None  # from the media server: good, fair, poor (null: not known yet)


class CallView(msgspec.Struct, frozen=True):
    call: int
    room: int
    video: bool
    started_by: UserRef | None
    started_at: int
    answered_at: int | None
    ringing: list[UserRef]
    participants: list[ParticipantView]
    # What the media server forwards on each subscribe connection: which remote
    # track belongs to whom (as the media server reports it; null until it does).
    media_tracks: Any = None


class StintView(msgspec.Struct, frozen=True):
    user: UserRef | None
    joined_at: int
    left_at: int | None


class CallLogEntry(msgspec.Struct, frozen=True):
    """A call in a room's call log (``GET /api/v1/rooms/{id}/calls``)."""

    id: int
    room: int
    started_by: UserRef | None
    started_at: int
    answered_at: int | None
    ended_at: int | None
    video: bool
    outcome: str | None  # null while it goes on; completed, missed, declined, cancelled
    participants: list[StintView]


def participant_flags(tracks: dict[str, TrackInfo]) -> tuple[bool, bool, bool]:
    """(muted, camera, screen) from the declared tracks."""
    live = [t for t in tracks.values() if not t.muted]
    return (
        not any(t.source == "mic" for t in live),
        any(t.source == "camera" for t in live),
        any(t.source == "screen" for t in live),
    )
