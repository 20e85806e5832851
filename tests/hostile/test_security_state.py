"""Security review, second round: the state directory as every verb sees it,
state files that hang or swamp the tools, and a stop signal at any point
of start-up.  Real processes; the attacks that need a second user run as
``nobody`` through ``setpriv``.  See docs/SECURITY.md."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    AS_NOBODY,
    NOBODY,
    WIREPOOL,
    Services,
    Tracker,
    cli,
    needs_second_user,
    reachable_dir,
    wait_for,
)
from hostile_helpers import attempt, hostile_bytes
from hypothesis import given
from hypothesis import strategies as st

from wirepool._proc import ProcessIdentity, identity_of, is_alive
from wirepool._store import (
    RECORD_SCHEMA,
    StateDir,
    dumps_strict,
    from_strict_json,
    lock_holder,
    lock_is_held,
    read_json,
)
from wirepool.spawn import _read_marker

EXIT_UNSAFE_STATE = 7


def as_nobody(script: str, *args: str) -> None:
    """Run a shell script as nobody, with ``args`` as $1, $2, ..."""
    subprocess.run([*AS_NOBODY, "sh", "-c", script, "sh", *args], check=True, timeout=60)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory both users can reach (pytest's tmp_path base is 0700
    under root, so nobody could not even look in)."""
    with reachable_dir("wirepool-sec-state-") as base:
        yield base


@pytest.fixture
def victim() -> Iterator[ProcessIdentity]:
    """An unrelated process of ours, in a group of its own: what a planted
    record names.  A process-group leader, so a stop would take the group."""
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        ident = wait_for(lambda: identity_of(proc.pid))
        yield ident
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def record_naming(ident: ProcessIdentity, name: str = "svc") -> str:
    return json.dumps(
        {
            "schema": RECORD_SCHEMA,
            "session": {"name": name, "home": "/", "cwd": None},
            "worker": {**ident.to_json(), "owned": True, "started_at": time.time()},
            "streak": 0,
            "next_start_at": None,
            "restarts": 0,
            "failed": False,
            "reason": "",
            "last_exit": None,
        }
    )


# ------------------------------------------ state directories of someone else


@needs_second_user
@pytest.mark.parametrize("how", ["owned by nobody", "writable by others"])
def test_regression_verbs_refuse_a_state_dir_another_user_can_write(
    shared: Path, victim: ProcessIdentity, how: str
) -> None:
    # nobody planted ROOT/.wirepool/sessions/svc.json naming a root process;
    # `stop --children` said "stopped 1 recorded child(ren)" and killed it,
    # though `run` already refused that directory.
    root = shared / "root"
    root.mkdir()
    if how == "owned by nobody":
        os.chown(root, NOBODY, NOBODY)
    else:  # ours, but anyone may write it
        (root / ".wirepool").mkdir(mode=0o700)
        (root / ".wirepool").chmod(0o777)
    as_nobody(
        'mkdir -p "$1/.wirepool/sessions" && printf %s "$2" > "$1/.wirepool/sessions/svc.json"',
        str(root),
        record_naming(victim),
    )
    expected = "owned by uid 65534" if how == "owned by nobody" else "writable by group or others"
    for verb in (
        ["stop", "servicedir", str(root), "--children"],
        ["stop", "servicedir", str(root)],
        ["status", "servicedir", str(root), "--json"],
        ["reset", "servicedir", str(root), "--session", "svc"],
        ["run", "servicedir", str(root), "--json"],
    ):
        result = cli(*verb)
        assert result.returncode == EXIT_UNSAFE_STATE, (verb, result.stdout, result.stderr)
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr  # one line, no traceback
        assert expected in result.stderr and str(root / ".wirepool") in result.stderr
        assert is_alive(victim), verb


@needs_second_user
def test_regression_status_is_not_fooled_by_a_lock_another_user_holds(shared: Path) -> None:
    # nobody made ROOT/.wirepool and held an flock on its lock file: `status`
    # said "supervisor: running" and exited 0.
    root = shared / "root"
    root.mkdir()
    os.chown(root, NOBODY, NOBODY)
    as_nobody('mkdir -m 700 "$1/.wirepool"', str(root))
    lock = root / ".wirepool" / "lock"
    holder = subprocess.Popen(
        [*AS_NOBODY, "flock", str(lock), "sleep", "1000"], start_new_session=True
    )
    try:
        wait_for(lambda: lock_holder(StateDir(root / ".wirepool")) is not None, timeout=30)
        result = cli("status", "servicedir", str(root), "--json")
        assert result.returncode == EXIT_UNSAFE_STATE, result.stdout + result.stderr
        assert "owned by uid 65534" in result.stderr
        assert "running" not in result.stdout
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


