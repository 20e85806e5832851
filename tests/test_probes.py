"""Health probes run off the loop: a probe that hangs delays only its own
session, and counts as a failed probe once it overruns its deadline.
Real children (``sleep``), real hangs (a probe blocked on an event)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from conftest import Tracker

from wirepool import (
    CommandSpawner,
    HealthCheck,
    ProcessIdentity,
    Session,
    SessionPool,
    StaticDiscovery,
    Verdict,
)


class Hangs(HealthCheck):
    """Sessions named ``hang*`` never answer until ``release`` is set."""

    def __init__(self, interval: float, *, timeout: float | None = None, failures: int = 3):
        self.interval = interval
        self.timeout = timeout
        self.failures_before_restart = failures
        self.release = threading.Event()
        self.entered: set[str] = set()

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        if session.name.startswith("hang"):
            self.entered.add(session.name)
            self.release.wait(120)
            return Verdict(True, "answered at last")
        return Verdict(True, "fine")


def pool_of(tmp_path: Path, names: list[str], health: HealthCheck, tracker: Tracker) -> SessionPool:
    sessions = []
    for name in names:
        (tmp_path / name).mkdir()
        sessions.append(Session(name, tmp_path / name))
    return tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            None,
            CommandSpawner(["sleep", "1000"]),
            health,
            state_dir=tmp_path / "state",
            durable=False,
            stop_grace=1.0,
        )
    )


def test_hanging_probes_do_not_hold_another_sessions_restart(
    tmp_path: Path, tracker: Tracker
) -> None:
    # 20 probes hang for good (no deadline within the test): in the loop,
    # the first of them held the pool, and nothing else was restarted.
    health = Hangs(interval=0.2, timeout=600, failures=1000)
    hung = [f"hang{i}" for i in range(20)]
    pool = pool_of(tmp_path, [*hung, "web"], health, tracker)
    try:
        with pool:
            snap = pool.wait_until(lambda s: len(s.in_state("running")) == 21)
            pool.wait_until(lambda s: len(health.entered) == 20, timeout=30)
            victim = snap["web"].pid
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            after = pool.wait_until(
                lambda s: s["web"].state == "running" and s["web"].pid not in (None, victim),
                timeout=30,
            )
            assert after["web"].restarts == 1
            # ...and the healthy session is still probed meanwhile
            pool.wait_until(lambda s: (s["web"].health or "").startswith("ok: fine"))
            assert all(after[name].pid == snap[name].pid for name in hung)
    finally:
        health.release.set()


def test_a_probe_that_overruns_its_deadline_is_a_failed_probe(
    tmp_path: Path, tracker: Tracker
) -> None:
    health = Hangs(interval=0.3, timeout=0.5, failures=2)
    pool = pool_of(tmp_path, ["hang", "ok"], health, tracker)
    try:
        with pool:
            first = pool.wait_until(lambda s: s["hang"].state == "running")["hang"].pid
            snap = pool.wait_until(
                lambda s: s["hang"].state == "running" and s["hang"].pid != first, timeout=30
            )
            unhealthy = tracker.kinds("hang", "unhealthy")
            assert unhealthy and "health probe" in unhealthy[0].reason
            assert snap["ok"].restarts == 0 and tracker.kinds("ok", "unhealthy") == []
    finally:
        health.release.set()
