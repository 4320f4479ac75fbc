"""Measure the rate of a recurring event (a control loop, a topic) over a sliding window."""

from __future__ import annotations

import time
from collections import deque

#: Control periods between two ticks (or two answered states) above which the mpc node
#: counts a tick as missed: a tick that came late, not one the scheduler merely jittered.
#: The run report quotes the same bound.
MISSED_TICK_PERIODS = 1.5


class RateMeter:
    """
    Events per second over the last ``window`` events.

    Args:
        window: number of most recent events used.
        stale_after_s: if the newest event is older than this, the rate reads 0.
    """

    def __init__(self, window: int = 100, stale_after_s: float = 1.0) -> None:
        if window < 2:
            raise ValueError(f'window must be >= 2, got {window}')
        self._times: deque[float] = deque(maxlen=window)
        self._stale_after_s = stale_after_s
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        """Record one event at ``now`` [s, monotonic]; default: time.monotonic()."""
        self._times.append(time.monotonic() if now is None else now)
        self.count += 1

    def rate_hz(self, now: float | None = None) -> float:
        """Events per second; 0 with fewer than two events or when stale."""
        now = time.monotonic() if now is None else now
        if len(self._times) < 2 or now - self._times[-1] > self._stale_after_s:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
