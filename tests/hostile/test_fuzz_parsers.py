"""Property tests for every parser of outside data.

The property is the same everywhere: whatever the bytes, the parser returns
a well-typed value or raises the one exception it documents (ValueError,
OSError, or its own subclass) -- never RecursionError, OverflowError,
TypeError or anything else that would escape a caller's ``except``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hostile_helpers import attempt, hostile_bytes, hostile_text, json_values
from hypothesis import example, given
from hypothesis import strategies as st
from wirepool_servicedir import read_envdir
from wirepool_wire import layout

from wirepool import PidfileCheck, Session, SpawnError
from wirepool._format import format_age
from wirepool._proc import ProcessIdentity
from wirepool._records import SessionRecord
from wirepool._store import RECORD_SCHEMA, STATUS_SCHEMA, StateDir, read_small
from wirepool.cli import _fmt_exit, render_table
from wirepool.health import parse_rfc3339, read_pid

# ----------------------------------------------------------------- pidfiles


@given(hostile_text)
def test_read_pid_returns_a_positive_pid_and_finite_start_or_says_why(text: str) -> None:
    parsed, why = attempt(read_pid, text, errors=ValueError)
    if why is not None:
        return
    pid, start = parsed
    assert isinstance(pid, int) and pid > 0
    assert start is None or math.isfinite(start)


def test_regression_read_pid_deep_nesting_is_a_bad_file_not_a_recursion_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        read_pid("[" * 100_000)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_regression_read_pid_non_finite_start_time_is_refused(value: str) -> None:
    # NaN compared false with the process's real start time, so a reused pid
    # passed the identity check.
    with pytest.raises(ValueError, match="start_time"):
        read_pid(f'{{"pid": 1, "start_time": {value}}}')


@given(st.text(max_size=40))
def test_parse_rfc3339_never_raises(text: str) -> None:
    value = parse_rfc3339(text)
    assert value is None or math.isfinite(value)


@given(hostile_bytes)
def test_pidfile_check_on_planted_bytes_never_raises_and_records_a_reason(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / "daemon.pid").write_bytes(raw)
    check = PidfileCheck("daemon.pid")
    session = Session(name="s", home=home)
    found = check.existing(session)
    assert found is None or isinstance(found, ProcessIdentity)
    if found is None and "s" in check.last_error:
        assert check.last_error["s"].startswith("daemon.pid")


def test_regression_pidfile_fifo_does_not_block_the_loop(tmp_path: Path) -> None:
    # open() of a FIFO with no writer blocks forever: the whole pool with it.
    os.mkfifo(tmp_path / "daemon.pid")
    check = PidfileCheck("daemon.pid")
    assert check.existing(Session(name="s", home=tmp_path)) is None
    assert "not a regular file" in check.last_error["s"]


def test_regression_pidfile_huge_is_refused_unread(tmp_path: Path) -> None:
    with open(tmp_path / "daemon.pid", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: a gigabyte that costs nothing to plant
    check = PidfileCheck("daemon.pid")
    assert check.existing(Session(name="s", home=tmp_path)) is None
    assert "larger than" in check.last_error["s"]


def test_pidfile_symlink_to_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "daemon.pid").symlink_to("/dev/zero")
    check = PidfileCheck("daemon.pid")
    assert check.existing(Session(name="s", home=tmp_path)) is None
    assert "not a regular file" in check.last_error["s"]


@given(hostile_bytes)
def test_read_small_is_bounded(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("f") / "f"
    path.write_bytes(raw)
    try:
        assert read_small(path, 100) == raw
    except OSError:
        assert len(raw) > 100


# --------------------------------------------------------------------- wire


@given(hostile_text)
def test_wire_daemon_pid_parse(text: str) -> None:
    record, why = attempt(layout.parse_daemon_pid, text, errors=layout.PidfileError)
    if why is not None:
        return
    assert 0 < record.pid <= 2**32 - 1
    assert record.form in ("json", "partial", "bare")


@given(hostile_bytes)
def test_wire_files_read_from_a_home_never_raise(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    home = tmp_path_factory.mktemp("root") / "home"  # its own root: scan_homes sees one
    (home / "config" / "wire").mkdir(parents=True)
    (home / "state" / "wire").mkdir(parents=True)
    for rel in ("config/wire/agent-card.json", "state/wire/daemon.pid"):
        (home / rel).write_bytes(raw)
    (home / "state" / "wire" / "last_sync.json").write_bytes(raw)
    (home / "supervisor.pid").write_bytes(raw)
    card = layout.read_card(home)
    assert card is None or (isinstance(card.did, str) and isinstance(card.handle, str))
    record = layout.read_daemon_pid(layout.daemon_pid_path(home))
    assert record is None or record.pid > 0
    synced = layout.read_last_sync(home)
    assert synced is None or synced.tzinfo is not None
    pid = layout.read_supervisor_pid(home)
    assert pid is None or pid > 0
    sessions, _ = layout.scan_homes(home.parent)
    assert all(isinstance(h, layout.WireHome) for h in sessions)


@given(json_values)
def test_wire_card_from_any_json(tmp_path_factory: pytest.TempPathFactory, value: object) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / "config" / "wire").mkdir(parents=True)
    layout.card_path(home).write_text(json.dumps(value))
    card = layout.read_card(home)
    assert card is None or isinstance(card.did, str)


@given(st.one_of(hostile_bytes, json_values.map(lambda v: json.dumps({"by_cwd": v}).encode())))
def test_wire_registry_is_a_map_of_strings_or_a_registry_error(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    root = tmp_path_factory.mktemp("root")
    (root / "registry.json").write_bytes(raw)
    registry, why = attempt(layout.read_registry, root, errors=layout.RegistryError)
    if why is not None:
        assert str(root) in why
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in registry.items())


@given(st.one_of(st.none(), hostile_text))
def test_wire_idle_cutoff_from_any_environment_value(raw: str | None) -> None:
    for parse in (layout.parse_max_idle_days, layout.parse_husk_reap_max_age_hours):
        value = parse(raw)
        assert value is None or (math.isfinite(value) and value > 0)


# ------------------------------------------------------------ pool records


record_fields = st.fixed_dictionaries(
    {},
    optional={
        "schema": st.sampled_from([RECORD_SCHEMA, "x"]) | json_values,
        "session": st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(max_size=10) | json_values,
                "home": st.text(max_size=10) | json_values,
                "cwd": st.text(max_size=10) | json_values,
            },
        )
        | json_values,
        "worker": st.fixed_dictionaries(
            {},
            optional={
                "pid": st.integers() | json_values,
                "start": st.integers() | json_values,
                "owned": json_values,
                "started_at": json_values,
            },
        )
        | json_values,
        "streak": st.integers() | json_values,
        "restarts": st.integers() | json_values,
        "failed": json_values,
        "reason": json_values,
        "next_start_at": json_values,
        "last_exit": st.fixed_dictionaries(
            {}, optional={"code": json_values, "signal": json_values, "at": json_values}
        )
        | json_values,
    },
)


@given(record_fields)
# a worker that is not an object: its fingerprint was looked up before the
# check, and AttributeError escaped
@example({"schema": "wirepool.record/1", "worker": [], "session": {"name": "0"}})
def test_parse_record_gives_typed_values_or_value_error(data: dict[str, object]) -> None:
    # Round-trip through the JSON text, as on disk (NaN and Infinity included).
    data = json.loads(json.dumps(data))
    rec, why = attempt(SessionRecord.from_json, data, errors=ValueError)
    if why is not None:
        return
    assert isinstance(rec.session, Session) and rec.session.name
    assert isinstance(rec.streak, int) and rec.streak >= 0
    assert isinstance(rec.restarts, int) and rec.restarts >= 0
    assert isinstance(rec.failed, bool)
    assert isinstance(rec.reason, str)
    for when in (rec.next_start_at, rec.last_exit_at):
        assert when is None or math.isfinite(when)
    if rec.worker is not None:
        assert rec.worker.identity.pid > 0 and isinstance(rec.worker.owned, bool)
        assert rec.worker.started_at is None or math.isfinite(rec.worker.started_at)
    # what it writes, it reads back the same
    assert SessionRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec


def test_regression_record_with_infinite_restarts_does_not_crash_recovery() -> None:
    # int(float("inf")) raised OverflowError, which no except caught: the
    # supervisor died at every start until the file was removed by hand.
    data = {"schema": RECORD_SCHEMA, "session": {"name": "a"}, "restarts": math.inf}
    with pytest.raises(ValueError, match="restarts"):
        SessionRecord.from_json(data)


# ----------------------------------------------------------- status.json


status_docs = st.fixed_dictionaries(
    {"schema": st.just(STATUS_SCHEMA)},
    optional={
        "state_dir": json_values,
        "supervisor": json_values,
        "sessions": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    k: json_values
                    for k in (
                        "name",
                        "display_name",
                        "state",
                        "reason",
                        "pid",
                        "process_start",
                        "started_at",
                        "restarts",
                        "last_exit",
                        "next_start_at",
                        "uptime",
                        "next_start_in",
                        "alive",
                    )
                },
            )
            | json_values,
            max_size=4,
        )
        | json_values,
        "errors": json_values,
        "notes": json_values,
    },
)


@given(status_docs)
def test_status_json_from_disk_is_read_and_rendered_whatever_it_holds(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, object]
) -> None:
    from wirepool.cli import read_status
    from wirepool.plugin import PoolSpec
    from wirepool.spawn import CommandSpawner

    state = tmp_path_factory.mktemp("state")
    (state / "status.json").write_text(json.dumps(doc))
    assert StateDir(state).read_status() is not None
    spec = PoolSpec(discovery=list, spawner=CommandSpawner(["true"]), state_dir=state)
    out = read_status(spec, "x")
    json.dumps(out, default=str)
    text = render_table(out)
    assert text.startswith("supervisor: not running")


@given(json_values)
def test_status_table_helpers_take_any_value(value: object) -> None:
    assert isinstance(_fmt_exit(value), str)
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert isinstance(format_age(float(value), fine=True), str)


# ------------------------------------------------------------ env/ files


@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)),
            min_size=1,
            max_size=12,
        ).filter(lambda n: n not in (".", "..")),
        hostile_bytes,
        max_size=5,
    )
)
def test_envdir_values_are_strings_a_child_can_take(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]
) -> None:
    envdir = tmp_path_factory.mktemp("svc") / "env"
    envdir.mkdir()
    for name, raw in files.items():
        try:
            (envdir / name).write_bytes(raw)
        except OSError:  # a name the filesystem refuses (too long in bytes)
            continue
    env, why = attempt(read_envdir, envdir, errors=SpawnError)
    if why is not None:
        assert str(envdir) in why
        return
    for key, value in env.items():
        assert "=" not in key and not key.startswith(".")
        if value is not None:  # what os.execve needs: encodable, no NUL
            assert b"\0" not in os.fsencode(value)


def test_envdir_fifo_and_device_are_skipped_not_read(tmp_path: Path) -> None:
    env = tmp_path / "env"
    env.mkdir()
    (env / "OK").write_text("yes\n")
    (env / "ZERO").symlink_to("/dev/zero")
    os.mkfifo(env / "FIFO")
    assert read_envdir(env) == {"OK": "yes"}


def test_regression_wire_uint_of_thousands_of_digits_is_out_of_range() -> None:
    # int() refuses > 4300 digits with a ValueError: parse_daemon_pid raised
    # a bare ValueError instead of PidfileError, and a long
    # WIRE_ALL_SESSIONS_MAX_IDLE_DAYS made `wirepool run wire` fail to start.
    digits = "9" * 5000
    with pytest.raises(layout.PidfileError, match="neither"):
        layout.parse_daemon_pid(digits)
    assert layout.parse_max_idle_days(digits) == 7 * 86_400
    assert layout.parse_max_idle_days("0" * 5000 + "3") == 3 * 86_400
    assert layout.version_is_older("0." + digits, "1.0") is False


@given(hostile_text, hostile_text)
def test_wire_version_compare_never_raises(a: str, b: str) -> None:
    assert isinstance(layout.version_is_older(a, b), bool)


@pytest.mark.parametrize(
    "stamp", ["9999-12-31T01:00:00-23:00", "0001-01-01T00:00:00+30:00", "2020-01-01T00:00:00-99:59"]
)
def test_regression_wire_rfc3339_out_of_range_offset_is_none(stamp: str) -> None:
    # timezone() and astimezone() raised ValueError / OverflowError outside
    # the try: a daemon.pid with such a started_at escaped read_daemon_pid.
    assert layout.parse_rfc3339(stamp) is None
    record = layout.parse_daemon_pid(f'{{"pid": 1, "started_at": "{stamp}"}}')
    assert record.started_at is None


@given(st.text(max_size=40))
def test_wire_rfc3339_never_raises(text: str) -> None:
    layout.parse_rfc3339(text)


def test_regression_status_table_escapes_terminal_control_sequences() -> None:
    # A session directory named with an escape sequence retitled the
    # operator's terminal (or cleared it) when `wirepool status` printed it;
    # a newline in a name forged a row; a non-UTF-8 name crashed click.echo.
    doc = {
        "supervisor": {},
        "sessions": [
            {"name": "a\x1b]0;owned\x07", "state": "running", "reason": "x\nforged  running"},
            {"name": "b\udcff", "state": "stopped"},
        ],
        "errors": ["e\x1b[2J"],
    }
    text = render_table(doc)
    assert "\x1b" not in text and "\x07" not in text and "\udcff" not in text
    assert len(text.splitlines()) == 1 + 1 + 2 + 1 + 1  # header, columns, rows, count, error
    text.encode("utf-8")


def test_regression_damaged_status_json_still_renders(tmp_path: Path) -> None:
    # `wirepool status` raised AttributeError on a null "supervisor" and
    # OverflowError formatting an Infinity next_start_at.
    from wirepool.cli import read_status
    from wirepool.plugin import PoolSpec
    from wirepool.spawn import CommandSpawner

    damaged = {
        "schema": STATUS_SCHEMA,
        "supervisor": None,
        "errors": "one",
        "sessions": [{"name": "a", "next_start_at": math.inf}, 3],
    }
    (tmp_path / "status.json").write_text(json.dumps(damaged))
    spec = PoolSpec(discovery=list, spawner=CommandSpawner(["true"]), state_dir=tmp_path)
    doc = read_status(spec, "x")
    # no supervisor: no countdown, not even to "never"
    assert doc["sessions"][0]["next_start_at"] == math.inf
    assert doc["sessions"][0]["next_start_in"] is None
    text = render_table(doc)
    assert "error: one" in text
