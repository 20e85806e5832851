"""Security review, as tests: owner-only state, no symlink following where a
file could be planted, no shell, exactly the declared child environment,
and refusal of code others can change.  See docs/SECURITY.md."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import Tracker, wait_for
from hostile_helpers import hostile_text
from hypothesis import given
from hypothesis import strategies as st
from wirepool_servicedir import RunScriptCheck, read_envdir
from wirepool_wire import SupervisorPidGuard, wire_spec

from wirepool import (
    CommandSpawner,
    Environment,
    Session,
    SessionPool,
    SpawnError,
    StaticDiscovery,
)
from wirepool._store import StateDir, acquire_lock

ROOT = os.geteuid() == 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_state_lock_records_logs_and_status_are_owner_only(
    tmp_path: Path, tracker: Tracker, lax_umask: None
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state = tmp_path / "state"
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session(name="a", home=home)]),
            spawner=CommandSpawner(["sleep", "1000"]),
            state_dir=state,
            durable=False,
            stop_grace=2.0,
        )
    )
    with pool:
        pool.wait_until(lambda s: "a" in s and s["a"].state == "running")
        wait_for((state / "sessions" / "a.json").exists)
        wait_for((state / "status.json").exists)
        for d in (state, state / "sessions", state / "logs", state / "control"):
            assert _mode(d) == 0o700, d
        files = ("lock", "supervisor.json", "status.json", "sessions/a.json", "logs/a.log")
        for f in (*files, "control/sock"):
            assert _mode(state / f) == 0o600, f


def test_regression_state_dir_writable_by_others_is_refused(tmp_path: Path) -> None:
    # Anyone who can write the state dir can plant a record naming any live
    # process as our child: the supervisor would adopt it, and signal it.
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        StateDir(state).ensure()
    assert not (state / "sessions").exists()


def test_regression_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if ROOT:
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        os.chown(state, 12345, 12345)
    else:  # the same check, on a directory root owns
        state = Path("/")
    with pytest.raises(PermissionError, match="owned by uid"):
        StateDir(state).ensure()


def test_regression_loose_state_dir_of_ours_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sessions").mkdir(parents=True)
    state.chmod(0o755)
    (state / "sessions").chmod(0o755)
    StateDir(state).ensure()
    assert _mode(state) == 0o700 and _mode(state / "sessions") == 0o700


def _plant(link: Path, victim: Path) -> Path:
    """A file worth protecting, and a symlink to it where we will write."""
    victim.write_text("keep")
    link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    link.symlink_to(victim)
    return victim


def test_regression_lock_file_symlink_is_not_followed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    victim = _plant(state / "lock", tmp_path / "victim")
    with pytest.raises(OSError, match=r"symbolic links|Too many levels"):
        acquire_lock(StateDir(state))
    assert victim.read_text() == "keep"


def test_regression_log_symlink_is_not_followed(tmp_path: Path) -> None:
    # A planted <logs>/<session>.log -> ~/.bashrc had the child append its
    # output there (and as root, to any file at all).
    logs = tmp_path / "logs"
    victim = _plant(logs / "a.log", tmp_path / "bashrc")
    spawner = CommandSpawner(["echo", "pwned"], log_dir=logs)
    worker = spawner.spawn(Session(name="a", home=tmp_path))  # output discarded
    try:
        wait_for(lambda: worker.poll() is not None)
    finally:
        worker.close()
    assert worker.log_path is None
    assert victim.read_text() == "keep"


def test_regression_supervisor_pid_tmp_symlink_is_not_followed(tmp_path: Path) -> None:
    # The wire guard wrote "<root>/.supervisor.pid.<pid>.tmp", a name anyone
    # could predict and pre-plant as a symlink to a file to clobber.
    root = tmp_path / "sessions"
    victim = _plant(root / f".supervisor.pid.{os.getpid()}.tmp", tmp_path / "shadow")
    guard = SupervisorPidGuard(root)
    assert guard.acquire() is None
    try:
        assert victim.read_text() == "keep"
        assert (root / "supervisor.pid").read_text() == str(os.getpid())
        assert not (root / "supervisor.pid").is_symlink()
    finally:
        guard.release()


def test_session_names_never_escape_the_log_and_record_directories(tmp_path: Path) -> None:
    from wirepool.spawn import safe_filename

    for name in ("../../etc/passwd", "..", "/abs", "a/../../b", ".hidden", "x" * 400, "\udcff"):
        cleaned = safe_filename(name)
        assert "/" not in cleaned and not cleaned.startswith(".")
        assert len(cleaned.encode("utf-8", "surrogateescape")) < 200


@given(st.text(max_size=30))
def test_safe_filename_is_always_one_plain_component(name: str) -> None:
    from wirepool.spawn import safe_filename

    cleaned = safe_filename(name)
    assert cleaned and "/" not in cleaned and "\0" not in cleaned
    assert not cleaned.startswith(".") and cleaned.isascii()


# ------------------------------------------------------------- no shell

ECHO_ARGV = (
    "import json, os, sys; "
    "open('argv.json', 'w').write(json.dumps(dict(argv=sys.argv[1:], env=dict(os.environ))))"
)


@given(hostile_text.map(lambda t: t.replace("\0", "")[:60]).filter(bool))
def test_argv_templates_substitute_one_element_each(name: str) -> None:
    spawner = CommandSpawner(["prog", "--name={name}", "{home}", "literal {cwd}"])
    argv = spawner.command(Session(name=name, home=Path("/h/{name}"), cwd=Path("/c")))
    # the value is inserted once, never re-expanded, never split
    assert argv == ["prog", f"--name={name}", "/h/{name}", "literal /c"]


def test_hostile_session_data_reaches_the_child_verbatim_never_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "x; touch pwned $(touch pwned2) `touch pwned3` | tee pwned4 \n {home} ' \" é"
    home = tmp_path / "home; touch pwned5"
    home.mkdir()
    monkeypatch.chdir(tmp_path)
    spawner = CommandSpawner(
        [sys.executable, "-c", ECHO_ARGV, "{name}", "{home}"],
        env=Environment(inherit=False, set={"SESSION": "{name}"}),
    )
    spawner.attach(tmp_path / "state", {"WIREPOOL_POOL": "p"})
    worker = spawner.spawn(Session(name=name, home=home))
    try:
        wait_for(lambda: worker.poll() is not None, timeout=30)
    finally:
        worker.kill()
        worker.close()
    seen = json.loads((home / "argv.json").read_text())
    assert seen["argv"] == [name, str(home)]
    assert seen["env"]["SESSION"] == name
    assert not list(tmp_path.rglob("pwned*"))


# ---------------------------------------------------- child environment


env_names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=12)


@given(
    st.dictionaries(env_names, st.text(max_size=10), max_size=12),
    st.lists(st.sampled_from(["WIRE_", "CLAUDE", "A", "WIREPOOL_", "X_"]), max_size=3),
    st.dictionaries(env_names, st.sampled_from(["{name}", "{home}", "v"]), max_size=3),
)
def test_child_environment_is_exactly_what_is_declared(
    base: dict[str, str], strip: list[str], pinned: dict[str, str]
) -> None:
    env = Environment(strip_prefixes=tuple(strip), set=pinned).build(
        Session(name="n", home=Path("/h")), base
    )
    for key in env:
        if key not in pinned:
            assert key in base
            assert not any(key.startswith(p) for p in strip)
            assert not key.startswith("WIREPOOL_")
    for key, value in base.items():
        if key not in pinned and not key.startswith(("WIREPOOL_", *strip)):
            assert env[key] == value
    assert set(pinned) <= set(env)


def test_wire_child_environment_keeps_no_ambient_wire_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("WIRE_SESSION_ID", "WIRE_HOME", "WIRE_HOME_FORCE", "WIREPOOL_SESSION"):
        monkeypatch.setenv(key, "ambient")
    spec = wire_spec(tmp_path / "sessions", wire_bin="/bin/true")
    home = tmp_path / "sessions" / "by-key" / "0123456789abcdef"
    env = spec.spawner.environment(Session(name="by-key/0123456789abcdef", home=home))  # type: ignore[attr-defined]
    assert {k for k in env if k.startswith("WIRE")} == {"WIRE_HOME"}
    assert env["WIRE_HOME"] == str(home)


# ------------------------------------------------- refusing others' code


def test_run_owned_by_another_user_is_refused_without_root(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    other = os.getuid() + 1
    verdict = RunScriptCheck(uid=other).check(Session(name="s", home=tmp_path), time.time())
    assert not verdict.eligible
    if ROOT:  # root's directory is trusted for any supervisor: `run` is what fails
        assert verdict.reason == f"run is owned by uid {os.getuid()}, not {other}"
    else:  # the directory is ours as well, and is judged first
        assert verdict.reason == (
            f"service directory {tmp_path} is owned by uid {os.getuid()}, not {other} or root"
        )


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o777])
def test_regression_env_dir_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    # env/LD_PRELOAD runs code as surely as run does, but only run was checked.
    env = tmp_path / "env"
    env.mkdir()
    (env / "LD_PRELOAD").write_text("/tmp/evil.so\n")
    env.chmod(mode)
    with pytest.raises(SpawnError, match="writable by group or others"):
        read_envdir(env, owner=os.getuid())
    env.chmod(0o755)
    (env / "LD_PRELOAD").chmod(0o666)
    with pytest.raises(SpawnError, match="writable by group or others"):
        read_envdir(env, owner=os.getuid())


def test_regression_env_file_of_another_user_is_refused(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    (env / "PATH").write_text("/tmp/evil\n")
    if ROOT:
        os.chown(env / "PATH", 12345, -1)
        owner = os.getuid()
    else:  # the same check: our file, judged for another uid
        owner = os.getuid() + 1
    with pytest.raises(SpawnError, match="owned by uid"):
        read_envdir(env, owner=owner)


def test_regression_env_dir_cannot_forge_or_erase_the_markers(tmp_path: Path) -> None:
    # env/ was applied after the WIREPOOL_* variables: a file named
    # WIREPOOL_SESSION made the child claim another session (or, empty,
    # carry no marker at all), so a later supervisor lost track of it.
    from wirepool_servicedir import servicedir_spec

    from wirepool.spawn import POOL_MARKER, SESSION_MARKER

    svc = tmp_path / "root" / "svc"
    (svc / "env").mkdir(parents=True)
    (svc / "env" / SESSION_MARKER).write_text("someone-else\n")
    (svc / "env" / POOL_MARKER).write_text("")  # empty: "unset it"
    (svc / "env" / "KEPT").write_text("yes\n")
    spawner = servicedir_spec(tmp_path / "root").spawner
    spawner.attach(tmp_path / "state", {POOL_MARKER: "the-pool"})
    env = spawner.environment(Session(name="svc", home=svc))
    assert env[SESSION_MARKER] == "svc" and env[POOL_MARKER] == "the-pool"
    assert env["KEPT"] == "yes"
