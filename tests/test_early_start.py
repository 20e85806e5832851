"""At start-up, a big pool's first sessions start while the rest are still
being checked (``wirepool._discover._DiscoveryDriver._check_all``): with
real children, no session starts before its own check, every one starts
exactly once, and a stop that comes in the middle of that first pass
stops every child it had started."""

from __future__ import annotations

import threading
from pathlib import Path

from wirepool import (
    CommandSpawner,
    Eligibility,
    Session,
    SessionPool,
    StaticDiscovery,
    Verdict,
    Worker,
)
from wirepool._discover import _EARLY_CHUNK
from wirepool.testing import ProcessLedger, assert_no_leaks

COUNT = 3 * _EARLY_CHUNK  # two early chunks (16, 32): the last is cut short


class _Journal:
    """Checks and spawns, in the order they were made (the checks on the
    loop thread, the spawns on the spawn threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, str]] = []

    def add(self, what: str, name: str) -> None:
        with self.lock:
            self.entries.append((what, name))

    def of(self, what: str) -> list[str]:
        with self.lock:
            return [name for kind, name in self.entries if kind == what]

    def index(self, what: str, name: str) -> int:
        with self.lock:
            return self.entries.index((what, name))


class _Checking(Eligibility):
    def __init__(self, journal: _Journal) -> None:
        self.journal = journal

    def check(self, session: Session, now: float) -> Verdict:
        self.journal.add("check", session.name)
        return Verdict(True, "yes")


class _Spawning(CommandSpawner):
    def __init__(self, journal: _Journal) -> None:
        super().__init__(["sleep", "1000"])
        self.journal = journal

    def spawn(self, session: Session) -> Worker:
        self.journal.add("spawn", session.name)
        return super().spawn(session)


def _pool(tmp_path: Path, journal: _Journal, eligibility: Eligibility) -> SessionPool:
    homes = [tmp_path / f"s{i:02d}" for i in range(COUNT)]
    for home in homes:
        home.mkdir()
    return SessionPool(
        StaticDiscovery([Session(home.name, home) for home in homes]),
        eligibility=eligibility,
        spawner=_Spawning(journal),
        state_dir=tmp_path / "state",
    )


def test_the_first_sessions_start_before_the_rest_are_checked_and_each_once(
    tmp_path: Path,
) -> None:
    journal = _Journal()
    ledger = ProcessLedger()
    pool = ledger.watch(_pool(tmp_path, journal, _Checking(journal)))
    try:
        pool.start()
        pool.wait_until(lambda s: len(s.in_state("running")) == COUNT, timeout=60)
        checks, spawns = journal.of("check"), journal.of("spawn")
        assert sorted(spawns) == sorted(set(checks)) and len(spawns) == COUNT
        # the first chunk started before the last session was checked...
        last_check = journal.index("check", checks[COUNT - 1])
        early = [n for n in spawns if journal.index("spawn", n) < last_check]
        assert len(early) >= _EARLY_CHUNK, early
        # ...and no session before its own check
        for name in spawns:
            assert journal.index("check", name) < journal.index("spawn", name), name
    finally:
        pool.stop(children=True, timeout=60)
    assert_no_leaks(ledger)


class _StopMidway(_Checking):
    """Asks the pool to stop (from the loop thread, as an event callback
    may) once the first chunk has started, and the pass goes on."""

    def __init__(self, journal: _Journal) -> None:
        super().__init__(journal)
        self.pool: SessionPool | None = None
        self.started_before_stop: list[str] = []

    def check(self, session: Session, now: float) -> Verdict:
        spawns = self.journal.of("spawn")
        if len(spawns) >= _EARLY_CHUNK and not self.started_before_stop:
            assert self.pool is not None
            self.started_before_stop = spawns
            self.pool.stop(children=True)  # posted: the loop acts after this pass
        return super().check(session, now)


def test_a_stop_during_the_first_pass_stops_the_children_it_had_started(
    tmp_path: Path,
) -> None:
    journal = _Journal()
    eligibility = _StopMidway(journal)
    ledger = ProcessLedger()
    pool = eligibility.pool = ledger.watch(_pool(tmp_path, journal, eligibility))
    try:
        pool.start()
        assert len(eligibility.started_before_stop) >= _EARLY_CHUNK
    finally:
        pool.stop(children=True, timeout=60)
    # the children started before the stop are among those the ledger saw
    assert len(ledger.owned) >= len(eligibility.started_before_stop)
    assert_no_leaks(ledger)
