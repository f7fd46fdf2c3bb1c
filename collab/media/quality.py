"""Connection quality of a participant, from RTP statistics.

A participant's quality is the worst of what the server sees of their
uplink (loss and jitter of the packets it receives from them) and of their
downlink (loss and round-trip time their receiver reports say). The
thresholds follow what calls feel like: a few percent of loss or a quarter
second of round trip is noticeable ("fair"); ten percent or half a second
makes a call hard to follow ("poor").
"""

from __future__ import annotations

import dataclasses

GOOD = "good"
FAIR = "fair"
POOR = "poor"


@dataclasses.dataclass
class LinkStats:
    """What was measured over the last interval; None where unknown."""

    loss: float | None = None  # fraction 0..1
    jitter_s: float | None = None
    rtt_s: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """Plain values for events, rounded so they serialise small."""
        return {
            "loss": None if self.loss is None else round(self.loss, 4),
            "jitter_ms": None if self.jitter_s is None else round(self.jitter_s * 1000, 1),
            "rtt_ms": None if self.rtt_s is None else round(self.rtt_s * 1000, 1),
        }


def classify(stats: LinkStats) -> str:
    """good / fair / poor from loss, jitter and round-trip time."""
    loss = stats.loss or 0.0
    jitter = stats.jitter_s or 0.0
    rtt = stats.rtt_s or 0.0
    if loss >= 0.10 or rtt >= 0.5 or jitter >= 0.1:
        return POOR
    if loss >= 0.02 or rtt >= 0.25 or jitter >= 0.03:
        return FAIR
    return GOOD


def worst(a: float | None, b: float | None) -> float | None:
    """The larger of two optional measurements."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)
