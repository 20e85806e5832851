"""The pool's state, and what every part of the engine shares.

:class:`SessionPool` is built in layers, one module each, so a newcomer
finds a part by its name; each layer may call the ones below it:

* ``_core`` -- the state (:class:`_PoolCore`: settings, slots, the wake
  pipe's command queue), the event fan-out and the log-once helper;
* ``_publish`` -- records, the snapshot and ``status.json``;
* ``_shell`` -- the per-session shell: feeds each session's machine
  (:mod:`wirepool._session`) its events and performs the actions it returns;
* ``_recovery`` -- adoption of what an earlier supervisor left running;
* ``_discover`` -- discovery passes, watches and eligibility checks;
* ``_operate`` -- the operator's verbs, for the control socket and the API;
* ``_loop`` -- the selector loop, its deadlines, and the stop;
* ``_pool`` -- :class:`SessionPool`, the public facade.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from wirepool import _session
from wirepool._clock import Clock, SystemClock
from wirepool._events import Event, EventKind
from wirepool._log import logger
from wirepool._probes import ProbeJob, ProbeThreads
from wirepool._reaper import OrphanReaper
from wirepool._session import SessionState
from wirepool._status import SessionStatus, Snapshot
from wirepool._store import StateDir
from wirepool._types import Session
from wirepool._value import Record, Value, field, frozen, record
from wirepool._watch import Watcher
from wirepool.discovery import Discovery, DiscoveryLike, as_discovery
from wirepool.eligibility import Always, Eligibility, EligibilityLike, as_eligibility
from wirepool.health import HealthCheck, NoHealthCheck
from wirepool.restart import RestartPolicy, SpawnRateLimit
from wirepool.spawn import Spawner, Worker, safe_filename

if TYPE_CHECKING:
    from concurrent.futures import Future

OnExit = Literal["leave", "stop"]


# What other threads and signal handlers ask of the loop (through the wake
# pipe); the loop alone acts on them.
@frozen
class StopCommand(Value):
    """Stop the pool (``children``: whether its children go too)."""

    children: bool | None = None  # None: as ``on_exit`` says


class RescanCommand(_session._Bare):
    """Discover every session again now (SIGHUP, ``SessionPool.rescan``)."""

    __slots__ = ()


@frozen
class OperateCommand(Value):
    """An operator verb from the Python API (``SessionPool.restart`` ...):
    done on the loop thread, its result or error handed back in ``done``."""

    op: str
    request: Mapping[str, Any]
    done: Future[Any]


class ReapCommand(_session._Bare):
    """A child (or an orphan below us) exited: SIGCHLD."""

    __slots__ = ()


Command = StopCommand | RescanCommand | OperateCommand | ReapCommand


class StartupInterrupted(BaseException):
    """A stop signal arrived while :meth:`SessionPool.run_forever` was still
    starting up.  A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (a plugin's, recovery's) swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return signal.Signals(self.signum).name


class Instruments(Protocol):
    """What the metrics (:mod:`wirepool._metrics`) learn only from inside
    the loop, as it happens; everything else they read from the snapshot
    when scraped.  Called on the loop thread: each call must be cheap."""

    def loop_lag(self, seconds: float) -> None:
        """From the moment something needed the loop (an fd ready, a deadline
        due) until it waits again: how long an exit can wait to be seen."""

    def discovery_pass(self, seconds: float, full: bool) -> None:
        """One discovery pass took ``seconds`` (``full``: of every session)."""


@record(slots=True, fast_init=True)  # one per session, made in bulk by a first pass
class _Slot(Record):
    """What the shell holds for one session: its state machine's state (the
    one place its lifecycle is written: :mod:`wirepool._session`) and the
    shell's own handles.  Loop thread only."""

    session: Session
    state: SessionState = field(default_factory=SessionState)
    worker: Worker | None = None
    record_path: Path | None = None
    dirty: bool = True  # the record must be rewritten
    existing_error: str | None = None  # why the existing-daemon check could not tell
    scan_error: str | None = None  # why discovery could not read it this pass
    health: str | None = None  # the last probe's word, for status
    next_probe: float | None = None
    probe: ProbeJob | None = None  # the probe on a thread now (see wirepool._probes)
    #: the spawner's fingerprint of what the child was started from (None:
    #: not known), and whether the current one differs
    started_from: str | None = None
    outdated: bool = False
    spawn_failures: int = 0  # spawns that raised, in this supervisor's life
    log_path: Path | None = None  # the child's log, kept after it exits
    last_output: tuple[str, ...] = ()  # what the last run wrote last (_tail.last_output)
    #: the last status built for it, and what it was built from (see
    #: ``_Publisher._build_snapshot``)
    shown: SessionStatus | None = None
    shown_from: tuple[object, ...] = ()


