"""What a hostile name, path or reason does to the operator's terminal:
nothing.  The bytes are captured as a terminal receives them, under
``script`` (a real pty), from the real ``wirepool`` command."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import Services, wait_for

from wirepool import _term
from wirepool._store import StateDir, lock_holder

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}

# A service directory name that retitles the terminal and clears it, one
# whose letters a right-to-left override reverses, one with a zero-width
# space that makes it look like another.
HOSTILE_NAMES = ["esc\x1b]0;DIRPWN\x07\x1b[2Jd", "rtl\u202eevil", "zw\u200bsp"]
RAW = [b"\x1b", b"\x07", "\u202e".encode(), "\u200b".encode()]


def test_every_invisible_character_is_escaped_and_nothing_else() -> None:
    unsafe, safe = [], []
    for code in range(0x110000):
        ch = chr(code)
        category = unicodedata.category(ch)
        if code == 0x0A or category == "Cn":
            continue  # unassigned: a newer Unicode's format characters may be escaped early
        (unsafe if category in UNSAFE_CATEGORIES else safe).append(ch)
    escaped = _term.escape("".join(unsafe))
    assert escaped.isascii() and escaped.isprintable()
    assert len(escaped) > 4 * len(unsafe)  # one escape per character
    visible = "".join(safe)
    assert _term.escape(visible) == visible
    assert _term.escape("a\nb") == "a\\x0ab"
    assert _term.escape("a\nb", keep_newlines=True) == "a\nb"
    # escaping what was escaped changes nothing
    assert _term.escape(escaped) == escaped


def _under_script(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Run argv on a fresh pty; the pty's output is script's stdout."""
    script = shutil.which("script")
    if script is None:
        pytest.fail("`script` (util-linux) is needed to capture a terminal's bytes")
    command = " ".join(_quote(a) for a in argv)
    return subprocess.Popen(
        [script, "-qec", command, "/dev/null"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _assert_clean(output: bytes) -> None:
    for raw in RAW:
        assert raw not in output, (raw, output[-2000:])


def test_supervisor_log_and_status_table_escape_hostile_names_and_paths(tmp_path: Path) -> None:
    services = Services(tmp_path / "svc")
    for name in HOSTILE_NAMES:
        d = services.add(name)
        # env/ writable by others: the start fails with a reason that
        # quotes the service directory's path, hostile name and all.
        (d / "env").mkdir()
        (d / "env").chmod(0o777)
    wirepool = [sys.executable, "-m", "wirepool"]
    supervisor = _under_script(
        [*wirepool, "run", "servicedir", str(services.root), "--on-exit", "stop"]
    )
    state = StateDir(services.state_dir)
    try:

        def all_refused() -> bool:
            doc = state.read_status() or {}
            reasons = [str(s.get("reason")) for s in doc.get("sessions", [])]
            return len(reasons) == 3 and all("writable by group" in r for r in reasons)

        wait_for(all_refused, timeout=60)
        holder = wait_for(lambda: lock_holder(state), timeout=30)
        os.kill(holder, signal.SIGTERM)
        log, _ = supervisor.communicate(timeout=60)
    finally:
        if supervisor.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.communicate(timeout=30)
    _assert_clean(log)
    # The names were printed, escaped, in the supervisor's log lines
    assert b"esc\\x1b]0;DIRPWN\\x07\\x1b[2Jd" in log
    assert b"rtl\\u202eevil" in log

    status = _under_script([*wirepool, "status", "servicedir", str(services.root)])
    table, _ = status.communicate(timeout=60)
    assert status.returncode == 3  # no supervisor running: the table is still printed
    _assert_clean(table)
    assert b"esc\\x1b]0;DIRPWN\\x07\\x1b[2Jd" in table
    assert b"zw\\u200bsp" in table
    # JSON (asked for) stays exact: the names come back byte for byte
    as_json = subprocess.run(
        [*wirepool, "status", "servicedir", str(services.root), "--json"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    names = {s["name"] for s in json.loads(as_json.stdout)["sessions"]}
    assert names == set(HOSTILE_NAMES)


def test_a_usage_error_quoting_a_hostile_argument_is_escaped(tmp_path: Path) -> None:
    proc = _under_script([sys.executable, "-m", "wirepool", "run", "no\x1b]0;PWN\x07plugin"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    _assert_clean(out)
    assert b"no\\x1b]0;PWN\\x07plugin" in out
