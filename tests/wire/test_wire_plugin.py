"""The wire plugin end to end: the real ``wirepool run wire`` supervising the
fake ``wire`` binary (a faithful stand-in: argv, env, exit codes, files)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import WIREPOOL, Supervisor, Tracker, alive, cli, wait_for
from wirepool_wire import layout
from wirepool_wire.fake_wire import install_fake_wire
from wirepool_wire.fixtures import make_box, make_home


@pytest.fixture
def wire_bin(tmp_path: Path) -> Path:
    return install_fake_wire(tmp_path / "bin", version="0.16.0")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "sessions"
    r.mkdir()
    return r


def live_daemons(root: Path) -> dict[int, str]:
    """Live `wire daemon` processes serving a home under ``root``: pid -> home."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        argv = proc.info.get("cmdline") or []
        if not layout.is_wire_daemon_cmdline(argv) or proc.info["status"] == "zombie":
            continue
        try:
            home = proc.environ().get("WIRE_HOME", "")
        except psutil.Error:
            continue
        if home.startswith(str(root)):
            found[proc.info["pid"]] = home
    return found


def invocations(home: Path) -> list[dict[str, Any]]:
    path = home / "fake-wire.invocations.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start(
    tracker: Tracker, root: Path, wire_bin: Path, *extra: str, env: dict[str, str] | None = None
) -> Supervisor:
    sup = tracker.supervisor(
        "wire", "--sessions-root", str(root), "--wire-bin", str(wire_bin), *extra, env=env
    )
    return sup


