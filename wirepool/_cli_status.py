"""``wirepool status``: the supervisor's own picture of each session, live
over its control socket when it runs, else the last ``status.json`` checked
against the processes, else what discovery finds now -- as a table, a
detail view per named session, or JSON."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wirepool import _term
from wirepool._args import Argument, Option
from wirepool._cli_common import (
    EXIT_NO_SUCH_SESSION,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    CliError,
    build,
    json_option,
    lines_option,
    require_root,
    say,
    sessions_argument,
    state_dir_option,
)
from wirepool._client import Client
from wirepool._format import format_age, format_wall
from wirepool._names import Named, NameProblem, resolve_all
from wirepool._proc import ProcessIdentity, is_alive
from wirepool._status import SessionStatus, normalize_status, status_document
from wirepool._store import STATUS_SCHEMA, StateDir, dumps_strict, from_strict_json, lock_is_held
from wirepool.errors import ConfigError, ControlError, NoSupervisorError
from wirepool.plugin import Plugin, PoolSpec

#: the states in which a session has a live child
LIVE_STATES = ("running", "adopted", "stopping")
#: how many log lines the detail view shows
DETAIL_LOG_LINES = 10


def read_status(spec: PoolSpec, plugin: str, names: Sequence[str] = ()) -> dict[str, Any]:
    """The status document, of every session or of those ``names`` name.

    With a supervisor running, its live picture through the control socket
    (no file lag).  With none: the last ``status.json``, every pid in it
    re-verified and no countdown (no retry comes until a supervisor runs);
    with no ``status.json`` at all, discovery and eligibility are run here
    so the operator still sees the sessions and why each would (not) get a
    child.  CliError (exit 8) for an unknown or ambiguous name.
    """
    state = StateDir(spec.state_dir)
    # First: a lock someone else holds in a directory they made must not
    # make us report "supervisor: running", nor their status.json be shown
    # as ours.  A state directory not made yet is no supervisor, no status.
    exists = state.verify(missing_ok=True)
    alive = exists and lock_is_held(state)
    doc, unanswered = _live_doc(state, names) if alive else (None, None)
    if doc is None:
        doc = _file_doc(spec, plugin, state, exists, alive)
        if unanswered:
            doc.setdefault("notes", []).append(f"{unanswered}; showing status.json")
        if names:
            _keep_named(doc, names)
    now = time.time()
    live = bool(doc.get("live"))
    for sess in doc.get("sessions", []):
        if live:  # the supervisor's word: it watches each pid's exit fd
            sess["alive"] = sess.get("state") in LIVE_STATES and sess.get("pid") is not None
        else:
            _check_process(sess, alive)
        started = sess.get("started_at")
        sess["uptime"] = (
            round(now - started, 1) if sess["alive"] and isinstance(started, int | float) else None
        )
        nxt = sess.get("next_start_at")
        # Only a running supervisor starts anything: offline, a backoff's
        # end is no countdown to anything.
        sess["next_start_in"] = (
            round(max(0.0, nxt - now), 1) if alive and isinstance(nxt, int | float) else None
        )
    doc["generated_at"] = now
    if alive:
        stale = _state_dir_unwritable(state.root)
        if stale:
            doc.setdefault("degraded", []).append(f"{stale}: status.json may be stale")
    if spec.annotate is not None:
        try:
            spec.annotate(doc)
        except Exception as exc:
            doc.setdefault("errors", []).append(f"plugin status: {exc}")
    return doc


def _live_doc(state: StateDir, names: Sequence[str]) -> tuple[dict[str, Any] | None, str | None]:
    """The running supervisor's picture, or None and why, when it does not
    answer on its control socket."""
    try:
        with Client(state.root, timeout=30.0) as client:
            doc = client.status(*names)
    except ControlError as exc:
        if exc.code in ("unknown-session", "ambiguous-session"):
            raise CliError(str(exc), EXIT_NO_SUCH_SESSION) from None
        raise CliError(f"the supervisor refused: {exc}") from None
    except (NoSupervisorError, TimeoutError, OSError, ValueError) as exc:
        return None, f"the supervisor did not answer on its control socket ({exc})"
    normalize_status(doc)
    doc["supervisor"]["alive"] = True
    return doc, None


def _file_doc(
    spec: PoolSpec, plugin: str, state: StateDir, exists: bool, alive: bool
) -> dict[str, Any]:
    problem = None
    try:
        # exact names again (from their `_bytes`), for the checks below and
        # the plugin's annotate, which looks in each session's home
        doc = from_strict_json(state.read_status()) if exists else None
    except (OSError, ValueError) as exc:
        doc, problem = None, f"cannot read {state.status_path}: {_why(exc)}"
    if doc is None or doc.get("schema") != STATUS_SCHEMA:
        doc = _discovered_doc(spec, plugin)
    normalize_status(doc)
    if problem is not None:
        doc.setdefault("errors", []).append(problem)
    supervisor = doc["supervisor"]
    info = state.read_supervisor() or {}
    supervisor["pid"] = info.get("pid", supervisor.get("pid"))
    supervisor["alive"] = alive
    return doc


def _check_process(sess: dict[str, Any], supervised: bool) -> None:
    """A pid from a file is only a claim: alive with the recorded start time?"""
    pid, start = sess.get("pid"), sess.get("process_start")
    live = isinstance(pid, int) and isinstance(start, int) and is_alive(ProcessIdentity(pid, start))
    sess["alive"] = live
    if sess.get("state") in LIVE_STATES and not live:
        sess["state"] = "stopped"
        sess["reason"] = (
            "process gone; the supervisor has not caught up yet"
            if supervised
            else "process gone (no supervisor saw it exit)"
        )


def _keep_named(doc: dict[str, Any], names: Sequence[str]) -> None:
    sessions = doc["sessions"]
    named = {
        str(s.get("key") or s.get("name")): Named(
            str(s.get("key") or s.get("name")),
            str(s.get("name") or s.get("key")),
            str(s.get("home") or ""),
        )
        for s in sessions
    }
    try:
        keys = resolve_all(names, named)
    except NameProblem as exc:
        raise CliError(str(exc), EXIT_NO_SUCH_SESSION) from None
    by_key = {str(s.get("key") or s.get("name")): s for s in sessions}
    doc["sessions"] = [by_key[k] for k in keys]


def _would_run(why: str) -> str:
    return (
        f"would run ({why}); no supervisor has run yet"
        if why
        else ("would run; no supervisor has run yet")
    )


def _why(exc: BaseException) -> str:
    """An error in a few words, without the path the message already names."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"[:200]


