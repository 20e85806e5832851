"""The pool-wide spawn limit paces restarts, never a session's first start.
Real processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import tenacity

from wirepool import (
    CommandSpawner,
    RestartPolicy,
    Session,
    SessionPool,
    SpawnRateLimit,
    StaticDiscovery,
)
from wirepool.testing import ProcessLedger, assert_no_leaks


# 16: one plan's batch of starts and restarts is made by the spawn threads
# (wirepool._shell._start_due), which stop taking more at the limit as well
@pytest.mark.parametrize("count", [6, 16])
def test_first_starts_are_not_paced_restarts_are(tmp_path: Path, count: int) -> None:
    sessions = [Session(f"s{i}", tmp_path) for i in range(count)]
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery(sessions),
            spawner=CommandSpawner(["sleep", "1000"]),
            # one token, then one an hour: only the limit can hold a spawn back
            spawn_limit=SpawnRateLimit(rate=1 / 3600, burst=1),
            restart=RestartPolicy(wait=tenacity.wait_fixed(0)),
            durable=False,
        )
    )
    try:
        pool.start()
        # all come up although the bucket holds one token
        pool.wait_until(lambda s: len(s.in_state("running")) == count, timeout=30)
        pids = pool.snapshot().pids()
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        # one restart takes the token; the others wait for the next (an hour)
        pool.wait_until(lambda s: len(s.in_state("running")) == 1, timeout=30)
        time.sleep(1.0)
        snap = pool.snapshot()
        assert len(snap.in_state("running")) == 1
        restarted = snap.in_state("running")[0]
        assert restarted.pid != pids[restarted.name]
        assert all(s.pid is None for s in snap.sessions.values() if s.name != restarted.name)
    finally:
        pool.stop()
    assert_no_leaks(ledger)
