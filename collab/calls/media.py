"""What the call rules need of the media server, as a Protocol.

``collab.media.MediaServer`` (the aiortc SFU) satisfies it; the call rules
depend only on this, so calls ring, start and end on a node whose media
server is switched off or not built yet, and the two can be tested apart.
The media server owns two peer connections per participant: *publish* (the
browser offers, the server answers) and *subscribe* (the server offers when
tracks change, the browser answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

SignalCallback = Callable[[str, str, dict[str, Any]], None]
TracksCallback = Callable[[str, Any], None]
SpeakingCallback = Callable[[str, list[str]], None]
QualityCallback = Callable[[str, str, str, dict[str, Any]], None]


def media_error_code(exc: BaseException) -> str | None:
    """The code of a media server refusal (``collab.media.errors.MediaError`` and its
    subclasses: bad_sdp, unknown_call...), or None for an unexpected failure.

    Recognised by the class name rather than imported, so the call rules keep
    no dependency on the media package and run on a node without it.
    """
    code = getattr(exc, "code", None)
    named = any(cls.__name__ == "MediaError" for cls in type(exc).__mro__)
    return code if named and isinstance(code, str) else None


class MediaPort(Protocol):
    """The media server as the call rules use it. Call ids are the call's number as a
    string. Callbacks are plain attributes the call service sets once; the media
    server calls them from the event loop."""

    on_signal: SignalCallback | None
    on_tracks: TracksCallback | None
    on_speaking: SpeakingCallback | None
    on_quality: QualityCallback | None

    async def join(self, call_id: str, participant_id: str) -> None: ...

    async def publish_offer(self, call_id: str, participant_id: str, sdp: str) -> str: ...

    async def subscribe_answer(self, call_id: str, participant_id: str, sdp: str) -> None: ...

    def set_track_info(
        self, call_id: str, participant_id: str, info: Mapping[str, Mapping[str, Any]]
    ) -> None: ...

    async def add_candidate(
        self, call_id: str, participant_id: str, pc: str, candidate: Any
    ) -> None: ...

    async def leave(self, call_id: str, participant_id: str) -> None: ...

    async def end_call(self, call_id: str) -> None: ...
