"""The per-session shell: the one place that turns what happens to a
session (a decision to make, a spawn, an exit, a probe, a deadline) into an
event for its pure state machine (:mod:`wirepool._session`), and performs the
actions the machine returns: spawn, terminate, kill, release, forget, wake,
emit.  It never decides a session's phase or reason itself.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wirepool import _exec, _session
from wirepool._core import _describe, _Slot
from wirepool._log import logger
from wirepool._log import release_after as release_logs_after
from wirepool._logs import exit_mark, format_mark, write_mark
from wirepool._probes import ProbeJob
from wirepool._proc import ProcessIdentity, is_alive
from wirepool._publish import _Publisher
from wirepool._session import (
    Adopted,
    AdoptFailed,
    AlreadyGone,
    Deferred,
    Emit,
    Exited,
    Forget,
    Kill,
    KillDue,
    PlanNow,
    Probed,
    Release,
    Restart,
    SessionState,
    Spawn,
    Spawned,
    SpawnFailed,
    Terminate,
    WakeAt,
    WallStepped,
)
from wirepool._tail import last_output
from wirepool._types import ExitStatus, Session, Verdict
from wirepool.spawn import (
    AdoptedWorker,
    CommandSpawner,
    Worker,
    _SpawnedWorker,
    forget_child,
)

#: spawns between one and its "spawned" step (see _SessionShell._reconcile).
#: A burst's bookkeeping (the identity read, its file finished, the event,
#: the log line, the log handed to its keeper) comes after the batch's
#: spawns: the children get the cores first, and a pool of up to this many
#: is spawned whole before any of it (the last of 200 came ~23 ms sooner on
#: two cores; 32 before).  No descriptor is held per pending spawn (see
#: wirepool.spawn._HeldFile), so the batch costs each later child's vfork no
#: bigger table.
_SPAWN_BATCH = 256
#: seconds after its first spawn a bring-up's log lines may be held
#: (wirepool._log.release_after): a bring-up of 200 is over by then here
_LOGS_HELD_FOR = 0.5
#: how many threads start a batch of children (see _SessionShell._start_due),
#: and from how many due spawns they are used
_SPAWN_THREADS = 2
_THREADED_FROM = 8


class _SessionShell(_Publisher):
    """See :mod:`wirepool._shell`."""

    def _reconcile(self, now: float, only: set[str] | None = None) -> None:
        """Let each session decide, for every session or ``only`` these (the
        others' inputs have not changed since they last decided), then run
        the due spawns in the plan's order as far as the spawn-rate limit
        allows."""
        cpu = time.thread_time()
        if only is None:
            # Every session says again when it next needs a wake-up.  A
            # partial pass keeps the others' (at worst a stale one: an early
            # wake-up that decides for everyone).
            self._wakes.clear()  # every session says again when it needs one
            self._spawn_deferred_until = None
            slots = self._slots
        else:
            slots = {name: self._slots[name] for name in only if name in self._slots}
        decided = _session.plan({name: s.state for name, s in slots.items()}, now, self._policy)
        for name, slot in list(slots.items()):  # a Forget drops a slot
            self._update(slot, decided.states[name])
            self._perform(slot, decided.actions.get(name, ()), now)
        if only is None and not decided.spawn:
            # what a net's pass costs besides itself: the full plan it asks for
            self._plan_cpu = time.thread_time() - cpu
        # Each spawn's "spawned" step waits for the rest of its batch (see
        # _finish_spawns, _SPAWN_BATCH): by then the child has exec'd, and
        # reading its identity costs no wait.
        spawned: list[_Slot] = []
        self._unstepped = spawned
        try:
            self._start_due(decided.spawn, now, spawned)
        finally:
            self._finish_spawns(spawned, now)

    def _start_due(self, names: Sequence[str], now: float, spawned: list[_Slot]) -> None:
        """Start the sessions ``names``, in order, until the rate limit
        says wait: the rest then wait for its next token.

        Many at once (a pool coming up, a mass restart) are started by
        :data:`_SPAWN_THREADS` threads taking turns under one lock, each
        letting it go only while libc waits for its child's exec
        (:func:`wirepool._exec.hand_off`): the engine's code never runs in
        two threads at once, and one spawn's Python overlaps another
        child's exec.  This thread waits for them, and an event callback
        they call acts as on it (``SessionPool._on_loop``)."""
        # A name twice would be started twice: the second turn can come
        # while the first one's child execs, before the slot has a worker.
        due = iter(dict.fromkeys(names))
        limited = False

        def take() -> _Slot | None:
            for name in due:
                slot = self._slots.get(name)
                # held down since the plan (an event callback's verb): not now
                if slot is not None and slot.worker is None and not slot.state.down:
                    return slot
            return None

        def work() -> None:
            nonlocal limited
            while not limited and (slot := take()) is not None:
                if not self._start(slot, now, spawned):
                    limited = True
                elif len(spawned) >= _SPAWN_BATCH:
                    self._finish_spawns(spawned, now)

        if (
            len(names) < _THREADED_FROM
            or not _exec.AVAILABLE
            or not isinstance(self.spawner, CommandSpawner)  # only its spawns hand off
        ):
            work()
        else:
            lock = threading.Lock()
            failures: list[BaseException] = []

            def thread_main() -> None:
                nonlocal limited
                _exec.hand_off(lock)
                ident = threading.get_ident()
                self._acting_for_loop.add(ident)
                try:
                    with lock:
                        work()
                except BaseException as exc:
                    failures.append(exc)
                    limited = True  # the others stop taking more
                finally:
                    self._acting_for_loop.discard(ident)
                    _exec.hand_off(None)

            threads = [
                threading.Thread(target=thread_main, name="wirepool-spawn", daemon=True)
                for _ in range(_SPAWN_THREADS)
            ]
            started, no_thread = 0, None
            try:
                for thread in threads:
                    thread.start()
                    started += 1
            except RuntimeError as exc:
                # No thread to be had (a pids limit full of children): the
                # ones that started do it all, or, with none, this thread.
                no_thread = exc
            except BaseException as exc:
                # one that starts after this finds nothing to take
                limited = True
                failures.insert(0, exc)
            for thread in threads[:started]:
                # No signal handler raises here (only during start-up, which
                # ends before the first plan), and not one line of the
                # engine may run beside them.
                thread.join()
            if failures:
                raise failures[0]
            if no_thread is not None:  # said once they are done: nothing runs beside this
                self._log_once(
                    f"spawn-threads:{no_thread}",
                    "cannot start a thread to start children with ({}); {}",
                    no_thread,
                    "using fewer" if started else "starting them on the loop thread",
                )
            if not started:
                work()
        if limited:
            for later in due:
                if later in self._slots:
                    self._spawn_waits += 1
                    self._apply(self._slots[later], Deferred(), now)

    def _finish_spawns(self, spawned: list[_Slot], now: float) -> None:
        """Step the machines of the sessions just spawned for (their
        "started" event carries the child's start time, read here)."""
        failed: Exception | None = None
        while spawned:
            slot = spawned.pop(0)
            worker = slot.worker
            if worker is None:
                self.spawner._drop_file_for_observe(slot.session)
                continue
            try:
                self._observe(slot, worker)
                self._apply(
                    slot,
                    Spawned(),
                    now,
                    data={"log": str(worker.log_path or ""), "start": worker.identity.start},
                )
            except Exception as exc:
                # The rest of the batch (up to 255) is stepped all the same;
                # the first failure is raised after, as the pass's.
                failed = failed or exc
        if failed is not None:
            raise failed

    def _apply(
        self,
        slot: _Slot,
        event: _session.Event,
        now: float,
        *,
        pid: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Step the session's machine with ``event`` and perform what it
        asks.  ``pid`` and ``data`` complete the events it emits with what
        only the shell knows (the pid of a child already let go, a log
        path)."""
        state, actions = _session.step(slot.state, event, now, self._policy)
        self._update(slot, state)
        self._perform(slot, actions, now, pid=pid, data=data)

    def _update(self, slot: _Slot, state: SessionState) -> None:
        if state != slot.state:
            slot.state = state
            slot.dirty = True
            # The children with a kill deadline, kept as states change: the
            # loop's every pass and every wait looked through all sessions
            # for them, ~5 ms a wake-up at ten thousand.
            run = state.running
            if run is not None and run.kill_at is not None:
                self._kill_due[slot.session.name] = run.kill_at
            else:
                self._kill_due.pop(slot.session.name, None)

    def _perform(
        self,
        slot: _Slot,
        actions: Iterable[_session.Action],
        now: float,
        *,
        pid: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        name = slot.session.name
        for action in actions:
            match action:
                case Emit(kind, reason, extra):
                    who = pid if pid is not None else (slot.worker.pid if slot.worker else None)
                    merged = {**(extra or {}), **(data or {})}
                    self._emit(kind, slot.session, who, reason, data=merged or None)
                case Spawn():
                    pass  # ordered pool-wide: see _reconcile
                case Terminate():
                    if slot.worker is not None and not slot.worker.terminate():
                        # Already gone: the exit event (or the sweep) finishes it.
                        self._apply(slot, AlreadyGone(), now)
                case Kill():
                    if slot.worker is not None:
                        logger.warning(
                            "session {!r}: pid {} ignored SIGTERM for {:.0f}s; sending SIGKILL",
                            name,
                            slot.worker.pid,
                            self.stop_grace,
                        )
                        slot.worker.kill()
                case Release():
                    self._unwatch(slot)
                case Forget():
                    self._forget(slot)
                case WakeAt(at):
                    self._wakes[name] = min(at, self._wakes.get(name, at))
                case PlanNow():
                    self._plan_only.add(name)

    def _start(self, slot: _Slot, now: float, spawned: list[_Slot]) -> bool:
        """Start (or adopt) a child for ``slot``; a spawned one is added to
        ``spawned`` for :meth:`_finish_spawns`.  False: the rate limit is hit
        and the remaining spawns wait for the next token."""
        session = slot.session
        found = self._existing(slot)
        if found is not None:
            self._adopt(slot, found, owned=False, why="a live daemon already serves it")
            return True
        # A session's first try is not paced: the limit is against a mass
        # failure becoming a fork storm, which the tries after it make (a
        # restart, or a spawn again after one that failed); ten thousand
        # sessions coming up were held to 200 a second after the first 1 000.
        tried = slot.state.starts or slot.spawn_failures
        if tried and not self.spawn_limit.try_acquire(now):
            self._spawn_deferred_until = self.spawn_limit.next_token_at(now)
            self._spawn_waits += 1
            self._apply(slot, Deferred(), now)
            return False
        # Before the child runs: a line after the spawn would land after
        # what a child that fails at once already said.
        log = self.spawner.log_path(session)
        self._mark_log(session, log, "starting", for_spawn=True)
        started_from = self._fingerprint(session)
        try:
            worker = self.spawner.spawn(session)
        except Exception as exc:
            reason = f"spawn failed: {_describe(exc)}"
            slot.spawn_failures += 1
            self._mark_log(session, log, reason)
            self._apply(slot, SpawnFailed(reason), now)
            self._log_once(
                f"spawn:{session.name}:{reason}", "session {!r}: {}", session.name, reason
            )
            return True
        finally:
            self.spawner._drop_log_for_spawn()  # one its spawn did not take
        # its log kept to size from its "spawned" step: after the burst
        self._watch(slot, worker, observe=False)
        slot.started_from = started_from
        # held while the plan is carried out, for at most this long
        release_logs_after(_LOGS_HELD_FOR)
        spawned.append(slot)
        return True

    def _fingerprint(self, session: Session) -> str | None:
        try:
            return self.spawner.fingerprint(session)
        except Exception as exc:  # "cannot tell": nothing changes
            self._log_once(
                f"fingerprint:{session.name}:{exc}",
                "session {!r}: cannot fingerprint its configuration: {}",
                session.name,
                _describe(exc),
            )
            return None

    def _compare_config(self, slot: _Slot, now: float) -> None:
        """Whether the child runs from the session's current configuration;
        a restart if not, when asked for (``restart_on_change``)."""
        run = slot.state.running
        if (
            slot.worker is None
            or slot.started_from is None
            or run is None
            or run.stop_reason is not None
            or slot.scan_error is not None  # what is there now does not parse
        ):
            return
        current = self._fingerprint(slot.session)
        if current is None:
            return
        outdated = current != slot.started_from
        if outdated != slot.outdated:
            slot.outdated, slot.dirty, self._status_dirty = outdated, True, True
        if outdated and self.restart_on_change and run.owned:
            self._apply(slot, Restart("configuration changed; restarting"), now)

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
        """Watch a live process as the session's child.  False if it died
        in between (the session then decides again at once)."""
        worker = AdoptedWorker(
            ident,
            owned=owned,
            started_at=started_at,
            log_path=self.spawner.log_path(slot.session) if owned else None,
        )
        now = self.clock.monotonic()
        if worker.fileno() is None and not is_alive(ident):
            self._replan = True
            self._apply(slot, AdoptFailed(), now)
            return False
        self._watch(slot, worker)
        self._mark_log(slot.session, worker.log_path, f"adopted pid {ident.pid} ({why})")
        self._apply(slot, Adopted(owned, why), now, data={"start": ident.start})
        return True

    def _watch(self, slot: _Slot, worker: Worker, *, observe: bool = True) -> None:
        """Watch ``worker`` as ``slot``'s child.  ``observe=False``: its log
        is handed to the spawner's keeper later, at its "spawned" step."""
        slot.worker = worker
        self._worker_pids.add(worker.pid)
        if worker.log_path is not None:
            slot.log_path = worker.log_path  # still shown once the child is gone
        slot.health = None
        slot.dirty = True
        if self.health.interval is not None:
            slot.next_probe = self.clock.monotonic() + self.health.interval
        if self._reap_by_signal and isinstance(worker, _SpawnedWorker):
            # Our own child, in a process whose SIGCHLD is ours: its exit is
            # found by _reap_children, and it costs no descriptor.  Every
            # descriptor we hold is copied into each child's table and
            # closed there before the exec, with the parent waiting (vfork):
            # a pidfd per child was ~1.5 ms a spawn at 5 000 children, 3 at
            # 10 000, more than the spawn itself.
            worker.close()
            self._signal_reaped[worker.pid] = slot.session.name
        fd = worker.fileno()
        if fd is not None and self._selector is not None:
            self._selector.register(fd, selectors.EVENT_READ, slot.session.name)
            self._fd_owner[fd] = slot.session.name
        if observe:
            self._observe(slot, worker)

    def _observe(self, slot: _Slot, worker: Worker) -> None:
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
        self._signal_reaped.pop(worker.pid, None)
        with contextlib.suppress(Exception):
            self.spawner.unobserve(slot.session, worker)
        worker.close()
        slot.worker = None
        self._worker_pids.discard(worker.pid)
        slot.next_probe = None
        slot.probe = None  # what it finds of a gone child is ignored
        slot.started_from, slot.outdated = None, False
        slot.dirty = True
        return worker

    def _escalate(self, now: float) -> None:
        for name in [name for name, at in self._kill_due.items() if now >= at]:
            slot = self._slots.get(name)
            run = None if slot is None else slot.state.running
            if slot is None or run is None or run.kill_at is None:
                self._kill_due.pop(name, None)  # forgotten, or its stop is over
                continue
            if slot.worker is None or now < run.kill_at:
                continue
            status = slot.worker.poll()
            if status is not None:
                self._on_exit(slot, status)
                continue
            self._replan = True
            self._apply(slot, KillDue(), now)

    def _forget(self, slot: _Slot) -> None:
        self._slots.pop(slot.session.name, None)
        if slot.worker is not None:
            self._unwatch(slot)
        if slot.record_path is not None:
            with contextlib.suppress(OSError):
                slot.record_path.unlink()
        self._status_dirty = True

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

    def _reap_children(self, budget: int | None = None) -> bool:
        """After a SIGCHLD: finish every child of ours that exited (at most
        ``budget`` of them), oldest first, by ``waitid(P_ALL, WNOWAIT)`` --
        which names one waitable child without reaping it -- instead of a
        descriptor per child.  An orphan's zombie found on the way is reaped
        (ours as the subreaper); a zombie that is another's to reap (a
        worker watched by its exit fd, a child of another thread of this
        process) would be named again and again, so then the children are
        asked one by one.  True: the budget ran out, more may wait.

        Each call is a walk of the kernel over all our children (~0.2 ms a
        thousand): the loop takes the first exit alone and looks for more
        after its restart, so a restart waits for one walk, not two."""
        limit = len(self._signal_reaped) + 64 if budget is None else budget
        for _ in range(limit):  # bounded, come what may
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return False
            if found is None:
                return False
            pid = found.si_pid
            name = self._signal_reaped.get(pid)
            slot = self._slots.get(name) if name is not None else None
            if slot is not None and slot.worker is not None and slot.worker.pid == pid:
                status = slot.worker.poll()
                if status is None:  # waitable a moment ago: someone else reaped it
                    self._reap_children_by_pid()
                    return False
                self._on_exit(slot, status)
            elif pid not in self._worker_pids and self._reaper.is_orphan(pid):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                self._reap_children_by_pid()
                return False
        return True

    def _reap_children_by_pid(self) -> None:
        for pid, name in list(self._signal_reaped.items()):
            slot = self._slots.get(name)
            if slot is None or slot.worker is None or slot.worker.pid != pid:
                continue
            # ChildProcessError: reaped by someone else; poll() says so
            with contextlib.suppress(ChildProcessError):
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    continue
            status = slot.worker.poll()
            if status is not None:
                self._on_exit(slot, status)

    def _on_exit(self, slot: _Slot, status: ExitStatus) -> None:
        now = self.clock.monotonic()
        run = slot.state.running
        worker = self._unwatch(slot)
        assert worker is not None
        forget_child(self.state.markers_dir, worker.pid)
        if worker.owned and self._reaper.enabled:
            # What it left behind outside its process group goes with it,
            # after the restart: see _Loop._upkeep_orphans.
            self._orphans_of.add(slot.session.name)
        if run is not None and run.spawned_at is not None:
            lived: float | None = now - run.spawned_at
        else:
            lived = max(0.0, self.clock.time() - worker.started_at)
        data = None
        if worker.log_path is not None and self.spawner.output_to_log:
            # Read before the exit line goes in: the run's last words, for
            # status and the record (a later supervisor shows them too).
            slot.last_output = self._last_output(slot.session, worker.log_path)
            self._mark_log(slot.session, worker.log_path, exit_mark(worker.pid, status))
            data = {"last_output": list(slot.last_output)}
        self._apply(slot, Exited(status, lived, self.clock.time()), now, pid=worker.pid, data=data)

    def _mark_log(
        self, session: Session, path: Path | None, text: str, *, for_spawn: bool = False
    ) -> None:
        """One line of the supervisor's in the session's log (see
        :func:`wirepool._logs.write_mark`), for spawners whose children
        write there.  A few system calls on the loop thread; a log that
        cannot take it (a full disk, a refused directory) is said once and
        changes nothing else.  ``for_spawn``: the line before a spawn, whose
        opening of the log the spawn takes over (see
        :meth:`wirepool.spawn.Spawner._open_log_with_mark`)."""
        if path is None or not self.spawner.output_to_log:
            return
        try:
            if for_spawn:
                line = format_mark(text, self.clock.time())
                self.spawner._open_log_with_mark(session, path, line)
            else:
                write_mark(path, text, self.clock.time())
        except Exception as exc:
            self._log_once(
                f"mark:{path.parent}:{getattr(exc, 'errno', type(exc).__name__)}",
                "session {!r}: cannot write to its log {} ({}); the child is unaffected",
                session.name,
                path,
                _describe(exc),
            )

    def _last_output(self, session: Session, path: Path) -> tuple[str, ...]:
        try:
            return tuple(last_output(path))
        except FileNotFoundError:  # removed by someone: nothing to show
            return ()
        except Exception as exc:
            self._log_once(
                f"tail:{path.parent}:{getattr(exc, 'errno', type(exc).__name__)}",
                "session {!r}: cannot read its log {} ({})",
                session.name,
                path,
                _describe(exc),
            )
            return ()

    def _probe(self, now: float) -> None:
        """Hand the due probes to their threads, and act on what they
        found: results that came in, and probes that overran their
        deadline (wirepool._probes)."""
        if self.health.interval is None:
            return
        for done in self._probes.finished():
            self._probed(done, now)
        deadline = self.health.deadline
        real = time.monotonic()
        wall = self.clock.time()
        for slot in self._slots.values():
            worker, job, run = slot.worker, slot.probe, slot.state.running
            if worker is None or run is None or run.stop_reason is not None:
                continue  # no child, or one being stopped: no verdict matters
            if (
                job is not None
                and not job.overdue
                and deadline is not None
                and job.started is not None
                and real - job.started > deadline
            ):
                job.overdue = True
                self._judge(slot, now, False, f"health probe did not answer within {deadline:g}s")
                if slot.next_probe is not None:
                    slot.next_probe = max(slot.next_probe, now + self.health.interval)
            if slot.next_probe is None or now < slot.next_probe:
                continue
            slot.next_probe = now + self.health.interval
            if job is not None and job.identity == worker.identity:
                if job.overdue and job.started is not None:
                    # Still stuck: another interval without an answer is
                    # another failed probe, as a timeout each time would be.
                    hung = real - job.started
                    self._judge(slot, now, False, f"health probe hung for {hung:.0f}s")
                continue  # one probe of a child at a time
            probe = functools.partial(self.health.probe, slot.session, worker.identity, wall)
            slot.probe = ProbeJob(slot.session.name, worker.identity, probe)
            if not self._probes.submit(slot.probe):
                self._log_once(
                    "probe-threads",
                    "{} health probe threads are busy (probes hang): probes wait for one",
                    self._probes.threads,
                )

    def _probe_overdue_at(self) -> float | None:
        """When the earliest running probe overruns its deadline
        (``time.monotonic()``), or None."""
        deadline = self.health.deadline
        if deadline is None:
            return None
        started = [
            s.probe.started
            for s in self._slots.values()
            if s.probe is not None and s.probe.started is not None and not s.probe.overdue
        ]
        return min(started) + deadline if started else None

    def _probed(self, job: ProbeJob, now: float) -> None:
        slot = self._slots.get(job.session)
        if slot is None or slot.probe is not job:
            return  # a session gone, or a newer probe of a new child
        slot.probe = None
        if job.overdue or slot.worker is None or slot.worker.identity != job.identity:
            return  # already counted as failed; or its child is gone
        run = slot.state.running
        if run is not None and run.stop_reason is not None:
            return
        if job.error is not None:
            self._log_once(
                f"probe:{job.session}:{job.error}",
                "session {!r}: health probe failed to run: {}",
                job.session,
                job.error,
            )
            return
        verdict = job.verdict
        if not isinstance(verdict, Verdict):
            self._log_once(
                f"probe-type:{type(verdict).__name__}",
                "health probe returned {!r}, not a Verdict: ignored",
                verdict,
            )
            return
        self._judge(slot, now, verdict.eligible, verdict.reason)

    def _judge(self, slot: _Slot, now: float, healthy: bool, reason: str) -> None:
        previous = slot.health
        slot.health = ("ok: " if healthy else "unhealthy: ") + reason
        if previous is None or previous[:3] != slot.health[:3]:
            # only a flip is news; "last sync 8s ago" -> "9s" is not,
            # and must not cost a status write per probe
            self._status_dirty = True
        self._plan_only.add(slot.session.name)
        self._apply(slot, Probed(healthy, reason), now)

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
            self._apply(slot, WallStepped(), now)
            if slot.next_probe is not None:
                slot.next_probe = now + 4 * interval