# ------------------------------------------------ a record alone is not enough


def test_regression_stop_children_spares_a_recorded_process_without_our_markers(
    services: Services, victim: ProcessIdentity
) -> None:
    # A record in our own state directory (stale, copied from another pool,
    # or written while it was still open to others) named a process that
    # is not ours: `stop --children` signalled it on the record's word.
    services.add("svc")
    StateDir(services.state_dir).ensure()
    (services.state_dir / "sessions" / "svc.json").write_text(record_naming(victim))
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert "stopped 0 recorded child(ren)" in result.stdout
    assert f"left pid {victim.pid} named by svc.json running" in result.stderr
    assert "markers" in result.stderr
    time.sleep(0.5)  # a SIGTERM would have landed by now; not a timing assert
    assert is_alive(victim)


def test_regression_recovery_watches_but_never_signals_an_unmarked_recorded_process(
    services: Services, victim: ProcessIdentity, tracker: Tracker
) -> None:
    # The same record under a new supervisor: it adopted the process as its
    # own child, so `stop --children` (and a vanished session) killed it.
    services.add("svc")
    StateDir(services.state_dir).ensure()
    (services.state_dir / "sessions" / "svc.json").write_text(record_naming(victim))
    sup = tracker.supervisor("servicedir", str(services.root))
    adopted = wait_for(lambda: sup.of("adopted"), timeout=30)
    assert adopted[0]["pid"] == victim.pid and adopted[0]["owned"] is False
    assert "markers" in adopted[0]["reason"]
    assert sup.of("spawned") == []  # watched in its place: no second daemon
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert sup.wait_exit() == 0
    assert is_alive(victim)


# ------------------------------------------------- files that hang the tools


def _fifo(path: Path) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(path, 0o600)
    return path


@pytest.mark.parametrize("name", ["status.json", "supervisor.json", "lock"])
def test_regression_status_does_not_hang_on_a_fifo_state_file(
    services: Services, name: str
) -> None:
    services.add("a")
    StateDir(services.state_dir).ensure()
    _fifo(services.state_dir / name)
    result = subprocess.run(
        [*WIREPOOL, "status", "servicedir", str(services.root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr  # answered: no supervisor
    doc = json.loads(result.stdout)
    assert [s["name"] for s in doc["sessions"]] == ["a"]
    if name == "status.json":
        assert any("not a regular file" in e for e in doc["errors"]), doc["errors"]


def test_regression_huge_status_json_is_refused_unread(services: Services) -> None:
    # 110 MB of status.json cost `wirepool status` 2.9 s and 290 MB.
    services.add("a")
    StateDir(services.state_dir).ensure()
    with open(services.state_dir / "status.json", "wb") as fh:
        fh.truncate(40 << 20)  # sparse: costs nothing to plant
    result = cli("status", "servicedir", str(services.root), "--json")
    assert result.returncode == 3, result.stderr
    doc = json.loads(result.stdout)
    assert any("larger than" in e for e in doc["errors"]), doc["errors"]
    assert [s["name"] for s in doc["sessions"]] == ["a"]  # from discovery instead


@pytest.mark.parametrize("planted", ["sessions/svc.json", "markers/4242.json"])
def test_regression_fifo_in_state_dir_neither_hangs_start_up_nor_deafens_sigterm(
    services: Services, tracker: Tracker, planted: str
) -> None:
    # A FIFO as a record hung `wirepool run` in open() at start-up, and the
    # SIGTERM handler only queued a stop for a loop that never began: only
    # SIGKILL ended it.
    services.add("a")
    StateDir(services.state_dir).ensure()
    _fifo(services.state_dir / planted)
    sup = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: sup.of("spawned"), timeout=60)
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=60) == 0


def test_regression_fifo_request_does_not_hang_the_loop(
    services: Services, tracker: Tracker
) -> None:
    services.add("a")
    sup = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: sup.of("spawned"), timeout=60)
    # where `reset` left its requests before the control socket
    _fifo(services.state_dir / "requests" / "0-planted.json")
    result = cli("reset", "servicedir", str(services.root), "--session", "a")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: sup.of("reset"), timeout=60)  # the real request, after the FIFO
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=60) == 0


