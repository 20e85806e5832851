"""Helpers for testing code that uses wirepool (and wirepool itself).

* :class:`MockClock` is trio's idea: time moves only when the test says so, so
  a backoff curve or a health deadline is checked in virtual time, without a
  sleep and without flaking on a busy machine.
* :class:`FakeDaemon` is a real process with programmable misbehaviour (exit
  after T with code N, ignore SIGTERM, heartbeat, pidfile): the pool under
  test meets the faults it must survive, not a mock of them.
* :class:`ProcessLedger`, :func:`live_children`,
  :func:`assert_one_child_per_session` and :func:`assert_no_leaks` check the
  two promises a pool makes -- one child per session, nothing left behind --
  against the process table, not against the pool's own view of itself.

The pytest fixtures built on these (``pool_factory``, ``session_root``,
``mock_clock``, ``wirepool_logs``) come with the ``pytest11`` entry point.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wirepool._clock import Clock
from wirepool._events import Event
from wirepool._pool import SessionPool
from wirepool._proc import ProcessIdentity, identity_of, is_alive, signal_group
from wirepool._types import Session
from wirepool.spawn import CommandSpawner, find_children

if TYPE_CHECKING:
    from wirepool.discovery import DiscoveryLike
    from wirepool.spawn import Spawner

__all__ = [
    "FakeDaemon",
    "LeakError",
    "MockClock",
    "PoolFactory",
    "ProcessLedger",
    "assert_no_leaks",
    "assert_one_child_per_session",
    "live_children",
]


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


_FAKE_DAEMON_SCRIPT = str(Path(__file__).with_name("_fakedaemon.py"))


@dataclass(frozen=True)
class FakeDaemon:
    """A real daemon process whose behaviour a test programs.

    Args:
        exit_after: exit after this many seconds (None: run until stopped).
        exit_code: the status it exits with then.
        ignore_sigterm: ignore SIGTERM, so only the SIGKILL escalation stops it.
        heartbeat: a file it rewrites every ``heartbeat_interval`` seconds...
        heartbeat_for: ...for this many seconds, then goes silent (a hang).
        pidfile: a file it writes its pid to at start (``pidfile_json``:
            as ``{"pid": N}``).
        starts_file: a file it appends its pid to at every start, so a test
            can count starts from the outside.

    The pidfile is the safe "ready" signal: written atomically (whole or
    not at all), after the SIGTERM behaviour is in place; the starts file
    is appended to just before it, and the heartbeat follows.

    Paths are relative to the session's home (the child's working
    directory); ``{home}`` and ``{name}`` are also substituted.  Use
    :meth:`spawner` (one external process per session),
    :meth:`per_session` (a behaviour per session name), or pass the object
    itself to :class:`wirepool.CallableSpawner` (it is callable with the
    session).  On SIGTERM it exits with status 0.
    """

    exit_after: float | None = None
    exit_code: int = 0
    ignore_sigterm: bool = False
    heartbeat: str | None = None
    heartbeat_interval: float = 0.5
    heartbeat_for: float | None = None
    pidfile: str | None = None
    pidfile_json: bool = False
    starts_file: str | None = None

    def argv(self) -> list[str]:
        """The command line (templates unexpanded, as CommandSpawner takes it)."""
        argv = [sys.executable, _FAKE_DAEMON_SCRIPT]
        for key, value in asdict(self).items():
            flag = "--" + key.replace("_", "-")
            if value is None or value is False:
                continue
            if value is True:
                argv.append(flag)
            else:
                argv += [flag, str(value)]
        return argv

    def spawner(self, **kwargs: Any) -> CommandSpawner:
        """A :class:`CommandSpawner` running this behaviour for every session."""
        return CommandSpawner(self.argv(), **kwargs)

    @staticmethod
    def per_session(
        behaviours: Mapping[str, FakeDaemon], default: FakeDaemon | None = None, **kwargs: Any
    ) -> CommandSpawner:
        """A spawner that runs ``behaviours[session.name]`` (or ``default``)."""
        fallback = default or FakeDaemon()

        def argv(session: Session) -> list[str]:
            chosen = behaviours.get(session.name, fallback)
            values = {"name": session.name, "home": str(session.home)}
            return [a.format_map(values) for a in chosen.argv()]

        return CommandSpawner(argv, **kwargs)

    def __call__(self, session: Session) -> None:
        """Run in-process (as a :class:`wirepool.CallableSpawner` target)."""
        from wirepool import _fakedaemon

        values = {"name": session.name, "home": str(session.home)}
        config = {
            k: v.format_map(values) if isinstance(v, str) else v for k, v in asdict(self).items()
        }
        raise SystemExit(_fakedaemon.run(config))


class PoolFactory(Protocol):
    """The type of the ``pool_factory`` pytest fixture, for annotations."""

    def __call__(
        self, discovery: DiscoveryLike, spawner: Spawner, *, start: bool = True, **kwargs: Any
    ) -> SessionPool: ...


class LeakError(AssertionError):
    """A process outlived the pool that owned it."""


class ProcessLedger:
    """Every process the pools it watches started or adopted, by identity
    (pid and start time, so a pid reused by a stranger is never confused
    with ours).  Subscribe it before :meth:`SessionPool.start`::

        ledger = ProcessLedger()
        ledger.watch(pool)
        with pool:
            ...
        assert_no_leaks(ledger)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owned: dict[ProcessIdentity, str] = {}
        self.pools: list[SessionPool] = []

    def watch(self, pool: SessionPool) -> SessionPool:
        self.pools.append(pool)
        pool.subscribe(self)
        return pool

    def __call__(self, event: Event) -> None:
        if event.pid is None or event.kind not in ("spawned", "adopted"):
            return
        if event.kind == "adopted" and not event.data.get("owned", True):
            return  # somebody else's daemon: not ours to leak or to kill
        start = event.data.get("start")
        ident = (
            ProcessIdentity(event.pid, int(start))
            if isinstance(start, int)
            else identity_of(event.pid)
        )
        if ident is not None:
            with self._lock:
                self.owned[ident] = event.session or ""

    def alive(self) -> dict[ProcessIdentity, str]:
        """Live processes of the watched pools: every recorded one still
        running, plus any carrying a watched pool's marker (a child's child
        inherits it, and a record may have been missed)."""
        with self._lock:
            found = {ident: name for ident, name in self.owned.items() if is_alive(ident)}
        for pool in self.pools:
            for name, idents in live_children(pool).items():
                for ident in idents:
                    found.setdefault(ident, name)
        return found

    def kill_all(self) -> dict[ProcessIdentity, str]:
        """SIGKILL the process group of every live one; return what was live."""
        live = self.alive()
        for ident in live:
            signal_group(ident, signal.SIGKILL)
        return live


