"""Orphans of the children: kept, stopped with their session, reaped.

A child that runs ``setsid sleep &`` (or any daemon that double-forks)
leaves its process group, so the SIGTERM to the group that stops a session
misses it, and it used to outlive every restart: one process leaked per
restart.  Linux lets a supervisor declare itself a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): an orphan anywhere below it is then
re-parented to it instead of to init.  It still carries the session's
marker variables (``WIREPOOL_POOL``, ``WIREPOOL_SESSION``), so:

* when a session's child exits or is stopped, the orphans that carry that
  session's markers are stopped too (SIGTERM, then SIGKILL after the grace),
  as systemd stops what is left of a unit's control group;
* when the pool stops its children, every orphan goes with them, markers
  or not (a process can clear its environment);
* whatever exits is reaped, so no zombie piles up under a long-lived
  supervisor.

Only for a process that owns all its children: ``wirepool run``.  A library
pool embedded in someone else's program does not become a subreaper, since
the orphans of that program's other children would land on it.  Processes
in the supervisor's own session (a plugin's helper command, multiprocess's
fork server) are left to whoever started them; every child the pool
spawns runs in a session of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Collection

from wirepool._log import logger
from wirepool._proc import ProcessIdentity, identity_of, stat_fields, wirepool_environ
from wirepool._value import Record, field, record
from wirepool.spawn import POOL_MARKER, SESSION_MARKER

__all__ = ["OrphanReaper"]

_PR_SET_CHILD_SUBREAPER = 36


def _children() -> set[int]:
    """Our direct children, from every thread's ``children`` list (an orphan
    is re-parented to whichever of our threads the kernel picks).  Ten
    thousand children make this a 60 KB read and ~1.3 ms a thousand: it is
    done once per upkeep, with set operations in C."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as fh:
                pids.update(map(int, fh.read().split()))
        except (OSError, ValueError):
            continue
    return pids


def _state_and_session(pid: int) -> tuple[str, int] | None:
    tail = stat_fields(pid)
    try:
        return (tail[0].decode(), int(tail[3])) if tail is not None else None
    except (IndexError, ValueError):
        return None


@record
class OrphanReaper(Record):
    """The pool's side of ``PR_SET_CHILD_SUBREAPER``.  ``pool_id`` is the
    value of the pool's ``WIREPOOL_POOL`` marker."""

    pool_id: str
    grace: float
    enabled: bool = False
    #: orphans sent SIGTERM, by identity, with the time their SIGKILL is due
    pending: dict[ProcessIdentity, float] = field(default_factory=dict)

    def enable(self) -> bool:
        """Become the subreaper of every process below us (Linux only)."""
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        except (OSError, AttributeError) as exc:
            logger.warning("cannot become the children's subreaper ({}); orphans escape", exc)
            return False
        self.enabled = True
        return True

    def disable(self) -> None:
        """Stop being the subreaper (a pool run in a test's main thread
        hands the process back as it found it), after a last reap."""
        if not self.enabled:
            return
        self.reap(set())
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        self.enabled = False

    def orphans(self, known: Collection[int]) -> list[int]:
        """The pids of the orphans below us now, exited or not."""
        return [pid for pid, _ in self._orphans(known)] if self.enabled else []

    def scan(self, known: Collection[int]) -> list[tuple[int, str]]:
        """The orphans below us now (pid and state), for :meth:`reap` and
        :meth:`stop` to share one look (``known``: the workers' pids)."""
        return self._orphans(known) if self.enabled else []

    def _orphans(self, known: Collection[int]) -> list[tuple[int, str]]:
        """Our children that are neither a worker nor in our own session."""
        own_session = os.getsid(0)
        found: list[tuple[int, str]] = []
        for pid in _children().difference(known):
            info = _state_and_session(pid)
            if info is not None and info[1] != own_session:
                found.append((pid, info[0]))
        return found

    def is_orphan(self, pid: int) -> bool:
        """Whether our child ``pid`` (not a worker) is an orphan we adopted
        as the subreaper: not in our own session."""
        info = _state_and_session(pid) if self.enabled else None
        return info is not None and info[1] != os.getsid(0)

    def reap(self, known: Collection[int], found: list[tuple[int, str]] | None = None) -> int:
        """Collect the orphans that exited (``known``: the pool's workers'
        pids, which their own handles wait for; ``found``: a :meth:`scan`
        made already).  Returns how many."""
        if not self.enabled:
            return 0
        reaped = 0
        for pid, state in self._orphans(known) if found is None else found:
            if state in ("Z", "X"):
                with contextlib.suppress(ChildProcessError, OSError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        reaped += 1
        if reaped:
            self.pending = {i: t for i, t in self.pending.items() if identity_of(i.pid) == i}
        return reaped

    def stop(
        self,
        known: Collection[int],
        now: float,
        sessions: Collection[str] | None = None,
        found: list[tuple[int, str]] | None = None,
    ) -> int:
        """SIGTERM the orphans of ``sessions`` (by their markers), or every
        orphan when ``sessions`` is None; SIGKILL follows after the grace
        (:meth:`escalate`).  Returns how many were signalled."""
        if not self.enabled:
            return 0
        want = None if sessions is None else set(sessions)
        signalled = 0
        for pid, state in self._orphans(known) if found is None else found:
            if state in ("Z", "X"):
                continue
            if want is not None:
                marks = wirepool_environ(pid) or {}
                if marks.get(POOL_MARKER) != self.pool_id or marks.get(SESSION_MARKER) not in want:
                    continue
            ident = identity_of(pid)
            if ident is None or ident in self.pending:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                self.pending[ident] = now + self.grace
                signalled += 1
        if signalled:
            logger.info(
                "stopping {} orphaned process(es) of {}",
                signalled,
                ", ".join(map(repr, sorted(sessions))) if sessions is not None else "the pool",
            )
        return signalled

    def next_deadline(self) -> float | None:
        return min(self.pending.values(), default=None)

    def escalate(self, now: float) -> None:
        """SIGKILL the orphans that outlived their grace."""
        for ident, due in list(self.pending.items()):
            if identity_of(ident.pid) != ident:
                del self.pending[ident]
            elif now >= due:
                logger.warning("orphan pid {} ignored SIGTERM; sending SIGKILL", ident.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ident.pid, signal.SIGKILL)
                del self.pending[ident]
