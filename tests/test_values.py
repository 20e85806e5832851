"""Unit tests for the small pieces: value types (:class:`Session`,
:class:`ExitStatus`), :class:`MockClock`, the pure helpers of
:mod:`wirepool.spawn` and the disk primitives of :mod:`wirepool._store`."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import types
from dataclasses import field
from pathlib import Path
from typing import ClassVar
from typing import ClassVar as CV

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wirepool import _store
from wirepool._store import (
    StateDir,
    acquire_lock,
    atomic_write_json,
    lock_is_held,
    quarantine,
    read_json,
    read_small,
)
from wirepool._types import ExitStatus, Session
from wirepool._value import Record, Value, frozen, record, replace
from wirepool._value import field as value_field
from wirepool.errors import LockHeldError
from wirepool.spawn import CommandSpawner, Environment, rotate_log, safe_filename
from wirepool.testing import MockClock

# ------------------------------------------------------------------ Session


def test_session_is_frozen() -> None:
    s = Session(name="a", home=Path("/h"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "b"  # type: ignore[misc]


def test_session_attrs_are_an_immutable_copy() -> None:
    source = {"did": "did:a"}
    s = Session(name="a", home=Path("/h"), attrs=source)
    assert isinstance(s.attrs, types.MappingProxyType)
    with pytest.raises(TypeError):
        s.attrs["did"] = "did:b"  # type: ignore[index]
    source["did"] = "changed"
    assert s.attrs["did"] == "did:a"
    assert Session(name="b", home=Path("/h")).attrs == {}


def test_session_coerces_paths() -> None:
    s = Session(name="a", home="/h", cwd="/h/sub")  # type: ignore[arg-type]
    assert s.home == Path("/h")
    assert s.cwd == Path("/h/sub")
    assert isinstance(s.home, Path)


def test_session_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        Session(name="", home=Path("/h"))


def test_session_equality_includes_attrs_but_hash_ignores_them() -> None:
    one = Session(name="a", home=Path("/h"), attrs={"did": "1"})
    same = Session(name="a", home=Path("/h"), attrs={"did": "1"})
    other = Session(name="a", home=Path("/h"), attrs={"did": "2"})
    assert one == same
    assert one != other
    assert hash(one) == hash(other)
    assert {one: "x"}[same] == "x"
    assert one != Session(name="a", home=Path("/h2"), attrs={"did": "1"})
    assert one != Session(name="a", home=Path("/h"), cwd=Path("/c"), attrs={"did": "1"})
    assert one != "a"


def test_session_display_name() -> None:
    assert Session(name="homes/x", home=Path("/h")).display_name == "homes/x"
    shown = Session(name="homes/x", home=Path("/h"), attrs={"display_name": "alice"})
    assert shown.display_name == "alice"
    empty = Session(name="homes/x", home=Path("/h"), attrs={"display_name": ""})
    assert empty.display_name == "homes/x"


def test_session_copy_keeps_equality() -> None:
    s = Session(name="a", home=Path("/h"), attrs={"k": 1})
    assert copy.copy(s) == s


def test_session_pickles_and_deep_copies() -> None:
    s = Session(name="a", home=Path("/h"), attrs={"k": [1]})
    assert pickle.loads(pickle.dumps(s)) == s
    assert copy.deepcopy(s) == s


# --------------------------------------------------------------- ExitStatus


def test_exit_status_from_a_negative_returncode_is_a_signal() -> None:
    status = ExitStatus.from_returncode(-9)
    assert status.signal == 9
    assert status.code is None
    assert not status.success
    assert "SIGKILL" in status.describe()
    assert status.to_json() == {"code": None, "signal": 9}


def test_exit_status_codes() -> None:
    assert ExitStatus.from_returncode(0).success
    failed = ExitStatus.from_returncode(3)
    assert not failed.success
    assert failed.describe() == "exit code 3"
    assert failed.to_json() == {"code": 3, "signal": None}


def test_exit_status_from_wait_status() -> None:
    assert ExitStatus.from_wait_status(2 << 8) == ExitStatus(code=2)
    assert ExitStatus.from_wait_status(signal.SIGTERM) == ExitStatus(signal=signal.SIGTERM)
    assert "SIGTERM" in ExitStatus.from_wait_status(signal.SIGTERM).describe()


def test_exit_status_unknown() -> None:
    unknown = ExitStatus()
    assert not unknown.success
    assert "unknown" in unknown.describe()
    assert "200" in ExitStatus(signal=200).describe()  # no such signal name


# ---------------------------------------------------------------- MockClock


def test_mock_clock_advances_only_when_told() -> None:
    clock = MockClock(start=100.0, wall_offset=1_700_000_000.0)
    assert clock.monotonic() == 100.0
    assert clock.time() == 1_700_000_000.0
    assert clock.monotonic() == 100.0
    clock.advance(2.5)
    assert clock.monotonic() == 102.5
    assert clock.time() == 1_700_000_002.5
    clock.set(200.0)
    assert clock.monotonic() == 200.0
    assert clock.time() - clock.monotonic() == 1_700_000_000.0 - 100.0


def test_mock_clock_never_goes_backwards() -> None:
    clock = MockClock(start=100.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-0.1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(99.9)
    assert clock.monotonic() == 100.0
    clock.set(100.0)  # standing still is allowed
    clock.advance(0)
    assert clock.monotonic() == 100.0


def test_mock_clock_calls_subscribers_on_every_move() -> None:
    clock = MockClock()
    calls: list[float] = []
    clock.subscribe(lambda: calls.append(clock.monotonic()))
    clock.advance(1.0)
    clock.set(clock.monotonic() + 5.0)
    with pytest.raises(ValueError):
        clock.advance(-1.0)
    assert calls == [1001.0, 1006.0]


def test_mock_clock_fixture_from_the_pytest_plugin(mock_clock: MockClock) -> None:
    start = mock_clock.monotonic()
    mock_clock.advance(3.0)
    assert mock_clock.monotonic() == start + 3.0


# -------------------------------------------------------------- Environment


def test_environment_inherits_strips_and_never_passes_wirepool_markers() -> None:
    base = {
        "PATH": "/usr/bin",
        "WIRE_SESSION_ID": "stale",
        "WIRE_HOME": "/wrong",
        "WIREPOOL_POOL": "parent-pool",
        "WIREPOOL_SESSION": "parent-session",
        "LANG": "C.UTF-8",
    }
    env = Environment(strip_prefixes=("WIRE_",)).build(Session("a", Path("/h")), base)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8"}


def test_environment_never_inherits_wirepool_vars_even_without_strip() -> None:
    base = {"PATH": "/bin", "WIREPOOL_POOL": "x"}
    assert Environment().build(Session("a", Path("/h")), base) == {"PATH": "/bin"}


def test_environment_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WP_TEST_KEEP", "1")
    monkeypatch.setenv("WP_TEST_DROP_ME", "1")
    monkeypatch.setenv("WIREPOOL_SESSION", "leak")
    env = Environment(strip_prefixes=("WP_TEST_DROP",)).build(Session("a", Path("/h")))
    assert env["WP_TEST_KEEP"] == "1"
    assert "WP_TEST_DROP_ME" not in env
    assert "WIREPOOL_SESSION" not in env


def test_environment_follows_every_change_of_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    # the inherited part is kept between spawns: it must never be stale
    build = Environment(strip_prefixes=("WP_TEST_DROP",)).build
    monkeypatch.setenv("WP_TEST_KEEP", "1")
    assert build(Session("a", Path("/h")))["WP_TEST_KEEP"] == "1"
    monkeypatch.setenv("WP_TEST_KEEP", "2")
    first = build(Session("a", Path("/h")))
    assert first["WP_TEST_KEEP"] == "2"
    first["WP_TEST_MINE"] = "x"  # the caller's copy, not the kept one
    monkeypatch.delenv("WP_TEST_KEEP")
    again = build(Session("a", Path("/h")))
    assert "WP_TEST_KEEP" not in again
    assert "WP_TEST_MINE" not in again
    monkeypatch.setenv("WP_TEST_DROP_ME", "1")
    assert "WP_TEST_DROP_ME" not in build(Session("a", Path("/h")))
    assert Environment().build(Session("a", Path("/h")))["WP_TEST_DROP_ME"] == "1"


def test_environment_pins_templates() -> None:
    session = Session(name="team/alice", home=Path("/homes/alice"), cwd=Path("/work"))
    environment = Environment(
        inherit=False,
        set={
            "WIRE_HOME": "{home}",
            "WIRE_SESSION": "{name}",
            "WORKDIR": "{cwd}",
            "LOG": "{home}/logs/{name}.log",
        },
    )
    env = environment.build(session, {"PATH": "/bin"})
    assert env == {
        "WIRE_HOME": "/homes/alice",
        "WIRE_SESSION": "team/alice",
        "WORKDIR": "/work",
        "LOG": "/homes/alice/logs/team/alice.log",
    }


def test_environment_cwd_defaults_to_home_and_pins_override_inherited() -> None:
    env = Environment(set={"WORKDIR": "{cwd}", "PATH": "/pinned"}).build(
        Session("a", Path("/h")), {"PATH": "/inherited"}
    )
    assert env == {"WORKDIR": "/h", "PATH": "/pinned"}


def test_environment_template_values_are_not_reexpanded() -> None:
    env = Environment(inherit=False, set={"N": "{name}"}).build(Session("{home}", Path("/h")), {})
    assert env == {"N": "{home}"}


# ------------------------------------------------------------- safe_filename

ODD_NAMES = [
    "a/b",
    "..",
    ".",
    ".hidden",
    "../../etc/passwd",
    "naïve name",
    "x\ny",
    "nul\x00byte",
    "back\\slash",
    "a" * 300,
    "é" * 300,
    "/",
    " ",
    "-",
    "surrogate\udcff",
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=repr)
def test_safe_filename_is_one_harmless_path_component(tmp_path: Path, name: str) -> None:
    result = safe_filename(name)
    assert result
    assert "/" not in result
    assert "\x00" not in result
    assert not result.startswith(".")
    assert len(result.encode("utf-8", "surrogateescape")) <= 255
    target = tmp_path / (result + ".log")
    target.touch()
    assert target.parent == tmp_path
    assert list(tmp_path.iterdir()) == [target]


def test_safe_filename_keeps_clean_names_as_they_are() -> None:
    for name in ("alice", "project-1.x", "under_score"):
        assert safe_filename(name) == name
    # non-ASCII is cleaned and hashed: byte length stays bounded for any script
    assert safe_filename("Ünïcödé").startswith("_n_c_d_-")


# what safe_filename tested with patterns until the ninth session; its
# string methods must say exactly what these say, for any name
_CLEAN_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,79}")
_HASH_SUFFIX_PATTERN = re.compile(r"-[0-9a-f]{8}$")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="abcXYZ019-_.\n", max_size=90),
        st.builds(
            lambda head, digits, tail: f"{head}-{digits}{tail}",
            st.text(alphabet="ab.-_", max_size=75),
            st.text(alphabet="0123456789abcdefABCDEFg", min_size=8, max_size=8),
            st.sampled_from(["", "\n", "x"]),
        ),
    )
)
def test_safe_filename_judges_names_as_its_patterns_did(name: str) -> None:
    from wirepool.spawn import _has_hash_suffix, _is_clean

    assert _is_clean(name) == bool(_CLEAN_NAME_PATTERN.fullmatch(name))
    clean_form = name if _is_clean(name) else ""
    assert _has_hash_suffix(clean_form) == bool(_HASH_SUFFIX_PATTERN.search(clean_form))
    if "\n" not in name:  # "$" matches before a final newline too: never a clean name
        assert _has_hash_suffix(name) == bool(_HASH_SUFFIX_PATTERN.search(name))


def test_safe_filename_is_deterministic() -> None:
    assert safe_filename("a/b") == safe_filename("a/b")


def test_safe_filename_keeps_names_that_clean_alike_apart() -> None:
    alike = ["a/b", "a b", "a\nb", "a:b", "a_b", "a?b", "a/b/", "/a/b"]
    results = [safe_filename(n) for n in alike]
    assert len(set(results)) == len(alike)
    long_alike = ["x" * 100, "x" * 101, "x" * 80 + "/"]
    assert len({safe_filename(n) for n in long_alike}) == 3


def test_safe_filename_cannot_be_collided_by_a_clean_name() -> None:
    digest = hashlib.sha256(b"a/b").hexdigest()[:8]
    assert safe_filename("a/b") != safe_filename(f"a_b-{digest}")


@pytest.mark.parametrize(
    "name",
    ["项目" * 100, "项" * 80, "\U00020000" * 300],
    ids=["cjk-200-chars", "cjk-80-chars-clean", "cjk-ext-b-4-byte"],
)
def test_safe_filename_fits_a_record_and_its_temp_file(tmp_path: Path, name: str) -> None:
    # exactly what SessionPool._record_path + atomic_write_json do
    atomic_write_json(tmp_path / f"{safe_filename(name)}.json", {"ok": True})


# ---------------------------------------------------------------- rotate_log


def test_rotate_log_leaves_a_small_file_alone(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_bytes(b"x" * 50)
    assert not rotate_log(log, max_bytes=50, backups=3)
    assert log.read_bytes() == b"x" * 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.log"]


def test_rotate_log_missing_file_or_disabled(tmp_path: Path) -> None:
    assert not rotate_log(tmp_path / "none.log", max_bytes=1, backups=3)
    log = tmp_path / "s.log"
    log.write_bytes(b"x" * 100)
    assert not rotate_log(log, max_bytes=0, backups=3)
    assert log.stat().st_size == 100


def test_rotate_log_rename_mode_shifts_backups(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_bytes(b"current" * 10)
    (tmp_path / "s.log.1").write_bytes(b"one")
    (tmp_path / "s.log.2").write_bytes(b"two")
    (tmp_path / "s.log.3").write_bytes(b"three")
    assert rotate_log(log, max_bytes=10, backups=3)
    assert not log.exists()
    assert (tmp_path / "s.log.1").read_bytes() == b"current" * 10
    assert (tmp_path / "s.log.2").read_bytes() == b"one"
    assert (tmp_path / "s.log.3").read_bytes() == b"two"  # "three" fell off the end
    assert not (tmp_path / "s.log.4").exists()


def test_rotate_log_copy_truncate_keeps_an_appending_writer_at_the_new_end(
    tmp_path: Path,
) -> None:
    log = tmp_path / "s.log"
    with open(log, "ab", buffering=0) as writer:  # like a child's O_APPEND stdout
        writer.write(b"before rotation\n" * 10)
        assert rotate_log(log, max_bytes=100, backups=2, copy_truncate=True)
        assert log.stat().st_size == 0
        writer.write(b"after\n")
        # Appending: the write lands at the new end, not at the old offset
        # behind a hole of NUL bytes.
        assert log.read_bytes() == b"after\n"
    assert (tmp_path / "s.log.1").read_bytes() == b"before rotation\n" * 10


def test_rotate_log_copy_truncate_shifts_older_copies(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    (tmp_path / "s.log.1").write_bytes(b"older")
    log.write_bytes(b"y" * 100)
    assert rotate_log(log, max_bytes=60, backups=2, copy_truncate=True)
    assert (tmp_path / "s.log.1").read_bytes() == b"y" * 100
    assert (tmp_path / "s.log.2").read_bytes() == b"older"
    assert log.exists()
    assert log.stat().st_size == 0


def test_rotate_log_copy_truncate_of_a_huge_log_copies_only_its_tail(tmp_path: Path) -> None:
    # Up to twice the limit the whole log is kept (nothing lost when the
    # keeper is prompt); beyond that only the last max_bytes are copied, so
    # a 3 GB log costs no more to rotate than a 10 MB one.
    log = tmp_path / "s.log"
    log.write_bytes(b"old" * 1000 + b"the tail")
    assert rotate_log(log, max_bytes=8, backups=1, copy_truncate=True)
    assert (tmp_path / "s.log.1").read_bytes() == b"the tail"
    assert log.stat().st_size == 0


def test_rotate_log_without_backups_truncates(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_bytes(b"z" * 100)
    assert rotate_log(log, max_bytes=10, backups=0)
    assert log.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.log"]


# ----------------------------------------------------------- CommandSpawner


@pytest.mark.parametrize("argv", ["wire daemon --home {home}", "", []])
def test_command_spawner_refuses_a_shell_string_or_nothing(argv: object) -> None:
    with pytest.raises(TypeError, match="never a shell string"):
        CommandSpawner(argv)  # type: ignore[arg-type]


def test_command_spawner_formats_each_element_alone() -> None:
    name = "evil name; rm -rf / $(reboot) {home}"
    session = Session(name=name, home=Path("/homes/x y"), cwd=Path("/w"))
    spawner = CommandSpawner(["wire", "daemon", "--name={name}", "--home", "{home}", "{cwd}"])
    argv = spawner.command(session)
    assert argv == [
        "wire",
        "daemon",
        f"--name={name}",  # one element, and "{home}" inside the name is not expanded
        "--home",
        "/homes/x y",
        "/w",
    ]


def test_command_spawner_cwd_template_defaults_to_home() -> None:
    spawner = CommandSpawner(["run", "{cwd}"])
    assert spawner.command(Session(name="a", home=Path("/h"))) == ["run", "/h"]


def test_command_spawner_callable_argv_is_stringified() -> None:
    spawner = CommandSpawner(lambda s: ["daemon", s.home, 3])
    assert spawner.command(Session(name="a", home=Path("/h"))) == ["daemon", "/h", "3"]


def test_command_spawner_environment_carries_the_markers() -> None:
    spawner = CommandSpawner(
        ["daemon"],
        env=Environment(inherit=False, set={"HOME": "{home}"}),
        env_for=lambda s: {"EXTRA": s.name},
    )
    session = Session(name="a", home=Path("/h"))
    assert spawner.environment(session) == {"HOME": "/h", "EXTRA": "a"}
    spawner.attach(Path("/state"), {"WIREPOOL_POOL": "pool-1"})
    assert spawner.environment(session) == {
        "HOME": "/h",
        "EXTRA": "a",
        "WIREPOOL_POOL": "pool-1",
        "WIREPOOL_SESSION": "a",
    }
    assert spawner.log_path(session) == Path("/state/logs/a.log")


# ---------------------------------------------------------------- _store


def test_atomic_write_json_writes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write_json(target, {"a": 1, "when": Path("/p")})
    assert read_json(target) == {"a": 1, "when": "/p"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_atomic_write_json_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    atomic_write_json(target, {"v": 1}, durable=False)
    with open(target) as reader:  # a reader that opened the old version
        atomic_write_json(target, {"v": 2})
        assert json.load(reader) == {"v": 1}  # still sees the whole old file
    assert read_json(target) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_atomic_write_json_failure_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "status.json"
    atomic_write_json(target, {"v": 1})

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_store.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        atomic_write_json(target, {"v": 2})
    monkeypatch.undo()
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_quarantine_moves_a_file_aside(tmp_path: Path) -> None:
    record = tmp_path / "a.json"
    record.write_text("{torn")
    moved = quarantine(record)
    assert moved is not None
    assert not record.exists()
    assert moved.parent == tmp_path
    assert moved.name.startswith("a.json.corrupt-")
    assert moved.read_text() == "{torn"
    assert quarantine(tmp_path / "missing.json") is None


def test_quarantine_twice_in_one_second_keeps_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_store, "time", types.SimpleNamespace(time=lambda: 1_750_000_000.0))
    record = tmp_path / "a.json"
    record.write_text("first")
    first = quarantine(record)
    record.write_text("second")
    second = quarantine(record)
    assert first is not None
    assert second is not None
    kept = sorted(p.read_text() for p in tmp_path.iterdir())
    assert kept == ["first", "second"]


def test_lock_is_per_open_file_description(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    assert not lock_is_held(state)  # no lock file yet
    fd = acquire_lock(state, attempts=1)
    try:
        assert lock_is_held(state)
        # Same process, new open(): flock conflicts with our own first fd.
        with pytest.raises(LockHeldError) as info:
            acquire_lock(state, attempts=1)
        assert isinstance(info.value, RuntimeError)
        assert info.value.state_dir == state.root
        assert info.value.holder_pid is None
        assert lock_is_held(state)
    finally:
        os.close(fd)
    assert not lock_is_held(state)  # closing the fd released it
    fd = acquire_lock(state, attempts=1)
    os.close(fd)
    assert state.lock_path.exists()  # never deleted


def test_lock_held_error_names_the_holder(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    fd = acquire_lock(state, attempts=1)
    try:
        atomic_write_json(state.supervisor_path, {"pid": 4242})
        with pytest.raises(LockHeldError, match="pid 4242") as info:
            acquire_lock(state, attempts=2)
        assert info.value.holder_pid == 4242
    finally:
        os.close(fd)


def test_failed_acquire_does_not_leak_its_fd(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    fd = acquire_lock(state, attempts=1)
    try:
        before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
        for _ in range(5):
            with pytest.raises(LockHeldError):
                acquire_lock(state, attempts=1)
        after = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
        assert after == before
    finally:
        os.close(fd)


# ------------------------------------------- the shared-method dataclasses


@frozen
class _Pair(Value):
    left: int
    right: list[int] = field(default_factory=list)
    tag: str = "t"


@frozen
class _Checked(Value):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


@record(slots=True)
class _Slotted(Record):
    a: int
    b: int = 2


@record
class _Loose(Record):
    a: int


def test_frozen_builds_like_the_dataclass_it_stands_for() -> None:
    one = _Pair(1)
    assert (one.left, one.right, one.tag) == (1, [], "t")
    assert _Pair(1).right is not one.right  # a fresh default each time
    assert _Pair(1, [2], tag="u") == _Pair(left=1, right=[2], tag="u")
    assert repr(_Pair(1, [2])) == "_Pair(left=1, right=[2], tag='t')"
    assert [f.name for f in dataclasses.fields(_Pair)] == ["left", "right", "tag"]
    assert _Pair.__match_args__ == ("left", "right", "tag")
    match one:
        case _Pair(1, [], "t"):
            pass
        case _:
            pytest.fail("the positional pattern did not match")
    assert dataclasses.replace(one, tag="v") == _Pair(1, [], "v")
    assert not hasattr(one, "__dict__")  # slots, as slots=True
    with pytest.raises(ValueError, match="negative"):
        _Checked(-1)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required argument: 'left'"),
        ((1, [], "t", 4), {}, "takes 3 arguments but 4 were given"),
        ((1,), {"colour": 2}, "unexpected arguments: colour"),
        ((1,), {"left": 2}, "unexpected arguments: left"),  # given twice
    ],
)
def test_frozen_refuses_wrong_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        _Pair(*args, **kwargs)


def test_frozen_cannot_be_changed_but_pickles_and_copies() -> None:
    one = _Pair(1, [2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.left = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del one.tag  # type: ignore[misc]
    for again in (pickle.loads(pickle.dumps(one)), copy.copy(one), copy.deepcopy(one)):
        assert again == one
        assert type(again) is _Pair
    assert copy.deepcopy(one).right is not one.right


def test_record_is_mutable_with_or_without_slots() -> None:
    slotted = _Slotted(1)
    slotted.b = 5
    assert slotted == _Slotted(1, 5)
    assert not hasattr(slotted, "__dict__")
    with pytest.raises(AttributeError):
        slotted.c = 1  # type: ignore[attr-defined]
    loose = _Loose(a=1)
    loose.a = 2
    assert repr(loose) == "_Loose(a=2)"
    with pytest.raises(TypeError):
        hash(loose)  # unhashable, as a mutable dataclass with eq is


def test_a_frozen_value_is_extended_as_a_frozen_dataclass_is() -> None:
    """A plugin's own ``@dataclass(frozen=True)`` on a public value type
    (``Environment``, say) works; a mutable one is refused, as before."""

    @dataclasses.dataclass(frozen=True)
    class Tagged(_Pair):
        extra: str = "x"

    one = Tagged(1, [2], "t", "y")
    assert (one.left, one.right, one.tag, one.extra) == (1, [2], "t", "y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.extra = "z"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.left = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):

        @dataclasses.dataclass
        class Loose(_Pair):
            extra: str = "x"


def test_frozen_refuses_a_field_its_shared_init_cannot_leave_out() -> None:
    with pytest.raises(TypeError, match="init=False, metadata or kw_only needs @dataclass"):

        @frozen
        class Derived(Value):
            base: int
            double: int = field(init=False, default=0)


@frozen(eq=True, fast_init=True)
class _Fast(Value):
    a: int
    b: list[int] = field(default_factory=list)
    note: str = field(default="", compare=False)
    weight: float = field(default=1.0, hash=False)
    kind: ClassVar[str] = "fast"  # a class variable, not a field
    also: CV[int] = 0  # one however ClassVar was imported

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


def test_a_compiled_init_and_equality_behave_as_the_generated_ones() -> None:
    one = _Fast(1)
    assert (one.a, one.b, one.note, one.weight) == (1, [], "", 1.0)
    assert _Fast(1).b is not one.b
    assert _Fast(1, [2], note="x") == _Fast(a=1, b=[2], note="y")  # note: compare=False
    assert _Fast(1, weight=2.0) != _Fast(1)
    assert hash(_Fast(1, (), weight=2.0)) == hash(_Fast(1, ()))  # type: ignore[arg-type]
    assert hash(_Fast(1, ())) != hash(_Fast(2, ()))  # type: ignore[arg-type]
    assert _Fast(1) != (1, [], "", 1.0) and _Fast.kind == "fast"
    assert [f.name for f in dataclasses.fields(_Fast)] == ["a", "b", "note", "weight"]
    assert _Fast.__match_args__ == ("a", "b", "note", "weight")
    with pytest.raises(TypeError):
        _Fast()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="negative"):
        _Fast(-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2  # type: ignore[misc]
    for again in (pickle.loads(pickle.dumps(one)), copy.deepcopy(one)):
        assert again == one and type(again) is _Fast


def test_a_value_type_is_a_dataclass_to_the_dataclasses_module() -> None:
    for cls in (_Pair, _Fast, _Slotted, _Loose, Session, ExitStatus):
        assert dataclasses.is_dataclass(cls)
    assert _Pair.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert not _Slotted.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert dataclasses.asdict(_Pair(1, [2])) == {"left": 1, "right": [2], "tag": "t"}
    assert dataclasses.astuple(_Fast(3)) == (3, [], "", 1.0)


def test_replace_is_dataclasses_replace_without_init_but_with_post_init() -> None:
    one, fast = _Pair(1, [2]), _Fast(1, [2], "n")
    assert replace(one, tag="v") == dataclasses.replace(one, tag="v") == _Pair(1, [2], "v")
    assert replace(fast, a=5) == dataclasses.replace(fast, a=5)
    assert replace(fast, a=5).note == "n"
    with pytest.raises(ValueError, match="negative"):
        replace(_Checked(1), n=-1)
    # Session's __post_init__ makes a str a Path, on a replace as at construction
    moved = replace(Session("a", Path("/h")), home="/elsewhere")  # type: ignore[arg-type]
    assert moved.home == Path("/elsewhere") and isinstance(moved.home, Path)
    with pytest.raises(TypeError, match="unexpected arguments: colour"):
        replace(one, colour=1)

    class Plain(_Checked):  # a subclass adding no field, with its own check
        __slots__ = ()

        def __post_init__(self) -> None:
            if self.n > 10:
                raise ValueError("too big")

    assert type(replace(Plain(1), n=2)) is Plain
    with pytest.raises(ValueError, match="too big"):
        replace(Plain(1), n=11)

    @dataclasses.dataclass(frozen=True)
    class Tagged(_Pair):  # a plugin's dataclass: dataclasses' own replace
        extra: str = "x"

    assert replace(Tagged(1, [], "t", "y"), tag="u") == Tagged(1, [], "u", "y")
    if sys.version_info >= (3, 13):
        assert copy.replace(one, tag="w") == _Pair(1, [2], "w")  # type: ignore[attr-defined]


def test_a_value_type_is_refused_where_a_dataclass_would_be() -> None:
    with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):

        @frozen
        class Order(Value):
            a: int = 1
            b: int  # type: ignore[misc]

    with pytest.raises(ValueError, match="mutable default"):

        @frozen
        class Shared(Value):
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(ValueError, match="both default and default_factory"):
        value_field(default=1, default_factory=int)


def test_importing_wirepool_imports_neither_dataclasses_nor_inspect() -> None:
    """What start-up saves: ~7 ms of imports (benchmarks/bench_startup.py)."""
    code = (
        "import sys, wirepool, wirepool._main, wirepool._cli_run, wirepool_servicedir\n"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'click') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("collecting", [True, False])
def test_importing_wirepool_leaves_garbage_collection_as_it_found_it(collecting: bool) -> None:
    code = f"import gc\nif not {collecting}: gc.disable()\nimport wirepool\nprint(gc.isenabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(collecting)


def test_a_value_type_is_made_or_refused_where_a_dataclass_would_be() -> None:
    assert "also" not in _Fast.__match_args__ and _Fast.also == 0
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):

        @record
        class Loose(_Pair):
            extra: int = 0

    with pytest.raises(TypeError, match="Cannot overwrite attribute __setattr__"):

        @frozen
        class Writes(Value):
            a: int

            def __setattr__(self, name: str, value: object) -> None:
                object.__setattr__(self, name, value)

    with pytest.raises(TypeError, match="metadata or kw_only needs @dataclass"):

        @frozen
        class Tagged(Value):
            a: int = field(default=0, metadata={"unit": "s"})

    class Quiet(_Pair):  # a plain subclass adding a check its __init__ never calls
        __slots__ = ()

        def __post_init__(self) -> None:
            raise AssertionError("not called, as by construction")

    assert replace(Quiet(1), tag="x").tag == "x"


def test_read_small_reads_whole_files_up_to_its_limit_and_refuses_more(tmp_path: Path) -> None:
    """Read in chunks sized by the file (not by the limit): every size
    around the first chunk, the later 64 KiB ones and the limit itself
    comes back whole, and one byte over the limit is refused."""
    path = tmp_path / "f"
    limit = 200_000
    for size in (0, 1, 4095, 4096, 4097, 65_536, 70_001, limit):
        data = os.urandom(size)
        path.write_bytes(data)
        assert read_small(path, limit) == data, size
    path.write_bytes(b"x" * (limit + 1))
    with pytest.raises(OSError, match="larger than"):
        read_small(path, limit)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_small(fifo, limit)  # opened non-blocking: refused, not waited on


def test_read_small_reads_a_sizeless_proc_file_to_its_end() -> None:
    """/proc files are regular with a size of 0 and read a page at a time:
    a short read there is not the end.  A Python child's memory map is more
    than a page, and stays put while it sleeps."""
    script = "import json, decimal, ctypes, time; print(1, flush=True); time.sleep(60)"
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"1"
            maps = Path(f"/proc/{child.pid}/maps")
            whole = maps.read_bytes()
            assert len(whole) > 4096  # more than the first read asks for
            assert read_small(maps, 1 << 20) == whole
        finally:
            child.kill()
