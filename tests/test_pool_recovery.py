"""Regression tests from the engine review: recovery after a supervisor
restart must change nothing it cannot confirm, and must find every child."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import tenacity
from conftest import Tracker, alive, wait_for

from wirepool import (
    CallableSpawner,
    CommandSpawner,
    RestartPolicy,
    Session,
    SessionPool,
    Snapshot,
    StaticDiscovery,
)


def running(snap: Snapshot, *names: str) -> bool:
    return all(n in snap and snap[n].state in ("running", "adopted") for n in names)


def leave_running(
    tmp_path: Path, tracker: Tracker, spawner: object, names: tuple[str, ...] = ("a", "b")
) -> dict[str, int]:
    """A first pool that starts children and exits leaving them running."""
    sessions = [Session(n, tmp_path) for n in names]
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            None,
            spawner,  # type: ignore[arg-type]
            state_dir=tmp_path / "state",
            on_exit="leave",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, *names), timeout=30)
    pids = {n: snap[n].pid for n in names}
    assert all(p is not None and alive(p) for p in pids.values())
    return pids  # type: ignore[return-value]


def test_first_discovery_failure_after_a_restart_stops_nothing(
    tmp_path: Path, tracker: Tracker
) -> None:
    pids = leave_running(tmp_path, tracker, CommandSpawner(["sleep", "1000"]))
    calls = {"n": 0}

    def flaky_discovery() -> list[Session]:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError("sessions root unreadable for a moment")
        return [Session("a", tmp_path), Session("b", tmp_path)]

    pool = tracker.attach(
        SessionPool(
            flaky_discovery,
            None,
            CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            grace=0.2,
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "a", "b"))
        assert {n: snap[n].pid for n in ("a", "b")} == pids
        pool.rescan()
        wait_for(lambda: calls["n"] >= 2)
        time.sleep(0.6)  # well past the grace period
        assert all(alive(p) for p in pids.values())
        assert (tmp_path / "state/sessions/a.json").exists()
        pool.rescan()
        wait_for(lambda: calls["n"] >= 3)
        snap = pool.wait_until(lambda s: running(s, "a", "b"))
        assert snap.pids() == pids
        assert not tracker.kinds("a", "spawned")[1:]  # only the first pool's spawn


def test_first_eligibility_failure_after_a_restart_keeps_the_child(
    tmp_path: Path, tracker: Tracker
) -> None:
    pids = leave_running(tmp_path, tracker, CommandSpawner(["sleep", "1000"]), ("a",))

    def broken(session: Session, now: float) -> bool:
        raise ValueError("marker file is garbage")

    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("a", tmp_path)]),
            broken,
            CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "a"))
        time.sleep(0.5)
        assert alive(pids["a"]) and snap["a"].pid == pids["a"]
        assert "eligibility check failed" in pool.snapshot()["a"].reason


def test_a_restart_strategy_that_raises_does_not_kill_the_loop(
    tmp_path: Path, tracker: Tracker
) -> None:
    calls = {"n": 0}

    def bad_wait(retry_state: tenacity.RetryCallState) -> float:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ZeroDivisionError("a plugin's wait strategy has a bug")
        return 0.05

    sessions = [Session("crash", tmp_path), Session("steady", tmp_path)]
    spawner = CommandSpawner(lambda s: ["false"] if s.name == "crash" else ["sleep", "1000"])
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            None,
            spawner,
            restart=RestartPolicy(wait=bad_wait),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        wait_for(lambda: calls["n"] >= 4, timeout=30)  # it went on after the error
        assert pool._thread is not None and pool._thread.is_alive()
        assert pool.snapshot()["steady"].state == "running"


def test_records_lost_children_found_by_marker_and_setsid_helpers_spared(
    tmp_path: Path, tracker: Tracker
) -> None:
    # each child starts a helper in a session of its own (setsid), as some
    # daemons do; the helper inherits the marker variables
    script = tmp_path / "daemon.sh"
    script.write_text("#!/bin/sh\nsetsid sleep 1000 &\necho $! > helper.$$\nexec sleep 1000\n")
    script.chmod(0o755)
    pids = leave_running(tmp_path, tracker, CommandSpawner([str(script)], cwd=str(tmp_path)))
    helpers = {}
    for name, pid in pids.items():
        helper_file = tmp_path / f"helper.{pid}"
        wait_for(helper_file.exists)
        helpers[name] = int(wait_for(lambda f=helper_file: f.read_text().strip()))
        tracker.pids.add(helpers[name])
    shutil.rmtree(tmp_path / "state" / "sessions")  # every record lost
    sessions = [Session("a", tmp_path), Session("b", tmp_path)]
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            None,
            CommandSpawner([str(script)], cwd=str(tmp_path)),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "a", "b"))
        assert snap.pids() == pids  # adopted, not duplicated
        assert not [e for e in tracker.events if e.kind == "spawned"][2:]
        time.sleep(0.5)
        assert all(alive(h) for h in helpers.values())  # not mistaken for duplicates
    # the helpers are in tracker.pids: killed at teardown, by identity


def _py_worker(session: Session) -> None:
    time.sleep(1000)


_PY_SUPERVISOR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from wirepool import CallableSpawner, Session, SessionPool, StaticDiscovery

    def work(session):
        time.sleep(1000)

    if __name__ == "__main__":
        base, method, on_exit, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
        pool = SessionPool(StaticDiscovery([Session(n, Path(base)) for n in names]),
                           spawner=CallableSpawner(work, start_method=method),
                           state_dir=Path(base) / "state", on_exit=on_exit)
        with pool:
            snap = pool.wait_until(
                lambda s: all(n in s and s[n].state == "running" for n in names), timeout=30)
            print(" ".join(str(snap[n].pid) for n in names), flush=True)
            if on_exit == "crash":
                time.sleep(1000)  # the test SIGKILLs us here
""")


