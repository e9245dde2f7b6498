"""The mock's clock: wall time, scaled by ``speed`` and movable by ``advance``.

Task state is a pure function of this clock, so ``--speed 60`` makes a
two-minute generation take two seconds, and ``advance(86400)`` expires every
task at once without anyone waiting.

The clock is an anchor (a wall time and the virtual time it stood for) and a
speed, so it can be shared: a Redis store keeps the anchor, and every worker,
on any host, computes the same virtual time from it. A restart finds the
anchor again and time carries on where the tasks expect it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace

__all__ = ["Clock", "ClockState"]

# Timestamps must stay formattable (datetime ends at year 9999); a century
# outlasts every retention any provider has.
MAX_ADVANCE = 100 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class ClockState:
    """Virtual time ``virtual + (wall - wall_anchor) * speed``; ``advanced`` totals the jumps."""

    wall: float
    virtual: float
    speed: float
    advanced: float = 0.0

    def at(self, wall: float) -> float:
        return self.virtual + (wall - self.wall) * self.speed

    def rebased(self, wall: float, speed: float) -> ClockState:
        """The same timeline, continued from ``wall`` at a new speed."""
        return replace(self, wall=wall, virtual=self.at(wall), speed=speed)

    def advanced_by(self, seconds: float, wall: float) -> ClockState:
        """Jump forward (never back: task states only move along their edges)."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("the clock only moves forward, by a finite number of seconds")
        if self.advanced + seconds > MAX_ADVANCE:
            raise ValueError(
                f"the clock may move at most {MAX_ADVANCE:.0f} s (100 years) in all; "
                f"it has moved {self.advanced:.0f} s"
            )
        return ClockState(wall, self.at(wall) + seconds, self.speed, self.advanced + seconds)


class Clock:
    """Virtual epoch seconds from a ``ClockState``.

    ``speed=0`` freezes time, which tests use to move only by ``advance``.
    """

    MAX_ADVANCE = MAX_ADVANCE

    def __init__(self, speed: float = 1.0, *, start: float | None = None) -> None:
        if not speed >= 0 or not math.isfinite(speed):
            raise ValueError("speed must be zero or a positive number")
        wall = time.time()
        self.state = ClockState(wall, wall if start is None else start, speed)
        self._lock = threading.Lock()
        self._last = 0.0

    @property
    def speed(self) -> float:
        return self.state.speed

    def now(self) -> float:
        # Wall time, so workers on several hosts agree; never backwards in this
        # process, so a stepped system clock cannot move a task back a state.
        now = self.state.at(time.time())
        if now < self._last:
            return self._last
        self._last = now
        return now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.state = self.state.advanced_by(seconds, time.time())
        return self.now()
