"""Clock faults: the wall clock steps backwards and forwards under a running
pool (MockClock.jump_wall) while monotonic time stands still or moves on.
Backoff and stop deadlines are monotonic and do not move; health verdicts,
which compare wall-clock heartbeats, give the daemons time to beat on the
new clock instead of restarting all of them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import tenacity
from conftest import Tracker

from wirepool import (
    CommandSpawner,
    HeartbeatCheck,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
)
from wirepool.testing import MockClock

DAY = 86_400.0


def _pool(tmp_path: Path, tracker: Tracker, clock: MockClock, **kw: object) -> SessionPool:
    return tracker.attach(
        SessionPool(
            StaticDiscovery([Session("x", tmp_path)]),
            clock=clock,
            state_dir=tmp_path / "state",
            durable=False,
            stop_grace=2.0,
            **kw,  # type: ignore[arg-type]
        )
    )


def test_mock_clock_wall_jumps_leave_monotonic_alone() -> None:
    clock = MockClock()
    mono, wall = clock.monotonic(), clock.time()
    clock.jump_wall(-DAY)
    assert clock.monotonic() == mono and clock.time() == wall - DAY
    clock.jump_wall(3 * DAY)
    assert clock.monotonic() == mono and clock.time() == wall + 2 * DAY


def test_regression_backoff_ignores_wall_steps_and_status_follows_them(
    tmp_path: Path, tracker: Tracker
) -> None:
    # Backoff never moved (monotonic); the times status showed did not
    # follow the step until something else changed.
    clock = MockClock()
    policy = RestartPolicy(wait=tenacity.wait_fixed(100), rapid_window=10)
    with _pool(tmp_path, tracker, clock, spawner=CommandSpawner(["false"]), restart=policy) as pool:
        pool.wait_until(lambda s: "x" in s and s["x"].streak == 1)
        clock.jump_wall(-DAY)  # back: the retry must not wait a day longer
        time.sleep(0.3)
        clock.jump_wall(2 * DAY)  # forward: nor happen at once
        time.sleep(0.3)
        assert len(tracker.kinds("x", "spawned")) == 1
        snap = pool.wait_until(lambda s: s.taken_at >= clock.time())
        # shown on the new wall clock, still 100 s away
        assert snap["x"].next_start_at == pytest.approx(clock.time() + 100)
        clock.advance(99)
        time.sleep(0.3)
        assert len(tracker.kinds("x", "spawned")) == 1
        clock.advance(1)
        pool.wait_until(lambda s: s["x"].streak == 2)


@pytest.mark.parametrize("step", [DAY, -DAY])
def test_regression_wall_step_neither_restarts_healthy_daemons_nor_hides_a_hang(
    tmp_path: Path, tracker: Tracker, step: float
) -> None:
    # Forward, every heartbeat looked a day old at the next probe and every
    # healthy daemon was restarted; back, the start time and the last beat
    # lay in the future and a hung daemon went unseen for a day.
    clock = MockClock(wall_offset=time.time())
    beat = tmp_path / "heartbeat"

    def touch() -> None:  # the daemon beats, on whatever the wall clock says
        beat.touch()
        os.utime(beat, (clock.time(), clock.time()))

    touch()
    health = HeartbeatCheck("heartbeat", max_age=40, interval=10)
    spawner = CommandSpawner(["sleep", "1000"])
    with _pool(tmp_path, tracker, clock, spawner=spawner, health=health) as pool:
        snap = pool.wait_until(lambda s: "x" in s and s["x"].state == "running")
        pid = snap["x"].pid
        for _ in range(3):
            clock.advance(10)
            touch()
        clock.jump_wall(step)
        for _ in range(6):  # probes keep coming; the daemon keeps beating
            clock.advance(10)
            time.sleep(0.1)
            touch()
        pool.wait_until(lambda s: (s["x"].health or "").startswith("ok"))
        assert pool.snapshot()["x"].pid == pid
        assert not tracker.kinds("x", "unhealthy")
        # it stops beating: still caught, within max_age plus one interval
        for _ in range(6):
            clock.advance(10)
            time.sleep(0.1)
        snap = pool.wait_until(lambda s: bool(tracker.kinds("x", "unhealthy")), timeout=20)
        assert "hung" in tracker.kinds("x", "unhealthy")[0].reason
