"""What the pool did, as a stream: the same events ``wirepool run --json`` prints.

Tests (and embedders) wait on events instead of sleeping: "session x
restarted twice" is a predicate over the stream, not ``time.sleep(3)`` and a
hope.  A stream buffers from the moment it is opened, so an event that
happens between opening it and waiting on it is never missed.
"""

from __future__ import annotations

import enum
import time

# queue.SimpleQueue and queue.Empty are these: queue.py would add itself
# and heapq to a supervisor's start
from _queue import Empty, SimpleQueue
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from wirepool._value import Value, field, frozen

__all__ = ["Event", "EventKind", "EventStream"]


class EventKind(enum.StrEnum):
    """What an :class:`Event` says happened (its ``kind``, and the
    ``event`` field of ``run --json``: the value, unchanged)."""

    SUPERVISOR_STARTED = "supervisor_started"
    ADOPTED = "adopted"
    SPAWNED = "spawned"
    EXITED = "exited"
    BACKOFF = "backoff"
    FAILED = "failed"
    UNHEALTHY = "unhealthy"
    INELIGIBLE = "ineligible"
    RELEASED = "released"
    STOPPED = "stopped"
    FORGOTTEN = "forgotten"
    RESET = "reset"
    DOWN = "down"
    UP = "up"
    SUPERVISOR_STOPPED = "supervisor_stopped"


@frozen
class Event(Value):
    """One thing the pool did, as ``wirepool run --json`` prints it.

    ``kind`` is the value of an :class:`EventKind` (a plain string, so that
    ``event.kind == "exited"`` reads as it always did).
    """

    kind: str
    #: the session's name as the operator sees it (its display name)
    session: str | None = None
    pid: int | None = None
    reason: str = ""
    at: float = 0.0  # wall clock
    data: Mapping[str, Any] = field(default_factory=dict)
    #: the session's key (the pool's internal name; unique where two
    #: sessions share a display name), what ``pool.snapshot()`` is keyed by
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind, "ts": round(self.at, 3)}
        if self.session is not None:
            out["session"] = self.session
        if self.key is not None:
            out["key"] = self.key
        if self.pid is not None:
            out["pid"] = self.pid
        if self.reason:
            out["reason"] = self.reason
        out.update(self.data)
        return out


#: the last event a pool emits; a stream ends after delivering it
FINAL_EVENT = EventKind.SUPERVISOR_STOPPED.value


class EventStream:
    """The pool's events from the moment :meth:`SessionPool.events` opened it.

    Iterate it (ends after ``supervisor_stopped``), take one with
    :meth:`get`, or wait for a condition with :meth:`wait_for`::

        with pool.events() as events:
            pool.start()
            events.wait_for(lambda e: e.kind == "spawned" and e.session == "x", count=3)

    The buffer is unbounded by default: a test that stops reading must not
    stall the pool's loop, which is the one thread that fills it.
    """

    def __init__(self) -> None:
        self._queue: SimpleQueue[Event] = SimpleQueue()
        self._unsubscribe: Callable[[], None] | None = None
        self._ended = False
        #: every event taken from the stream so far, in order
        self.seen: list[Event] = []

    def _bind(self, unsubscribe: Callable[[], None]) -> None:
        self._unsubscribe = unsubscribe

    def put(self, event: Event) -> None:
        """The pool's listener (called as :meth:`SessionPool.subscribe` says)."""
        self._queue.put(event)

    def get(self, timeout: float | None = 30.0) -> Event:
        """The next event; TimeoutError if none comes within ``timeout``."""
        if self._ended:
            raise EOFError("the pool has stopped; no more events")
        try:
            event = self._queue.get(timeout=timeout)
        except Empty:
            raise TimeoutError(f"no event within {timeout}s") from None
        self.seen.append(event)
        if event.kind == FINAL_EVENT:
            self._ended = True
        return event

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout: float = 30.0, *, count: int = 1
    ) -> list[Event]:
        """Consume events until ``count`` of them satisfy ``predicate``;
        return those.  TimeoutError (listing what was seen) if they do not
        arrive within ``timeout`` seconds in total, EOFError if the pool
        stops first."""
        deadline = time.monotonic() + timeout
        matched: list[Event] = []
        start = len(self.seen)
        while len(matched) < count:
            left = deadline - time.monotonic()
            try:
                event = self.get(timeout=max(0.0, left))
            except (TimeoutError, EOFError) as exc:
                kinds = [(e.kind, e.session) for e in self.seen[start:]][-20:]
                raise type(exc)(
                    f"{len(matched)} of {count} matching events; last seen: {kinds}"
                ) from None
            if predicate(event):
                matched.append(event)
        return matched

    def __iter__(self) -> Iterator[Event]:
        while not self._ended:
            yield self.get(timeout=None)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
