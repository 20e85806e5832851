"""Helpers for testing code that uses wirepool (and wirepool itself).

:class:`MockClock` is trio's idea: time moves only when the test says so, so
a backoff curve or a health deadline is checked in virtual time, without a
sleep and without flaking on a busy machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from wirepool._clock import Clock

__all__ = ["MockClock"]


class MockClock(Clock):
    """A clock that stands still until :meth:`advance` (or :meth:`set`).

    ``monotonic()`` starts at ``start``; ``time()`` is ``wall_offset`` plus
    the same elapsed time, so the two stay consistent.  A pool using this
    clock is woken on every advance and re-plans at once::

        clock = MockClock()
        policy.on_exit(streak, lived=0.5, now=clock.monotonic())
        clock.advance(2.0)
    """

    __slots__ = ("_lock", "_now", "_subscribers", "wall_offset")

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self.wall_offset = float(wall_offset) - float(start)
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self.wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._now += seconds
        self._notify()

    def set(self, monotonic: float) -> None:
        with self._lock:
            if monotonic < self._now:
                raise ValueError("a monotonic clock cannot go backwards")
            self._now = monotonic
        self._notify()

    def jump_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (either sign) while monotonic
        time stands still: what NTP, a suspended VM or an operator's
        ``date -s`` does to a running supervisor."""
        with self._lock:
            self.wall_offset += float(seconds)
        self._notify()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._subscribers.append(callback)

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            callback()

    def __repr__(self) -> str:
        return f"MockClock(monotonic={self._now})"
