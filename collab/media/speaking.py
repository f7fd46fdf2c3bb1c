"""Who is speaking in a call, from audio levels of forwarded packets.

Each audio packet carries a level (from the RTP audio-level extension, or
guessed from the Opus packet size when that is absent). A participant's
score follows the share of recent packets that were louder than a threshold
(an exponential average over about a quarter second); hysteresis keeps the
set from flickering between words. The call reports the set only when it
changes, and at most once per interval.
"""

from __future__ import annotations

import time

LOUD_DBOV = 55  # levels are -dBov: 0 loudest, 127 silent; speech is louder than -55
START = 0.5
STOP = 0.2
SILENT_AFTER_S = 0.5
_ALPHA = 0.15  # per 20 ms packet: about a quarter second of memory


class SpeakingDetector:
    """Scores per participant, updated per packet, read per interval."""

    def __init__(self) -> None:
        self._score: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._speaking: set[str] = set()

    def add(self, participant: str, level: int) -> None:
        """Account one audio packet of ``participant`` with its level."""
        loud = 1.0 if level <= LOUD_DBOV else 0.0
        score = self._score.get(participant, 0.0)
        self._score[participant] = score + _ALPHA * (loud - score)
        self._last[participant] = time.monotonic()

    def forget(self, participant: str) -> None:
        """Drop a participant who left or muted."""
        self._score.pop(participant, None)
        self._last.pop(participant, None)
        self._speaking.discard(participant)

    def update(self) -> set[str]:
        """The current set of speakers, with hysteresis and silence timeout."""
        now = time.monotonic()
        for participant, score in self._score.items():
            if now - self._last.get(participant, 0.0) > SILENT_AFTER_S:
                self._score[participant] = score = 0.0
            if score >= START:
                self._speaking.add(participant)
            elif score <= STOP:
                self._speaking.discard(participant)
        return set(self._speaking)