_SLOW_START = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wirepool import CommandSpawner, SessionPool

    state, ready = Path(sys.argv[1]), Path(sys.argv[2])

    def discover():
        ready.write_text("in discovery")
        time.sleep(600)  # a plugin's discovery on a hung filesystem
        return []

    pool = SessionPool(discover, spawner=CommandSpawner(["true"]), state_dir=state)
    pool.run_forever()
    print("returned")
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_regression_stop_signal_during_a_slow_start_up_ends_it(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # run_forever's handler queued the stop for a loop that had not begun:
    # start-up went on to its end, however long that was.
    state, ready = tmp_path / "state", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_START, str(state), str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(ready.exists, timeout=60)
        assert lock_is_held(StateDir(state))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "returned" and "Traceback" not in err
        assert not lock_is_held(StateDir(state))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# ------------------------------------------------------ the new open paths


@given(hostile_bytes)
def test_state_file_reads_raise_only_their_documented_errors(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("state") / "123.json"
    path.write_bytes(raw)
    value, why = attempt(read_json, path, 100, errors=(OSError, ValueError))
    if why is None:
        assert len(raw) <= 100
        assert json.dumps(value) == json.dumps(json.loads(raw))  # NaN != NaN
    marker = _read_marker(path)  # a marker file: usable, or None
    if marker is not None:
        ident, env = marker
        assert ident.pid == 123 and isinstance(ident.start, int)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())


def test_read_json_refuses_what_is_not_a_regular_file_unread(tmp_path: Path) -> None:
    (tmp_path / "link.json").symlink_to(tmp_path / "target.json")
    (tmp_path / "target.json").write_text("{}")
    for path in (_fifo(tmp_path / "fifo.json"), tmp_path / "link.json", Path("/dev/zero")):
        with pytest.raises(OSError):
            read_json(path)
    (tmp_path / "deep.json").write_text("[" * 60_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_json(tmp_path / "deep.json")


# ------------------------------------------------- JSON strict parsers take

UNDECODABLE = os.fsdecode(b"caf\xe9")  # a directory name that is not UTF-8


def _assert_strict(text: str) -> Any:
    """What a strict parser would say: UTF-8 bytes, JSON without control
    characters in strings, and no lone surrogate anywhere (Python's json
    takes "\\udce9"; serde_json and others refuse the whole document)."""
    doc = json.loads(text.encode("utf-8").decode("utf-8", "strict"), strict=True)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError on a surrogate
    return doc


def _session_named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["sessions"] if s["name"] == name)


def test_regression_non_utf8_names_are_strict_json_in_events_status_and_status_json(
    services: Services, tracker: Tracker
) -> None:
    # A directory name that is not UTF-8 came out of `run --json`, `status
    # --json` and status.json as "\\udce9": a lone surrogate, which strict
    # JSON parsers reject (the whole document, not just the name).
    services.add(UNDECODABLE)
    before = cli("status", "servicedir", str(services.root), "--json")  # by discovery
    sess = _session_named(_assert_strict(before.stdout), "caf\\xe9")
    assert base64.b64decode(sess["name_bytes"]) == b"caf\xe9"

    sup = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    spawned = wait_for(lambda: sup.of("spawned"), timeout=60)
    wait_for((services.state_dir / "status.json").exists)
    status = cli("status", "servicedir", str(services.root), "--json")
    assert status.returncode == 0, status.stderr
    on_disk = (services.state_dir / "status.json").read_bytes().decode("utf-8", "strict")
    for text in (status.stdout, on_disk):
        sess = _session_named(_assert_strict(text), "caf\\xe9")
        assert base64.b64decode(sess["name_bytes"]) == b"caf\xe9"
        assert base64.b64decode(sess["home_bytes"]) == os.fsencode(services.root) + b"/caf\xe9"
    assert _session_named(_assert_strict(status.stdout), "caf\\xe9")["alive"] is True
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit(timeout=60) == 0
    assert spawned[0]["session"] == "caf\\xe9"
    assert base64.b64decode(spawned[0]["session_bytes"]) == b"caf\xe9"
    for event in sup.events:
        _assert_strict(json.dumps(event))


names = st.one_of(
    st.binary(max_size=30).map(os.fsdecode),  # every file name
    st.text(max_size=20),
    st.lists(
        st.sampled_from(["a", "\\", "x", "e9", "_bytes", "\udce9", "\ud800", "\U0001f600"]),
        max_size=10,
    ).map("".join),
)


@given(
    st.dictionaries(st.text(max_size=10).filter(lambda k: not k.endswith("_bytes")), names),
    st.dictionaries(names, names, max_size=3),
)
def test_strict_json_is_strict_and_file_names_round_trip(
    doc: dict[str, str], any_keys: dict[str, str]
) -> None:
    wrapped = {"sessions": [doc], "errors": list(doc.values()), "attrs": any_keys}
    parsed = _assert_strict(dumps_strict(wrapped, indent=1))
    restored = from_strict_json(parsed)["sessions"][0]
    for key, value in doc.items():
        try:
            value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate no file name makes: escaped only
            assert "\\u" in restored[key]
        else:
            assert restored[key] == value  # what the directory entry held, exactly
