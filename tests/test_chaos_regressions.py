"""Regression tests for the bugs the chaos suite (``tests/chaos``) found.
Each is named after the bug; ``docs/RELIABILITY.md`` lists them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WIREPOOL, Services, Tracker, alive, status_sessions, wait_for

from wirepool import CommandSpawner, Session, SessionPool, StaticDiscovery, cli
from wirepool._proc import identity_of
from wirepool._store import StateDir

# The child forks a helper into its own process group and records its pid.
FORKING = "#!/bin/sh\nsleep 1000 &\necho $! > helper.$$\nexec sleep 1000\n"


def _helper_of(directory: Path, pid: int, tracker: Tracker) -> int:
    helper_file = directory / f"helper.{pid}"
    helper = int(wait_for(lambda: helper_file.exists() and helper_file.read_text().strip()))
    tracker.pids.add(helper)
    return helper


def test_regression_helper_of_a_killed_child_leaked(tmp_path: Path, tracker: Tracker) -> None:
    script = tmp_path / "run"
    script.write_text(FORKING)
    script.chmod(0o755)
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("a", tmp_path)]),
            None,
            CommandSpawner([str(script)], cwd=str(tmp_path)),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: "a" in s and s["a"].state == "running")
        first = snap["a"].pid
        assert first is not None
        helper = _helper_of(tmp_path, first, tracker)
        os.kill(first, signal.SIGKILL)  # the leader only, as the OOM killer would
        pool.wait_until(lambda s: s["a"].pid not in (None, first), timeout=30)
        # the helper went with its leader; before the fix it ran on, and no
        # later stop (of the pool or of the new child) would ever reach it
        wait_for(lambda: not alive(helper), timeout=10)


def test_regression_helper_of_an_adopted_child_leaked(services: Services, tracker: Tracker) -> None:
    services.add("a", FORKING)
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: status_sessions(services.state_dir).get("a", {}).get("pid"))
    pid = status_sessions(services.state_dir)["a"]["pid"]
    helper = _helper_of(services.root / "a", pid, tracker)
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    second = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    wait_for(lambda: second.of("adopted"), timeout=30)
    os.kill(pid, signal.SIGKILL)  # an adopted child: not ours to reap
    wait_for(lambda: second.of("spawned"), timeout=30)
    wait_for(lambda: not alive(helper), timeout=10)
    second.proc.send_signal(signal.SIGTERM)
    assert second.wait_exit() == 0


def test_regression_temp_file_of_a_killed_supervisor_left_in_state_dir(
    tmp_path: Path, tracker: Tracker
) -> None:
    state = tmp_path / "state"
    (state / "sessions").mkdir(parents=True)
    # what a supervisor SIGKILLed between mkstemp and os.replace leaves
    left = [state / "sessions" / ".a.json.k2j3h4.tmp", state / ".status.json.9x8y7z.tmp"]
    for path in left:
        path.write_text('{"schema": "wirepool.rec')
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("a", tmp_path)]),
            None,
            CommandSpawner(["sleep", "1000"]),
            state_dir=state,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: "a" in s and s["a"].state == "running")
        assert not any(p.exists() for p in left)


DECOY = """\
import signal, sys, time
def note(signum, frame):
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{signum}\\n")
for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
    signal.signal(sig, note)
open(sys.argv[1], "a").close()
time.sleep(1000)
"""


def test_regression_stop_signalled_whatever_pid_supervisor_json_named(
    services: Services, tracker: Tracker, tmp_path: Path
) -> None:
    services.add("a")
    sup = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    wait_for(lambda: status_sessions(services.state_dir).get("a", {}).get("pid"))
    log = tmp_path / "decoy.signals"
    decoy = subprocess.Popen([sys.executable, "-c", DECOY, str(log)], start_new_session=True)
    tracker.procs.append(decoy)  # type: ignore[arg-type]
    wait_for(log.exists)
    # a bare pid, as a hand-edited or half-rewritten file might hold
    (services.state_dir / "supervisor.json").write_text(json.dumps({"pid": decoy.pid}))
    result = subprocess.run(
        [*WIREPOOL, "stop", "servicedir", str(services.root), "--children"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sup.wait_exit() == 0  # the real supervisor, found by its lock
    assert log.read_text() == "" and decoy.poll() is None


def test_regression_stop_trusted_a_pid_without_a_start_time(
    services: Services, tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    services.add("a")
    sup = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    wait_for(lambda: status_sessions(services.state_dir).get("a", {}).get("pid"))
    state = StateDir(services.state_dir)
    monkeypatch.setattr(cli, "lock_holder", lambda state: None)  # no /proc/locks here
    (services.state_dir / "supervisor.json").write_text(json.dumps({"pid": os.getpid()}))
    with pytest.raises(cli.CliError, match="could not be identified"):
        cli._running_supervisor(state)
    me = identity_of(sup.proc.pid)
    assert me is not None
    (services.state_dir / "supervisor.json").write_text(
        json.dumps({"pid": me.pid, "process_start": me.start})
    )
    assert cli._running_supervisor(state) == sup.proc.pid
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_regression_record_torn_while_running_was_left_unreadable(
    tmp_path: Path, tracker: Tracker
) -> None:
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("up", tmp_path), Session("down", tmp_path)]),
            lambda session, now: session.name == "up",
            CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    records = tmp_path / "state" / "sessions"
    with pool:
        pool.wait_until(lambda s: s["up"].state == "running" and s["down"].state == "ineligible")
        wait_for((records / "down.json").exists)
        # nothing changes for an ineligible session: nothing rewrites it
        (records / "down.json").write_text('{"schema": "wirepool.record/1", "sess')
    for name in ("up", "down"):
        assert json.loads((records / f"{name}.json").read_text())["session"]["name"] == name
