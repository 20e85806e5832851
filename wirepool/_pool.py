"""The engine: one selector loop that keeps one child alive per session.

The loop blocks in a single ``selectors`` call on every child's exit fd
(pidfd on Linux, which also works for adopted processes that are not our
children), the discovery watch fd (inotify), and a self-pipe for signals and
API calls, with a timeout equal to the next deadline (a backoff expiring, a
rescan, a health probe, a SIGKILL escalation).  Nothing polls on a fixed tick:
an idle pool costs no CPU, and a child's exit is acted on in milliseconds,
not at the next 1 s (supervisord, circus) or 10 s (the Rust supervisor) tick.

Each pass gathers inputs, asks the pure planner (:mod:`wirepool._planner`)
what to do, does it, and writes what changed.  Invariants the code keeps:

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
import hashlib
import math
import os
import selectors
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from wirepool import _planner
from wirepool._clock import Clock, SystemClock
from wirepool._events import Event, EventStream
from wirepool._proc import (
    ProcessIdentity,
    create_time,
    identity_of,
    is_alive,
)
from wirepool._status import SessionStatus, Snapshot
from wirepool._store import (
    RECORD_SCHEMA,
    STATUS_SCHEMA,
    StateDir,
    acquire_lock,
    atomic_write_json,
    quarantine,
    read_json,
)
from wirepool._types import ExitStatus, Session, Verdict
from wirepool._watch import Watcher
from wirepool.discovery import Discovery, DiscoveryLike, as_discovery
from wirepool.eligibility import Always, Eligibility, EligibilityLike, as_eligibility
from wirepool.health import HealthCheck, NoHealthCheck
from wirepool.restart import RestartPolicy, SpawnRateLimit, Streak
from wirepool.spawn import (
    POOL_MARKER,
    AdoptedWorker,
    Spawner,
    Worker,
    find_children,
    safe_filename,
)

__all__ = ["Event", "SessionPool"]

OnExit = Literal["leave", "stop"]
_VERSION = "0.1.0"


@dataclass
class _Slot:
    """Everything the shell knows about one session.  Loop thread only."""

    session: Session
    verdict: Verdict = field(default_factory=lambda: Verdict(False, "not checked yet"))
    checked: bool = False
    vanished_at: float | None = None
    worker: Worker | None = None
    adopted: bool = False
    spawned_mono: float | None = None
    stop_reason: str | None = None
    stop_counts_as_failure: bool = False
    kill_at: float | None = None
    streak: Streak = field(default_factory=Streak)
    next_start: float = 0.0
    failed: bool = False
    reason: str = ""
    restarts: int = 0
    starts: int = 0
    last_exit: ExitStatus | None = None
    last_exit_at: float | None = None
    health_failures: int = 0
    health: str | None = None
    next_probe: float | None = None
    unhealthy: str | None = None
    state: str = "pending"
    record_path: Path | None = None
    dirty: bool = True
    existing_error: str | None = None
    scan_error: str | None = None


class SessionPool:
    """Keep one child alive per eligible session.

    Args:
        discovery: which sessions exist (a :class:`Discovery` or a callable).
        eligibility: which of them deserve a child (default: all).
        spawner: how a child starts.
        health: how to find a daemon already serving a session, and whether
            a running child is healthy (default: no checks).
        restart: restart timing (default: :class:`RestartPolicy`).
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
            timer is then only a net under the events.  None: always
            ``rescan_interval``.
        sweep_interval: seconds between safety sweeps (identity re-checks,
            a look at live logs) -- a net under the event path, not the engine.
        spawn_limit: the pool-wide spawn rate limit.
        clock: time source (:class:`wirepool.testing.MockClock` in tests).
        durable: fsync the state writes that must survive a power loss (a
            session's ``failed`` mark); off only for throwaway pools.
        plugin: name recorded in ``status.json``.
        status_extra: adds plugin-specific fields to the ``status.json``
            document (called with the document, edits it in place).
    """

    def __init__(
        self,
        discovery: DiscoveryLike,
        eligibility: EligibilityLike | None = None,
        spawner: Spawner | None = None,
        health: HealthCheck | None = None,
        restart: RestartPolicy | None = None,
        state_dir: Path | str | None = None,
        *,
        on_exit: OnExit = "stop",
        grace: float = 10.0,
        stop_grace: float = 10.0,
        rescan_interval: float = 30.0,
        watched_rescan_interval: float | None = None,
        sweep_interval: float = 30.0,
        spawn_limit: SpawnRateLimit | None = None,
        clock: Clock | None = None,
        durable: bool = True,
        plugin: str = "",
        status_extra: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        if spawner is None:
            raise TypeError("SessionPool needs a spawner")
        if on_exit not in ("leave", "stop"):
            raise ValueError("on_exit must be 'leave' or 'stop'")
        self.discovery: Discovery = as_discovery(discovery)
        self.eligibility: Eligibility = as_eligibility(eligibility or Always())
        self.spawner = spawner
        self.health = health or NoHealthCheck()
        self.restart = restart or RestartPolicy()
        if state_dir is None:
            state_dir = tempfile.mkdtemp(prefix="wirepool-")
        self.state = StateDir(Path(state_dir).absolute())
        self.on_exit: OnExit = on_exit
        self.grace = float(grace)
        self.stop_grace = float(stop_grace)
        self.rescan_interval = float(rescan_interval)
        self.watched_rescan_interval = (
            None if watched_rescan_interval is None else float(watched_rescan_interval)
        )
        self.sweep_interval = float(sweep_interval)
        self.spawn_limit = spawn_limit or SpawnRateLimit()
        self.clock = clock or SystemClock()
        self.durable = durable
        self.plugin = plugin
        self.status_extra = status_extra
        self.pool_id = hashlib.sha256(os.fsencode(os.path.realpath(self.state.root))).hexdigest()[
            :16
        ]

        self._slots: dict[str, _Slot] = {}
        self._fd_owner: dict[int, str] = {}
        self._commands: deque[tuple[str, Any]] = deque()
        self._listeners: list[Callable[[Event], None]] = []
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._watcher: Watcher | None = None
        self._stopping = False
        self._stop_children_on_exit: bool | None = None
        self._next_rescan = 0.0
        self._next_sweep = 0.0
        self._spawn_deferred_until: float | None = None
        self._wake_at: float | None = None
        self._replan = True
        # Sessions whose child exited, or whose directory changed, since the
        # last plan.  That changes nothing about any other session, so these
        # alone are planned (the planner decides each session on its own
        # inputs): a restart in a pool of a thousand must not wait for a pass
        # over all of them.
        self._plan_only: set[str] = set()
        # Sessions a watch event named, for a discovery of just them.
        self._rediscover: set[str] = set()
        self.publish_interval = 0.1
        self._publish_due: float | None = None
        self._last_publish = float("-inf")
        self.status_interval = 0.25
        self._status_file_dirty = False
        self._last_status_write = float("-inf")
        self._snap_cond = threading.Condition()
        self._poke_lock = threading.Lock()
        self._snapshot = Snapshot({}, os.getpid(), False, 0.0)
        self._generation = 0
        self._errors_seen: set[str] = set()
        self._degraded: dict[str, str] = {}
        self._wall_offset: float | None = None
        self._status_dirty = True
        self._started_at = 0.0
        self._loop_error: BaseException | None = None
        self._ready = threading.Event()

    def __repr__(self) -> str:
        return f"<SessionPool {self.plugin or ''} state_dir={str(self.state.root)!r}>"

    # ------------------------------------------------------------------ API

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` (on the loop thread) for every event.
        Returns a function that unsubscribes it.  A callback that raises is
        logged once and does not disturb the pool."""
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
        self._post("stop", children)
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> SessionPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Run the loop in this (main) thread until SIGTERM/SIGINT.

        SIGHUP rescans; SIGUSR1 stops the children and exits (what
        ``wirepool stop --children`` sends)."""
        self._open()
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGHUP:
                self._post("rescan", None)
            elif signum == signal.SIGUSR1:
                self._post("stop", True)
            else:
                self._post("stop", None)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, on_signal)
        try:
            self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._loop_error is not None:
            raise self._loop_error

    def rescan(self) -> None:
        """Run a discovery pass now."""
        self._post("rescan", None)

    def reset(self, name: str) -> None:
        """Clear a session's failure streak and ``failed`` mark (operator reset)."""
        self._post("reset", name)

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

    # ---------------------------------------------------------------- shell

    def _post(self, command: str, arg: Any) -> None:
        self._commands.append((command, arg))
        self._poke()

    def _poke(self) -> None:
        # Under the lock: shutdown closes the pipe, and a write racing it
        # could land in whatever fd reuses that number.
        with self._poke_lock:
            if self._wake_w is not None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    def _open(self) -> None:
        _raise_fd_limit()
        self.state.ensure()
        self._lock_fd = acquire_lock(self.state)
        try:
            self._open_locked()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise

    def _open_locked(self) -> None:
        self.state.remove_stale_temp_files()
        self._started_at = self.clock.time()
        me = identity_of(os.getpid())
        atomic_write_json(
            self.state.supervisor_path,
            {
                "pid": os.getpid(),
                "process_start": me.start if me else None,
                "started_at": self._started_at,
                "version": _VERSION,
                "plugin": self.plugin,
                "argv": sys.argv,
            },
            durable=self.durable,
        )
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._watcher = Watcher()
        wfd = self._watcher.fileno()
        if wfd is not None:
            self._selector.register(wfd, selectors.EVENT_READ, "watch")
        self.clock.subscribe(self._poke)
        self.spawner.attach(self.state.root, {POOL_MARKER: self.pool_id})

    def _run(self) -> None:
        try:
            self._emit("supervisor_started", data={"state_dir": str(self.state.root)})
            self._recover()
            self._discover_pass()
            while not self._stopping:
                self._iterate()
        except BaseException as exc:  # the loop must not die silently
            self._loop_error = exc
            logger.opt(exception=exc).error("wirepool loop crashed: {}", exc)
        finally:
            self._ready.set()
            with contextlib.suppress(BaseException):
                self._shutdown()

    def _iterate(self) -> None:
        try:
            self._pass()
        except Exception as exc:  # never die of one bad pass; say so and go on
            self._log_once(f"pass:{type(exc).__name__}:{exc}", "pool pass failed: {}", exc)
            logger.opt(exception=exc).debug("pool pass failure")
            time.sleep(0.2)
        try:
            self._publish()
        except Exception as exc:  # a plugin's status value, say: say so, go on
            self._log_once(f"publish:{type(exc).__name__}:{exc}", "publishing failed: {}", exc)
        self._ready.set()
        if self._stopping:
            return
        try:
            self._wait_and_dispatch()
        except Exception as exc:  # a user strategy failing on an exit, say
            self._replan = True
            self._log_once(f"event:{type(exc).__name__}:{exc}", "event handling failed: {}", exc)
            logger.opt(exception=exc).debug("event handling failure")
            time.sleep(0.2)

    def _wait_and_dispatch(self) -> None:
        timeout = self._timeout()
        assert self._selector is not None
        for key, _ in self._selector.select(timeout):
            tag = key.data
            if tag == "wake":
                self._replan = True  # a signal or an API call
            if tag == "wake":
                self._drain_wake()
            elif tag == "watch":
                self._on_watch_event()
            else:
                self._on_fd_ready(int(key.fd))
        self._handle_commands()

    def _timeout(self) -> float | None:
        now = self.clock.monotonic()
        if self._rediscover:
            return 0.0
        deadlines = [self._next_rescan, self._next_sweep]
        if self._wake_at is not None:
            deadlines.append(self._wake_at)
        if self._spawn_deferred_until is not None:
            deadlines.append(self._spawn_deferred_until)
        if self._publish_due is not None:
            deadlines.append(self._publish_due)
        for slot in self._slots.values():
            if slot.kill_at is not None:
                deadlines.append(slot.kill_at)
            if slot.next_probe is not None and slot.worker is not None:
                deadlines.append(slot.next_probe)
        return max(0.0, min(deadlines) - now)

    def _pass(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_rescan:
            self._discover_pass()
            self._replan = True
        elif self._rediscover:
            self._rediscover_pass()
        if now >= self._next_sweep:
            self._sweep()
            self._replan = True
        self._escalate(now)
        self._after_wall_step(self.clock.time() - now, now)
        self._probe(now)
        for deadline in (self._wake_at, self._spawn_deferred_until):
            if deadline is not None and now >= deadline:
                self._replan = True
        # Planning is O(sessions); a wake-up that changed nothing (a filtered
        # watch event, a throttled status write) must not pay for it.
        if self._replan:
            # Cleared first: acting on the plan may ask for another one (an
            # existing daemon that died between check and adoption).
            self._replan = False
            self._plan_only.clear()
            try:
                self._reconcile(now)
            except BaseException:
                self._replan = True
                raise
        elif self._plan_only:
            only, self._plan_only = self._plan_only, set()
            try:
                self._reconcile(now, only=only)
            except BaseException:
                self._replan = True
                raise

    def _reconcile(self, now: float, only: set[str] | None = None) -> None:
        """Plan and act, for every session or ``only`` these (the others'
        inputs have not changed since the last plan, nor has its decision
        for them)."""
        slots = (
            self._slots.items()
            if only is None
            else ((name, self._slots[name]) for name in only if name in self._slots)
        )
        # A slot known only from its record (discovery has not confirmed or
        # denied it yet: the first discovery failed, or its first eligibility
        # check did) is left exactly as it is -- "no change", not "gone".
        known = {name: slot for name, slot in slots if slot.checked or slot.vanished_at is not None}
        desired = {
            name: _planner.Desired(slot.session, slot.verdict, slot.vanished_at)
            for name, slot in known.items()
        }
        observed = {
            name: _planner.Observed(
                owned=slot.worker.owned,
                stopping=slot.stop_reason is not None,
                unhealthy=slot.unhealthy,
            )
            for name, slot in known.items()
            if slot.worker is not None
        }
        pending = {
            name: _planner.Pending(slot.next_start, slot.failed, slot.reason)
            for name, slot in known.items()
            if slot.worker is None
        }
        decision = _planner.plan(desired, observed, pending, now, self.grace)
        # Set before acting: a spawn that fails below schedules its retry by
        # lowering this deadline (the plan could not know about it).  A
        # partial plan keeps the other sessions' deadline (at worst a stale
        # one: an early wake-up that plans everything).
        if only is None:
            self._wake_at = decision.wake_at
            self._spawn_deferred_until = None
        elif decision.wake_at is not None:
            self._wake_at = (
                decision.wake_at if self._wake_at is None else min(self._wake_at, decision.wake_at)
            )
        for name, reason in decision.stop:
            self._stop_worker(self._slots[name], reason, now)
        for name in decision.release:
            self._release(self._slots[name], "session gone")
        for name in decision.forget:
            self._forget(name)
        for name in decision.spawn:
            if not self._start(self._slots[name], now):
                break
        for name, (state, reason) in decision.states.items():
            slot = self._slots.get(name)
            if slot is not None and slot.worker is None:
                self._set_state(slot, state, reason)

    # -------------------------------------------------------------- actions

    def _start(self, slot: _Slot, now: float) -> bool:
        """Start (or adopt) a child for ``slot``.  False: the rate limit is hit
        and the remaining spawns wait for the next token."""
        session = slot.session
        found = self._existing(slot)
        if found is not None:
            if not self._adopt(slot, found, owned=False, why="a live daemon already serves it"):
                self._replan = True  # it died meanwhile: plan again at once
            return True
        if not self.spawn_limit.try_acquire(now):
            self._spawn_deferred_until = self.spawn_limit.next_token_at(now)
            self._set_state(slot, "backoff", "waiting for the pool-wide spawn rate limit")
            return False
        try:
            worker = self.spawner.spawn(session)
        except Exception as exc:
            reason = f"spawn failed: {_describe(exc)}"
            self._after_failure(slot, lived=None, now=now, reason=reason)
            self._log_once(
                f"spawn:{session.name}:{reason}", "session {!r}: {}", session.name, reason
            )
            return True
        if slot.starts > 0:
            slot.restarts += 1
        slot.starts += 1
        slot.spawned_mono = now
        slot.adopted = False
        self._watch(slot, worker)
        self._set_state(slot, "running", "started")
        self._emit(
            "spawned",
            session,
            worker.pid,
            data={
                "restarts": slot.restarts,
                "log": str(worker.log_path or ""),
                "start": worker.identity.start,
            },
        )
        return True

    def _existing(self, slot: _Slot) -> ProcessIdentity | None:
        try:
            found = self.health.existing(slot.session)
            slot.existing_error = self.health.problem(slot.session)
        except Exception as exc:
            slot.existing_error = f"existing-daemon check failed: {_describe(exc)}"
            self._log_once(
                f"existing:{slot.session.name}:{exc}",
                "session {!r}: existing-daemon check failed: {}",
                slot.session.name,
                exc,
            )
            return None
        if found is None:
            return None
        for other in self._slots.values():
            if other is not slot and other.worker is not None and other.worker.identity == found:
                # Someone else's daemon: a pidfile copied between homes must
                # not make two sessions share (or fight over) one process.
                return None
        return found

    def _adopt(
        self,
        slot: _Slot,
        ident: ProcessIdentity,
        *,
        owned: bool,
        why: str,
        started_at: float | None = None,
    ) -> bool:
        worker = AdoptedWorker(
            ident,
            owned=owned,
            started_at=started_at,
            log_path=self.spawner.log_path(slot.session) if owned else None,
        )
        if worker.fileno() is None and not is_alive(ident):
            return False
        slot.adopted = True
        slot.spawned_mono = None
        self._watch(slot, worker)
        self._set_state(slot, "adopted", why)
        self._emit(
            "adopted", slot.session, ident.pid, why, data={"owned": owned, "start": ident.start}
        )
        return True

    def _watch(self, slot: _Slot, worker: Worker) -> None:
        slot.worker = worker
        slot.stop_reason = None
        slot.kill_at = None
        slot.unhealthy = None
        slot.health_failures = 0
        slot.health = None
        slot.dirty = True
        if self.health.interval is not None:
            slot.next_probe = self.clock.monotonic() + self.health.interval
        fd = worker.fileno()
        if fd is not None and self._selector is not None:
            self._selector.register(fd, selectors.EVENT_READ, slot.session.name)
            self._fd_owner[fd] = slot.session.name
        try:
            self.spawner.observe(slot.session, worker)
        except Exception as exc:  # its log goes unbounded; the child is still watched
            self._log_once(
                f"observe:{slot.session.name}:{exc}",
                "session {!r}: its log is not kept to size: {}",
                slot.session.name,
                _describe(exc),
            )

    def _unwatch(self, slot: _Slot) -> Worker | None:
        worker = slot.worker
        if worker is None:
            return None
        fd = worker.fileno()
        if fd is not None and fd in self._fd_owner:
            del self._fd_owner[fd]
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(fd)
        with contextlib.suppress(Exception):
            self.spawner.unobserve(slot.session, worker)
        worker.close()
        slot.worker = None
        slot.kill_at = None
        slot.next_probe = None
        slot.dirty = True
        return worker

    def _stop_worker(
        self, slot: _Slot, reason: str, now: float, *, as_failure: bool = False
    ) -> None:
        worker = slot.worker
        if worker is None or slot.stop_reason is not None:
            return
        slot.stop_reason = reason
        slot.stop_counts_as_failure = as_failure
        slot.kill_at = now + self.stop_grace
        self._set_state(slot, "stopping", reason)
        if not worker.terminate():
            # Already gone: the exit event (or the sweep) will finish it.
            slot.kill_at = now
        if not slot.verdict.eligible and slot.vanished_at is None:
            self._emit("ineligible", slot.session, worker.pid, reason)

    def _escalate(self, now: float) -> None:
        for slot in self._slots.values():
            if slot.worker is None or slot.kill_at is None or now < slot.kill_at:
                continue
            status = slot.worker.poll()
            if status is not None:
                self._on_exit(slot, status)
                continue
            self._replan = True
            logger.warning(
                "session {!r}: pid {} ignored SIGTERM for {:.0f}s; sending SIGKILL",
                slot.session.name,
                slot.worker.pid,
                self.stop_grace,
            )
            slot.worker.kill()
            # Check again shortly in case the exit event is lost.
            slot.kill_at = now + max(1.0, self.stop_grace / 4)

    def _release(self, slot: _Slot, reason: str) -> None:
        worker = self._unwatch(slot)
        if worker is not None:
            self._emit("released", slot.session, worker.pid, reason)

    def _forget(self, name: str) -> None:
        slot = self._slots.pop(name)
        if slot.worker is not None:
            self._unwatch(slot)
        if slot.record_path is not None:
            with contextlib.suppress(OSError):
                slot.record_path.unlink()
        self._status_dirty = True
        self._emit("forgotten", slot.session, reason="session gone")

    def _after_failure(self, slot: _Slot, *, lived: float | None, now: float, reason: str) -> None:
        decision = self.restart.on_exit(slot.streak, lived, now)
        slot.streak = decision.streak
        slot.next_start = now + decision.delay
        slot.dirty = True
        if decision.delay <= 0:
            self._plan_only.add(slot.session.name)  # plan it (alone) at once
        elif self._wake_at is None or slot.next_start < self._wake_at:
            self._wake_at = slot.next_start
        if decision.give_up:
            slot.failed = True
            slot.reason = f"gave up after {decision.streak.failures} rapid failures: {reason}"
            self._set_state(slot, "failed", slot.reason)
            self._emit("failed", slot.session, reason=slot.reason)
        elif decision.delay > 0:
            slot.reason = (
                f"{reason}; rapid failure #{decision.streak.failures}, "
                f"retry in {decision.delay:.1f}s"
            )
            self._set_state(slot, "backoff", slot.reason)
            self._emit(
                "backoff",
                slot.session,
                reason=slot.reason,
                data={"delay": round(decision.delay, 3), "streak": decision.streak.failures},
            )
        else:
            slot.reason = reason

    # --------------------------------------------------------------- events

    def _on_fd_ready(self, fd: int) -> None:
        name = self._fd_owner.get(fd)
        slot = self._slots.get(name) if name is not None else None
        if slot is None or slot.worker is None:
            return
        status = slot.worker.poll()
        if status is None:
            # Readable but not reapable yet: stop listening on this fd (it
            # would stay readable and spin) and let the sweep catch it.
            with contextlib.suppress(KeyError, ValueError):
                if self._selector is not None:
                    self._selector.unregister(fd)
            self._fd_owner.pop(fd, None)
            self._next_sweep = min(self._next_sweep, self.clock.monotonic() + 0.2)
            return
        self._on_exit(slot, status)

    def _on_exit(self, slot: _Slot, status: ExitStatus) -> None:
        self._plan_only.add(slot.session.name)
        now = self.clock.monotonic()
        worker = self._unwatch(slot)
        assert worker is not None
        with contextlib.suppress(OSError):  # a Python worker's marker file
            (self.state.root / "markers" / f"{worker.pid}.json").unlink()
        if slot.spawned_mono is not None:
            lived: float | None = now - slot.spawned_mono
        else:
            lived = max(0.0, self.clock.time() - worker.started_at)
        slot.last_exit = status
        slot.last_exit_at = self.clock.time()
        stop_reason, slot.stop_reason = slot.stop_reason, None
        self._emit(
            "exited",
            slot.session,
            worker.pid,
            stop_reason or "",
            data={
                **status.to_json(),
                "lived": round(lived, 3) if lived is not None else None,
                "owned": worker.owned,
            },
        )
        if not worker.owned:
            # Not our daemon and not our failure: take over now.
            slot.next_start = now
            slot.reason = "the daemon we were watching exited; taking over"
        elif stop_reason is not None and not slot.stop_counts_as_failure:
            slot.reason = f"stopped: {stop_reason}"
            self._emit("stopped", slot.session, worker.pid, stop_reason)
            self._set_state(slot, "stopped", stop_reason)
        else:
            why = stop_reason or status.describe()
            self._after_failure(slot, lived=lived, now=now, reason=why)
        slot.stop_counts_as_failure = False
        slot.dirty = True

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _handle_commands(self) -> None:
        while self._commands:
            command, arg = self._commands.popleft()
            if command == "stop":
                self._stopping = True
                if arg is not None:
                    self._stop_children_on_exit = bool(arg)
            elif command == "rescan":
                self._next_rescan = 0.0
            elif command == "reset":
                self._reset(str(arg))

    def _reset(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is None:
            logger.warning("reset: no session named {!r}", name)
            return
        slot.failed = False
        slot.streak = Streak()
        slot.next_start = 0.0
        slot.reason = "reset by operator"
        slot.dirty = True
        self._emit("reset", slot.session)

    def _read_requests(self) -> None:
        """Requests ``wirepool reset`` left for us (then sent SIGHUP)."""
        try:
            entries = sorted(self.state.requests_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.suffix != ".json":
                continue
            try:
                request = read_json(entry)
                name = request["reset"] if isinstance(request, dict) else None
            except (OSError, ValueError, KeyError):
                name = None
            with contextlib.suppress(OSError):
                entry.unlink()
            if isinstance(name, str):
                self._reset(name)
            else:
                logger.warning("ignoring an unreadable request file {}", entry.name)

    # ------------------------------------------------------------ discovery

    def _on_watch_event(self) -> None:
        assert self._watcher is not None
        changes = self._watcher.drain(self.discovery.relevant)
        if not changes:
            return
        names: Collection[str] | None = None
        # Out of watches, a change may raise no event at all: the full
        # rescans of old, and no partial pass retrying every missing watch.
        if not changes.everything and self._watcher.complete:
            try:
                names = self.discovery.affected(changes.paths)
            except Exception as exc:
                self._log_once(
                    f"affected:{exc}", "discovery cannot place a change ({}); rescanning", exc
                )
        if names is None:
            self._next_rescan = 0.0
        else:
            self._rediscover.update(names)

    def _discover_pass(self) -> None:
        now = self.clock.monotonic()
        self._next_rescan = now + self.rescan_interval
        self._rediscover.clear()
        self._read_requests()
        try:
            found = list(self.discovery.discover())
        except Exception as exc:
            self._log_once(
                f"discover:{exc}", "discovery failed ({}); keeping the sessions we know", exc
            )
            return
        self._errors_seen = {e for e in self._errors_seen if not e.startswith("discover:")}
        if self._absorb(found, None, now):
            # A marker created in a new directory before its watch existed
            # raised no event: look once more, now.
            self._next_rescan = now

    def _rediscover_pass(self) -> None:
        """Discovery of just the sessions a watch event named; their plans
        follow alone (``_plan_only``), as after an exit."""
        now = self.clock.monotonic()
        names, self._rediscover = self._rediscover, set()
        try:
            found = list(self.discovery.rediscover(names))
        except Exception as exc:
            self._log_once(
                f"rediscover:{type(exc).__name__}",
                "discovery of {} changed session(s) failed ({}); rescanning all",
                len(names),
                exc,
            )
            self._next_rescan = 0.0
            return
        self._errors_seen = {e for e in self._errors_seen if not e.startswith("rediscover:")}
        try:
            added = self._absorb(found, set(names), now)
        except BaseException:
            self._next_rescan = 0.0  # these names must not wait for the timer
            raise
        if added:
            self._rediscover.update(names)  # as in a full pass: look once more
        self._plan_only.update(name for name in names if name in self._slots)

    def _absorb(self, found: list[Session], scope: set[str] | None, now: float) -> int:
        """Bring the slots in line with what discovery ``found`` (among the
        names in ``scope``: everything when None).  Returns how many
        directories began to be watched."""
        wall = self.clock.time()
        try:
            unreadable = dict(self.discovery.unreadable())
        except Exception:
            unreadable = {}
        if scope is not None:
            unreadable = {name: why for name, why in unreadable.items() if name in scope}
        # Seen but unreadable: kept exactly as they were ("no change"), and
        # marked; a new one is shown, ineligible, with why.
        seen: set[str] = set(unreadable)
        for name, why in unreadable.items():
            self._log_once(f"unreadable:{name}:{why}", "session {!r}: {}", name, why)
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = _Slot(session=Session(name=name, home=Path("/")))
                slot.verdict, slot.checked = Verdict(False, why), True
                slot.record_path = self._record_path(name)
            if slot.scan_error != why:
                slot.scan_error, slot.dirty = why, True
        for session in found:
            if session.name in seen or (scope is not None and session.name not in scope):
                self._log_once(
                    f"dup:{session.name}",
                    "discovery reported session {!r} twice (or unasked); keeping the first",
                    session.name,
                )
                continue
            seen.add(session.name)
            slot = self._slots.get(session.name)
            if slot is None:
                slot = self._slots[session.name] = _Slot(session=session)
                slot.record_path = self._record_path(session.name)
            if slot.scan_error is not None:
                slot.scan_error, slot.dirty = None, True
                self._errors_seen = {
                    e for e in self._errors_seen if not e.startswith(f"unreadable:{session.name}:")
                }
            if slot.session != session:
                slot.session = session
                slot.dirty = True
                if slot.failed:
                    slot.failed = False
                    slot.streak = Streak()
                    slot.next_start = 0.0
                    slot.reason = "session changed; trying again"
            if slot.vanished_at is not None:
                slot.vanished_at = None
                slot.dirty = True
        gone = self._slots.keys() - seen if scope is None else scope - seen
        for name in gone:
            slot = self._slots.get(name)
            if slot is not None and slot.vanished_at is None:
                slot.vanished_at = now
                slot.dirty = True
                logger.info(
                    "session {!r} vanished; its child stays up for {:.0f}s grace", name, self.grace
                )
        for name in seen - unreadable.keys():
            self._check(self._slots[name], wall)
        return self._update_watches(now, scope)

    def _update_watches(self, now: float, scope: set[str] | None) -> int:
        """Watch what discovery asks for; re-check the watches of what was
        just looked at (all of them after a full pass).  Returns how many
        watches were added."""
        if self._watcher is None or not self._watcher.available:
            return 0
        full = scope is None
        try:
            paths = self.discovery.watch_paths()
            refresh = None if scope is None else [p for p in paths if p.name in scope]
            added = self._watcher.update(paths, refresh)
        except Exception as exc:
            self._log_once(f"watch:{exc}", "cannot update watches: {}", exc)
            return 0
        if not self._watcher.complete:
            # A change in a directory we could not watch raises no event.
            self._next_rescan = min(self._next_rescan, now + self.rescan_interval)
        elif full and self.watched_rescan_interval is not None and not added:
            # Every change that matters raises an event: the timer is only a
            # net.  A full rescan costs ~25 ms of CPU at a thousand sessions;
            # every 30 s that was most of the idle pool's CPU.
            interval = max(self.rescan_interval, self.watched_rescan_interval)
            self._next_rescan = now + interval
        return added

    def _check(self, slot: _Slot, wall: float) -> None:
        try:
            verdict = self.eligibility.check(slot.session, wall)
        except Exception as exc:
            self._log_once(
                f"elig:{slot.session.name}:{exc}",
                "session {!r}: eligibility check failed: {}; keeping the last verdict",
                slot.session.name,
                exc,
            )
            if slot.checked or slot.worker is not None:
                # no verdict yet: a running child is not stopped for it
                slot.reason = f"eligibility check failed: {_describe(exc)}"
                return
            verdict = Verdict(False, f"eligibility check failed: {_describe(exc)}")
        if not slot.checked or verdict != slot.verdict:
            if (
                slot.checked
                and slot.verdict.eligible
                and not verdict.eligible
                and slot.worker is None
            ):
                self._emit("ineligible", slot.session, reason=verdict.reason)
            slot.verdict = verdict
            slot.dirty = True
        slot.checked = True

    # ------------------------------------------------------------- upkeep

    def _sweep(self) -> None:
        """The net under the event path: catch an exit whose event was lost,
        a worker with no exit fd, and have the spawner look at live logs
        (it copies nothing here: a background thread does)."""
        self._next_sweep = self.clock.monotonic() + self.sweep_interval
        for slot in list(self._slots.values()):
            worker = slot.worker
            if worker is None:
                continue
            status = worker.poll()
            if status is not None:
                self._on_exit(slot, status)
                continue
            if worker.fileno() is None or worker.fileno() not in self._fd_owner:
                self._next_sweep = min(self._next_sweep, self.clock.monotonic() + 1.0)
            if worker.owned:
                with contextlib.suppress(Exception):
                    self.spawner.maintain(slot.session)

    def _probe(self, now: float) -> None:
        if self.health.interval is None:
            return
        wall = self.clock.time()
        for slot in self._slots.values():
            worker = slot.worker
            if worker is None or slot.next_probe is None or now < slot.next_probe:
                continue
            slot.next_probe = now + self.health.interval
            self._replan = True
            if slot.stop_reason is not None:
                continue
            try:
                verdict = self.health.probe(slot.session, worker.identity, wall)
            except Exception as exc:
                self._log_once(
                    f"probe:{slot.session.name}:{exc}",
                    "session {!r}: health probe failed to run: {}",
                    slot.session.name,
                    exc,
                )
                continue
            previous = slot.health
            slot.health = ("ok: " if verdict.eligible else "unhealthy: ") + verdict.reason
            if previous is None or previous[:3] != slot.health[:3]:
                # only a flip is news; "last sync 8s ago" -> "9s" is not,
                # and must not cost a status write per probe
                self._status_dirty = True
            if verdict.eligible:
                slot.health_failures = 0
                continue
            slot.health_failures += 1
            if slot.health_failures >= self.health.failures_before_restart:
                if worker.owned:
                    slot.unhealthy = f"unhealthy: {verdict.reason}"
                    self._emit("unhealthy", slot.session, worker.pid, verdict.reason)
                    self._stop_worker(slot, slot.unhealthy, now, as_failure=True)
                elif slot.health_failures == self.health.failures_before_restart:
                    self._emit(
                        "unhealthy",
                        slot.session,
                        worker.pid,
                        f"{verdict.reason} (not ours to restart)",
                    )

    def _after_wall_step(self, offset: float, now: float) -> None:
        """Health verdicts compare heartbeats (file mtimes, timestamps: wall
        time) with the wall clock.  When the wall clock steps forward every
        heartbeat looks old at once, and a pool would restart every healthy
        daemon; so after a step, verdicts wait four probe intervals (the
        stock checks' whole max_age) for the daemons to beat on the new
        clock.  Backoff and stop deadlines are monotonic and need nothing."""
        last, self._wall_offset = self._wall_offset, offset
        if last is None or abs(offset - last) < 2.0:
            return
        self._status_dirty = True  # every wall time it shows moved
        interval = self.health.interval
        logger.warning("wall clock stepped by {:+.0f}s", offset - last)
        if interval is None:
            return
        for slot in self._slots.values():
            slot.health_failures = 0
            if slot.next_probe is not None:
                slot.next_probe = now + 4 * interval

    # ------------------------------------------------------------- recovery

    def _record_path(self, name: str) -> Path:
        return self.state.records_dir / f"{safe_filename(name)}.json"

    def _recover(self) -> None:
        """Resume where the last supervisor of this state dir stopped."""
        now, wall = self.clock.monotonic(), self.clock.time()
        claimed: dict[str, ProcessIdentity] = {}
        for path in self.state.iter_records():
            try:
                data = read_json(path)
                rec = _parse_record(data)
            except Exception as exc:  # RecursionError too: "[[[[..." must not stop us
                moved = quarantine(path)
                logger.error(
                    "state record {} is unusable ({}); moved aside to {}; "
                    "that session starts fresh",
                    path.name,
                    _describe(exc),
                    moved.name if moved else "(could not move)",
                )
                continue
            session = rec["session"]
            if session.name in self._slots:
                continue
            slot = _Slot(session=session, record_path=path)
            slot.streak = Streak(rec["streak"], now if rec["streak"] else None)
            slot.restarts = rec["restarts"]
            slot.starts = rec["restarts"] + (1 if rec["worker"] else 0)
            slot.failed = rec["failed"]
            slot.reason = rec["reason"]
            slot.last_exit = rec["last_exit"]
            slot.last_exit_at = rec["last_exit_at"]
            if rec["next_start_at"] is not None:
                # Never longer than the policy owes this streak: the wall
                # clock may have jumped back between the two supervisors (or
                # the record lies), and a day-long "backoff" is no backoff.
                try:
                    owed = self.restart.delay_for(slot.streak, now)
                except Exception:  # a user's wait strategy: keep the record's word
                    owed = math.inf
                slot.next_start = now + min(max(0.0, rec["next_start_at"] - wall), owed)
            self._slots[session.name] = slot
            worker = rec["worker"]
            if worker is not None:
                ident, owned, started = worker
                if is_alive(ident) and self._adopt(
                    slot,
                    ident,
                    owned=owned,
                    started_at=started,
                    why="left running by the previous supervisor",
                ):
                    claimed[session.name] = ident
                else:
                    slot.reason = "its child ended while no supervisor was running"
                    slot.dirty = True
        self._recover_by_marker(claimed)

    def _recover_by_marker(self, claimed: Mapping[str, ProcessIdentity]) -> None:
        """Find our children whose records were lost, by their marker env."""
        leaders = find_children(self.pool_id, self.state.root / "markers")
        for name, candidates in leaders.items():
            idents = [i for i in candidates if claimed.get(name) != i]
            if not idents:
                continue
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = _Slot(
                    session=Session(name=name, home=Path("/")),
                    record_path=self._record_path(name),
                )
                slot.vanished_at = self.clock.monotonic()
            idents.sort(key=lambda i: i.start)
            keep = [] if slot.worker is not None else idents[:1]
            for ident in keep:
                logger.warning(
                    "session {!r}: found its child pid {} by marker (its record was lost); "
                    "adopting it",
                    name,
                    ident.pid,
                )
                self._adopt(
                    slot,
                    ident,
                    owned=True,
                    why="found by marker; record was lost",
                    started_at=create_time(ident.pid),
                )
            for ident in idents[len(keep) :]:
                logger.warning(
                    "session {!r}: pid {} is a duplicate child; stopping it", name, ident.pid
                )
                AdoptedWorker(ident, owned=True).terminate()

    # ------------------------------------------------------------- publish

    def _set_state(self, slot: _Slot, state: str, reason: str) -> None:
        if slot.state != state or slot.reason != reason:
            slot.state = state
            if reason:
                slot.reason = reason
            slot.dirty = True

    def _publish(self, *, force: bool = False) -> None:
        """Write changed records now (they are what a successor adopts by);
        rebuild the snapshot and ``status.json`` at most every
        ``publish_interval`` -- both are O(sessions), and a burst of exits
        in a big pool must not pay that once per exit."""
        wrote = failed = False
        for slot in self._slots.values():
            if slot.dirty:
                slot.dirty = False
                self._status_dirty = True
                if self._write_record(slot):
                    wrote = True
                else:
                    failed = True
        if wrote and not failed:
            self._set_degraded("records", None)
        if not self._status_dirty:
            self._publish_due = None
            self._flush_status(time.monotonic(), force)
            return
        # Real time, not the pool's clock: this throttles CPU, and a mock
        # clock that stands still must not stop the snapshots.
        # The pause scales with the pool (the work does): a small pool
        # publishes at once, a thousand sessions at most ten times a second.
        real = time.monotonic()
        pause = min(self.publish_interval, len(self._slots) * 1e-4)
        wait = self._last_publish + pause - real
        if not force and wait > 0:
            self._publish_due = self.clock.monotonic() + wait
            return
        self._publish_due = None
        self._last_publish = real
        self._status_dirty = False
        snap = self._build_snapshot()
        with self._snap_cond:
            self._snapshot = snap
            self._snap_cond.notify_all()
        self._status_file_dirty = True
        self._flush_status(real, force)
        if failed:
            self._retry_publish()

    def _flush_status(self, real: float, force: bool) -> None:
        """Write ``status.json`` from the current snapshot, at most every
        ``status_interval`` seconds.  The in-memory snapshot (what
        ``wait_until`` and the event stream see) is not held back; the file
        is for ``wirepool status`` and other processes, for whom a quarter
        of a second is fresh -- and in a crash loop, rewriting it on every
        exit was a third of the supervisor's CPU."""
        if not self._status_file_dirty:
            return
        wait = self._last_status_write + self.status_interval - real
        if not force and wait > 0:
            due = self.clock.monotonic() + wait
            if self._publish_due is None or due < self._publish_due:
                self._publish_due = due
            return
        self._status_file_dirty = False
        self._last_status_write = real
        self._write_status(self._snapshot)

    def _build_snapshot(self) -> Snapshot:
        now, wall = self.clock.monotonic(), self.clock.time()
        sessions: dict[str, SessionStatus] = {}
        for name, slot in self._slots.items():
            worker = slot.worker
            next_start_at = None
            if worker is None and slot.state == "backoff":
                next_start_at = wall + max(0.0, slot.next_start - now)
            if worker is not None and slot.state not in ("stopping",):
                state = "adopted" if slot.adopted else "running"
            else:
                state = slot.state
            sessions[name] = SessionStatus(
                name=name,
                display_name=slot.session.display_name,
                home=str(slot.session.home),
                cwd=str(slot.session.cwd) if slot.session.cwd else None,
                state=state,
                reason=self._reason(slot, state),
                identity=worker.identity if worker else None,
                owned=worker.owned if worker else True,
                started_at=worker.started_at if worker else None,
                restarts=slot.restarts,
                streak=slot.streak.failures,
                last_exit=slot.last_exit,
                last_exit_at=slot.last_exit_at,
                next_start_at=next_start_at,
                health=slot.health,
                log_path=str(worker.log_path) if worker and worker.log_path else None,
                attrs=slot.session.attrs,
            )
        self._generation += 1
        return Snapshot(
            sessions, os.getpid(), not self._stopping, wall, self._generation, dict(self._degraded)
        )

    def _set_degraded(self, area: str, problem: str | None) -> None:
        """A state write failing (disk full, read-only) degrades the pool --
        no record for a successor, no fresh status.json -- but supervision
        goes on.  Said in the snapshot, status.json and the log, and said
        again when it is over."""
        if self._degraded.get(area) == problem:
            return
        if problem is None:
            del self._degraded[area]
            logger.warning("state directory: {} writable again", area)
        else:
            self._degraded[area] = problem
        self._status_dirty = True

    @staticmethod
    def _reason(slot: _Slot, state: str) -> str:
        reason = slot.verdict.reason if state == "running" else slot.reason
        extra = [slot.existing_error] if state == "running" else []
        if slot.scan_error and slot.scan_error != reason:
            extra.append(f"{slot.scan_error}; keeping its last state")
        return "; ".join([reason, *(e for e in extra if e)])

    def _write_record(self, slot: _Slot) -> bool:
        if slot.record_path is None:
            return True
        now, wall = self.clock.monotonic(), self.clock.time()
        worker = slot.worker
        data = {
            "schema": RECORD_SCHEMA,
            "session": {
                "name": slot.session.name,
                "home": str(slot.session.home),
                "cwd": str(slot.session.cwd) if slot.session.cwd else None,
            },
            "worker": None
            if worker is None
            else {
                **worker.identity.to_json(),
                "owned": worker.owned,
                "started_at": worker.started_at,
            },
            "streak": slot.streak.failures,
            "next_start_at": wall + (slot.next_start - now) if slot.next_start > now else None,
            "restarts": slot.restarts,
            "failed": slot.failed,
            "reason": slot.reason,
            "last_exit": None
            if slot.last_exit is None
            else {**slot.last_exit.to_json(), "at": slot.last_exit_at},
        }
        try:
            # fsync only a `failed` mark: it is the one fact in a record
            # that matters after a power loss (no child survives one, so
            # identities are moot, and a lost backoff streak only restarts
            # sooner).  The rename keeps a record whole through a crash of
            # the supervisor either way.  Two fsyncs per crash-loop cycle
            # were a sixth of the supervisor's CPU.
            atomic_write_json(slot.record_path, data, durable=self.durable and slot.failed)
        except OSError as exc:
            slot.dirty = True  # try again on the next change
            self._log_once(
                f"record:{exc.errno}",
                "cannot write state record {} ({}); supervision goes on",
                slot.record_path.name,
                _describe(exc),
            )
            self._set_degraded("records", f"cannot write state records: {_describe(exc)}")
            return False
        return True

    def _retry_publish(self) -> None:
        # A full or read-only disk raises no event when it recovers: look
        # again in a few seconds rather than at the next unrelated change.
        retry = self.clock.monotonic() + 5.0
        if self._publish_due is None or self._publish_due > retry:
            self._publish_due = retry

    def _write_status(self, snap: Snapshot) -> None:
        me = identity_of(os.getpid())
        doc: dict[str, Any] = {
            "schema": STATUS_SCHEMA,
            "plugin": self.plugin,
            "state_dir": str(self.state.root),
            "updated_at": snap.taken_at,
            "supervisor": {
                "pid": os.getpid(),
                "process_start": me.start if me else None,
                "started_at": self._started_at,
                "running": snap.running,
                "version": _VERSION,
            },
            "sessions": [s.to_json() for s in snap.sessions.values()],
            "degraded": sorted(snap.degraded.values()),
        }
        if self.status_extra is not None:
            try:
                self.status_extra(doc)
            except Exception as exc:
                self._log_once(f"extra:{exc}", "plugin status extra failed: {}", exc)
        try:
            atomic_write_json(self.state.status_path, doc, durable=False, indent=None)
        except OSError as exc:
            self._status_dirty = True
            self._log_once(f"status:{exc.errno}", "cannot write status.json ({})", _describe(exc))
            self._set_degraded("status", f"cannot write status.json: {_describe(exc)}")
            self._retry_publish()
        else:
            if "status" in self._degraded:
                self._set_degraded("status", None)
                # what was just written still says "cannot write": once more
                self._publish_due = self.clock.monotonic()

    # ------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        """Each step runs even if an earlier one failed: the lock must be
        released and the children's fate settled whatever went wrong."""
        stop_children = (
            self._stop_children_on_exit
            if self._stop_children_on_exit is not None
            else self.on_exit == "stop"
        )
        if not stop_children and not self.spawner.survives_supervisor:
            if any(s.worker is not None and s.worker.owned for s in self._slots.values()):
                logger.info(
                    "{!r} children cannot outlive their supervisor; stopping them", self.spawner
                )
            stop_children = True
        self._stopping = True
        steps: list[tuple[str, Callable[[], None]]] = [
            ("stop the children", self._stop_all if stop_children else lambda: None),
            ("write the final state", lambda: self._final_publish(stop_children)),
            ("detach from the children", self._detach_all),
            ("stop keeping the logs", self.spawner.close),
            (
                "announce the stop",
                lambda: self._emit(
                    "supervisor_stopped", data={"children": "stopped" if stop_children else "left"}
                ),
            ),
            ("close the event sources", self._close_sources),
        ]
        for what, step in steps:
            try:
                step()
            except BaseException as exc:
                logger.opt(exception=exc).error("shutdown: could not {}: {}", what, exc)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the kernel drops the flock with it
            self._lock_fd = None
        with self._snap_cond:
            self._snap_cond.notify_all()

    def _final_publish(self, stopped_children: bool) -> None:
        for slot in self._slots.values():
            if slot.worker is not None and not stopped_children:
                slot.dirty = True  # records keep the identity for the next one
            elif not slot.dirty and not _record_readable(slot.record_path):
                # Torn by someone else since we last wrote it: the next
                # supervisor would have to set it aside and lose the
                # session's streak, so leave it a whole one.
                slot.dirty = True
        if not stopped_children:
            self._status_dirty = True
            self._publish(force=True)
            return
        # Every child is gone: the records only say so.  Not fsynced (one
        # fsync per session made stopping 200 children take 0.1-0.3 s): if a
        # crash loses them, the durable ones before name children that are
        # no longer alive, which the next supervisor checks by identity.
        durable, self.durable = self.durable, False
        try:
            self._status_dirty = True
            self._publish(force=True)
        finally:
            self.durable = durable

    def _detach_all(self) -> None:
        for slot in self._slots.values():
            if slot.worker is not None:
                slot.worker.detach()

    def _close_sources(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        if self._selector is not None:
            self._selector.close()
        with self._poke_lock:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), None, None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _stop_all(self) -> None:
        # Only exit fds from here on: a readable wake pipe or watch fd would
        # make every select below return at once (a busy spin).
        assert self._selector is not None
        for fd in (self._wake_r, self._watcher.fileno() if self._watcher else None):
            if fd is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(fd)
        now = self.clock.monotonic()
        for slot in self._slots.values():
            if slot.worker is not None and slot.worker.owned:
                if slot.stop_reason is None:
                    self._stop_worker(slot, "supervisor stopping", now)
            elif slot.worker is not None:
                self._release(slot, "supervisor stopping")
        blind = [
            name
            for name, slot in self._slots.items()
            if slot.worker is not None and slot.worker.fileno() not in self._fd_owner
        ]
        deadline = time.monotonic() + self.stop_grace
        killed = False
        while any(s.worker is not None for s in self._slots.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                if killed:
                    break
                for slot in self._slots.values():
                    if slot.worker is not None:
                        slot.worker.kill()
                killed = True
                deadline = time.monotonic() + 5.0
                continue
            assert self._selector is not None
            ready = self._selector.select(min(left, 0.2))
            # Poll the children whose exit fd fired and those without one;
            # on a timeout, every child.  A pass over all of them per exit
            # made stopping a thousand children quadratic.
            names = [key.data for key, _ in ready] + blind if ready else list(self._slots)
            for name in names:
                found = self._slots.get(name)
                if found is not None and found.worker is not None:
                    status = found.worker.poll()
                    if status is not None:
                        self._on_exit(found, status)

    # -------------------------------------------------------------- misc

    def _emit(
        self,
        kind: str,
        session: Session | None = None,
        pid: int | None = None,
        reason: str = "",
        *,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        event = Event(
            kind,
            session.name if session else None,
            pid,
            reason,
            self.clock.time(),
            dict(data or {}),
        )
        self._status_dirty = True
        logger.bind(event=kind, session=event.session, pid=pid).info(
            "{}{}{}{}",
            kind,
            f" {event.session!r}" if event.session else "",
            f" pid {pid}" if pid else "",
            f": {reason}" if reason else "",
        )
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as exc:
                self._log_once(f"listener:{exc}", "event listener failed: {}", exc)

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        """Repeated failures (a bad file read on every pass) are said once."""
        if key in self._errors_seen:
            return
        if len(self._errors_seen) > 10_000:
            self._errors_seen.clear()
        self._errors_seen.add(key)
        logger.warning(message, *args)


def _record_readable(path: Path | None) -> bool:
    if path is None:
        return True
    try:
        data = read_json(path)
    except FileNotFoundError:
        return True  # never written: nothing was torn
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("schema") == RECORD_SCHEMA


def _raise_fd_limit() -> None:
    """Every child costs the supervisor two descriptors, its pidfd and its
    log's (held by the log keeper), and Popen a pipe while it starts: the
    common soft limit of 1 024 descriptors would cap a pool near five hundred
    sessions, with "Too many open files" as the only clue.  Raise the soft
    limit to the hard one, and say so if even that is low."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (OSError, ValueError):
        return
    if soft != resource.RLIM_INFINITY and soft < 4096:
        logger.warning(
            "open-file limit is {}: a pool can supervise at most about {} children "
            "(raise the hard limit, e.g. LimitNOFILE= or ulimit -Hn)",
            soft,
            (soft - 64) // 2,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        target = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{target}"
    return str(exc) or type(exc).__name__


def _parse_record(data: Any) -> dict[str, Any]:
    """Check every field of a record read back from disk.

    A record is outside data once it is on disk (a torn write on a full
    disk, a hand edit, another program's file): anything off raises
    ValueError saying what, and only that session starts fresh.  An int()
    of a JSON ``Infinity`` raised OverflowError here, which killed the
    supervisor at every start."""
    if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
        raise ValueError("not a wirepool session record")
    sess = data.get("session")
    if not isinstance(sess, dict) or not isinstance(sess.get("name"), str) or not sess["name"]:
        raise ValueError("record has no session name")
    home, cwd = sess.get("home"), sess.get("cwd")
    for what, value in (("name", sess["name"]), ("home", home), ("cwd", cwd)):
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ValueError(f"record has a bad session {what}: {value!r:.80}")
    session = Session(
        name=sess["name"],
        home=Path(home or "/"),
        cwd=Path(cwd) if cwd else None,
    )
    worker = None
    if data.get("worker") is not None:
        w = data["worker"]
        ident = ProcessIdentity.from_json(w)
        worker = (ident, _record_bool(w, "owned", True), _record_time(w, "started_at"))
    last_exit = None
    last_exit_at = None
    if isinstance(data.get("last_exit"), dict):
        le = data["last_exit"]
        code, sig = le.get("code"), le.get("signal")
        for what, value in (("code", code), ("signal", sig)):
            if value is not None and (not _is_int(value) or abs(value) > 1 << 31):
                raise ValueError(f"record has a bad exit {what}: {value!r:.80}")
        last_exit = ExitStatus(code=code, signal=sig)
        last_exit_at = _record_time(le, "at")
    reason = data.get("reason", "")
    return {
        "session": session,
        "worker": worker,
        "streak": _record_count(data, "streak"),
        "restarts": _record_count(data, "restarts"),
        "failed": _record_bool(data, "failed", False),
        "reason": reason if isinstance(reason, str) else "",
        "last_exit": last_exit,
        "last_exit_at": last_exit_at,
        "next_start_at": _record_time(data, "next_start_at"),
    }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _record_count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    # a billion restarts is already absurd; a bigger one is a corrupt file
    if not _is_int(value) or not 0 <= value <= 1_000_000_000:
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return int(value)


def _record_bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return value


def _record_time(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    try:
        when = float(value)
    except OverflowError:
        when = math.inf
    if not math.isfinite(when):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return when