def stop(sup: Supervisor, root: Path) -> None:
    """Stop the supervisor and its daemons (tests leave nothing behind)."""
    result = subprocess.run(
        [*WIREPOOL, "stop", "wire", "--sessions-root", str(root), "--children"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sup.wait_exit()
    wait_for(lambda: not live_daemons(root))


def test_box_of_150_homes_runs_exactly_the_5_real_sessions(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    box = make_box(root, n_homes=150, n_real=5)
    sup = start(tracker, root, wire_bin)
    try:
        wait_for(lambda: len(live_daemons(root)) == 5, timeout=60)
        # hold the invariant over time, not just once
        for _ in range(10):
            daemons = live_daemons(root)
            assert sorted(daemons.values()) == sorted(str(h) for h in box.real)
            time.sleep(0.2)
        assert all(not invocations(h) for h in (*box.idle, *box.husks))
        # a new real session appears: count follows eligibility, at once
        new = make_home(root, "brand-new")
        wait_for(lambda: str(new) in live_daemons(root).values(), timeout=30)
        assert len(live_daemons(root)) == 6
        wait_for(lambda: invocations(new))  # the fake logs its start once it runs
        time.sleep(0.5)
        assert len(invocations(new)) == 1
    finally:
        stop(sup, root)


def test_child_env_is_stripped_to_wire_home_and_argv_has_no_session(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    by_key = make_home(root, "named-pane")
    legacy = make_home(root, "old-style", legacy=True)
    hostile = {
        "WIRE_SESSION_ID": "x",
        "WIRE_DIAG": "1",
        "WIRE_HOME": "/nonexistent",
        "WIRE_DAEMON_NO_SINGLETON": "1",
        "CLAUDE_CODE_SESSION_ID": "tab-7",
    }
    sup = start(tracker, root, wire_bin, "--interval", "3", env=hostile)
    try:
        wait_for(lambda: invocations(by_key) and invocations(legacy), timeout=30)
        rec = invocations(by_key)[0]
        assert rec["WIRE_HOME"] == str(by_key)
        assert rec["wire_env"] == ["WIRE_HOME"]
        assert rec["argv"] == ["daemon", "--interval", "3"]
        old = invocations(legacy)[0]
        assert old["wire_env"] == ["WIRE_HOME", "WIRE_HOME_FORCE"]
        assert "--session" not in old["argv"]
        log = root / ".wirepool" / "logs"
        assert any(log.iterdir())  # child output goes to per-session logs
    finally:
        stop(sup, root)


def test_daemon_started_by_hand_is_adopted_not_duplicated(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    home = make_home(root, "by-hand")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRE_")}
    hand = subprocess.Popen(
        [str(wire_bin), "daemon", "--interval", "1"],
        env={**env, "WIRE_HOME": str(home)},
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    tracker.pids.add(hand.pid)
    wait_for(lambda: layout.read_daemon_pid(layout.daemon_pid_path(home)))
    sup = start(tracker, root, wire_bin)
    try:
        wait_for(lambda: sup.of("adopted"), timeout=30)
        assert sup.of("adopted")[0]["pid"] == hand.pid
        assert sup.of("adopted")[0]["owned"] is False
        time.sleep(1.0)
        assert sup.of("spawned") == []
        assert list(live_daemons(root)) == [hand.pid]
        hand.kill()
        hand.wait()
        # the pool takes over when the hand-started daemon dies
        wait_for(lambda: sup.of("spawned"), timeout=30)
        wait_for(lambda: len(live_daemons(root)) == 1 and hand.pid not in live_daemons(root))
    finally:
        stop(sup, root)


def test_stale_pidfile_naming_a_reused_pid_is_moved_aside(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    home = make_home(root, "stale")
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    tracker.pids.add(stranger.pid)
    pidfile = layout.daemon_pid_path(home)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(
        json.dumps(
            {
                "schema": "wire-daemon-pid-v1",
                "pid": stranger.pid,
                "bin_path": str(wire_bin),
                "version": "0.16.0",
                "started_at": "2020-01-01T00:00:00Z",
                "did": None,
            }
        )
    )
    sup = start(tracker, root, wire_bin)
    try:
        wait_for(lambda: len(live_daemons(root)) == 1, timeout=30)
        assert stranger.poll() is None  # the stranger is untouched
        aside = list(pidfile.parent.glob("daemon.pid.stale-*"))
        assert len(aside) == 1 and str(stranger.pid) in aside[0].read_text()
        record = wait_for(lambda: layout.read_daemon_pid(pidfile))
        assert record.pid in live_daemons(root)
    finally:
        stop(sup, root)
        stranger.kill()
        stranger.wait()


def test_uninitialized_session_backs_off_and_never_fork_storms(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    # bound in the registry (so eligible) but no private.key: wire exits 1
    home = make_home(root, "broken", identity=False, bound_cwd="/home/u/project")
    sup = start(tracker, root, wire_bin)
    try:
        time.sleep(8)
        spawns = len(invocations(home))
        # 1 s, 2 s, 4 s (less jitter) after the first start: at most 5 in 8 s
        assert 2 <= spawns <= 5
        delays = [e["delay"] for e in sup.of("backoff")]
        assert all(b > a for a, b in itertools.pairwise(delays))
        assert delays[0] <= 1.0
        assert not live_daemons(root)
    finally:
        stop(sup, root)


def test_hung_daemon_is_restarted(tracker: Tracker, root: Path, wire_bin: Path) -> None:
    home = make_home(root, "stuck")
    (home / "fake-wire.json").write_text(json.dumps({"no_last_sync": True}))
    sup = start(tracker, root, wire_bin, "--hung-after", "2", "--stop-grace", "2")
    try:
        wait_for(lambda: sup.of("unhealthy"), timeout=60)
        assert "hung" in sup.of("unhealthy")[0]["reason"]
        wait_for(lambda: len(invocations(home)) >= 2, timeout=60)
    finally:
        stop(sup, root)


def test_sigkilled_supervisor_is_replaced_and_adopts_every_daemon(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    homes = [make_home(root, f"s{i}") for i in range(5)]
    first = start(tracker, root, wire_bin)
    wait_for(lambda: len(live_daemons(root)) == 5, timeout=60)
    before = dict(live_daemons(root))
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    second = start(tracker, root, wire_bin)
    try:
        wait_for(lambda: len(second.of("adopted")) == 5, timeout=60)
        assert {e["pid"] for e in second.of("adopted")} == set(before)
        time.sleep(1.0)
        assert second.of("spawned") == []
        assert live_daemons(root) == before
        assert all(len(invocations(h)) == 1 for h in homes)
    finally:
        stop(second, root)


def test_rust_supervisor_pidfile_is_honoured_both_ways(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    make_home(root, "a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRE_")}
    env["WIRE_HOME"] = str(root)
    rust = subprocess.Popen(
        [str(wire_bin), "daemon", "--all-sessions", "--interval", "5"],
        env=env,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    tracker.pids.add(rust.pid)
    try:
        wait_for(lambda: layout.read_supervisor_pid(root) == rust.pid)
        refused = subprocess.run(
            [
                *WIREPOOL,
                "run",
                "wire",
                "--sessions-root",
                str(root),
                "--wire-bin",
                str(wire_bin),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 0
        assert json.loads(refused.stdout) == {
            "status": "skipped",
            "reason": "supervisor already running",
            "holder_pid": rust.pid,
        }
        # without --json too: exit 0 and one line, as `wire daemon
        # --all-sessions` skips beside a live supervisor (units that ran
        # the Rust one keep working)
        plain = subprocess.run(
            [*WIREPOOL, "run", "wire", "--sessions-root", str(root), "--wire-bin", str(wire_bin)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (plain.returncode, plain.stdout) == (0, "")
        assert plain.stderr == (
            f"wirepool: wire's own supervisor is already running on {root} "
            f"(pid {rust.pid}); skipped\n"
        )
    finally:
        rust.kill()
        rust.wait()
    sup = start(tracker, root, wire_bin)
    try:
        wait_for(lambda: layout.read_supervisor_pid(root) == sup.proc.pid)
        # now the Rust supervisor is the one that skips
        second_rust = subprocess.run(
            [str(wire_bin), "daemon", "--all-sessions", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second_rust.returncode == 0
        assert json.loads(second_rust.stdout)["holder_pid"] == sup.proc.pid
    finally:
        stop(sup, root)
    assert not (root / "supervisor.pid").exists()  # removed: it named us


def test_status_json_has_the_rust_supervisors_fields(
    tracker: Tracker, root: Path, tmp_path: Path
) -> None:
    new_bin = install_fake_wire(tmp_path / "newbin", version="0.17.0")
    real = make_home(root, "coral")
    old = make_home(root, "stale-one")
    (old / "fake-wire.json").write_text(json.dumps({"version": "0.15.2"}))
    husk = make_home(root, "husk", did=False, identity=False)
    outside = tmp_path / "elsewhere"
    outside_home = make_home(outside, "orphan")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRE_")}
    orphan = subprocess.Popen(
        [str(new_bin), "daemon"],
        env={**env, "WIRE_HOME": str(outside_home)},
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    tracker.pids.add(orphan.pid)
    sup = start(tracker, root, new_bin)
    try:
        wait_for(lambda: len(live_daemons(root)) == 2, timeout=60)
        wait_for(lambda: all(layout.read_last_sync(h) for h in (real, old)), timeout=30)
        result = subprocess.run(
            [
                *WIREPOOL,
                "status",
                "wire",
                "--sessions-root",
                str(root),
                "--wire-bin",
                str(new_bin),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["schema"] == "wirepool.status/1"
        assert doc["supervisor_pid"] == sup.proc.pid and doc["supervisor_alive"] is True
        by_home = {s["home_dir"]: s for s in doc["sessions"]}
        assert set(by_home) == {str(real), str(old)}  # husks are not sessions
        for s in by_home.values():
            assert {
                "name",
                "home_dir",
                "daemon_pid",
                "daemon_alive",
                "last_sync_age_seconds",
                "daemon_version",
            } <= set(s)
            assert s["daemon_alive"] is True and s["daemon_pid"] == s["pid"]
            assert s["state"] == "running" and isinstance(s["restarts"], int)
        assert by_home[str(old)]["daemon_version"] == "0.15.2"
        assert doc["stale_binary_sessions"] == ["stale-one"]
        assert doc["stale_unmanaged_sessions"] == []
        assert orphan.pid in doc["unmanaged_pids"]
        assert not set(doc["unmanaged_pids"]) & {s["pid"] for s in doc["sessions"]}
        assert doc["husks"] == [str(husk)]
    finally:
        stop(sup, root)
        orphan.kill()
        orphan.wait()
    assert not alive(orphan.pid)


def test_sandbox_builds_the_readme_box(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirepool_wire.sandbox",
            str(tmp_path / "box"),
            "--homes",
            "12",
            "--real",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    root = tmp_path / "box" / "sessions"
    homes, husks = layout.scan_homes(root)
    assert len(homes) + len(husks) == 12
    assert (
        sum(
            h.has_private_key or h.key in layout.bound_cwds(homes, layout.read_registry(root))
            for h in homes
        )
        == 3
    )
    assert (tmp_path / "box" / "bin" / "wire").stat().st_mode & 0o111
    assert f"--sessions-root {root}" in out.stdout
    again = subprocess.run(
        [sys.executable, "-m", "wirepool_wire.sandbox", str(tmp_path / "box")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "exists already" in again.stderr


@pytest.mark.parametrize(
    ("env_value", "option", "expected"),
    [
        (None, None, 7 * 86400.0),  # unset: 7 days
        ("0", None, None),  # 0: no filter
        ("garbage", None, 7 * 86400.0),  # garbage: 7 days, as wire
        ("3", None, 3 * 86400.0),
        ("3", 1.5, 1.5 * 86400.0),  # the CLI option wins
        ("3", 0.0, None),
    ],
)
def test_idle_cutoff_comes_from_the_environment_as_wire_parses_it(
    root: Path, env_value: str | None, option: float | None, expected: float | None
) -> None:
    from wirepool_wire import wire_spec

    env = {} if env_value is None else {"WIRE_ALL_SESSIONS_MAX_IDLE_DAYS": env_value}
    spec = wire_spec(root, env=env, max_idle_days=option)
    assert spec.extra["max_idle"] == expected
    idle = make_home(
        root, f"idle-{env_value}-{option}", identity=False, last_active=time.time() - 2 * 86400
    )
    sessions = {s.home: s for s in spec.discovery.discover()}  # type: ignore[union-attr]
    verdict = spec.eligibility.check(sessions[idle], time.time())  # type: ignore[union-attr]
    # idle for 2 days: in with no filter or a 3-day cutoff, out with 1.5 or 7
    assert verdict.eligible == (expected is None or expected > 2 * 86400)
    assert verdict.reason


def test_one_name_per_session_the_persona_handle(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    """The handle is the name everywhere: the table, status --json (as
    `wire supervisor --json` reports it), events, verbs and log files; two
    homes with one handle are both listed, told apart by key, and a name
    that fits both is refused, listing each."""
    coral = make_home(root, "coral")
    twin_a = make_home(root, "twin-a", handle="twin")
    twin_b = make_home(root, "twin-b", handle="twin")
    keys = {h: str(h.relative_to(root)) for h in (coral, twin_a, twin_b)}
    sup = start(tracker, root, wire_bin)
    args = ["wire", "--sessions-root", str(root)]
    try:
        wait_for(lambda: len(live_daemons(root)) == 3, timeout=60)
        wait_for(lambda: len(sup.of("spawned")) == 3, timeout=60)
        assert {(e["session"], e["key"]) for e in sup.of("spawned")} == {
            ("coral", keys[coral]),
            ("twin", keys[twin_a]),
            ("twin", keys[twin_b]),
        }
        doc = json.loads(cli("status", *args, "--json").stdout)
        assert sorted((s["name"], s["key"]) for s in doc["sessions"]) == sorted(
            [("coral", keys[coral]), ("twin", keys[twin_a]), ("twin", keys[twin_b])]
        )
        table = cli("status", *args).stdout
        assert f"twin ({keys[twin_a]})" in table and f"twin ({keys[twin_b]})" in table
        assert "\ncoral " in table
        ambiguous = cli("restart", *args, "twin")
        assert ambiguous.returncode == 8
        assert keys[twin_a] in ambiguous.stderr and keys[twin_b] in ambiguous.stderr
        unknown = cli("restart", *args, "corall")
        assert unknown.returncode == 8 and "did you mean coral?" in unknown.stderr
        old = next(e["pid"] for e in sup.of("spawned") if e["session"] == "coral")
        restarted = cli("restart", *args, "coral")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.startswith(f"coral: restarted (pid {old} -> pid ")
        by_key = cli("status", *args, keys[twin_b], "--json")  # the key is taken too
        [entry] = json.loads(by_key.stdout)["sessions"]
        assert (entry["name"], entry["home"]) == ("twin", str(twin_b))
        logs = sorted(p.name for p in (root / ".wirepool" / "logs").glob("*.log"))
        assert [n.split(".")[0] for n in logs] == ["coral", "twin", "twin"]
    finally:
        stop(sup, root)


def test_racing_supervisors_leave_supervisor_pid_naming_the_one_that_runs(
    tracker: Tracker, root: Path, wire_bin: Path
) -> None:
    # Two started together may both find supervisor.pid free and write it,
    # the loser last; the loser then meets the pool's lock and exits, and
    # its exit removed the file that named it: the Rust supervisor would
    # start beside ours.  The winner writes it again once the lock is its.
    make_home(root, "a")
    for _ in range(3):
        racers = [start(tracker, root, wire_bin) for _ in range(2)]

        def settled(racers: list[Supervisor] = racers) -> bool:
            running = [s for s in racers if s.proc.poll() is None]
            return len(running) == 1 and bool(running[0].of("supervisor_started"))

        wait_for(settled, 60)
        winner = next(s for s in racers if s.proc.poll() is None)
        loser = next(s for s in racers if s is not winner)
        assert loser.proc.wait(30) == 0  # skipped, as beside any live supervisor
        pid = winner.proc.pid

        def names_winner(pid: int = pid) -> bool:
            return layout.read_supervisor_pid(root) == pid

        wait_for(names_winner)
        time.sleep(0.3)  # what a late write by the loser would need
        assert names_winner()
        stop(winner, root)
