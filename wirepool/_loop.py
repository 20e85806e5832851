"""The loop: one ``selectors`` call on every child's exit fd, the watch fd
and the wake pipe, with a timeout equal to the next deadline; the upkeep
(sweep), and the stop -- the children stopped through the same machine
transitions as any other stop, then the lock released.
"""

from __future__ import annotations

import contextlib
import math
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable

from wirepool._control import ControlServer
from wirepool._core import (
    OperateCommand,
    ReapCommand,
    RescanCommand,
    StartupInterrupted,
    StopCommand,
    _raise_fd_limit,
    _Slot,
)
from wirepool._events import EventKind
from wirepool._log import logger
from wirepool._log import release as release_logs
from wirepool._operate import _Operator
from wirepool._proc import identity_of
from wirepool._session import KillDue, LetGo, StopRequested
from wirepool._store import acquire_lock, atomic_write_json
from wirepool._version import version
from wirepool._watch import Watcher
from wirepool.spawn import POOL_MARKER


class _Loop(_Operator):
    """See :mod:`wirepool._loop`."""

    def _open(self) -> None:
        if self._temp_state is not None:
            self._temp_state.used = True
        _raise_fd_limit()
        self.state.ensure()
        self._lock_fd = acquire_lock(self.state)
        try:
            self._open_locked()
        except BaseException:
            with contextlib.suppress(Exception):
                self._close_sources()
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
                "version": version(),
                "plugin": self.plugin,
                "argv": sys.argv,
            },
            # Never fsynced: it names the process holding the lock, so after
            # a power loss it is stale whatever it says (readers check the pid
            # and start time, or ask the lock), and an fsync before the first
            # child is a disk flush on the start's path (~0.25 ms on this
            # machine's ext4, more on a busy disk).
            durable=False,
            strict=True,
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
        self._open_control()

    def _run(self) -> None:
        self._loop_ident = threading.get_ident()
        try:
            self._emit(EventKind.SUPERVISOR_STARTED, data={"state_dir": str(self.state.root)})
            self._recover()
            self._discover_pass()
            self._starting = False  # a signal from now on is the loop's to act on
            while not self._stopping:
                self._iterate()
        except StartupInterrupted as exc:
            self._loop_error = exc
            logger.info("{} during start-up; stopping", exc)
        except BaseException as exc:  # the loop must not die silently
            self._loop_error = exc
            logger.opt(exception=exc).error("wirepool loop crashed: {}", exc)
        finally:
            self._starting = False  # a signal during the shutdown must not cut it short
            self._ready.set()
            with contextlib.suppress(BaseException):
                self._shutdown()

    def _iterate(self) -> None:
        try:
            if self._draining:
                self._drain_step()
            else:
                self._pass()
        except Exception as exc:  # never die of one bad pass; say so and go on
            self._log_once(f"pass:{type(exc).__name__}:{exc}", "pool pass failed: {}", exc)
            logger.opt(exception=exc).debug("pool pass failure")
            time.sleep(0.2)
        try:
            if not self._draining:  # the stop ends with one final publish
                self._publish()
        except Exception as exc:  # a plugin's status value, say: say so, go on
            self._log_once(f"publish:{type(exc).__name__}:{exc}", "publishing failed: {}", exc)
        # The lines held while the first children started: after the records
        # that name them are written, as loguru's import takes ~40 ms, and
        # before the wait, as a pool that started no child holds none.
        release_logs()
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
        instruments = self.instruments
        if instruments is None:
            ready = self._selector.select(timeout)
        else:
            began = time.monotonic()
            if self._loop_woke is not None:
                instruments.loop_lag(began - self._loop_woke)
            ready = self._selector.select(timeout)
            # Late for a deadline counts from the deadline, not from when
            # the oversleeping select returned.
            woke = time.monotonic()
            self._loop_woke = woke if timeout is None else min(woke, began + timeout)
        for key, mask in ready:
            tag = key.data
            if isinstance(tag, ControlServer):
                tag.on_ready(key.fileobj, mask)
            elif tag == "wake":
                # A poke (an API call, the clock) plans everything; a signal
                # alone does not -- every child's exit raises a SIGCHLD, and
                # its exit fd plans that one session -- its command does.
                if self._drain_wake():
                    self._replan = True
            elif tag == "watch":
                self._on_watch_event()
            else:
                self._on_fd_ready(int(key.fd))
        self._handle_commands()

    def _timeout(self) -> float | None:
        if self._commands or self._reap_more:
            return 0.0  # posted before the wake pipe could say so; exits to look for
        if self._draining:
            # The stop runs on real time (a test's mock clock may stand
            # still), and looks again five times a second: only while
            # children are being stopped.
            return 0.2
        now = self.clock.monotonic()
        if self._rediscover or self._probes.has_finished():
            return 0.0
        deadlines = [self._next_rescan, self._next_sweep]
        orphan_kill = self._reaper.next_deadline()
        if orphan_kill is not None:
            deadlines.append(orphan_kill)
        if self._wakes:
            deadlines.append(min(self._wakes.values()))
        if self._spawn_deferred_until is not None:
            deadlines.append(self._spawn_deferred_until)
        if self._publish_due is not None:
            deadlines.append(self._publish_due)
        if self._orphan_scan_due is not None:
            deadlines.append(self._orphan_scan_due)
        if self._kill_due:
            deadlines.append(min(self._kill_due.values()))
        if self.health.interval is not None:
            for slot in self._slots.values():
                if slot.next_probe is not None and slot.worker is not None:
                    deadlines.append(slot.next_probe)
        timeout = max(0.0, min(deadlines) - now)
        overdue_at = self._probe_overdue_at()
        if overdue_at is not None:
            # a probe's deadline is real time: the thread is stuck in it
            timeout = min(timeout, max(0.0, overdue_at - time.monotonic()))
        return timeout

    def _pass(self) -> None:
        now = self.clock.monotonic()
        try:
            if now >= self._next_rescan:
                self._discover_pass()
                self._replan = True
            elif self._rediscover:
                self._rediscover_pass()
            if now >= self._next_sweep:
                self._sweep()
                self._replan = True
            self._escalate(now)
            if self._reaper.pending:
                self._reaper.escalate(now)
            self._after_wall_step(self.clock.time() - now, now)
            self._probe(now)
            if self._spawn_deferred_until is not None and now >= self._spawn_deferred_until:
                self._replan = True
            if self._wakes:
                # A backoff ending concerns its own session only: a full plan
                # per expiry cost O(sessions) each, in a big pool many a second.
                due = [name for name, at in self._wakes.items() if now >= at]
                for name in due:
                    del self._wakes[name]
                self._plan_only.update(due)
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
        finally:
            # however the pass went (a plan or a sweep that raised): the first
            # pass's watches must not wait for the next full pass
            self._watch_after_plan()
        if self._look_again:
            self._look_again = False
            self._next_rescan = min(self._next_rescan, now)
        self._upkeep_orphans(now)

    def _upkeep_orphans(self, now: float) -> None:
        """After the restarts, not before them: stop what the exited children
        left outside their process groups, and reap whatever exited -- one
        scan of our children for every exit and SIGCHLD since the last."""
        if self._reap_by_signal:
            # _reap_children reaps an orphan's zombie as it meets it.
            self._reap_due = False
        if not (self._orphans_of or self._reap_due):
            return
        # The scan is a walk over all our children (~1.5 us each, 15 ms at
        # ten thousand): at most one per 0.15 ms a child, which keeps a
        # steady stream of exits under 1 % of a core, and is at once in a
        # pool of a few hundred.
        real = time.monotonic()
        wait = self._last_orphan_scan + len(self._worker_pids) * 1.5e-4 - real
        if wait > 0:
            self._orphan_scan_due = self.clock.monotonic() + wait
            return
        self._orphan_scan_due = None
        self._last_orphan_scan = real
        known = self._worker_pids
        names, self._orphans_of = self._orphans_of, set()
        self._reap_due = False
        found = self._reaper.scan(known)  # one look at our children for both
        self._reaper.reap(known, found)
        if names:
            self._reaper.stop(known, now, names, found)

    def _drain_wake(self) -> bool:
        """Empty the wake pipe; whether it held a poke (a zero byte: the
        kernel writes a signal's number there, ``_poke`` a zero)."""
        assert self._wake_r is not None
        poked = False
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._wake_r, 4096):
                poked = poked or 0 in chunk
        return poked

    def _handle_commands(self) -> None:
        reap = False
        while self._commands:
            command = self._commands.popleft()
            if not isinstance(command, ReapCommand):
                self._replan = True
            match command:
                case StopCommand(children):
                    if children is not None:
                        self._stop_children_on_exit = children
                    if not self._draining:
                        self._end()
                case RescanCommand():
                    self._next_rescan = 0.0
                case OperateCommand(op, request, done):
                    if done.set_running_or_notify_cancel():
                        try:
                            done.set_result(self._operate(op, request))
                        except Exception as exc:  # OpError, or a bug: the caller hears it
                            done.set_exception(exc)
                case ReapCommand():
                    self._reap_due = True
                    reap = True
        if not self._signal_reaped or self._draining:
            # No child of ours left to look for; or the stop, whose steps
            # ask each child by its pid: a walk over all children per exit
            # made stopping ten thousand quadratic (8.5 s).
            self._reap_more = False
        elif reap or self._reap_more:
            # The first exit now, the rest after its restart (see _reap_children)
            budget = None if self._reap_more else 1
            self._reap_more = True  # should it raise (a strategy's error): again next time
            self._reap_more = self._reap_children(budget=budget)

    def _sweep(self) -> None:
        """The net under the event path: poll a worker with no watched exit
        fd (once a second until it has one), and have the spawner look at
        live logs (it copies nothing here: a background thread does)."""
        now = self.clock.monotonic()
        cpu = time.thread_time()
        # Past 5 000 children the net is spread thinner (60 s at 10 000): it
        # costs about 4 us a child, and an idle pool's CPU is mostly this.
        children = sum(1 for slot in self._slots.values() if slot.worker is not None)
        self._next_sweep = now + self.sweep_interval * max(1.0, children / 5000)
        polling = False  # a child with no exit to wait for is looked at each second
        if self._signal_reaped:
            self._reap_children()  # one system call: the net under a lost SIGCHLD
        for slot in list(self._slots.values()):
            worker = slot.worker
            if worker is None:
                continue
            fd = worker.fileno()
            # A watched exit fd is level-triggered in the selector, and a
            # child found by SIGCHLD is looked for above: neither exit can
            # be missed, and asking the kernel again for each of ten
            # thousand children was most of an idle pool's CPU.
            if (fd is None or fd not in self._fd_owner) and worker.pid not in self._signal_reaped:
                status = worker.poll()
                if status is not None:
                    self._on_exit(slot, status)
                    continue
                self._next_sweep = min(self._next_sweep, self.clock.monotonic() + 1.0)
                polling = True
            if worker.owned:
                with contextlib.suppress(Exception):
                    self.spawner.maintain(slot.session)
        if not polling:
            self._next_sweep = max(self._next_sweep, self._net_after(now, cpu))

    def _children_go(self) -> bool:
        """Whether the children are stopped with the pool: as asked, else the
        ``on_exit`` default, and always when they cannot outlive it."""
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
        return stop_children

    def _end(self) -> None:
        """The loop ends now, or once the children are stopped."""
        if self._children_go() and any(s.worker is not None for s in self._slots.values()):
            self._begin_drain()
        else:
            self._stopping = True

    def _begin_drain(self) -> None:
        """Stop every child through the loop, by the same path as any other
        stop: each session's machine asks for SIGTERM, the loop sees the
        exits on their fds, and SIGKILL follows the grace (the machine's
        KillDue).  No discovery, plan or spawn from now on."""
        self._draining = True
        real, now = time.monotonic(), self.clock.monotonic()
        self._drain_kill_at = real + self.stop_grace
        self._drain_give_up_at = real + self.stop_grace + 5.0
        self._drain_killed = False
        self._drain_orphans_at = None
        self._drain_blind = {
            name
            for name, slot in self._slots.items()
            if slot.worker is not None and slot.worker.fileno() not in self._fd_owner
        }
        watch = self._watcher.fileno() if self._watcher is not None else None
        if watch is not None and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(watch)
        for slot in list(self._slots.values()):
            if slot.worker is not None:
                event = StopRequested if slot.worker.owned else LetGo
                self._apply(slot, event("supervisor stopping"), now)

    def _drain_step(self) -> None:
        real, now = time.monotonic(), self.clock.monotonic()
        if real >= self._drain_give_up_at:
            # First, before anything that could fail: the stop is bounded.
            left = [s.worker.pid for s in self._slots.values() if s.worker is not None]
            left += self._reaper.orphans(set(left))
            if left:
                logger.error(
                    "{} process(es) outlived SIGKILL ({}); stopping anyway", len(left), left
                )
            self._finish_drain()
            return
        due = real >= self._drain_kill_at and not self._drain_killed
        # Exits arrive on their fds; a pass over every child only once the
        # grace is over (a pass per wake-up made stopping 1 000 quadratic).
        names = list(self._slots) if due else [n for n in self._drain_blind if n in self._slots]
        for slot in [self._slots[n] for n in names if self._slots[n].worker is not None]:
            try:
                self._drain_one(slot, now, due)
            except Exception as exc:  # one child's trouble must not hold the stop
                self._log_once(f"drain:{exc}", "stopping {!r}: {}", slot.session.name, exc)
        if due:
            self._drain_killed = True
        if any(s.worker is not None for s in self._slots.values()):
            return
        # Then what they left behind outside their groups (wirepool._reaper):
        # SIGTERM now, SIGKILL once the children's grace is over (and at
        # least a second after the SIGTERM), all within the same bound.
        reaper = self._reaper
        if self._drain_orphans_at is None:
            self._drain_orphans_at = max(self._drain_kill_at, real + 1.0)
        reaper.stop(set(), real)
        reaper.reap(set())
        if real >= self._drain_orphans_at:
            reaper.escalate(math.inf)
        if not reaper.orphans(set()):
            self._finish_drain()

    def _drain_one(self, slot: _Slot, now: float, due: bool) -> None:
        worker = slot.worker
        assert worker is not None
        # The blind (no exit fd) are polled; once the grace is over,
        # everyone, in case an exit event was lost.
        if due or worker.fileno() not in self._fd_owner:
            status = worker.poll()
            if status is not None:
                self._on_exit(slot, status)
                return
        if not due:
            return
        run = slot.state.running
        if run is not None and run.kill_at is not None:
            self._apply(slot, KillDue(), max(now, run.kill_at))
        elif worker.owned:
            # Its machine never asked for the stop (a bug, if it happens):
            # the stop still ends every child of ours, as it always did.
            logger.error(
                "session {!r}: pid {} not stopping; SIGKILL", slot.session.name, worker.pid
            )
            worker.kill()

    def _finish_drain(self) -> None:
        self._draining = False
        self._stopping = True

    def _shutdown(self) -> None:
        """Each step runs even if an earlier one failed: the lock must be
        released and the children's fate settled whatever went wrong."""
        stop_children = self._children_go()
        if stop_children and any(s.worker is not None for s in self._slots.values()):
            # The loop ended without stopping them (it crashed, or start-up
            # was cut short): the same drain, here.
            try:
                if not self._draining:
                    self._begin_drain()
                while self._draining:
                    self._iterate()
            except BaseException as exc:
                logger.opt(exception=exc).error("shutdown: could not stop the children: {}", exc)
        self._stopping = True
        steps: list[tuple[str, Callable[[], None]]] = [
            ("write the final state", lambda: self._final_publish(stop_children)),
            ("detach from the children", self._detach_all),
            ("stop keeping the logs", self.spawner.close),
            ("let the probe threads end", self._probes.close),
            (
                "announce the stop",
                lambda: self._emit(
                    EventKind.SUPERVISOR_STOPPED,
                    data={"children": "stopped" if stop_children else "left"},
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
        self._refuse_pending()
        if self._temp_state is not None and stop_children:
            self._temp_state.remove()
        with self._snap_cond:
            self._snap_cond.notify_all()

    def _refuse_pending(self) -> None:
        """An operator verb posted as the loop ended: its caller hears so
        now, not when its wait times out."""
        while self._commands:
            command = self._commands.popleft()
            if isinstance(command, OperateCommand) and command.done.set_running_or_notify_cancel():
                command.done.set_exception(RuntimeError("the pool stopped"))

    def _detach_all(self) -> None:
        for slot in self._slots.values():
            if slot.worker is not None:
                slot.worker.detach()

    def _close_sources(self) -> None:
        self._close_control()
        if self._signal_wakeup:
            # Before the pipe is closed: the kernel would go on writing to
            # its number, reused by then for who knows what.
            signal.set_wakeup_fd(-1)
            self._signal_wakeup = False
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
