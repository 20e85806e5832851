"""Resuming where the last supervisor of a state directory stopped: its
records name the children to adopt (only with this pool's markers are they
ours to signal) and where each backoff stood; children whose records were
lost are found by their marker variables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from wirepool import _session
from wirepool._core import _describe, _Slot
from wirepool._log import logger
from wirepool._proc import ProcessIdentity, create_time
from wirepool._records import SessionRecord, recorded_worker
from wirepool._session import ChildLost, Vanished
from wirepool._shell import _SessionShell
from wirepool._store import quarantine
from wirepool._types import Session
from wirepool.restart import Streak
from wirepool.spawn import (
    POOL_MARKER,
    SESSION_MARKER,
    AdoptedWorker,
    find_children,
    held_files,
)


class _Recovery(_SessionShell):
    """See :mod:`wirepool._recovery`."""

    def _recover(self) -> None:
        """Resume where the last supervisor of this state dir stopped."""
        now, wall = self.clock.monotonic(), self.clock.time()
        claimed: dict[str, ProcessIdentity] = {}
        for path in self.state.iter_records():
            try:
                rec = SessionRecord.read(path)
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
            session = rec.session
            if session.name in self._slots:
                continue
            streak = Streak(rec.streak, now if rec.streak else None)
            next_start = 0.0
            if rec.next_start_at is not None:
                # Never longer than the policy owes this streak: the wall
                # clock may have jumped back between the two supervisors (or
                # the record lies), and a day-long "backoff" is no backoff.
                try:
                    owed = self.restart_policy.delay_for(streak, now)
                except Exception:  # a user's wait strategy: keep the record's word
                    owed = math.inf
                next_start = now + min(max(0.0, rec.next_start_at - wall), owed)
            slot = self._slots[session.name] = _Slot(
                session=session,
                record_path=path,
                state=_session.restore(
                    reason=rec.reason,
                    streak=streak,
                    restarts=rec.restarts,
                    started=rec.worker is not None,
                    failed=rec.failed,
                    last_exit=rec.last_exit,
                    last_exit_at=rec.last_exit_at,
                    next_start=next_start,
                    down=rec.down,
                    down_since=rec.down_since,
                ),
                log_path=rec.log_path,
                last_output=rec.last_output,
            )
            if rec.worker is None:
                continue
            worker = recorded_worker(rec, self.pool_id, self.state.markers_dir)
            why = "left running by the previous supervisor"
            if worker is not None and worker.unverified:
                why += "; it does not carry this pool's markers, so it is watched, never signalled"
                logger.warning("session {!r}: recorded pid {} {}", session.name, worker.pid, why)
            if worker is not None and self._adopt(
                slot,
                worker.identity,
                owned=worker.owned,
                started_at=worker.started_at,
                why=why,
            ):
                claimed[session.name] = worker.identity
                slot.started_from = rec.worker.fingerprint
            else:
                self._apply(slot, ChildLost(), now)
        self._recover_by_marker(claimed)
        self._recover_unproven()

    def _recover_by_marker(self, claimed: Mapping[str, ProcessIdentity]) -> None:
        """Find our children whose records were lost, by their marker env."""
        leaders = find_children(self.pool_id, self.state.markers_dir)
        for name, candidates in leaders.items():
            idents = [i for i in candidates if claimed.get(name) != i]
            if not idents:
                continue
            slot = self._slot_of_child(name)
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

    def _slot_of_child(self, name: str) -> _Slot:
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot(
                session=Session(name=name, home=Path("/")),
                record_path=self._record_path(name),
            )
            # Known to us only by its child: gone from discovery until
            # it says otherwise, with the grace period that gives.
            self._apply(slot, Vanished(), self.clock.monotonic())
        return slot

    def _recover_unproven(self) -> None:
        """Children that shed every mark -- rewrote the memory their
        environment is read from *and* closed the identity file they were
        given -- whose record was lost too: their identity file still
        names them (pid, start time, boot).  That is not proof enough to
        signal a process, but starting a second daemon beside one would
        double it silently; so each is watched, never signalled, and its
        session says why (it takes over when that process exits)."""
        for ident, env in held_files(self.state.markers_dir).values():
            name = env.get(SESSION_MARKER)
            if env.get(POOL_MARKER) != self.pool_id or name is None:
                continue
            slot = self._slots.get(name)
            if slot is not None and slot.worker is not None:
                if slot.worker.identity != ident:
                    logger.warning(
                        "session {!r}: pid {} was started for it too and still runs, "
                        "without its markers; it may be a duplicate (not signalled)",
                        name,
                        ident.pid,
                    )
                continue
            why = (
                f"pid {ident.pid} was started for it by an earlier supervisor and runs "
                "without the pool's markers or identity file (it rewrote its environment "
                "and closed its descriptors): watched, never signalled, so as not to "
                "start a second one"
            )
            logger.warning("session {!r}: {}", name, why)
            self._adopt(
                self._slot_of_child(name),
                ident,
                owned=False,
                why=why,
                started_at=create_time(ident.pid),
            )