def live_children(pool: SessionPool) -> dict[str, list[ProcessIdentity]]:
    """The pool's live children per session, read from the process table
    (marker variables and marker files), oldest first."""
    return find_children(pool.pool_id, pool.state.markers_dir)


def assert_one_child_per_session(
    pool: SessionPool, sessions: Iterable[str] | None = None, *, timeout: float = 10.0
) -> dict[str, ProcessIdentity]:
    """Assert that each of ``sessions`` (default: those the pool reports
    running) has exactly one live child in the process table, and that no
    session has two.  A transient state (a child just exiting) gets up to
    ``timeout`` seconds to settle.  Returns the child of each session."""
    deadline = time.monotonic() + timeout
    while True:
        snap = pool.snapshot()
        wanted = (
            list(sessions)
            if sessions is not None
            else [n for n, s in snap.sessions.items() if s.state == "running"]
        )
        children = live_children(pool)
        doubled = {n: [i.pid for i in v] for n, v in children.items() if len(v) > 1}
        missing = [n for n in wanted if not children.get(n)]
        if not doubled and not missing:
            return {n: children[n][0] for n in wanted}
        if time.monotonic() > deadline:
            raise AssertionError(
                f"one child per session violated: duplicates {doubled}, no child for {missing}"
            )
        time.sleep(0.05)


def assert_no_leaks(*watched: ProcessLedger | SessionPool, timeout: float = 10.0) -> None:
    """Assert that nothing the given ledgers or pools started is still alive
    (waiting up to ``timeout`` seconds for exits under way).  On failure the
    leaked processes are killed -- a failing test must not leave them to the
    next one -- and :class:`LeakError` lists them."""
    ledgers = [w for w in watched if isinstance(w, ProcessLedger)]
    pools = [w for w in watched if isinstance(w, SessionPool)]

    def leaked() -> dict[ProcessIdentity, str]:
        found: dict[ProcessIdentity, str] = {}
        for ledger in ledgers:
            found.update(ledger.alive())
        for pool in pools:
            for name, idents in live_children(pool).items():
                found.update(dict.fromkeys(idents, name))
        return found

    deadline = time.monotonic() + timeout
    live = leaked()
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = leaked()
    if live:
        for ident in live:
            signal_group(ident, signal.SIGKILL)
        described = ", ".join(f"pid {i.pid} (session {n!r})" for i, n in live.items())
        raise LeakError(f"{len(live)} process(es) outlived their pool: {described}")
