"""``wirepool top``: a live view of a running supervisor.

Fed by the supervisor's event stream over its control socket: it redraws
when an event arrives (fetching the status again, at most four times a
second) and once a second for the countdowns, and otherwise sleeps in one
``select`` on the socket and the keyboard: no busy polling.

Drawn with rich (``Live`` on the alternate screen).  Every string from
outside (names, reasons) is escaped (:mod:`wirepool._term`) and put in
``Text`` objects, never in markup, so a ``[bold]`` in a session name is
shown as it is.  With no terminal, or one too small to draw in, it prints a
compact line per event instead.

Keys: ``q`` quits; ``/`` filters by name (Enter keeps it, Esc clears it);
up/down (or ``k``/``j``) move; ``r``, ``d``, ``u`` restart, hold down or let
up the selected session, after a ``y`` to confirm.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from wirepool import _term
from wirepool._cli_status import _fmt_exit
from wirepool._client import Client, open_socket
from wirepool._control import PROTOCOL, decode_line, encode
from wirepool._format import format_age
from wirepool.errors import ControlError, NoSupervisorError

#: problems first: the order rows are sorted in, by state
STATE_ORDER = {
    "failed": 0,
    "backoff": 1,
    "stopping": 2,
    "pending": 3,
    "down": 4,
    "stopped": 5,
    "running": 6,
    "adopted": 7,
    "ineligible": 8,
}
STATE_STYLE = {
    "failed": "bold red",
    "backoff": "yellow",
    "stopping": "magenta",
    "pending": "yellow",
    "down": "blue",
    "stopped": "dim",
    "running": "green",
    "adopted": "cyan",
    "ineligible": "dim",
}
#: the smallest terminal drawn in; below it, a line per event
MIN_COLS, MIN_ROWS = 60, 10
#: what a verb key asks, and the verb it runs
VERB_KEYS = {"r": "restart", "d": "down", "u": "up"}


@dataclass
class Row:
    name: str
    key: str
    state: str
    pid: str
    uptime: str
    restarts: str
    last_exit: str
    next_start: str
    reason: str


@dataclass
class TopModel:
    """What the screen shows, and what a key does to it: pure, so tests
    drive it without a terminal."""

    doc: Mapping[str, Any] = field(default_factory=dict)
    #: (wall time, kind) of recent events, for the last-minute counts
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=100_000))
    filter: str = ""
    mode: str = "normal"  # normal, filter, confirm
    selected: str | None = None  # the selected session's key
    pending: tuple[str, str, str] | None = None  # verb, key, name
    message: str = ""
    quit: bool = False

    # ------------------------------------------------------------- content

    def rows(self, now: float) -> list[Row]:
        sessions = [s for s in self.doc.get("sessions", []) if isinstance(s, Mapping)]
        wanted = self.filter.lower()
        out = []
        for s in sessions:
            name = _term.escape(str(s.get("name") or s.get("key")))
            if wanted and wanted not in name.lower():
                continue
            out.append(_row(s, name, now))
        out.sort(key=lambda r: (STATE_ORDER.get(r.state, 9), r.name, r.key))
        return out

    def header(self, now: float) -> str:
        sup = self.doc.get("supervisor", {}) if isinstance(self.doc, Mapping) else {}
        started = sup.get("started_at")
        up = format_age(now - started, fine=True) if isinstance(started, int | float) else "-"
        counts: dict[str, int] = {}
        for s in self.doc.get("sessions", []):
            state = str(s.get("state"))
            counts[state] = counts.get(state, 0) + 1
        by_state = ", ".join(
            f"{n} {state}"
            for state, n in sorted(counts.items(), key=lambda i: STATE_ORDER.get(i[0], 9))
        )
        # The supervisor's count (it saw the minute before we started);
        # our own, from the events since, where it has none.
        minute = [kind for at, kind in self.recent if now - at <= 60]
        spawns = sum(kind == "spawned" for kind in minute)
        exits = sum(kind == "exited" for kind in minute)
        counted = self.doc.get("last_minute")
        if isinstance(counted, Mapping):
            spawns = max(spawns, _int(counted.get("spawned")))
            exits = max(exits, _int(counted.get("exited")))
        plugin = _term.escape(str(self.doc.get("plugin") or ""))
        total = len(self.doc.get("sessions", []))
        return (
            f"wirepool top {plugin}  supervisor pid {sup.get('pid')}, up {up}\n"
            f"{total} sessions: {by_state or 'none'}  |  last min: {spawns} spawns, "
            f"{exits} exits"
        )

    def footer(self) -> str:
        if self.mode == "filter":
            return f"filter: {self.filter}_   (Enter: keep, Esc: clear)"
        if self.mode == "confirm" and self.pending:
            verb, _, name = self.pending
            return f"{verb} {name}? (y/n)"
        hint = "q quit  / filter  up/down move  r restart  d down  u up"
        shown = f"  [filter: {self.filter}]" if self.filter else ""
        return f"{self.message}  |  {hint}{shown}" if self.message else f"{hint}{shown}"

    # ----------------------------------------------------------------- keys

    def key(self, key: str, now: float) -> tuple[str, str] | None:
        """Apply one key; returns (verb, key) when a verb is confirmed."""
        if self.mode == "filter":
            if key == "enter":
                self.mode = "normal"
            elif key == "esc":
                self.mode, self.filter = "normal", ""
            elif key == "backspace":
                self.filter = self.filter[:-1]
            elif len(key) == 1 and key.isprintable():
                self.filter += key
            self._keep_selection(now)
            return None
        if self.mode == "confirm":
            pending, self.pending, self.mode = self.pending, None, "normal"
            if key == "y" and pending is not None:
                return pending[0], pending[1]
            self.message = "cancelled"
            return None
        rows = self.rows(now)
        keys = [r.key for r in rows]
        at = keys.index(self.selected) if self.selected in keys else -1
        if key == "q":
            self.quit = True
        elif key == "/":
            self.mode = "filter"
        elif key in ("up", "k") and rows:
            self.selected = keys[max(0, at - 1)]
        elif key in ("down", "j") and rows:
            self.selected = keys[min(len(keys) - 1, at + 1)]
        elif key in VERB_KEYS and rows:
            row = rows[at] if at >= 0 else rows[0]
            self.selected = row.key
            self.pending = (VERB_KEYS[key], row.key, row.name)
            self.mode = "confirm"
        return None

    def _keep_selection(self, now: float) -> None:
        keys = [r.key for r in self.rows(now)]
        if self.selected not in keys:
            self.selected = keys[0] if keys else None


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _row(s: Mapping[str, Any], name: str, now: float) -> Row:
    state = str(s.get("state"))
    live = state in ("running", "adopted", "stopping") and s.get("pid") is not None
    started, nxt = s.get("started_at"), s.get("next_start_at")
    return Row(
        name=name,
        key=str(s.get("key") or s.get("name")),
        state=state,
        pid=str(s.get("pid")) if live else "-",
        uptime=format_age(now - started, fine=True)
        if live and isinstance(started, int | float)
        else "-",
        restarts=str(s.get("restarts", 0)),
        last_exit=_fmt_exit(s.get("last_exit")),
        next_start=format_age(max(0.0, nxt - now), fine=True)
        if state == "backoff" and isinstance(nxt, int | float)
        else "-",
        reason=_term.escape(str(s.get("reason") or "")),
    )


# ------------------------------------------------------------------ drawing


def render(model: TopModel, width: int, height: int, now: float) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    rows = model.rows(now)
    room = max(1, height - 5)  # header (2), the table's own header, footer (1), a spare
    keys = [r.key for r in rows]
    at = keys.index(model.selected) if model.selected in keys else 0
    first = min(max(0, at - room // 2), max(0, len(rows) - room))
    table = Table(box=None, expand=True, padding=(0, 1, 0, 0), show_edge=False, pad_edge=False)
    for title, kw in (
        ("NAME", {"max_width": max(8, width // 5)}),
        ("STATE", {"width": 10}),
        ("PID", {"width": 7}),
        ("UPTIME", {"width": 7}),
        ("RST", {"width": 3, "justify": "right"}),
        ("LAST EXIT", {"width": 9}),
        ("NEXT", {"width": 6}),
        ("REASON", {"ratio": 1}),
    ):
        table.add_column(title, no_wrap=True, overflow="ellipsis", **kw)
    for row in rows[first : first + room]:
        style = "reverse" if row.key == model.selected else None
        table.add_row(
            Text(row.name),
            Text(row.state, style=STATE_STYLE.get(row.state, "")),
            Text(row.pid),
            Text(row.uptime),
            Text(row.restarts),
            Text(row.last_exit),
            Text(row.next_start),
            Text(row.reason),
            style=style,
        )
    more = len(rows) - room
    footer = model.footer() + (f"  ({more} more rows)" if more > 0 else "")
    header = Text(model.header(now), style="bold", no_wrap=True, overflow="ellipsis")
    return Group(
        header,
        table,
        Text(footer[: max(10, width - 1)], style="dim" if model.mode == "normal" else "bold"),
    )


# ------------------------------------------------------------------ running


def _keys(data: bytes) -> Iterator[str]:
    """Key names in what the terminal sent (cbreak mode)."""
    i = 0
    text = data.decode("utf-8", "replace")
    while i < len(text):
        c = text[i]
        if c == "\x1b":
            end = i + 1
            if text[i + 1 : i + 2] == "[":  # CSI: parameters, then one final byte
                end = i + 2
                while end < len(text) and not "@" <= text[end] <= "~":
                    end += 1
                end += 1
            elif text[i + 1 : i + 2] == "O":  # SS3: one byte
                end = i + 3
            seq = text[i:end]
            i = end
            if seq in ("\x1b[A", "\x1bOA"):
                yield "up"
            elif seq in ("\x1b[B", "\x1bOB"):
                yield "down"
            elif seq == "\x1b":
                yield "esc"
            continue  # another arrow or function key: ignored
        elif c in "\r\n":
            yield "enter"
        elif c in "\x7f\x08":
            yield "backspace"
        else:
            yield c
        i += 1


class _Subscription:
    """The event stream on a non-blocking socket, read line by line as the
    loop's ``select`` says it is ready."""

    def __init__(self, state_dir: Any) -> None:
        self.sock = open_socket(state_dir, 30.0)
        self.sock.sendall(encode({"v": PROTOCOL, "id": 0, "op": "subscribe"}))
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[dict[str, Any]]:
        events = []
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
        self.buf += data
        while (end := self.buf.find(b"\n")) >= 0:
            line, self.buf = bytes(self.buf[:end]), self.buf[end + 1 :]
            with contextlib.suppress(ValueError):
                obj = decode_line(line)
                if isinstance(obj.get("event"), dict):
                    events.append(obj["event"])
        return events

    def close(self) -> None:
        self.sock.close()


