"""The dirs plugin on real directories: one daemon per glob match, argv
templates substituted per argument (never a shell), marker and idle rules,
and the directories and programs it must refuse."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Tracker, alive, cli, status_sessions, wait_for
from wirepool_dirs import CommandCheck, GlobDiscovery, dirs_spec, parse_command

from wirepool import CommandSpawner, Session, SessionPool
from wirepool.eligibility import as_eligibility
from wirepool.testing import ProcessLedger, assert_no_leaks, assert_one_child_per_session

# Records its argv, cwd and one variable, then sleeps: the test reads exactly
# what the child was given.
DUMP = (
    "import json, os, sys, time\n"
    "open('argv.json', 'w').write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
    " 'env': os.environ.get('CHECKOUT')}))\n"
    "time.sleep(1000)\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    (tmp_path / "dump.py").write_text(DUMP)
    return path


def checkout(root: Path, name: str) -> Path:
    path = root / name
    (path / ".git").mkdir(parents=True)
    return path


def dump_cmd(root: Path, extra: str = "") -> str:
    return f"{sys.executable} {root.parent / 'dump.py'} {extra}"


def start(spec_pool: SessionPool, ledger: ProcessLedger) -> SessionPool:
    ledger.watch(spec_pool)
    return spec_pool.start()


def running(pool: SessionPool, *names: str) -> bool:
    snap = pool.snapshot()
    return all(n in snap and snap[n].state == "running" for n in names)


def argv_of(path: Path) -> dict[str, Any]:
    return json.loads(wait_for(lambda: (path / "argv.json").exists() and (path / "argv.json")
                               .read_text()))  # fmt: skip


def test_one_daemon_per_git_checkout_with_per_argument_substitution(root: Path) -> None:
    plain = checkout(root, "plain")
    hostile = checkout(root, "c d; touch PWNED $(id) `id`")
    (root / "not-a-checkout").mkdir()
    spec = dirs_spec(
        root,
        "*/.git/..",
        dump_cmd(root, "--repo={dir} {name} 'literal {{braces}}'"),
        env=["CHECKOUT={name}"],
        on_exit="stop",
    )
    ledger = ProcessLedger()
    pool = start(spec.pool("dirs", durable=False), ledger)
    try:
        pool.wait_until(lambda s: running(pool, "plain", hostile.name))
        assert "not-a-checkout" not in pool.snapshot()
        assert set(assert_one_child_per_session(pool)) == {"plain", hostile.name}
        got = argv_of(hostile)
        assert got["argv"] == [f"--repo={hostile}", hostile.name, "literal {braces}"]
        assert got["cwd"] == str(hostile)
        assert got["env"] == hostile.name
        assert argv_of(plain)["argv"][1] == "plain"
        assert not list(root.rglob("PWNED"))  # no shell ever saw the name
    finally:
        pool.stop()
    assert_no_leaks(ledger)


def test_new_checkout_is_picked_up_by_inotify_and_a_removed_one_stopped(root: Path) -> None:
    checkout(root, "first")
    spec = dirs_spec(
        root, "*/.git/..", "sleep 1000", on_exit="stop", grace=0.5, rescan_interval=600
    )
    ledger = ProcessLedger()
    pool = start(spec.pool("dirs", durable=False), ledger)
    try:
        pool.wait_until(lambda s: running(pool, "first"))
        later = root / "later"
        later.mkdir()  # the directory first, its .git a moment after (git clone)
        time.sleep(0.2)
        assert "later" not in pool.snapshot()
        (later / ".git").mkdir()
        # the rescan interval is 10 minutes: only the watch can find it now
        pool.wait_until(lambda s: running(pool, "later"), timeout=30)
        pid = pool.snapshot()["first"].pid
        assert pid is not None
        (root / "first" / ".git").rmdir()
        pool.wait_until(lambda s: "first" not in s or s["first"].state != "running")
        wait_for(lambda: not alive(pid))
        assert running(pool, "later")
    finally:
        pool.stop()
    assert_no_leaks(ledger)


def test_daemon_writes_in_its_own_checkout_do_not_cost_rescans(root: Path) -> None:
    discovery = GlobDiscovery(root, "*/.git/..", marker="READY")
    proj = checkout(root, "proj")
    assert [s.name for s in discovery.discover()] == ["proj"]
    assert set(discovery.watch_paths()) == {root, proj}
    assert discovery.relevant(root, "newproj")
    assert discovery.relevant(proj, ".git")
    assert discovery.relevant(proj, "READY")
    assert not discovery.relevant(proj, "daemon.log")
    assert not discovery.relevant(proj, "daemon.pid")


def test_nested_patterns_hidden_directories_and_names(root: Path) -> None:
    for rel in ("org1/a", "org1/b", "org2/c", ".wirepool/x", "org1/.cache"):
        (root / rel).mkdir(parents=True)
    (root / "org2" / "file").write_text("not a directory")
    names = [s.name for s in GlobDiscovery(root, "*/*").discover()]
    assert names == ["org1/a", "org1/b", "org2/c"]
    with pytest.raises(ValueError, match="relative pattern"):
        GlobDiscovery(root, "/abs/*")


def test_symlink_out_of_the_root_is_listed_with_its_reason_not_followed(
    root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    (outside / ".git").mkdir(parents=True)
    (root / "sneaky").symlink_to(outside)
    (root / "loop").symlink_to(root / "loop")  # a symlink loop: skipped, no crash
    checkout(root, "fine")
    spec = dirs_spec(root, "*/.git/..", "sleep 1000", on_exit="stop")
    ledger = ProcessLedger()
    pool = start(spec.pool("dirs", durable=False), ledger)
    try:
        snap = pool.wait_until(lambda s: running(pool, "fine") and "sneaky" in s)
        assert snap["sneaky"].state == "ineligible"
        assert f"resolves outside the root, to {outside}" in snap["sneaky"].reason
        assert "loop" not in snap
    finally:
        pool.stop()
    assert_no_leaks(ledger)


def test_marker_and_max_idle_rules(root: Path) -> None:
    for name in ("marked", "unmarked", "stale"):
        (root / name).mkdir()
    (root / "marked" / "serve.me").write_text("")
    (root / "stale" / "serve.me").write_text("")
    old = time.time() - 3 * 86400
    os.utime(root / "stale" / "serve.me", (old, old))
    os.utime(root / "stale", (old, old))
    spec = dirs_spec(root, "*", "sleep 1000", marker="serve.me", max_idle=86400.0, on_exit="stop")
    ledger = ProcessLedger()
    pool = start(spec.pool("dirs", durable=False), ledger)
    try:
        snap = pool.wait_until(lambda s: running(pool, "marked") and "stale" in s)
        assert snap["unmarked"].state == "ineligible"
        assert "no serve.me" in snap["unmarked"].reason
        assert "idle for 3.0d" in snap["stale"].reason
        (root / "unmarked" / "serve.me").write_text("")  # seen through the watch
        os.utime(root / "stale" / "serve.me")  # activity: eligible again
        pool.rescan()
        pool.wait_until(lambda s: running(pool, "marked", "unmarked", "stale"))
    finally:
        pool.stop()
    assert_no_leaks(ledger)


def test_unsafe_or_missing_programs_are_refused_with_the_reason(root: Path) -> None:
    for name, mode in (("loose", 0o777), ("tight", 0o755), ("plain", 0o644)):
        d = root / name
        d.mkdir()
        run = d / "serve.sh"
        run.write_text("#!/bin/sh\nexec sleep 1000\n")
        run.chmod(mode)
    spec = dirs_spec(root, "*", "./serve.sh", on_exit="stop")
    ledger = ProcessLedger()
    pool = start(spec.pool("dirs", durable=False), ledger)
    try:
        snap = pool.wait_until(lambda s: running(pool, "tight") and "plain" in s and "loose" in s)
        assert "writable by group or others (mode 777)" in snap["loose"].reason
        assert "is not executable" in snap["plain"].reason
        assert snap["loose"].pid is None and snap["plain"].pid is None
    finally:
        pool.stop()
    assert_no_leaks(ledger)
    missing = dirs_spec(root, "*", "no-such-program-xyz {dir}")
    assert missing.eligibility is not None
    verdict = as_eligibility(missing.eligibility)(Session("tight", root / "tight"), time.time())
    assert not verdict.eligible and "no-such-program-xyz: not found on PATH" in verdict.reason


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cmd", "sleep {nope}"], "bad placeholder {nope}"),
        (["--cmd", "sleep {dir.__class__}"], "bad placeholder {dir.__class__}"),
        (["--cmd", "sleep 'unclosed"], "cannot split --cmd"),
        (["--cmd", "sleep 1", "--env", "NOEQUALS"], "--env wants KEY=VALUE"),
        (["--cmd", "sleep 1", "--max-idle", "5x"], "'5x' is not a duration"),
        (["--cmd", "sleep 1", "--max-idle", "-1d"], "is not a duration"),
    ],
)
def test_bad_options_fail_at_once_with_a_clear_message(
    root: Path, args: list[str], message: str
) -> None:
    result = cli("run", "dirs", str(root), "--glob", "*", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_command_line_round_trip(root: Path, tracker: Tracker) -> None:
    checkout(root, "one")
    sup = tracker.supervisor(
        "dirs", str(root), "--glob", "*/.git/..", "--cmd", dump_cmd(root, "{name}"), "--on-exit",
        "stop",
    )  # fmt: skip
    wait_for(lambda: status_sessions(root / ".wirepool").get("one", {}).get("state") == "running")
    assert argv_of(root / "one")["argv"] == ["one"]
    pid = status_sessions(root / ".wirepool")["one"]["pid"]
    assert cli("stop", "dirs", str(root), "--glob", "*", "--cmd", "x").returncode == 0
    assert sup.wait_exit() == 0
    wait_for(lambda: not alive(pid))


def test_parse_command_splits_once_and_keeps_templates_per_argument() -> None:
    assert parse_command("watch --dir={dir} 'two words {name}'") == [
        "watch",
        "--dir={dir}",
        "two words {name}",
    ]
    with pytest.raises(ValueError, match="empty"):
        parse_command("   ")


def test_a_vanished_root_is_no_change_not_every_session_gone(root: Path) -> None:
    checkout(root, "kept")
    discovery = GlobDiscovery(root, "*/.git/..")
    assert [s.name for s in discovery.discover()] == ["kept"]
    root.rename(root.with_name("moved"))
    with pytest.raises(FileNotFoundError):
        discovery.discover()


def test_program_owned_by_another_user_is_refused(root: Path) -> None:
    session_dir = root / "svc"
    session_dir.mkdir()
    program = session_dir / "serve.sh"
    program.write_text("#!/bin/sh\nexec sleep 1000\n")
    program.chmod(0o755)
    spawner = dirs_spec(root, "*", "./serve.sh").spawner
    assert isinstance(spawner, CommandSpawner)
    session = Session("svc", session_dir)
    # allowed owners that exclude our uid: as if another user owned the
    # directory and the program (no root needed to test the rule itself)
    me = program.stat().st_uid
    stranger = CommandCheck(spawner, owners={me + 4242})
    verdict = stranger(session, time.time())
    assert not verdict.eligible
    # the session directory is ours as well, and is judged first
    assert (
        verdict.reason == f"session directory {session_dir} is owned by uid {me}, not {me + 4242}"
    )
    assert CommandCheck(spawner)(session, time.time()).eligible  # ours: fine
    if os.geteuid() == 0:  # the program alone another user's, for real
        os.chown(program, me + 4242, -1)
        verdict = CommandCheck(spawner)(session, time.time())
        assert verdict.reason == f"{program} is owned by uid {me + 4242}, not root"
