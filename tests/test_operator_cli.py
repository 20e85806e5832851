"""The operator's verbs end to end through the real ``wirepool`` command,
against a real ``wirepool run`` supervisor: restart, down across a
SIGKILLed supervisor, signal, status of one session, events, and what
each says when there is no supervisor or no such session."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import WIREPOOL, Services, Supervisor, Tracker, alive, cli, status_sessions, wait_for

CRASHER = "#!/bin/sh\necho 'cannot run as root without the -u switch' >&2\nexit 64\n"


def _pid(services: Services, name: str, not_pid: int | None = None) -> int | None:
    s = status_sessions(services.state_dir).get(name, {})
    pid = s.get("pid")
    return pid if s.get("state") == "running" and pid and pid != not_pid else None


def _start(services: Services, tracker: Tracker, *extra: str) -> Supervisor:
    return tracker.supervisor("servicedir", str(services.root), "--stop-grace", "2", *extra)


def _stop(services: Services, sup: Supervisor) -> None:
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert sup.wait_exit(timeout=60) == 0


def test_restart_prints_the_old_and_new_pid(services: Services, tracker: Tracker) -> None:
    services.add("web")
    sup = _start(services, tracker)
    try:
        old = wait_for(lambda: _pid(services, "web"), timeout=60)
        result = cli("restart", "servicedir", str(services.root), "web")
        assert result.returncode == 0, result.stderr
        match = re.fullmatch(r"web: restarted \(pid (\d+) -> pid (\d+)\)\n", result.stdout)
        assert match, result.stdout
        assert int(match[1]) == old and int(match[2]) != old
        assert not alive(old) and alive(int(match[2]))
        assert not sup.of("backoff")
    finally:
        _stop(services, sup)


def test_down_survives_a_sigkilled_supervisor(services: Services, tracker: Tracker) -> None:
    services.add("web")
    services.add("other")
    first = _start(services, tracker)
    old = wait_for(lambda: _pid(services, "web"), timeout=60)
    wait_for(lambda: _pid(services, "other"), timeout=60)
    result = cli("down", "servicedir", str(services.root), "web")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"web: down; stopping pid {old}\n"
    wait_for(lambda: not alive(old), timeout=30)
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    second = _start(services, tracker)
    try:
        wait_for(lambda: second.of("adopted"), timeout=60)  # `other`, left running
        detail = cli("status", "servicedir", str(services.root), "web")
        assert detail.returncode == 0, detail.stderr
        assert "web - down" in detail.stdout
        assert re.search(r"reason: down by operator since \d{4}-\d\d-\d\d ", detail.stdout)
        assert not [e for e in second.of("spawned") if e.get("session") == "web"]
        up = cli("up", "servicedir", str(services.root), "web")
        assert (up.returncode, up.stdout) == (0, "web: up\n")
        wait_for(lambda: [e for e in second.of("spawned") if e.get("session") == "web"])
    finally:
        _stop(services, second)


def test_signal_reaches_the_daemon(services: Services, tracker: Tracker, tmp_path: Path) -> None:
    got, ready = tmp_path / "got", tmp_path / "ready"
    # A SIGHUP before sh has run the trap line ends it (the default action).
    run = f"#!/bin/sh\ntrap 'echo hup >> {got}' HUP\n: > {ready}\nwhile :; do sleep 0.05; done\n"
    services.add("d", run)
    sup = _start(services, tracker)
    try:
        pid = wait_for(lambda: _pid(services, "d"), timeout=60)
        wait_for(ready.exists, timeout=60)  # the trap is set
        result = cli("signal", "servicedir", str(services.root), "d", "HUP")
        assert (result.returncode, result.stdout) == (0, f"d: sent SIGHUP to pid {pid}\n")
        wait_for(lambda: got.exists() and got.read_text() == "hup\n")
        bad = cli("signal", "servicedir", str(services.root), "d", "NOPE")
        assert bad.returncode == 9 and "not a signal: 'NOPE'" in bad.stderr
        assert _pid(services, "d") == pid
    finally:
        _stop(services, sup)


def test_events_stream_while_sessions_crash(services: Services, tracker: Tracker) -> None:
    services.add("crash", CRASHER)
    services.add("fine")
    sup = _start(services, tracker)
    wait_for(lambda: sup.of("spawned"), timeout=60)
    watcher = subprocess.Popen(
        [*WIREPOOL, "events", "servicedir", str(services.root), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        while sum(e["event"] == "exited" for e in seen) < 2 and time.monotonic() < deadline:
            seen.append(json.loads(watcher.stdout.readline()))
        exits = [e for e in seen if e["event"] == "exited"]
        assert len(exits) == 2 and all(e["session"] == "crash" and e["code"] == 64 for e in exits)
        # what `run --json` printed, object for object (its reader may lag)
        wait_for(lambda: all(e in sup.events for e in seen))
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
        watcher.communicate(timeout=30)
        _stop(services, sup)


def test_status_table_by_default_detail_for_names_json_only_when_asked(
    services: Services, tracker: Tracker
) -> None:
    services.add("web")
    services.add("crash", CRASHER)
    sup = _start(services, tracker)
    try:
        pid = wait_for(lambda: _pid(services, "web"), timeout=60)
        wait_for(lambda: len(sup.of("exited")) >= 1, timeout=60)
        table = cli("status", "servicedir", str(services.root))  # stdout is a pipe
        assert table.returncode == 0
        assert table.stdout.startswith(f"supervisor: running (pid {sup.proc.pid})")
        assert re.search(rf"\nweb +running +{pid} ", table.stdout)
        detail = cli("status", "servicedir", str(services.root), "web", "crash")
        assert detail.returncode == 0, detail.stderr
        assert "● web - running\n" in detail.stdout
        assert re.search(rf"pid: {pid}\n", detail.stdout)
        assert re.search(r"state: running since .* ago\n", detail.stdout)
        assert "○ crash - backoff" in detail.stdout
        assert "last exit: code 64 at " in detail.stdout
        as_json = cli("status", "servicedir", str(services.root), "crash", "--json")
        assert [s["name"] for s in json.loads(as_json.stdout)["sessions"]] == ["crash"]
    finally:
        _stop(services, sup)
    offline = cli("status", "servicedir", str(services.root), "crash")
    assert offline.returncode == 3
    assert "next start: when a supervisor runs (none does)" in offline.stdout or (
        "next start" not in offline.stdout
    )
    table = cli("status", "servicedir", str(services.root))
    row = next(line for line in table.stdout.splitlines() if line.startswith("crash "))
    assert re.search(r"code 64 +- ", row), row  # no countdown with no supervisor


def test_names_that_name_nothing_and_no_supervisor(services: Services, tracker: Tracker) -> None:
    services.add("web")
    root = str(services.root)
    down = cli("down", "servicedir", root, "web")
    assert down.returncode == 3 and down.stdout == ""
    assert down.stderr.startswith("wirepool: error: no supervisor is running on ")
    assert len(down.stderr.splitlines()) == 1
    offline = cli("reset", "servicedir", root, "wbe")
    assert offline.returncode == 8 and "did you mean web?" in offline.stderr
    sup = _start(services, tracker)
    try:
        wait_for(lambda: _pid(services, "web"), timeout=60)
        for verb in ("restart", "down", "up", "reset", "status"):
            result = cli(verb, "servicedir", root, "web", "nope")
            assert result.returncode == 8, (verb, result.stderr)
            assert "no session named 'nope'" in result.stderr
        assert _pid(services, "web")  # all or nothing: web was not touched
        assert not sup.of("stopped")
        logs = cli("logs", "servicedir", root, "nope")
        assert logs.returncode == 8
    finally:
        _stop(services, sup)


def test_help_shows_what_the_verb_does_and_only_its_options(services: Services) -> None:
    run = cli("run", "servicedir", "--help")
    status = cli("status", "servicedir", "--help")
    restart = cli("restart", "servicedir", "--help")
    assert "--grace" in run.stdout and "--stop-grace" in run.stdout
    assert "--grace" not in status.stdout and "--on-exit" not in status.stdout
    assert "--grace" not in restart.stdout
    assert "Restart sessions of the servicedir pool" in restart.stdout
    assert "SESSION..." in restart.stdout
    # the options run takes are still taken, so one command line serves all
    result = cli("status", "servicedir", str(services.root), "--grace", "3")
    assert result.returncode == 3, result.stderr


def test_restart_of_an_adopted_daemon_through_the_cli(services: Services, tracker: Tracker) -> None:
    services.add("web")
    first = _start(services, tracker)
    old = wait_for(lambda: _pid(services, "web"), timeout=60)
    first.proc.send_signal(signal.SIGTERM)  # leaves its children (on_exit leave)
    assert first.wait_exit(timeout=60) == 0
    assert alive(old)
    second = _start(services, tracker)
    try:
        wait_for(lambda: second.of("adopted"), timeout=60)
        result = cli("restart", "servicedir", str(services.root), "web")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"web: restarted (pid {old} -> pid ")
        wait_for(lambda: not alive(old))
    finally:
        _stop(services, second)
    assert os.path.exists(services.state_dir)


TICKER = """#!/bin/sh
exec python3 -c '
import sys, time
n = 0
while True:
    n += 1
    sys.stdout.write("tick %06d %s\\n" % (n, "x" * 80))
    sys.stdout.flush()
    time.sleep(0.002)