def run_top(state_dir: Any, out: TextIO, line: Callable[[Mapping[str, Any]], str]) -> int:
    """The live view (or, with no room to draw, a line per event) until
    ``q``, Ctrl-C or the supervisor's stop."""
    client = Client(state_dir, timeout=30.0)
    sub = _Subscription(state_dir)
    try:
        size = _size(out)
        if size is None or not sys.stdin.isatty():
            return _lines(sub, out, line)
        return _live(client, sub, out)
    finally:
        sub.close()
        client.close()


def _size(out: TextIO) -> tuple[int, int] | None:
    if not out.isatty():
        return None
    try:
        cols, rows = os.get_terminal_size(out.fileno())
    except OSError:
        return None
    return (cols, rows) if cols >= MIN_COLS and rows >= MIN_ROWS else None


def _lines(sub: _Subscription, out: TextIO, line: Callable[[Mapping[str, Any]], str]) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        while not sub.closed:
            select.select([sub], [], [])
            for event in sub.read():
                out.write(line(event) + "\n")
            out.flush()
    return 0


def _live(client: Client, sub: _Subscription, out: TextIO) -> int:
    from rich.console import Console
    from rich.live import Live

    raw = out.inner if isinstance(out, _term.EscapingStream) else out
    console = Console(file=raw, force_terminal=True)
    model = TopModel(doc=client.status())
    model._keep_selection(time.time())
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin)
    fetch_due: float | None = None
    last_fetch = 0.0
    try:
        tty.setcbreak(stdin)
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while not model.quit and not sub.closed:
                now = time.time()
                live.update(render(model, console.width, console.height, now), refresh=True)
                timeout = 1.0 - (now % 1.0)  # the next whole second: the countdowns tick
                if fetch_due is not None:
                    timeout = min(timeout, max(0.0, fetch_due - time.monotonic()))
                ready, _, _ = select.select([stdin, sub], [], [], timeout)
                if sub in ready:
                    events = sub.read()
                    for event in events:
                        at = event.get("ts")
                        model.recent.append(
                            (at if isinstance(at, float) else now, str(event.get("event")))
                        )
                    if events and fetch_due is None:
                        # at most four fetches a second, however fast events come
                        fetch_due = max(time.monotonic(), last_fetch + 0.25)
                if stdin in ready:
                    for key in _keys(os.read(stdin, 1024)):
                        verb = model.key(key, time.time())
                        if verb is not None:
                            model.message = _act(client, *verb)
                            fetch_due = time.monotonic()
                if fetch_due is not None and time.monotonic() >= fetch_due:
                    fetch_due, last_fetch = None, time.monotonic()
                    with contextlib.suppress(ControlError, NoSupervisorError, OSError, ValueError):
                        model.doc = client.status()
                    model._keep_selection(time.time())
    except KeyboardInterrupt:
        pass
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
    if sub.closed:
        out.write("wirepool top: the supervisor stopped\n")
    return 0


def _act(client: Client, verb: str, key: str) -> str:
    try:
        result = client.request(verb, sessions=[key])
    except (ControlError, NoSupervisorError, TimeoutError) as exc:
        return _term.escape(f"{verb}: {exc}")
    done = result.get("sessions", [{}])[0] if isinstance(result, dict) else {}
    return _term.escape(f"{verb} {done.get('name')}: {done.get('outcome')}")
