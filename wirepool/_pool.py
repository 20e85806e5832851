"""The engine: one selector loop that keeps one child alive per session.

The loop blocks in a single ``selectors`` call on every child's exit fd
(pidfd on Linux, which also works for adopted processes that are not our
children), the discovery watch fd (inotify), and a self-pipe for signals and
API calls, with a timeout equal to the next deadline (a backoff expiring, a
rescan, a health probe, a SIGKILL escalation).  Nothing polls on a fixed tick:
an idle pool costs no CPU, and a child's exit is acted on in milliseconds,
not at the next 1 s (supervisord, circus) or 10 s (the Rust supervisor) tick.

Each pass turns what happened into events for each session's pure state
machine (:mod:`wirepool._session`), performs the actions it asks for, and
writes what changed.  Invariants the code keeps:

* never more than one live child per session -- a daemon found through the
  health check, a child a previous supervisor left (found by its record, or
  by its marker variables when the record is gone) is adopted, not doubled;
* a failed discovery, eligibility check, health probe or state write is
  logged once, marked on its session, and changes nothing else -- the loop
  itself never dies of someone's bad file;
* state on disk is enough for the next supervisor to resume exactly: which
  children to adopt, and where each backoff stood.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wirepool._core import (
    OperateCommand,
    ReapCommand,
    RescanCommand,
    StartupInterrupted,
    StopCommand,
)
from wirepool._events import Event, EventStream
from wirepool._log import logger
from wirepool._loop import _Loop
from wirepool._status import Snapshot

__all__ = ["Event", "SessionPool", "StartupInterrupted"]


class SessionPool(_Loop):
    """Keep one child alive per eligible session.

    Args:
        discovery: which sessions exist (a :class:`Discovery` or a callable).
        eligibility: which of them deserve a child (default: all).
        spawner: how a child starts.
        health: how to find a daemon already serving a session, and whether
            a running child is healthy (default: no checks).
        restart: restart timing (default: :class:`RestartPolicy`), kept as
            ``restart_policy`` (``restart()`` is the operator's verb).
        state_dir: where the lock, records, logs and ``status.json`` live
            (default: a fresh temporary directory).
        on_exit: ``"stop"`` stops the children when the pool stops (embedded
            pools, tests); ``"leave"`` leaves them for the next supervisor to
            adopt (long-lived daemons).
        grace: seconds a vanished session keeps its child.
        stop_grace: seconds between SIGTERM and SIGKILL.
        rescan_interval: seconds between discovery passes (a watch event
            makes one happen at once).
        watched_rescan_interval: seconds between rescans while inotify
            watches every path discovery names (no watch failed), for a
            plugin whose verdicts depend only on files in those paths: the
            timer is then only a net under the events, and comes no sooner
            than its passes cost 0.02 % of a core (a pass over ten thousand
            services takes ~1 s of CPU: 80 min apart).  None: always
            ``rescan_interval``.
        sweep_interval: seconds between safety sweeps (identity re-checks,
            a look at live logs) -- a net under the event path, not the engine;
            past 5 000 children it grows with them (60 s at 10 000), and it
            comes no sooner than it costs 0.02 % of a core (the full plan
            it asks for included).
        spawn_limit: the pool-wide spawn rate limit.
        clock: time source (:class:`wirepool.testing.MockClock` in tests).
        durable: fsync the state writes that must survive a power loss (a
            session's ``failed`` mark); off only for throwaway pools.
        plugin: name recorded in ``status.json``.
        status_extra: adds plugin-specific fields to the ``status.json``
            document (called with the document, edits it in place).
        restart_on_change: restart a child (SIGTERM, then a new one at
            once; not a failure) when the spawner's
            :meth:`~wirepool.Spawner.fingerprint` of its session differs from
            the one it was started with.  Off, the difference is only shown
            ("started from an older configuration").
        control: listen on the control socket (``<state dir>/control/sock``)
            for ``wirepool`` verbs and :class:`wirepool.Client`.
    """

    def __repr__(self) -> str:
        return f"<SessionPool {self.plugin or ''} state_dir={str(self.state.root)!r}>"

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event, on the loop thread (or,
        while it waits for them, on one of the two threads it starts a
        batch of children with: never two calls at once, never beside the
        loop).  Returns a function that unsubscribes it.  A callback that
        raises is logged once and does not disturb the pool."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return unsubscribe

    def events(self) -> EventStream:
        """A stream of every event from now on (see :class:`EventStream`).
        Open it before :meth:`start` to see the first spawns."""
        stream = EventStream()
        stream._bind(self.subscribe(stream.put))
        return stream

    def start(self) -> SessionPool:
        """Take the lock and run the loop in a background thread.  Returns once
        the first pass (adoption, discovery, first spawns) is done."""
        if self._thread is not None:
            raise RuntimeError("pool already started")
        self._open()
        self._thread = threading.Thread(target=self._run, name="wirepool", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._loop_error is not None:
            raise self._loop_error
        return self

    def stop(self, *, children: bool | None = None, timeout: float | None = None) -> None:
        """Stop the loop; ``children`` overrides ``on_exit`` for this stop."""
        self._post(StopCommand(children))
        if self._thread is not None and not self._on_loop():  # never wait for itself
            self._thread.join(timeout)

    def __enter__(self) -> SessionPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Run the loop in this (main) thread until SIGTERM/SIGINT.

        SIGHUP rescans; SIGUSR1 stops the children and exits (what
        ``wirepool stop --children`` sends).  A SIGTERM, SIGINT or SIGUSR1
        during start-up (taking the lock, recovery, the first discovery)
        ends start-up where it stands and shuts down as after the loop."""
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, _frame: object) -> None:
            # No lock and no write here: a handler can run inside another
            # (a burst of SIGCHLD as every child stops), or while this very
            # thread holds the wake pipe's lock -- which deadlocked a stop.
            # Appending is atomic; the kernel-level wakeup fd set below
            # wakes the loop.
            if signum == signal.SIGCHLD:
                self._commands.append(ReapCommand())
                return
            if signum == signal.SIGHUP:
                self._commands.append(RescanCommand())
                return
            children = True if signum == signal.SIGUSR1 else None
            self._commands.append(StopCommand(children))
            if self._starting:
                # Only the loop reads posted commands, and start-up may be
                # long before it: a plugin's discovery on a slow
                # filesystem, or recovery of a big pool.  A supervisor
                # that must be SIGKILLed leaves its children's fate
                # unsettled, so unwind start-up now, as SIGINT's
                # KeyboardInterrupt would.  The stop posted above still
                # holds if some code on the way swallows the exception.
                self._starting = False
                if children:
                    self._stop_children_on_exit = True
                raise StartupInterrupted(signum)

        self._starting = True
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, on_signal)
        # This process is the supervisor and nothing else: orphans of its
        # children are its to stop and reap (see wirepool._reaper).
        if self._reaper.enable():
            previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, on_signal)
            self._reap_by_signal = True
        try:
            self._open()
            assert self._wake_w is not None
            signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
            self._signal_wakeup = True  # undone before the pipe is closed
            self._run()
        except StartupInterrupted as exc:  # before the lock was ours: nothing to undo
            logger.info("{} before start-up finished; not starting", exc)
        finally:
            if self._signal_wakeup:  # the shutdown normally undid it
                signal.set_wakeup_fd(-1)
                self._signal_wakeup = False
            self._reaper.disable()
            self._reap_by_signal = False
            self._starting = False
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._loop_error is not None and not isinstance(self._loop_error, StartupInterrupted):
            raise self._loop_error

    def rescan(self) -> None:
        """Run a discovery pass now."""
        self._post(RescanCommand())

    # The operator's verbs.  Each names sessions as an operator would (the
    # name status shows, or the key, or the home's path), acts on all of
    # them or none, and returns what was done to each:
    # ``{"sessions": [{"name", "key", "outcome"}, ...]}``.  ControlError for
    # an unknown or ambiguous name or a session that cannot do it.

    def restart(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Stop each session's child (SIGTERM, ``stop_grace``, SIGKILL) and
        start a new one at once; not counted as a failure.  A session with
        no child (backing off, failed) starts now.  Returns once asked:
        wait for the ``spawned`` event to see the new child."""
        return self._operator("restart", names, timeout=timeout)

    def down(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Hold sessions down: their children are stopped and none is
        started until :meth:`up`.  Kept in each session's record, so a
        supervisor restart (even after SIGKILL) keeps it."""
        return self._operator("down", names, timeout=timeout)

    def up(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Let sessions held down run again (their backoff cleared)."""
        return self._operator("up", names, timeout=timeout)

    def signal(self, name: str, sig: int | str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Send ``sig`` (a number or a name: ``"HUP"``) to a session's child."""
        return self._operator("signal", (name,), {"signal": sig}, timeout=timeout)

    def reset(self, *names: str, timeout: float = 30.0) -> dict[str, Any]:
        """Clear sessions' failure streaks and ``failed`` marks."""
        return self._operator("reset", names, timeout=timeout)

    def _operator(
        self,
        op: str,
        names: Sequence[str],
        extra: dict[str, Any] | None = None,
        *,
        timeout: float,
    ) -> dict[str, Any]:
        request = {"op": op, "sessions": list(names), **(extra or {})}
        if self._on_loop():
            # From an event callback: done now, as the loop would (posted,
            # it would wait for a loop that waits for this very thread).
            result: dict[str, Any] = self._operate(op, request)
            return result
        if self._wake_w is None or self._stopping:
            raise RuntimeError("the pool is not running")
        # imported here: it brings logging along, and start-up needs neither
        from concurrent.futures import Future
        from concurrent.futures import TimeoutError as FutureTimeout

        done: Future[Any] = Future()
        self._post(OperateCommand(op, request, done))
        try:
            outcome: dict[str, Any] = done.result(timeout)
        except FutureTimeout:
            done.cancel()
            raise TimeoutError(f"the pool did not answer {op!r} within {timeout}s") from None
        return outcome

    def snapshot(self) -> Snapshot:
        with self._snap_cond:
            return self._snapshot

    def wait_until(self, predicate: Callable[[Snapshot], bool], timeout: float = 30.0) -> Snapshot:
        """Block until ``predicate(snapshot)`` holds; raise TimeoutError with
        the last snapshot's states if it does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._snap_cond:
            while True:
                snap = self._snapshot
                if predicate(snap):
                    return snap
                left = deadline - time.monotonic()
                if left <= 0:
                    states = {n: (s.state, s.reason) for n, s in snap.sessions.items()}
                    raise TimeoutError(f"condition not met within {timeout}s; states: {states}")
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError("the pool's loop is not running")
                self._snap_cond.wait(min(left, 0.5))

    @property
    def state_dir(self) -> Path:
        return self.state.root