def _state_dir_unwritable(root: Path) -> str | None:
    """When the state directory cannot take a write, the supervisor cannot
    say so in status.json either: ask the filesystem directly."""
    try:
        st = os.statvfs(root)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "state directory is on a read-only filesystem"
    if (st.f_bavail == 0 and os.geteuid() != 0) or st.f_bfree == 0:
        return "state directory's filesystem is full"
    return None


def _discovered_doc(spec: PoolSpec, plugin: str) -> dict[str, Any]:
    from wirepool.discovery import as_discovery
    from wirepool.eligibility import Always, as_eligibility

    sessions: list[SessionStatus] = []
    errors: list[str] = []
    try:
        found = list(as_discovery(spec.discovery).discover())
    except Exception as exc:
        found = []
        errors.append(f"discovery failed: {exc}")
    check = as_eligibility(spec.eligibility or Always())
    now = time.time()
    for session in found:
        try:
            verdict = check.check(session, now)
            state = "stopped" if verdict.eligible else "ineligible"
            reason = _would_run(verdict.reason) if verdict.eligible else verdict.reason
        except ConfigError as exc:
            state, reason = "ineligible", str(exc)  # cannot tell: it would not be started
        except Exception as exc:
            state, reason = "ineligible", f"eligibility check failed: {exc}"
        sessions.append(
            SessionStatus(
                name=session.name,
                display_name=session.display_name,
                home=str(session.home),
                cwd=str(session.cwd) if session.cwd else None,
                state=state,
                reason=reason,
                attrs=session.attrs,
            )
        )
    return status_document(
        plugin=plugin,
        state_dir=str(spec.state_dir),
        sessions=sessions,
        supervisor={"pid": None, "running": False},
        updated_at=None,
        errors=errors,
    )


