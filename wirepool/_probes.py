"""Health probes on threads of their own, off the loop.

A probe is plugin code that talks to a daemon (an HTTP request, a socket,
a file), and a daemon that is hung is exactly the one that does not answer:
run in the loop, one probe with a 2 s timeout held every other session's
restart for those 2 s.  Here each probe runs on a worker thread; the loop
hands a probe over and picks its result up on a later pass (the thread
wakes it through its wake pipe), and a probe that overruns its deadline is
a failed probe, judged by the loop without waiting for it.

A thread cannot be interrupted, so one stuck in a probe stays stuck until
the probe returns: the pool of threads grows while probes hang, up to a cap,
and shrinks again as threads idle.  At the cap, probes wait for a thread;
a probe's deadline counts from when a thread takes it, so a queue behind
hung probes never fails a healthy session's probe.
"""

from __future__ import annotations

import threading
import time

# queue.SimpleQueue and queue.Empty are these: queue.py would add itself
# and heapq to a supervisor's start
from _queue import Empty, SimpleQueue
from collections import deque
from collections.abc import Callable

from wirepool._proc import ProcessIdentity
from wirepool._types import Verdict
from wirepool._value import Shown, record

#: threads at most; each blocked in a hung probe holds one
MAX_THREADS = 128
#: seconds a thread waits for work before it ends
IDLE_SECONDS = 30.0


@record
class ProbeJob(Shown):
    """One probe of one child: what it runs, and (set by its thread) when it
    began and what it gave.  The loop alone sets ``overdue``."""

    session: str
    identity: ProcessIdentity
    run: Callable[[], Verdict]
    started: float | None = None  # time.monotonic(), when a thread took it
    verdict: Verdict | None = None
    error: BaseException | None = None
    #: the loop counted it as a failed probe when it overran its deadline:
    #: its late result, if one comes, changes nothing
    overdue: bool = False


class ProbeThreads:
    """Runs :class:`ProbeJob` s on daemon threads; ``wake`` is called (from
    the thread) after each one finishes, and :meth:`finished` hands the
    finished ones to the loop."""

    def __init__(self, wake: Callable[[], None], *, max_threads: int = MAX_THREADS) -> None:
        self._wake = wake
        self._max = max_threads
        self._queue: SimpleQueue[ProbeJob | None] = SimpleQueue()
        self._finished: deque[ProbeJob] = deque()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, job: ProbeJob) -> bool:
        """Queue ``job``; False when every thread is busy and no more may be
        started (the job still runs, once a thread frees)."""
        with self._lock:
            if self._closed:
                return False
            started = True
            if self._idle == 0:
                if self._threads < self._max:
                    self._threads += 1
                    self._idle += 1
                    threading.Thread(target=self._work, name="wirepool-probe", daemon=True).start()
                else:
                    started = False
            self._idle -= 1  # taken by this job (a thread counts itself idle again after)
        self._queue.put(job)
        return started

    def finished(self) -> list[ProbeJob]:
        out = []
        while self._finished:
            out.append(self._finished.popleft())
        return out

    def has_finished(self) -> bool:
        return bool(self._finished)

    def close(self) -> None:
        """Let every idle thread end; one in a probe ends when it returns."""
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=IDLE_SECONDS)
            except Empty:
                with self._lock:
                    # Idle and not counted on by a queued job: end.
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            job.started = time.monotonic()
            try:
                job.verdict = job.run()
            except BaseException as exc:  # plugin code: reported, never raised here
                job.error = exc
            self._finished.append(job)
            with self._lock:
                self._idle += 1
            self._wake()