@record
class _TempState(Record):
    """A state directory the pool made for itself."""

    path: Path
    used: bool = False

    def remove(self) -> None:
        import shutil  # only here: shutil and tempfile were ~4 ms of every start

        shutil.rmtree(self.path, ignore_errors=True)

    def remove_if_unused(self) -> None:
        if not self.used:
            self.remove()


class _PoolCore:
    """See :mod:`wirepool._core`."""

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
        restart_on_change: bool = False,
        control: bool = True,
    ) -> None:
        if spawner is None:
            raise TypeError("SessionPool needs a spawner")
        if on_exit not in ("leave", "stop"):
            raise ValueError("on_exit must be 'leave' or 'stop'")
        self.discovery: Discovery = as_discovery(discovery)
        self.eligibility: Eligibility = as_eligibility(eligibility or Always())
        self.spawner = spawner
        self.health = health or NoHealthCheck()
        self.restart_policy = restart or RestartPolicy()
        # A state directory the pool made for itself is nobody else's: it is
        # removed when the pool stops its children (or is dropped unused).
        self._temp_state: _TempState | None = None
        if state_dir is None:
            import tempfile
            import weakref

            state_dir = tempfile.mkdtemp(prefix="wirepool-")
            self._temp_state = _TempState(Path(state_dir))
            weakref.finalize(self, self._temp_state.remove_if_unused)
        self.state = StateDir(Path(state_dir).absolute())
        # joined once: two joins per session were a tenth of a first pass's
        # work on each new session (before its first spawn)
        self._records_dir = self.state.records_dir
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
        self.restart_on_change = bool(restart_on_change)
        self.control = control
        self.pool_id = self.state.pool_id
        self._reaper = OrphanReaper(self.pool_id, self.stop_grace)
        self._policy = _session.Policy(
            restart=self.restart_policy,
            grace=self.grace,
            stop_grace=self.stop_grace,
            failures_before_restart=self.health.failures_before_restart,
        )

        self._slots: dict[str, _Slot] = {}
        self._fd_owner: dict[int, str] = {}
        #: the pids of the workers watched now, kept by _watch and _unwatch
        self._worker_pids: set[int] = set()
        self._commands: deque[Command] = deque()
        self._listeners: list[Callable[[Event], None]] = []
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None
        self._loop_ident: int | None = None  # the thread running the loop
        # The threads starting a batch of children while the loop thread
        # waits for them (see _SessionShell._start_due): an event callback
        # they call acts as on the loop thread.
        self._acting_for_loop: set[int] = set()
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._watcher: Watcher | None = None
        self._stopping = False
        self._draining = False  # the children are being stopped; the loop ends after
        self._drain_kill_at = self._drain_give_up_at = 0.0
        self._drain_killed = False
        self._drain_orphans_at: float | None = None
        self._drain_blind: set[str] = set()
        self._stop_children_on_exit: bool | None = None
        self._next_rescan = 0.0
        self._rescan_is_net = False  # the next timer rescan is only a net under inotify
        # A full pass added watches: look once more after this pass's plan
        # is carried out (see _DiscoveryDriver._discover_all).
        self._look_again = False
        # The first full pass's watches are made after its plan (see
        # _DiscoveryDriver._absorb): pending until then; deferred once.
        self._watches_after_plan = False
        self._first_watches_done = False
        self._plan_cpu = 0.0  # the last full plan that started nothing, in CPU seconds
        self._next_sweep = 0.0
        self._spawn_deferred_until: float | None = None
        # When each session asked to decide again (a backoff ending, a grace
        # period, a SIGKILL due): at that time, it alone is planned.
        self._wakes: dict[str, float] = {}
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
        self._signal_wakeup = False  # run_forever: signals write to the wake pipe
        # Orphan work, done once per pass for every exit since (a scan of
        # our children is O(children)): sessions whose child exited, and
        # whether a SIGCHLD asked for a reap.
        self._orphans_of: set[str] = set()
        self._reap_due = False
        # run_forever: our own children are found by SIGCHLD and waitid,
        # with no exit fd each (see _SessionShell._reap_children); pid ->
        # session name of each such child.
        self._reap_by_signal = False
        self._signal_reaped: dict[int, str] = {}
        self._reap_more = False  # more exits may wait: look again after the pass
        self._last_orphan_scan = float("-inf")  # real time
        self._orphan_scan_due: float | None = None  # the pool's clock
        self._snapshot = Snapshot({}, os.getpid(), False, 0.0)
        self._generation = 0
        self._errors_seen: set[str] = set()
        self._degraded: dict[str, str] = {}
        self._wall_offset: float | None = None
        self._status_dirty = True
        #: session -> its child's kill deadline, for those that have one
        #: (kept by ``_Shell._update``)
        self._kill_due: dict[str, float] = {}
        #: what each session's status was when the part files were last
        #: written (None: write every part next time)
        self._parts_written: dict[str, SessionStatus] | None = None
        self._started_at = 0.0
        self._loop_error: BaseException | None = None
        # True while run_forever starts up: a stop signal then unwinds it
        self._starting = False
        self._ready = threading.Event()
        self._probes = ProbeThreads(self._nudge)
        # None unless metrics are served: the loop then pays nothing for them.
        self.instruments: Instruments | None = None
        self._loop_woke: float | None = None
        self._spawn_waits = 0  # due spawns the spawn-rate limit held back
        # The plan's children started and not yet stepped "spawned" (see
        # _SessionShell._reconcile): an operator's verb steps them first.
        self._unstepped: list[_Slot] = []

    def _on_loop(self) -> bool:
        """Whether this thread runs the loop's code: the loop thread, or a
        spawn thread while the loop thread waits for it."""
        ident = threading.get_ident()
        return ident == self._loop_ident or ident in self._acting_for_loop

    def _post(self, command: Command) -> None:
        self._commands.append(command)
        self._poke()

    def _nudge(self) -> None:
        """Wake the loop for work it finds by itself (a probe's result):
        a byte other than zero, as a signal's number is, so the wake-up
        does not plan every session (a poke does: see _Loop._drain_wake)."""
        with self._poke_lock:
            if self._wake_w is not None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\x01")

    def _poke(self) -> None:
        # Under the lock: shutdown closes the pipe, and a write racing it
        # could land in whatever fd reuses that number.
        with self._poke_lock:
            if self._wake_w is not None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    def _emit(
        self,
        kind: EventKind,
        session: Session | None = None,
        pid: int | None = None,
        reason: str = "",
        *,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        event = Event(
            kind.value,  # a plain string in what embedders and --json see
            session.display_name if session else None,
            pid,
            reason,
            self.clock.time(),
            dict(data or {}),
            session.name if session else None,
        )
        self._status_dirty = True
        logger.bind(event=event.kind, session=event.session, pid=pid).info(
            "{}{}{}{}",
            event.kind,
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

    def _net_after(self, now: float, cpu: float) -> float:
        """When a net begun at thread CPU time ``cpu`` may come again: once
        what it cost, the full plan it asks for included (most of a sweep
        at ten thousand), is :data:`NET_CPU_SHARE` of a core."""
        return now + (time.thread_time() - cpu + self._plan_cpu) / NET_CPU_SHARE

    def _record_path(self, name: str) -> Path:
        return self._records_dir / f"{safe_filename(name)}.json"


#: the share of a core each net under the events may take: the timer's full
#: rescan while inotify watches everything, and the sweep under the exits.
#: A pass over ten thousand services costs ~1-2 s of CPU, so a bigger pool's
#: nets come further apart than ``watched_rescan_interval`` and
#: ``sweep_interval``
NET_CPU_SHARE = 0.0002


def _raise_fd_limit() -> None:
    """Every child costs the supervisor two descriptors, its pidfd and its
    log's (held by the log keeper), and a start through Popen a pipe: the
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
