"""What the pool writes for others: each session's record (what a
successor adopts by), the in-memory snapshot that ``wait_until`` and the
event stream see, and ``status.json``, with the degraded flags a failing
write raises.  Records are written at once; snapshot and file are throttled,
since both are O(sessions) and a burst of exits must not pay that per exit.
"""

from __future__ import annotations

import binascii
import functools
import os
import time
from collections.abc import Iterable
from typing import Any

from wirepool._core import _describe, _PoolCore, _Slot
from wirepool._format import format_wall
from wirepool._log import logger
from wirepool._proc import identity_of
from wirepool._records import SessionRecord, WorkerRecord
from wirepool._session import Phase
from wirepool._status import SessionStatus, Snapshot, status_document
from wirepool._store import STATUS_PARTS, STATUS_PARTS_ABOVE, atomic_write_json
from wirepool._version import version


class _Publisher(_PoolCore):
    """See :mod:`wirepool._publish`."""

    def _publish(self, *, force: bool = False) -> None:
        """Write changed records now (they are what a successor adopts by);
        rebuild the snapshot and ``status.json`` at most every
        ``publish_interval`` -- both are O(sessions), and a burst of exits
        in a big pool must not pay that once per exit."""
        wrote = failed = False
        # While the children are being stopped, each record would be written
        # twice (stopping, then stopped): the final publish writes them once.
        for slot in () if self._draining else self._slots.values():
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
        # The pause scales with the pool (the work does, ~1 us a session):
        # a small pool publishes at once, a thousand sessions at most ten
        # times a second, ten thousand once a second.
        real = time.monotonic()
        size = len(self._slots)
        pause = min(self.publish_interval * max(1.0, size / 1000), size * 1e-4)
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
        # Past 2 500 sessions a write costs more (the parts that changed
        # are encoded whole, ~40 ms at ten thousand), and is spread out.
        scale = max(1.0, len(self._slots) / 2500)
        wait = self._last_status_write + self.status_interval * scale - real
        if not force and wait > 0:
            due = self.clock.monotonic() + wait
            if self._publish_due is None or due < self._publish_due:
                self._publish_due = due
            return
        self._status_file_dirty = False
        self._last_status_write = real
        self._write_status(self._snapshot)

    def _build_snapshot(self, *, count: bool = True, only: Iterable[str] | None = None) -> Snapshot:
        """The snapshot of every session, or of ``only`` these (a live status
        of one session must not pay for a thousand).  A session's status is
        built again only when something it is built from was replaced (its
        state, worker, session, health, errors, log or last output: each is
        immutable, or a string or number, and replaced on change): a snapshot
        of ten thousand sessions after one exit costs a pass of identity
        checks, not ten thousand statuses."""
        now, wall = self.clock.monotonic(), self.clock.time()
        # A backoff's end is shown on the wall clock: a step of it (or of
        # the mock clock) must show, though the session did not change.
        offset = round(wall - now, 2)
        sessions: dict[str, SessionStatus] = {}
        slots = (
            self._slots.items()
            if only is None
            else [(k, self._slots[k]) for k in only if k in self._slots]
        )
        for name, slot in slots:
            source = (
                slot.state,
                slot.worker,
                slot.session,
                slot.health,
                slot.scan_error,
                slot.existing_error,
                slot.spawn_failures,
                slot.log_path,
                slot.last_output,
                slot.outdated,
                offset if slot.state.phase is Phase.BACKOFF else None,
            )
            shown = slot.shown
            if shown is None or source != slot.shown_from:  # `is` first, item by item
                shown = slot.shown = self._session_status(name, slot, now, wall)
                slot.shown_from = source
            sessions[name] = shown
        if count:  # a live status answer is not a new published snapshot
            self._generation += 1
        return Snapshot(
            sessions, os.getpid(), not self._stopping, wall, self._generation, dict(self._degraded)
        )

    def _session_status(self, name: str, slot: _Slot, now: float, wall: float) -> SessionStatus:
        worker, st = slot.worker, slot.state
        live = (Phase.RUNNING, Phase.ADOPTED, Phase.STOPPING)
        next_start_at = None
        if worker is None and st.phase is Phase.BACKOFF:
            next_start_at = wall + max(0.0, st.next_start - now)
        state = st.phase
        if worker is not None and state not in live:  # not yet decided on
            adopted = st.running is not None and st.running.adopted
            state = Phase.ADOPTED if adopted else Phase.RUNNING
        return SessionStatus(
            name=name,
            display_name=slot.session.display_name,
            home=str(slot.session.home),
            cwd=str(slot.session.cwd) if slot.session.cwd else None,
            state=state.value,  # a plain string in the public snapshot
            reason=self._reason(slot, state),
            identity=worker.identity if worker else None,
            owned=worker.owned if worker else True,
            started_at=worker.started_at if worker else None,
            restarts=st.restarts,
            spawn_failures=slot.spawn_failures,
            streak=st.streak.failures,
            last_exit=st.last_exit,
            last_exit_at=st.last_exit_at,
            next_start_at=next_start_at,
            health=slot.health,
            log_path=str(slot.log_path) if slot.log_path else None,
            last_output=slot.last_output,
            attrs=slot.session.attrs,
            outdated=slot.outdated,
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
        reason = slot.state.verdict.reason if state == "running" else slot.state.reason
        if state == Phase.DOWN and slot.state.down_since is not None:
            reason = f"{reason} since {format_wall(slot.state.down_since)}"
        extra = [slot.existing_error] if state == "running" else []
        if slot.scan_error and slot.scan_error != reason:
            extra.append(f"{slot.scan_error}; keeping its last state")
        if slot.outdated:
            extra.append("started from an older configuration")
        return "; ".join([reason, *(e for e in extra if e)])

    def _write_record(self, slot: _Slot) -> bool:
        if slot.record_path is None:
            return True
        now, wall = self.clock.monotonic(), self.clock.time()
        worker, st = slot.worker, slot.state
        record = SessionRecord(
            session=slot.session,
            worker=None
            if worker is None
            else WorkerRecord(worker.identity, worker.owned, worker.started_at, slot.started_from),
            streak=st.streak.failures,
            next_start_at=wall + (st.next_start - now) if st.next_start > now else None,
            restarts=st.restarts,
            failed=st.failed,
            # what holds it back is what the next supervisor must resume
            reason=st.held if st.held and (st.failed or st.next_start > now) else st.reason,
            last_exit=st.last_exit,
            last_exit_at=st.last_exit_at,
            down=st.down,
            down_since=st.down_since,
            log_path=slot.log_path,
            last_output=slot.last_output,
        )
        try:
            # fsync only a `failed` or `down` mark: they are the facts in a
            # record that matter after a power loss (no child survives one, so
            # identities are moot, and a lost backoff streak only restarts
            # sooner).  The rename keeps a record whole through a crash of
            # the supervisor either way.  Two fsyncs per crash-loop cycle
            # were a sixth of the supervisor's CPU.
            record.write(slot.record_path, durable=self.durable and (st.failed or st.down))
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

    def _status_doc(self, snap: Snapshot, sessions: Iterable[SessionStatus]) -> dict[str, Any]:
        """The status document of ``sessions`` (schema ``wirepool.status/1``):
        what status.json holds, and what the control socket's ``status``
        answers from memory."""
        me = identity_of(os.getpid())
        doc = status_document(
            plugin=self.plugin,
            state_dir=str(self.state.root),
            sessions=sessions,
            supervisor={
                "pid": os.getpid(),
                "process_start": me.start if me else None,
                "started_at": self._started_at,
                "running": snap.running,
                "version": version(),
            },
            updated_at=snap.taken_at,
            degraded=snap.degraded.values(),
        )
        if self.status_extra is not None:
            try:
                self.status_extra(doc)
            except Exception as exc:
                self._log_once(f"extra:{exc}", "plugin status extra failed: {}", exc)
        return doc

    def _write_status(self, snap: Snapshot) -> None:
        # A big pool's sessions go to part files, and only the parts whose
        # sessions changed are written (see StateDir.read_status); a hook
        # that may edit every session sees the whole document, as before.
        parted = len(snap.sessions) > STATUS_PARTS_ABOVE and self.status_extra is None
        doc = self._status_doc(snap, () if parted else snap.sessions.values())
        try:
            if parted:
                self._write_status_parts(snap)
                doc["session_parts"] = STATUS_PARTS
            else:
                self._parts_written = None
            atomic_write_json(self.state.status_path, doc, durable=False, indent=None, strict=True)
        except OSError as exc:
            self._parts_written = None  # which parts are whole is unknown: all again
            self._status_dirty = True
            self._log_once(f"status:{exc.errno}", "cannot write status.json ({})", _describe(exc))
            self._set_degraded("status", f"cannot write status.json: {_describe(exc)}")
            self._retry_publish()
        else:
            if "status" in self._degraded:
                self._set_degraded("status", None)
                # what was just written still says "cannot write": once more
                self._publish_due = self.clock.monotonic()

    def _write_status_parts(self, snap: Snapshot) -> None:
        """Write the part files whose sessions changed since the last
        write (every part the first time): a session's status is a new
        object exactly when it changed (``_build_snapshot``)."""
        written, sessions = self._parts_written, snap.sessions
        if written is None:
            changed: set[int] = set(range(STATUS_PARTS))
        else:
            changed = {_part_of(n) for n, s in sessions.items() if written.get(n) is not s}
            changed.update(_part_of(n) for n in written.keys() - sessions.keys())
        if not changed:
            return
        members: dict[int, list[SessionStatus]] = {part: [] for part in changed}
        for name, status in sessions.items():
            part = _part_of(name)
            if part in members:
                members[part].append(status)
        self.state.status_parts_dir.mkdir(mode=0o700, exist_ok=True)
        for part, statuses in sorted(members.items()):
            atomic_write_json(
                self.state.status_part_path(part),
                {"sessions": [s.to_json() for s in statuses]},
                durable=False,
                indent=None,
                strict=True,
            )
        self._parts_written = dict(sessions)

    def _final_publish(self, stopped_children: bool) -> None:
        for slot in self._slots.values():
            if slot.worker is not None and not stopped_children:
                slot.dirty = True  # records keep the identity for the next one
            elif not slot.dirty and not SessionRecord.whole(slot.record_path):
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


@functools.lru_cache(maxsize=1 << 16)
def _part_of(name: str) -> int:
    """Which status part file holds session ``name``: fixed by its name."""
    return binascii.crc32(name.encode("utf-8", "surrogatepass")) % STATUS_PARTS
