"""The media server's API for the signaling layer.

One :class:`MediaServer` per node, made by ``create_app`` and closed on
shutdown. Every method takes the call and participant ids the signaling
layer already checked (membership, permissions); this layer checks only
what it holds itself and raises a :class:`~collab.media.errors.MediaError`
for anything a client can get wrong. Events go out through four callbacks;
each may be a plain function or a coroutine function (then it is run as a
task, so a slow listener never holds up media).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import aiortc_hooks as hooks
from .call import Call
from .errors import BadCandidate, BadTrackInfo, MediaUnavailable, UnknownCall, UnknownParticipant
from .participant import Participant
from .peers import parse_candidate
from .settings import MediaSettings

logger = logging.getLogger(__name__)

Listener = Callable[..., Awaitable[None] | None]
PCS = ("publish", "subscribe")


class MediaServer:
    """Selective forwarding of WebRTC media between a call's participants.

    Events (all optional, settable after construction):

    * ``on_signal(call_id, participant_id, message)`` — a server-made offer
      on the subscribe connection: ``{"pc": "subscribe", "type": "offer",
      "sdp": str, "tracks": {mid: track_info}}``; answer it with
      :meth:`subscribe_answer`.
    * ``on_tracks(call_id, [track_info, ...])`` — the call's published
      tracks after any change; ``track_info`` is ``{"participant", "track",
      "kind", "source", "muted"}``.
    * ``on_speaking(call_id, [participant_id, ...])`` — who speaks now, on
      change, at most once per ``speaking_interval_s``.
    * ``on_quality(call_id, participant_id, level, stats)`` — ``level`` is
      ``"good" | "fair" | "poor"``, on change; ``stats`` holds ``loss``,
      ``jitter_ms`` and ``rtt_ms``.
    """

    def __init__(
        self,
        settings: MediaSettings | None = None,
        *,
        on_signal: Listener | None = None,
        on_tracks: Listener | None = None,
        on_speaking: Listener | None = None,
        on_quality: Listener | None = None,
    ) -> None:
        hooks.check_aiortc()
        self.settings = settings or MediaSettings()
        self.on_signal = on_signal
        self.on_tracks = on_tracks
        self.on_speaking = on_speaking
        self.on_quality = on_quality
        self._calls: dict[str, Call] = {}
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- lookups -------------------------------------------------------------------------

    def _call(self, call_id: str) -> Call:
        if self._closed:
            raise MediaUnavailable("the media server is shut down")
        call = self._calls.get(call_id)
        if call is None:
            raise UnknownCall(f"no call {call_id!r} on this media server")
        return call

    def _participant(self, call_id: str, participant_id: str) -> Participant:
        participant = self._call(call_id).participants.get(participant_id)
        if participant is None:
            raise UnknownParticipant(f"{participant_id!r} is not in call {call_id!r}")
        return participant

    def calls(self) -> list[str]:
        """Ids of the calls with at least one participant."""
        return list(self._calls)

    def participants(self, call_id: str) -> list[str]:
        """Participant ids of a call, in joining order."""
        return list(self._call(call_id).participants)

    def tracks(self, call_id: str) -> list[dict[str, Any]]:
        """The call's published tracks (the same shape as ``on_tracks``)."""
        return [t.info() for t in self._call(call_id).tracks()]

    # -- the API -------------------------------------------------------------------------

    async def join(self, call_id: str, participant_id: str) -> None:
        """Add a participant (creating the call). Joining again replaces the old
        connections: this is how a client that lost its network gets back in
        (aiortc cannot restart ICE); the others see its tracks end and return.
        """
        if self._closed:
            raise MediaUnavailable("the media server is shut down")
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = Call(call_id, self.settings, self._emit)
        elif participant_id in call.participants:
            await call.remove(participant_id)
        call.add(participant_id)

    async def publish_offer(self, call_id: str, participant_id: str, sdp: str) -> str:
        """Apply the client's offer on its publish connection; return the answer SDP.

        The answer carries all of the server's candidates (no trickle needed
        from the server). Raises :class:`BadSdp` or :class:`InvalidState`.
        """
        return await self._participant(call_id, participant_id).publish_offer(sdp)

    async def subscribe_answer(self, call_id: str, participant_id: str, sdp: str) -> None:
        """Apply the client's answer to the last ``on_signal`` offer."""
        await self._participant(call_id, participant_id).subscribe_answer(sdp)

    def set_track_info(
        self, call_id: str, participant_id: str, info: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Source (``mic|camera|screen``) and ``muted`` per publish-connection mid.

        Info for a mid not yet published is kept and applied when it is.
        Emits ``on_tracks`` when a published track changed.
        """
        participant = self._participant(call_id, participant_id)
        if not isinstance(info, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in info.items()
        ):
            raise BadTrackInfo("track info is {mid: {source, muted}}")
        if participant.set_track_info({k: dict(v) for k, v in info.items()}):
            participant.call.info_changed()

    async def add_candidate(
        self, call_id: str, participant_id: str, pc: str, candidate: Any
    ) -> None:
        """A trickled candidate from the client (``RTCIceCandidateInit`` or its
        line); ``None`` or an empty candidate ends the candidates.
        """
        if pc not in PCS:
            raise BadCandidate(f"pc must be one of {', '.join(PCS)}")
        participant = self._participant(call_id, participant_id)
        parsed = parse_candidate(candidate)
        try:
            await participant.add_candidate(pc, parsed)
        except (ValueError, TypeError) as exc:
            raise BadCandidate(f"candidate not applied: {exc}") from None

    async def leave(self, call_id: str, participant_id: str) -> None:
        """Close the participant's connections; the call ends with its last one."""
        call = self._call(call_id)
        if participant_id not in call.participants:
            raise UnknownParticipant(f"{participant_id!r} is not in call {call_id!r}")
        await call.remove(participant_id)
        if not call.participants:
            del self._calls[call_id]
            await call.close()

    async def end_call(self, call_id: str) -> None:
        """Close every participant of a call at once."""
        call = self._calls.pop(call_id, None)
        if call is not None:
            await call.close()

    async def close(self) -> None:
        """Close every call; the server refuses new work afterwards."""
        self._closed = True
        calls = list(self._calls.values())
        self._calls.clear()
        await asyncio.gather(*(c.close() for c in calls), return_exceptions=True)
        for task in list(self._listener_tasks):
            task.cancel()
        for task in list(self._listener_tasks):
            with contextlib.suppress(BaseException):
                await task

    # -- events --------------------------------------------------------------------------

    def _emit(self, event: str, *args: Any) -> None:
        listener = getattr(self, f"on_{event}")
        if listener is None:
            return
        try:
            result = listener(*args)
        except Exception:
            logger.exception("media %s listener failed", event)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            self._listener_tasks.add(task)
            task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media listener failed", exc_info=task.exception())