def test_python_workers_of_a_killed_supervisor_are_found_by_marker_files(
    tmp_path: Path, tracker: Tracker
) -> None:
    script = tmp_path / "py_supervisor.py"
    script.write_text(_PY_SUPERVISOR.replace('if on_exit == "crash"', "if True"))
    with open(tmp_path / "out", "w") as out:
        first = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), "forkserver", "leave", "a", "b"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    tracker.procs.append(first)  # type: ignore[arg-type]
    line = wait_for(lambda: (tmp_path / "out").read_text().strip().splitlines()[:1], timeout=60)
    pids = dict(zip(("a", "b"), map(int, line[0].split()), strict=True))
    tracker.pids.update(pids.values())
    markers = tmp_path / "state" / "markers"
    wait_for(lambda: len(list(markers.glob("*.json"))) == 2)  # each child writes its own
    first.kill()  # SIGKILL: no clean-up at all
    first.wait()
    assert all(alive(p) for p in pids.values())
    shutil.rmtree(tmp_path / "state" / "sessions")  # and every record lost
    sessions = [Session("a", tmp_path), Session("b", tmp_path)]
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            None,
            CallableSpawner(_py_worker),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "a", "b"), timeout=30)
        assert snap.pids() == pids  # adopted, not duplicated
    for pid in pids.values():  # on_exit=stop: stopped, marker files with them
        wait_for(lambda p=pid: not alive(p))
    assert list(markers.glob("*.json")) == []


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_python_workers_are_stopped_even_with_on_exit_leave(
    tmp_path: Path, tracker: Tracker, start_method: str
) -> None:
    script = tmp_path / "py_supervisor.py"
    script.write_text(_PY_SUPERVISOR)
    with open(tmp_path / "out", "w") as out:
        proc = subprocess.run(
            [sys.executable, str(script), str(tmp_path), start_method, "leave", "w"],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
    text = (tmp_path / "out").read_text()
    assert proc.returncode == 0, text
    pid = int(text.split()[0])
    tracker.pids.add(pid)
    # the exit did not hang on multiprocess's machinery, and left nothing behind
    wait_for(lambda: not alive(pid))
