"""Tests for the fake `wire` binary, run as a real executable in subprocesses.

Every process started here is killed by the test that started it (by Popen
pid, in a finally).  Waits poll with generous deadlines; nothing asserts on
tight timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from wirepool_wire import fake_wire, layout
from wirepool_wire.fake_wire import (
    CONTROL_FILE,
    INVOCATIONS_FILE,
    NOT_INITIALIZED,
    install_fake_wire,
)
from wirepool_wire.fixtures import make_home

DEADLINE = 30.0  # seconds; generous so a loaded CI box never flakes


@pytest.fixture
def wire(tmp_path: Path) -> Path:
    return install_fake_wire(tmp_path / "bin")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sessions"


def _env(home: Path | None, **extra: str) -> dict[str, str]:
    # Start from the ambient env minus WIRE_* so a developer's shell cannot leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIRE_")}
    if home is not None:
        env["WIRE_HOME"] = str(home)
    env.update(extra)
    return env


def _run(
    wire: Path, home: Path | None, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(wire), *args],
        env=_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@contextmanager
def _daemon(
    wire: Path, home: Path | None, *args: str, **extra: str
) -> Iterator[subprocess.Popen[str]]:
    argv = [str(wire), *(args or ("daemon", "--interval", "1"))]
    proc = subprocess.Popen(
        argv,
        env=_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=DEADLINE)


def _wait_for(what: str, check: Callable[[], bool], timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _pidfile(home: Path) -> Path:
    return home / "state" / "wire" / "daemon.pid"


def _last_sync(home: Path) -> Path:
    return home / "state" / "wire" / "last_sync.json"


def _pid_names(home: Path, pid: int) -> bool:
    rec = layout.read_daemon_pid(_pidfile(home))
    return rec is not None and rec.pid == pid


def _invocations(home: Path) -> list[dict[str, object]]:
    path = home / INVOCATIONS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _control(home: Path, **knobs: object) -> None:
    (home / CONTROL_FILE).write_text(json.dumps(knobs))


# --- install and identity -------------------------------------------------------


def test_install_writes_an_executable_named_wire(wire: Path) -> None:
    assert wire.name == "wire"
    assert os.access(wire, os.X_OK)
    assert wire.read_text().splitlines()[0] == f"#!{sys.executable}"


def test_version(tmp_path: Path, wire: Path) -> None:
    out = _run(wire, None, "--version")
    assert (out.returncode, out.stdout) == (0, "wire 0.16.0\n")
    old = install_fake_wire(tmp_path / "old-bin", version="0.13.5")
    assert _run(old, None, "--version").stdout == "wire 0.13.5\n"
    home = make_home(tmp_path / "sessions", "pinned")
    _control(home, version="0.9.1")
    assert _run(wire, home, "-V").stdout == "wire 0.9.1\n"


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert fake_wire.main(["--version"], version="1.2.3") == 0
    assert capsys.readouterr().out == "wire 1.2.3\n"


# --- command line errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--all-sessions", "--once"), "--all-sessions and --once are mutually exclusive"),
        (("--all-sessions", "--session", "x"), "--all-sessions and --session are mutually"),
        (("--session", "x", "--all-sessions"), "--all-sessions and --session are mutually"),
    ],
)
def test_mutual_exclusion_exits_1(
    wire: Path, root: Path, args: tuple[str, ...], message: str
) -> None:
    out = _run(wire, root, "daemon", *args)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ")
    assert message in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("daemon", "--bogus"),
        ("daemon", "--interval"),
        ("daemon", "--interval", "soon"),
        ("daemon", "--once", "--once"),
        ("status",),
    ],
)
def test_usage_errors_exit_2(wire: Path, root: Path, args: tuple[str, ...]) -> None:
    out = _run(wire, root, *args)
    assert out.returncode == 2
    assert "error:" in out.stderr


def test_without_wire_home_it_refuses(wire: Path) -> None:
    out = _run(wire, None, "daemon", "--once")
    assert out.returncode == 1
    assert "WIRE_HOME is not set" in out.stderr


# --- the daemon ----------------------------------------------------------------------


def test_not_initialized_exits_1_with_wires_message(wire: Path, root: Path) -> None:
    home = make_home(root, "broken", identity=False)  # card but no private.key
    out = _run(wire, home, "daemon", "--interval", "5")
    assert out.returncode == 1
    assert out.stderr == NOT_INITIALIZED + "\n"
    assert NOT_INITIALIZED == "error: not initialized \u2014 run `wire up` first"
    assert not _pidfile(home).exists()
    assert len(_invocations(home)) == 1  # even a failed start is logged
    no_card = make_home(root, "adopted", card=False)  # private.key but no card
    assert _run(wire, no_card, "daemon", "--once").returncode == 1


def test_runs_and_writes_pidfile_and_activity(wire: Path, root: Path) -> None:
    home = make_home(root, "named-pane", handle="coral-weasel")
    with _daemon(wire, home, "daemon", "--interval", "5") as proc:
        _wait_for("pidfile", lambda: _pid_names(home, proc.pid))
        _wait_for("last_sync.json", lambda: layout.read_last_sync(home) is not None)
        _wait_for("notify.cursor", (home / "state/wire/notify.cursor").exists)
        rec = layout.read_daemon_pid(_pidfile(home))
        assert rec is not None
        assert rec.form == "json"  # the strict form wire's singleton reader wants
        assert rec.version == "0.16.0"
        assert rec.bin_path == str(wire)
        card = layout.read_card(home)
        assert card is not None
        assert rec.did == card.did
        assert rec.started_at is not None
        assert abs(time.time() - rec.started_at.timestamp()) < 600
        raw = json.loads(_pidfile(home).read_text())
        assert raw["schema"] == "wire-daemon-pid-v1"
        assert raw["started_at"].endswith("Z")
        assert json.loads(_last_sync(home).read_text())["schema"] == "wire-daemon-last-sync-v1"
        assert (home / "state/wire/notify.cursor").read_text() == "{}"
        assert (home / "state/wire/inbox").is_dir()
        assert (home / "state/wire/outbox").is_dir()
        assert layout.last_active(home) is not None
        if sys.platform.startswith("linux"):
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
            assert [a.decode() for a in argv] == [
                sys.executable,
                str(wire),
                "daemon",
                "--interval",
                "5",
            ]
            assert layout.is_wire_daemon_cmdline([a.decode() for a in argv])
        assert proc.poll() is None


def test_cycles_keep_rewriting_last_sync(wire: Path, root: Path) -> None:
    home = make_home(root, "ticking")
    with _daemon(wire, home, "daemon", "--interval", "1", "--json") as proc:
        _wait_for("first cycle", lambda: layout.read_last_sync(home) is not None)
        first = layout.read_last_sync(home)
        _wait_for("a later cycle", lambda: layout.read_last_sync(home) not in (None, first))
        assert proc.poll() is None


def test_json_cycles_print_one_line_each(wire: Path, root: Path) -> None:
    home = make_home(root, "json-lines")
    out = _run(wire, home, "daemon", "--once", "--json")
    assert out.returncode == 0
    (line,) = out.stdout.splitlines()
    cycle = json.loads(line)
    assert set(cycle) == {"ts", "push", "pull"}
    assert layout.parse_rfc3339(cycle["ts"]) is not None
    assert out.stderr == ""  # --json: nothing human on stderr


def test_singleton_skip_exits_0_with_json(wire: Path, root: Path) -> None:
    home = make_home(root, "contended")
    with _daemon(wire, home) as first:
        _wait_for("first daemon's pidfile", lambda: _pid_names(home, first.pid))
        second = _run(wire, home, "daemon", "--interval", "1", "--json")
        assert second.returncode == 0
        assert json.loads(second.stdout) == {
            "status": "skipped",
            "reason": "daemon already running",
            "holder_pid": first.pid,
        }
        human = _run(wire, home, "daemon", "--interval", "1")
        assert human.returncode == 0
        assert f"another daemon is already running (pid {first.pid})" in human.stderr
        assert _pid_names(home, first.pid)  # the loser did not touch the pidfile
        assert first.poll() is None


def test_sigterm_leaves_the_pidfile_behind(wire: Path, root: Path) -> None:
    home = make_home(root, "killed")
    with _daemon(wire, home) as proc:
        _wait_for("pidfile", lambda: _pid_names(home, proc.pid))
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=DEADLINE)
        assert proc.returncode == -signal.SIGTERM
    assert _pid_names(home, proc.pid)  # names a dead pid: readers must check liveness
    # ...and a new daemon is not fooled by it.
    with _daemon(wire, home) as again:
        _wait_for("replacement pidfile", lambda: _pid_names(home, again.pid))
        assert again.poll() is None


def test_sigint_also_dies_without_cleanup(wire: Path, root: Path) -> None:
    home = make_home(root, "interrupted")
    with _daemon(wire, home) as proc:
        _wait_for("pidfile", lambda: _pid_names(home, proc.pid))
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=DEADLINE)
        assert proc.returncode == -signal.SIGINT  # no KeyboardInterrupt traceback path
    assert _pid_names(home, proc.pid)


def test_once_runs_one_cycle_and_overwrites_a_live_pidfile(wire: Path, root: Path) -> None:
    home = make_home(root, "once")
    out = _run(wire, home, "daemon", "--once")
    assert (out.returncode, out.stdout) == (0, "")
    assert layout.read_last_sync(home) is not None
    assert not (home / "state/wire/notify.cursor").exists()  # --once skips the notify sweep
    once_rec = layout.read_daemon_pid(_pidfile(home))
    assert once_rec is not None  # left behind naming the exited --once process
    with _daemon(wire, home) as proc:
        _wait_for("daemon pidfile", lambda: _pid_names(home, proc.pid))
        again = _run(wire, home, "daemon", "--once")
        assert again.returncode == 0  # --once ignores the singleton...
        assert not _pid_names(home, proc.pid)  # ...and clobbers it: wire's own hazard
        assert proc.poll() is None


def test_no_singleton_env_lets_a_second_daemon_run(wire: Path, root: Path) -> None:
    home = make_home(root, "crowded")
    with _daemon(wire, home) as first:
        _wait_for("first pidfile", lambda: _pid_names(home, first.pid))
        with _daemon(wire, home, WIRE_DAEMON_NO_SINGLETON="0") as second:
            _wait_for("second pidfile", lambda: _pid_names(home, second.pid))
            assert first.poll() is None
            assert second.poll() is None


def test_invocations_log_records_argv_and_wire_env_names(wire: Path, root: Path) -> None:
    home = make_home(root, "logged")
    out = _run(wire, home, "daemon", "--once", WIRE_DIAG="1", WIRE_NO_TOASTS="1")
    assert out.returncode == 0
    (entry,) = _invocations(home)
    assert entry["argv"] == ["daemon", "--once"]
    assert entry["WIRE_HOME"] == str(home)
    assert entry["home"] == str(home)
    assert entry["wire_env"] == ["WIRE_DIAG", "WIRE_HOME", "WIRE_NO_TOASTS"]
    assert entry["exe"] == str(wire)
    assert entry["ppid"] == os.getpid()
    assert isinstance(entry["pid"], int)
    assert isinstance(entry["time"], float)
    _run(wire, home, "daemon", "--once")
    assert len(_invocations(home)) == 2


def test_session_flag_resolves_by_key_and_handle(wire: Path, root: Path) -> None:
    named = make_home(root, "named-pane", handle="coral-weasel")
    assert named.name == "f913aa9128b65b75"
    out = _run(wire, root, "daemon", "--session", "named-pane", "--once")
    assert out.returncode == 0, out.stderr
    assert f"pinned to session 'named-pane' (WIRE_HOME={named})" in out.stderr
    assert layout.read_last_sync(named) is not None
    persona = make_home(root, "some-uuid-key", handle="agate-nimbus")
    assert _run(wire, root, "daemon", "--session", "agate-nimbus", "--once").returncode == 0
    assert layout.read_last_sync(persona) is not None
    missing = _run(wire, root, "daemon", "--session", "nobody", "--once")
    assert missing.returncode == 1
    assert "error: session 'nobody' not found" in missing.stderr


# --- fault knobs ---------------------------------------------------------------------


def test_exit_code_after_delay_removes_its_pidfile(wire: Path, root: Path) -> None:
    home = make_home(root, "flaky")
    _control(home, exit_code=3, exit_after=0.5)
    with _daemon(wire, home) as proc:
        assert proc.wait(timeout=DEADLINE) == 3
    assert not _pidfile(home).exists()  # normal exit path: the guard cleaned up


def test_exit_code_immediately_never_writes_a_pidfile(wire: Path, root: Path) -> None:
    home = make_home(root, "crashy")
    _control(home, exit_code=101, exit_after=0)
    out = _run(wire, home, "daemon", "--interval", "5")
    assert out.returncode == 101
    assert not _pidfile(home).exists()
    assert len(_invocations(home)) == 1


def test_no_last_sync_looks_hung(wire: Path, root: Path) -> None:
    home = make_home(root, "hung")
    _control(home, no_last_sync=True, interval_override=1)
    with _daemon(wire, home, "daemon", "--interval", "5") as proc:
        _wait_for("pidfile", lambda: _pid_names(home, proc.pid))
        time.sleep(1.5)  # at least one more cycle period
        assert proc.poll() is None
        assert layout.last_active(home) is None


def test_hang_before_pidfile(wire: Path, root: Path) -> None:
    home = make_home(root, "slow-start")
    _control(home, hang_before_pidfile=3.0)
    with _daemon(wire, home) as proc:
        # The hang starts after exec, so right after Popen there can be no pidfile.
        assert not _pidfile(home).exists()
        _wait_for("pidfile after the hang", lambda: _pid_names(home, proc.pid))


@pytest.mark.parametrize(
    ("form", "expected"),
    [("partial", "partial"), ("bare", "bare")],
)
def test_pidfile_forms_do_not_block_the_strict_singleton(
    wire: Path, root: Path, form: str, expected: str
) -> None:
    home = make_home(root, f"form-{form}")
    _control(home, pidfile_form=form)
    with _daemon(wire, home) as first:
        _wait_for("pidfile", lambda: _pid_names(home, first.pid))
        rec = layout.read_daemon_pid(_pidfile(home))
        assert rec is not None
        assert rec.form == expected
        # wire's strict reader calls these Corrupt, so a second daemon starts.
        with _daemon(wire, home) as second:
            _wait_for("second pidfile", lambda: _pid_names(home, second.pid))
            assert first.poll() is None


def test_ignore_sigterm_needs_sigkill(wire: Path, root: Path) -> None:
    home = make_home(root, "stubborn")
    _control(home, ignore_sigterm=True)
    with _daemon(wire, home) as proc:
        _wait_for("pidfile", lambda: _pid_names(home, proc.pid))
        os.kill(proc.pid, signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=DEADLINE) == -signal.SIGKILL


def test_bad_control_file_is_reported_not_fatal(wire: Path, root: Path) -> None:
    home = make_home(root, "typo")
    _control(home, exit_cod=3, pidfile_form="weird")
    out = _run(wire, home, "daemon", "--once")
    assert out.returncode == 0
    assert "unknown knob 'exit_cod'" in out.stderr
    assert "bad value for 'pidfile_form'" in out.stderr


# --- the fake supervisor ------------------------------------------------------------


def test_all_sessions_is_a_singleton_on_supervisor_pid(wire: Path, root: Path) -> None:
    root.mkdir(parents=True)
    with _daemon(wire, root, "daemon", "--all-sessions", "--interval", "5") as sup:
        _wait_for("supervisor.pid", lambda: layout.read_supervisor_pid(root) == sup.pid)
        assert (root / "supervisor.pid").read_text() == str(sup.pid)  # bare, no newline
        if sys.platform.startswith("linux"):
            argv = Path(f"/proc/{sup.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            assert layout.is_wire_supervisor_cmdline(argv)
        second = _run(wire, root, "daemon", "--all-sessions", "--json")
        assert second.returncode == 0
        assert json.loads(second.stdout) == {
            "status": "skipped",
            "reason": "supervisor already running",
            "holder_pid": sup.pid,
        }
        assert sup.poll() is None


# --- the fake's own copies of wire's rules agree with layout --------------------------

NAMES: Sequence[str] = (
    "named-pane",
    "sess-aaa",
    "Paul Mac!",
    "ünìcødë",
    "",
    "---",
    "a" * 31 + "-b",
    "x" * 80,
    "__x__",
    "😀emoji😀",
    "tab\tnew\nline",
)


def test_fake_rules_match_layout(tmp_path: Path) -> None:
    for name in NAMES:
        assert fake_wire._sanitize_name(name) == layout.sanitize_name(name)
        assert fake_wire._by_key(name) == layout.by_key_dir_name(name)
    for did in ("did:wire:coral-weasel-0616dc6c", "did:wire:paul", "x-ABCDEF12", "did:wire:-1"):
        assert fake_wire._display_handle(did) == layout.display_handle_from_did(did)
    root = tmp_path / "sessions"
    home = make_home(root, "deep")
    (tmp_path / "with" / "sessions").mkdir(parents=True)
    for env in (
        {"WIRE_HOME": str(home)},
        {"WIRE_HOME": str(root)},
        {"WIRE_HOME": str(tmp_path / "with")},
        {"WIRE_HOME": str(tmp_path / "plain")},
        {"WIRE_HOME": "", "XDG_STATE_HOME": "/xdg"},
    ):
        expected = layout.resolve_sessions_root(env, sys.platform, Path.home())
        assert Path(fake_wire._sessions_root(env)) == expected


def test_a_fifo_card_does_not_hang_the_fake(wire: Path, root: Path) -> None:
    home = make_home(root, "fifo", card=False)
    os.mkfifo(home / "config" / "wire" / "agent-card.json")
    out = _run(wire, home, "daemon", "--once")  # _run's timeout would catch a hang
    assert out.returncode == 0
    rec = layout.read_daemon_pid(_pidfile(home))
    assert rec is not None
    assert rec.did is None  # unreadable card: the pidfile says so, as wire's would