def _fmt_exit(last: Any) -> str:
    if not isinstance(last, dict):
        return "-"
    if last.get("signal") is not None:
        try:
            return signal.Signals(last["signal"]).name
        except ValueError:
            return f"sig{last['signal']}"
    if last.get("code") is not None:
        return f"code {last['code']}"
    # Only an adopted child ends without a status: the kernel tells its
    # parent how it ended, and its parent is not us.
    return "ended (adopted)"


def render_table(doc: Mapping[str, Any]) -> str:
    sup = doc.get("supervisor", {})
    lines = []
    if sup.get("alive"):
        lines.append(
            f"supervisor: running (pid {sup.get('pid')})  state dir: {doc.get('state_dir')}"
        )
    else:
        lines.append(f"supervisor: not running  state dir: {doc.get('state_dir')}")
    headers = ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT", "NEXT", "REASON"]
    sessions = doc.get("sessions", [])
    shown = _shown_names(sessions)
    rows: list[list[str]] = []
    output: list[str | None] = []
    for n, s in sorted(enumerate(sessions), key=lambda item: shown[item[0]]):
        row = [
            shown[n],
            str(s.get("state")),
            str(s.get("pid") or "-") if s.get("alive") else "-",
            format_age(s.get("uptime"), fine=True),
            str(s.get("restarts", 0)),
            _fmt_exit(s.get("last_exit")),
            format_age(s.get("next_start_in"), fine=True),
            str(s.get("reason") or ""),
        ]
        rows.append([_printable(cell) for cell in row])
        output.append(_last_words(s))
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines.append(fmt.format(*headers))
    for row, words in zip(rows, output, strict=True):
        lines.append(fmt.format(*row))
        if words:
            # A failing daemon's own last words, where the operator looks:
            # "exit code 64" alone says nothing of a missing -u switch.
            lines.append(" " * (widths[0] + 2) + f"└ {_printable(words)}")
    counts: dict[str, int] = {}
    for s in sessions:
        counts[str(s.get("state"))] = counts.get(str(s.get("state")), 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    lines.append(f"{len(rows)} sessions" + (f": {summary}" if summary else ""))
    for problem in doc.get("degraded", []) or []:
        lines.append(f"degraded: {problem}")
    for err in doc.get("errors", []) or []:
        lines.append(f"error: {err}")
    for line in doc.get("notes", []) or []:
        lines.append(str(line))
    # Every line whole, for what was not a cell: the state dir, a pid or a
    # state read from a damaged status.json, the summary's state names.
    return "\n".join(_printable(line) for line in lines)


def _shown_names(sessions: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each session's name as shown: its name, and its key beside it where
    two sessions show the same name (two wire homes with one handle)."""
    names = [str(s.get("name") or s.get("display_name") or s.get("key")) for s in sessions]
    count: dict[str, int] = {}
    for name in names:
        count[name] = count.get(name, 0) + 1
    return [
        name if count[name] == 1 else f"{name} ({s.get('key')})"
        for name, s in zip(names, sessions, strict=True)
    ]


def _last_words(sess: Mapping[str, Any]) -> str | None:
    """The last line a session's child wrote before it exited, for a
    session held back or stopped by its exit."""
    if sess.get("alive") or sess.get("state") not in ("backoff", "failed", "stopped"):
        return None
    lines = sess.get("last_output")
    if not isinstance(lines, list) or not lines:
        return None
    last = lines[-1]
    return str(last)[:200] if last else None


def render_detail(doc: Mapping[str, Any], *, log_lines: int = DETAIL_LOG_LINES) -> str:
    """One block per session, in the spirit of ``systemctl status``: state,
    reason, pid, uptime, restarts, last exit, log, its last output and the
    last lines of its log."""
    sup = doc.get("supervisor", {})
    blocks: list[str] = []
    for sess in doc.get("sessions", []):
        blocks.append(_detail(sess, bool(sup.get("alive")), log_lines))
    return "\n\n".join(blocks)


def _detail(sess: Mapping[str, Any], supervised: bool, log_lines: int) -> str:
    name, key = str(sess.get("name")), str(sess.get("key") or sess.get("name"))
    state = str(sess.get("state"))
    mark = "●" if sess.get("alive") else "○"
    out = [f"{mark} {name} - {state}"]
    fields: list[tuple[str, str]] = []
    if key != name:
        fields.append(("key", key))
    fields.append(("home", str(sess.get("home"))))
    started = sess.get("started_at")
    if sess.get("alive"):
        since = (
            f" since {format_wall(started)}; {format_age(sess.get('uptime'), fine=True)} ago"
            if isinstance(started, int | float)
            else ""
        )
        owned = "" if sess.get("owned", True) else " (not started by this pool: never stopped)"
        fields.append(("state", f"{state}{since}"))
        fields.append(("pid", f"{sess.get('pid')}{owned}"))
    else:
        fields.append(("state", state))
    fields.append(("reason", str(sess.get("reason") or "-")))
    fields.append(("restarts", str(sess.get("restarts", 0))))
    last = sess.get("last_exit")
    if isinstance(last, dict):
        at = last.get("at")
        when = f" at {format_wall(at)}" if isinstance(at, int | float) else ""
        fields.append(("last exit", f"{_fmt_exit(last)}{when}"))
    nxt = sess.get("next_start_in")
    if supervised and isinstance(nxt, int | float):
        fields.append(("next start", f"in {format_age(nxt, fine=True)}"))
    elif not supervised and sess.get("next_start_at") is not None:
        fields.append(("next start", "when a supervisor runs (none does)"))
    if sess.get("health"):
        fields.append(("health", str(sess.get("health"))))
    log = sess.get("log")
    fields.append(("log", str(log) if log else "-"))
    width = max(len(label) for label, _ in fields)
    out.extend(f"  {label:>{width}}: {value}" for label, value in fields)
    words = sess.get("last_output")
    if isinstance(words, list) and words and not sess.get("alive"):
        out.append("  last output before it exited:")
        out.extend(f"    {line}" for line in words)
    if log and log_lines > 0:
        out.append("")
        out.extend(_log_tail(Path(str(log)), log_lines))
    return "\n".join(_printable(line) for line in out)


def _log_tail(path: Path, n: int) -> list[str]:
    from wirepool._tail import last_lines

    try:
        lines = last_lines(path, n)
    except OSError as exc:
        return [f"(log {path}: {exc.strerror or exc})"]
    if not lines:
        return [f"(log {path} is empty)"]
    return [f"-- last {len(lines)} lines of {path} --", *lines]


def _printable(text: str) -> str:
    """A table cell, escaped before layout so its width is that of what the
    terminal shows (the output stream escapes again, which changes nothing)."""
    return _term.escape(text)


def status_params() -> list[Option | Argument]:
    return [
        sessions_argument(required=False),
        state_dir_option(),
        lines_option("Log lines shown per named session."),
        json_option(),
    ]


def status_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    return show_status(build(plugin, opts, verb), name, verb)


def show_status(spec: PoolSpec, name: str, verb: Mapping[str, Any]) -> int:
    """``wirepool status``, once the plugin has built its pool spec."""
    require_root(spec)
    names = list(verb.get("sessions") or ())
    doc = read_status(spec, name, names)
    if verb.get("as_json"):
        say(dumps_strict(doc, indent=2, default=str))
    elif names:
        say(render_detail(doc, log_lines=int(verb.get("lines", DETAIL_LOG_LINES))))
    else:
        say(render_table(doc))
    return EXIT_OK if doc["supervisor"]["alive"] else EXIT_NOT_RUNNING
