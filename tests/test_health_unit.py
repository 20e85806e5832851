"""Unit tests for :mod:`wirepool.health`: pidfile parsing, RFC 3339 times and
the two stock checks against real processes and real files.

Every process started here is a ``sleep`` (or ``true``) owned by the test and
killed by pid in a ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from wirepool._proc import ProcessIdentity, cmdline, create_time, identity_of
from wirepool._types import Session
from wirepool.health import (
    HeartbeatCheck,
    NoHealthCheck,
    PidfileCheck,
    parse_rfc3339,
    read_pid,
)

WIRE_STARTED_AT = "2026-06-19T18:57:23.481516273Z"
WIRE_EPOCH = datetime(2026, 6, 19, 18, 57, 23, tzinfo=UTC).timestamp()


def rfc3339(epoch: float) -> str:
    """Format like Rust's ``time`` crate: UTC, ``Z``, nine fractional digits."""
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}123Z"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def wait_started(pid: int) -> ProcessIdentity:
    """The sleeper's identity once it has exec'd ``sleep`` (right after the
    fork its argv is still Python's, and some tests look at argv)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ident = identity_of(pid)
        argv = cmdline(pid) or [""]
        if ident is not None and Path(argv[0]).name == "sleep":
            return ident
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never became a live sleep")


# ------------------------------------------------------------------ read_pid


@pytest.mark.parametrize("text", ["1234", "1234\n", "  1234 \n", "\n1234\r\n"])
def test_read_pid_bare_integer(text: str) -> None:
    assert read_pid(text) == (1234, None)


def test_read_pid_json_as_wire_writes_it() -> None:
    text = json.dumps(
        {"pid": 4321, "started_at": WIRE_STARTED_AT, "version": "0.9.1", "did": "did:x"}
    )
    pid, started = read_pid(text)
    assert pid == 4321
    assert started == pytest.approx(WIRE_EPOCH + 0.481516, abs=1e-6)


def test_read_pid_json_with_epoch_start_time() -> None:
    assert read_pid('{"pid": 77, "start_time": 1750000000.25}') == (77, 1750000000.25)
    assert read_pid('{"pid": 77, "start_time": 1750000000}') == (77, 1750000000.0)


def test_read_pid_json_pid_only() -> None:
    assert read_pid('{"pid": 99}\n') == (99, None)


def test_read_pid_json_with_unparseable_started_at_has_no_start() -> None:
    assert read_pid('{"pid": 99, "started_at": "yesterday"}') == (99, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty pidfile"),
        ("  \n\t", "empty pidfile"),
        ("0", "invalid pid 0"),
        ("hello", "neither an integer nor JSON"),
        ("12abc", "neither an integer nor JSON"),
        ('{"pid": 12', "neither an integer nor JSON"),
        ("[1234]", "not an object"),
        ('"1234"', "not an object"),
        ('{"pid": -3}', "no valid pid (-3)"),
        ('{"pid": 0}', "no valid pid (0)"),
        ('{"pid": true}', "no valid pid (True)"),
        ('{"pid": "12"}', "no valid pid ('12')"),
        ('{"pid": 12.0}', "no valid pid (12.0)"),
        ('{"started_at": "2026-06-19T18:57:23Z"}', "no valid pid (None)"),
    ],
)
def test_read_pid_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        read_pid(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # one line, fit for a status column


def test_read_pid_rejects_a_negative_bare_integer() -> None:
    with pytest.raises(ValueError):
        read_pid("-5")


def test_read_pid_negative_bare_integer_message_names_the_pid() -> None:
    with pytest.raises(ValueError) as info:
        read_pid("-5")
    assert "-5" in str(info.value)


# ------------------------------------------------------------- parse_rfc3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-19T18:57:23Z", WIRE_EPOCH),
        ("2026-06-19T18:57:23.5Z", WIRE_EPOCH + 0.5),
        ("2026-06-19T18:57:23.481516Z", WIRE_EPOCH + 0.481516),
        (WIRE_STARTED_AT, WIRE_EPOCH + 0.481516),  # 9 digits: the extra 3 are cut
        ("2026-06-19T18:57:23.999999999Z", WIRE_EPOCH + 0.999999),
        ("2026-06-19T20:57:23+02:00", WIRE_EPOCH),
        ("2026-06-19T13:27:23.5-05:30", WIRE_EPOCH + 0.5),
        ("2026-06-19T18:57:23+00:00", WIRE_EPOCH),
        ("  2026-06-19T18:57:23Z\n", WIRE_EPOCH),
    ],
)
def test_parse_rfc3339(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2026-06-19",
        "2026-06-19T18:57:23",  # no zone: ambiguous, refused
        "2026-06-19T18:57:23.Z",  # a dot without digits
        "2026-06-19T18:57:23.1234567890Z",  # ten digits
        "2026-13-40T18:57:23Z",  # shaped right, not a date
        "2026-06-19T25:00:00Z",
        "1750000000",
    ],
)
def test_parse_rfc3339_garbage_is_none(text: str) -> None:
    assert parse_rfc3339(text) is None


# ------------------------------------------------------------- PidfileCheck


def write_pidfile(home: Path, content: str, name: str = "daemon.pid") -> None:
    (home / name).write_text(content)


def test_pidfile_bare_int_finds_the_live_process(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    write_pidfile(home, f"{sleeper.pid}\n")
    check = PidfileCheck("daemon.pid")
    assert check.existing(sess) == ident
    assert sess.name not in check.last_error


def test_pidfile_record_older_than_the_process_means_a_reused_pid(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """The file says the daemon started an hour ago; the process at that pid
    started just now: a stranger that inherited the pid."""
    wait_started(sleeper.pid)
    recorded = time.time() - 3600
    write_pidfile(home, json.dumps({"pid": sleeper.pid, "started_at": rfc3339(recorded)}))
    assert PidfileCheck("daemon.pid").existing(sess) is None


def test_pidfile_record_slightly_after_the_process_start_is_accepted(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """A daemon writes its pidfile a moment after it starts."""
    ident = wait_started(sleeper.pid)
    recorded = time.time() + 1
    write_pidfile(home, json.dumps({"pid": sleeper.pid, "started_at": rfc3339(recorded)}))
    assert PidfileCheck("daemon.pid").existing(sess) == ident


def test_pidfile_start_tolerance(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    actual = create_time(sleeper.pid)
    assert actual is not None
    write_pidfile(home, json.dumps({"pid": sleeper.pid, "start_time": actual - 1.5}))
    assert PidfileCheck("daemon.pid", start_tolerance=2.0).existing(sess) == ident
    assert PidfileCheck("daemon.pid", start_tolerance=1.0).existing(sess) is None


def test_pidfile_cmdline_match(sess: Session, home: Path, sleeper: subprocess.Popen[bytes]) -> None:
    ident = wait_started(sleeper.pid)
    write_pidfile(home, str(sleeper.pid))
    seen: list[list[str]] = []

    def is_wire(argv: list[str]) -> bool:
        seen.append(list(argv))
        return Path(argv[0]).name == "wire"

    assert PidfileCheck("daemon.pid", cmdline_match=is_wire).existing(sess) is None
    assert seen
    assert seen[0][-1] == "30"
    is_sleep = PidfileCheck("daemon.pid", cmdline_match=lambda a: Path(a[0]).name == "sleep")
    assert is_sleep.existing(sess) == ident


def test_pidfile_dead_pid_is_not_a_daemon(sess: Session, home: Path) -> None:
    proc = subprocess.Popen(["true"])
    try:
        proc.wait(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    write_pidfile(home, str(proc.pid))
    assert PidfileCheck("daemon.pid").existing(sess) is None


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs os.waitid(WNOWAIT)")
def test_pidfile_zombie_is_not_a_daemon(sess: Session, home: Path) -> None:
    proc = subprocess.Popen(["true"])
    try:
        # Wait for the exit without reaping: the pid stays a zombie.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        write_pidfile(home, str(proc.pid))
        assert PidfileCheck("daemon.pid").existing(sess) is None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_pidfile_missing_is_none_without_error(sess: Session) -> None:
    check = PidfileCheck("daemon.pid")
    assert check.existing(sess) is None
    assert sess.name not in check.last_error


def test_pidfile_corrupt_is_none_and_recorded(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    check = PidfileCheck("daemon.pid")
    write_pidfile(home, "\x00\x01not a pid")
    assert check.existing(sess) is None
    assert check.last_error[sess.name].startswith("daemon.pid: ")
    assert "neither an integer nor JSON" in check.last_error[sess.name]

    # Once the file is good again the error is cleared.
    ident = wait_started(sleeper.pid)
    write_pidfile(home, str(sleeper.pid))
    assert check.existing(sess) == ident
    assert sess.name not in check.last_error


def test_pidfile_unreadable_is_none_and_recorded(sess: Session, home: Path) -> None:
    (home / "daemon.pid").mkdir()  # reading a directory fails with an OSError
    check = PidfileCheck("daemon.pid")
    assert check.existing(sess) is None
    assert "cannot read daemon.pid" in check.last_error[sess.name]


def test_pidfile_verify_rejects_nonsense_pids() -> None:
    check = PidfileCheck("daemon.pid")
    assert check.verify(0, None) is None
    assert check.verify(-1, None) is None
    assert check.verify(2**22 + 12345, None) is None  # above Linux's pid_max


# ------------------------------------------------------------ HeartbeatCheck


def test_heartbeat_fresh_is_healthy(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    now = time.time()
    beat = home / "heartbeat"
    beat.touch()
    os.utime(beat, (now, now))
    verdict = HeartbeatCheck("heartbeat", max_age=60).probe(sess, ident, now)
    assert verdict
    assert "heartbeat" in verdict.reason


def test_heartbeat_stale_file_of_a_new_child_is_its_startup_grace(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """A heartbeat left by the previous child does not count against a child
    that just started: age runs from max(mtime, process start)."""
    ident = wait_started(sleeper.pid)
    now = time.time()
    beat = home / "heartbeat"
    beat.touch()
    os.utime(beat, (now - 3600, now - 3600))
    assert HeartbeatCheck("heartbeat", max_age=60).probe(sess, ident, now)


def test_heartbeat_that_stopped_beating_is_unhealthy(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    started = create_time(sleeper.pid)
    assert started is not None
    beat = home / "heartbeat"
    beat.touch()
    os.utime(beat, (started + 5, started + 5))  # it beat once, after its start
    later = started + 5 + 1000  # simulate age by asking from the future
    verdict = HeartbeatCheck("heartbeat", max_age=60).probe(sess, ident, later)
    assert not verdict
    assert verdict.reason == "heartbeat for 1000s (limit 60s): hung"


def test_heartbeat_never_written_is_unhealthy_once_grace_is_over(
    sess: Session, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    started = create_time(sleeper.pid)
    assert started is not None
    check = HeartbeatCheck("heartbeat", max_age=60)
    assert check.probe(sess, ident, started + 30)  # still starting up
    verdict = check.probe(sess, ident, started + 500)
    assert not verdict
    assert verdict.reason.startswith("no heartbeat for 500s")


def test_heartbeat_older_than_the_child_says_no_heartbeat(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    started = create_time(sleeper.pid)
    assert started is not None
    beat = home / "heartbeat"
    beat.touch()
    os.utime(beat, (started - 3600, started - 3600))
    verdict = HeartbeatCheck("heartbeat", max_age=60).probe(sess, ident, started + 200)
    assert not verdict
    assert verdict.reason.startswith("no heartbeat for 200s")


def test_heartbeat_future_mtime_is_healthy(
    sess: Session, home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    ident = wait_started(sleeper.pid)
    now = time.time()
    beat = home / "heartbeat"
    beat.touch()
    os.utime(beat, (now + 3600, now + 3600))
    verdict = HeartbeatCheck("heartbeat", max_age=60).probe(sess, ident, now)
    assert verdict
    assert verdict.reason == "heartbeat 0s old"


def test_heartbeat_defaults() -> None:
    check = HeartbeatCheck("hb", max_age=120)
    assert check.interval == 30.0
    assert check.failures_before_restart == 1
    assert HeartbeatCheck("hb", max_age=2).interval == 1.0  # never busier than 1/s
    assert HeartbeatCheck("hb", max_age=60, interval=5).interval == 5


def test_rfc3339_helper_round_trips() -> None:
    now = time.time()
    assert parse_rfc3339(rfc3339(now)) == pytest.approx(now, abs=1e-5)
    assert rfc3339(WIRE_EPOCH + 0.481516).endswith(".481516123Z")


def test_a_probes_deadline_is_its_timeout_else_its_interval() -> None:
    beat = HeartbeatCheck("beat", max_age=60, interval=2.0)
    assert beat.deadline == 2.0
    beat.timeout = 0.5
    assert beat.deadline == 0.5
    # both run one after the other on the same thread: their deadlines add up
    assert (beat & HeartbeatCheck("other", max_age=60, interval=3.0)).deadline == 3.5
    assert NoHealthCheck().deadline is None
