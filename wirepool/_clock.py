"""Injectable time, so backoff and health rules can be tested in virtual time.

Every delay the pool schedules is measured on ``monotonic()``: supervisord had
to grow clock-rollback compensation because it timed restarts with the wall
clock.  ``time()`` (wall clock) is used only for what leaves the process:
file mtimes, status timestamps, records a later supervisor reads.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ["Clock", "SystemClock"]


class Clock(ABC):
    """Where the pool reads the time.  See :class:`wirepool.testing.MockClock`."""

    __slots__ = ()

    @abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences matter."""

    @abstractmethod
    def time(self) -> float:
        """Seconds since the epoch (wall clock)."""

    def subscribe(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Ask to be called when time moves other than by itself.

        A real clock never does, so the default does nothing; a mock clock
        calls back on ``advance`` so a sleeping pool re-plans at once.
        """


class SystemClock(Clock):
    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"
