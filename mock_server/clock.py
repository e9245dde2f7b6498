"""The mock's clock: wall time, scaled by ``speed`` and movable by ``advance``.

Task state is a pure function of this clock, so ``--speed 60`` makes a
two-minute generation take two seconds, and ``advance(86400)`` expires every
task at once without anyone waiting.
"""

from __future__ import annotations

import threading
import time

__all__ = ["Clock"]


class Clock:
    """Virtual epoch seconds: ``start + elapsed * speed + advanced``.

    ``speed=0`` freezes time, which tests use to move only by ``advance``.
    """

    def __init__(self, speed: float = 1.0, *, start: float | None = None) -> None:
        if speed < 0:
            raise ValueError("speed must be zero or positive")
        self.speed = speed
        self._start = time.time() if start is None else start
        self._mono = time.monotonic()
        self._advanced = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono) * self.speed + self._advanced

    # Timestamps must stay formattable (datetime ends at year 9999); a century
    # outlasts every retention any provider has.
    MAX_ADVANCE = 100 * 365 * 86400.0

    def advance(self, seconds: float) -> float:
        """Jump forward (never back: task states only move along their edges)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            if self._advanced + seconds > self.MAX_ADVANCE:
                raise ValueError(
                    f"the clock may move at most {self.MAX_ADVANCE:.0f} s (100 years) in all"
                )
            self._advanced += seconds
        return self.now()
