"""The wall clock in epoch milliseconds, the unit every stored time uses.

Its own module so that the command-line tools can take it without importing
the whole application (``create_app`` pulls in the media stack).
"""

from __future__ import annotations

import time


def wall_clock_ms() -> int:
    return int(time.time() * 1000)
