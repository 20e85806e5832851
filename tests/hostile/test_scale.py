"""Scale, quick: 500 services discovered, 100 running, in the normal suite.
The full figures (5 000 / 1 000, RSS, CPU) come from benchmarks/bench_scale.py
and are recorded in docs/SCALE.md."""

from __future__ import annotations

import signal
import time

from conftest import Services, Tracker
from wirepool_servicedir import servicedir_spec

from wirepool._proc import signal_group
from wirepool.cli import read_status

N, RUNNING = 500, 100


def test_many_sessions_the_loop_stays_responsive(services: Services, tracker: Tracker) -> None:
    for i in range(N):
        d = services.add(f"s{i:03d}")
        if i >= RUNNING:
            (d / "down").touch()
    spec = servicedir_spec(services.root, on_exit="stop", grace=1.0, stop_grace=3.0)
    with tracker.attach(spec.pool("servicedir", durable=False)) as pool:
        snap = pool.wait_until(
            lambda s: len(s) == N and len(s.in_state("running")) == RUNNING, timeout=120
        )
        # a status query, as `wirepool status` makes it, answers promptly
        started = time.monotonic()
        doc = read_status(spec, "servicedir")
        took = time.monotonic() - started
        assert len(doc["sessions"]) == N and doc["supervisor"]["alive"]
        assert took < 10, took  # generous: ~0.05 s on an idle 2-core box
        # the loop still reacts at once: a killed child is replaced
        victim = snap["s000"]
        assert victim.identity is not None
        tracker.pids.add(victim.identity.pid)
        assert signal_group(victim.identity, signal.SIGKILL)
        pool.wait_until(
            lambda s: s["s000"].state == "running" and s["s000"].pid != victim.pid, timeout=30
        )
        (services.root / "s001" / "down").touch()
        pool.wait_until(lambda s: s["s001"].state in ("ineligible", "stopped"), timeout=30)
        assert len(pool.snapshot().in_state("running")) == RUNNING - 1