'
"""


def test_logs_shows_the_last_lines_and_follows_across_rotations(
    services: Services, tracker: Tracker
) -> None:
    services.add("tick", TICKER)
    sup = _start(services, tracker, "--log-max-size", "64K", "--log-backups", "2")
    root = str(services.root)
    follower = None
    try:
        wait_for(lambda: _pid(services, "tick"), timeout=60)
        log = services.state_dir / "logs" / "tick.log"
        wait_for(lambda: log.exists() and log.read_text().count("\ntick ") >= 3)
        last = cli("logs", "servicedir", root, "tick", "-n", "3")
        assert last.returncode == 0, last.stderr
        lines = last.stdout.splitlines()
        assert len(lines) == 3 and all(line.startswith("tick ") for line in lines)
        follower = subprocess.Popen(
            [*WIREPOOL, "logs", "servicedir", root, "tick", "-n", "0", "-f"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        rotated = log.with_name("tick.log.1")
        seen: list[int] = []
        rotations_seen = 0
        inode = None
        deadline = time.monotonic() + 60
        # read on until the log has been rotated twice after we started
        while rotations_seen < 2 and time.monotonic() < deadline:
            line = follower.stdout.readline()
            assert line.startswith("tick "), line
            seen.append(int(line.split()[1]))
            if rotated.exists() and rotated.stat().st_ino != inode:
                inode = rotated.stat().st_ino
                rotations_seen += 1
        for _ in range(200):  # and past the last rotation
            seen.append(int(follower.stdout.readline().split()[1]))
        assert rotations_seen == 2
        # never a line twice, never out of order, through every rotation
        assert seen == sorted(set(seen))
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
    finally:
        if follower is not None:
            if follower.poll() is None:
                follower.kill()
            follower.communicate(timeout=30)
        _stop(services, sup)
