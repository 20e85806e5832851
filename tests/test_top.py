"""``wirepool top``: its model (pure), and the real thing under tmux against
a real supervisor: a countdown ticking, a restart appearing, a filter
narrowing the rows, a restart from the keyboard, and ``q`` leaving the
terminal as it was.  With no terminal it prints a line per event."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import WIREPOOL, Services, Tracker, cli, status_sessions, wait_for

from wirepool._top import TopModel, _keys

CRASHER = "#!/bin/sh\necho crashing >&2\nexit 3\n"


def _doc(*sessions: dict[str, object]) -> dict[str, object]:
    return {"plugin": "x", "supervisor": {"pid": 1, "started_at": 0.0}, "sessions": list(sessions)}


def test_rows_put_problems_first_and_filter_by_name() -> None:
    model = TopModel(
        doc=_doc(
            {"name": "web", "key": "web", "state": "running", "pid": 10, "started_at": 90.0},
            {"name": "db", "key": "db", "state": "failed", "reason": "gave up"},
            {"name": "q", "key": "q", "state": "backoff", "next_start_at": 103.5},
            {"name": "x\x1b[31m", "key": "x", "state": "ineligible"},
        )
    )
    rows = model.rows(now=100.0)
    assert [r.name for r in rows] == ["db", "q", "web", "x\\x1b[31m"]  # escaped
    assert rows[1].next_start == "3.5s" and rows[2].uptime == "10s" and rows[2].pid == "10"
    for key in "/we":
        model.key(key, 100.0)
    assert model.mode == "filter" and [r.name for r in model.rows(100.0)] == ["web"]
    model.key("enter", 100.0)
    assert model.mode == "normal" and model.filter == "we"
    model.key("/", 100.0)
    model.key("esc", 100.0)
    assert model.filter == "" and len(model.rows(100.0)) == 4


def test_verb_keys_ask_first_and_arrows_move() -> None:
    model = TopModel(
        doc=_doc(
            {"name": "a", "key": "k-a", "state": "running"},
            {"name": "b", "key": "k-b", "state": "running"},
        )
    )
    model._keep_selection(0.0)
    assert model.selected == "k-a"
    model.key("down", 0.0)
    assert model.selected == "k-b"
    assert model.key("r", 0.0) is None and model.footer() == "restart b? (y/n)"
    assert model.key("y", 0.0) == ("restart", "k-b")
    model.key("d", 0.0)
    assert model.key("n", 0.0) is None and model.message == "cancelled"
    model.key("q", 0.0)
    assert model.quit


def test_terminal_keys_are_parsed() -> None:
    assert list(_keys(b"q/\x1b[A\x1b[B\x1bOA\x1b\r\x7fx\x1b[5~")) == [
        "q",
        "/",
        "up",
        "down",
        "up",
        "esc",
        "enter",
        "backspace",
        "x",
    ]


# --------------------------------------------------------------- under tmux

needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"
)


class Tmux:
    """A private tmux server (its own socket) with one 80x24 window."""

    def __init__(self, cwd: Path) -> None:
        # Its socket in a directory of its own, removed with it (`-L` would
        # leave one in /tmp/tmux-UID for every run).
        self.dir = Path(tempfile.mkdtemp(prefix="tmux-"))
        self.base = ["tmux", "-S", str(self.dir / "s")]
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "t", "-x", "80", "-y", "24", "-c", str(cwd)],
            check=True,
            env={"TERM": "xterm-256color", "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        )

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", "-l", text], check=True)

    def screen(self) -> str:
        out = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "t"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def showing(self, text: str) -> str | None:
        screen = self.screen()
        return screen if text in screen else None

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        term.close()


def _row(screen: str, name: str) -> list[str] | None:
    """The cells of ``name``'s row, cut where the header's titles start."""
    lines = screen.splitlines()
    header = next((line for line in lines if line.startswith("NAME ")), None)
    if header is None:
        return None
    titles = ["NAME", "STATE", "PID", "UPTIME", "RST", "LAST EXIT", "NEXT", "REASON"]
    starts = [header.index(t) for t in titles]
    for line in lines:
        if line.startswith(f"{name} "):
            ends = [*starts[1:], len(line)]
            return [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]
    return None


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(?:(\d+)m)?(\d+(?:\.\d)?)s", text)
    assert m, text
    return int(m[1] or 0) * 60 + float(m[2])


@needs_tmux
def test_top_under_tmux(services: Services, tracker: Tracker, tmux: Tmux) -> None:
    services.add("web")
    services.add("crash", CRASHER)
    sup = tracker.supervisor("servicedir", str(services.root), "--stop-grace", "2")
    try:
        wait_for(lambda: status_sessions(services.state_dir).get("web", {}).get("pid"), 60)
        command = " ".join([*WIREPOOL, "top", "servicedir", str(services.root)])
        tmux.type(f"{command}; echo EXITED $?")
        tmux.keys("Enter")
        screen = wait_for(lambda: tmux.showing(" sessions: "), 60)
        assert f"supervisor pid {sup.proc.pid}" in screen
        lines = screen.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
        # problems first: the crash-looping session above the running one
        assert lines[header + 1].startswith("crash ") and lines[header + 2].startswith("web ")

        # a crash loop's countdown ticks: a backoff of 4 s or more, seen twice
        def countdown() -> float | None:
            row = _row(tmux.screen(), "crash")
            if row and row[1] == "backoff" and row[6] != "-":
                return _seconds(row[6])
            return None

        first = wait_for(lambda: (c := countdown()) is not None and c >= 3.0 and c, 90)
        time.sleep(1.5)  # a redraw comes every second
        second = countdown()
        assert second is not None and second < first

        # a restart from elsewhere appears
        web_pid = int(_row(tmux.screen(), "web")[2])  # type: ignore[index]
        assert cli("restart", "servicedir", str(services.root), "web").returncode == 0
        wait_for(lambda: (r := _row(tmux.screen(), "web")) and r[2] != str(web_pid), 30)

        # a filter narrows the rows (already while it is typed: what says
        # Enter was taken is the kept filter in the header)
        tmux.type("/web")
        tmux.keys("Enter")
        kept = wait_for(lambda: tmux.showing("[filter: web]"), 30)
        assert _row(kept, "crash") is None and _row(kept, "web")

        # r on the selected row asks, y restarts
        current = _row(tmux.screen(), "web")[2]  # type: ignore[index]
        tmux.type("r")
        wait_for(lambda: "restart web? (y/n)" in tmux.screen(), 30)
        tmux.type("y")
        wait_for(lambda: (r := _row(tmux.screen(), "web")) and r[2] != current, 30)
        assert "restart web: restarting pid" in tmux.screen()

        # q ends it, and the terminal is as it was: the shell's own screen,
        # echoing what is typed, in canonical mode
        tmux.type("q")
        done = wait_for(lambda: tmux.showing("EXITED 0"), 30)
        assert " sessions: " not in done and "NAME " not in done  # the alternate screen is gone
        tmux.type("stty -a | grep -o -- '-*icanon' ; echo typed-$((40+2))")
        tmux.keys("Enter")
        restored = wait_for(lambda: tmux.showing("typed-42"), 30)
        assert "\nicanon" in restored and "-icanon" not in restored
        assert "echo typed-$((40+2))" in restored  # what was typed was echoed
    finally:
        result = cli("stop", "servicedir", str(services.root), "--children")
        assert result.returncode == 0, result.stderr
        sup.wait_exit(timeout=60)


def test_top_without_a_terminal_prints_a_line_per_event(
    services: Services, tracker: Tracker
) -> None:
    services.add("crash", CRASHER)
    sup = tracker.supervisor("servicedir", str(services.root))
    try:
        wait_for(lambda: sup.of("spawned"), 60)
        top = subprocess.Popen(
            [*WIREPOOL, "top", "servicedir", str(services.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert top.stdout is not None
            line = top.stdout.readline()
            assert re.fullmatch(
                r"\d\d:\d\d:\d\d (spawned|exited|backoff) crash( pid \d+)?.*\n", line
            )
            top.send_signal(signal.SIGINT)
            assert top.wait(timeout=30) == 0
        finally:
            if top.poll() is None:
                top.kill()
            top.communicate(timeout=30)
    finally:
        assert cli("stop", "servicedir", str(services.root), "--children").returncode == 0
        sup.wait_exit(timeout=60)
