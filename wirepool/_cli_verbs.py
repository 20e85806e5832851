"""The operator's verbs on one or more sessions: ``restart``, ``down``,
``up``, ``signal``, ``reset``, ``logs`` and ``events`` (``status`` is in
:mod:`wirepool._cli_status`).  Each one that acts asks the running
supervisor through its control socket (:class:`wirepool.Client`); with no
supervisor it says so in one line and exits 3, but for ``reset``, which
then edits the records the next supervisor resumes from, and ``logs``,
which reads the files."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from wirepool._cli_common import (
    EXIT_ERROR,
    EXIT_NO_SUCH_SESSION,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_REFUSED,
    CliError,
    build,
    emit_json,
)
from wirepool._cli_status import read_status
from wirepool._client import Client
from wirepool._format import format_wall
from wirepool._store import StateDir, lock_is_held
from wirepool._value import replace
from wirepool.errors import ControlError, NoSupervisorError
from wirepool.plugin import Plugin, PoolSpec

Verb = Callable[[Plugin, str, Mapping[str, Any], Mapping[str, Any]], int]


@contextlib.contextmanager
def _supervisor(spec: PoolSpec, plugin: str) -> Iterator[Client]:
    """A client of the running supervisor; CliError with the documented
    exit code for none, and for each way a request is refused."""
    state = StateDir(spec.state_dir)
    if not state.verify(missing_ok=True) or not lock_is_held(state):
        raise CliError(
            f"no supervisor is running on {spec.state_dir} "
            f"(`wirepool run {plugin} ...` starts one)",
            EXIT_NOT_RUNNING,
        )
    try:
        with Client(state.root, timeout=spec.stop_grace + 30.0) as client:
            yield client
    except NoSupervisorError as exc:
        raise CliError(str(exc), EXIT_NOT_RUNNING) from None
    except ControlError as exc:
        code = (
            EXIT_NO_SUCH_SESSION
            if exc.code in ("unknown-session", "ambiguous-session")
            else EXIT_REFUSED
        )
        raise CliError(str(exc), code) from None
    except TimeoutError as exc:
        raise CliError(str(exc), EXIT_ERROR) from None


def _report(result: Mapping[str, Any], as_json: bool) -> int:
    if as_json:
        emit_json(result)
        return EXIT_OK
    for sess in result.get("sessions", []):
        click.echo(f"{sess.get('name')}: {sess.get('outcome')}")
    return EXIT_OK


def _names(verb: Mapping[str, Any]) -> list[str]:
    names = list(verb.get("sessions") or ())
    if not names:
        raise click.UsageError("name at least one session")
    return names


def restart_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    spec = build(plugin, opts, verb)
    names = _names(verb)
    wait = not verb.get("no_wait")
    with _supervisor(spec, name) as client:
        before = {s["key"]: s.get("pid") for s in client.status(*names)["sessions"]}
        result = client.restart(*names, wait=wait)
    if verb.get("as_json"):
        emit_json(result)
        return EXIT_OK
    for sess in result["sessions"]:
        old, new = before.get(sess["key"]), sess.get("pid")
        if wait and new is not None:
            was = f"pid {old} -> " if old else ""
            click.echo(f"{sess['name']}: restarted ({was}pid {new})")
        else:
            click.echo(f"{sess['name']}: {sess['outcome']}")
    return EXIT_OK


def _simple(op: str) -> Verb:
    def action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
        spec = build(plugin, opts, verb)
        with _supervisor(spec, name) as client:
            result = client.request(op, sessions=_names(verb))
        return _report(result, bool(verb.get("as_json")))

    return action


down_action = _simple("down")
up_action = _simple("up")


def signal_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    spec = build(plugin, opts, verb)
    with _supervisor(spec, name) as client:
        result = client.signal(str(verb["session"]), str(verb["sig"]))
    return _report(result, bool(verb.get("as_json")))


def reset_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    """Lift a ``failed`` mark and clear the backoff of the named sessions:
    through the running supervisor, or in the records the next one reads."""
    spec = build(plugin, opts, verb)
    names = list(verb.get("sessions") or ()) + list(verb.get("session_opts") or ())
    if not names:
        raise click.UsageError("name at least one session")
    state = StateDir(spec.state_dir)
    if state.verify(missing_ok=True) and lock_is_held(state):
        with _supervisor(spec, name) as client:
            result = client.reset(*names)
        return _report(result, bool(verb.get("as_json")))
    doc = read_status(spec, name, names)  # CliError (exit 8) for a bad name
    keys = {str(s.get("key") or s.get("name")): str(s.get("name")) for s in doc["sessions"]}
    done = _reset_records(state, set(keys))
    for key, shown in keys.items():
        what = "reset in its record" if key in done else "nothing to reset (no record)"
        click.echo(f"{shown}: {what}; no supervisor is running")
    return EXIT_OK


def _reset_records(state: StateDir, keys: set[str]) -> set[str]:
    from wirepool._records import SessionRecord

    done: set[str] = set()
    if not state.records_dir.is_dir():
        return done
    for path in state.iter_records():
        with contextlib.suppress(OSError, ValueError):
            rec = SessionRecord.read(path)
            if rec.session.name in keys:
                reset = replace(
                    rec, failed=False, streak=0, next_start_at=None, reason="reset by operator"
                )
                reset.write(path, durable=True)
                done.add(rec.session.name)
    return done


# -------------------------------------------------------------------- logs


def logs_action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
    """A session's log: its last lines, and with ``-f`` what it writes next,
    across rotations.  Works with no supervisor: the log is a file."""
    from wirepool._tail import follow, last_lines

    spec = build(plugin, opts, verb)
    session = str(verb["session"])
    doc = read_status(spec, name, [session])
    sess = doc["sessions"][0]
    log = sess.get("log")
    if not log:
        raise CliError(
            f"{sess.get('name')} has no log file (its spawner keeps none, or it never started)",
            EXIT_REFUSED,
        )
    path = Path(str(log))
    n = int(verb.get("lines", 10))
    try:
        if verb.get("follow"):
            with contextlib.suppress(KeyboardInterrupt):
                for line in follow(path, lines=n):
                    click.echo(line)
            return EXIT_OK
        for line in last_lines(path, n):
            click.echo(line)
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    return EXIT_OK


# ------------------------------------------------------------------ events


def events_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    """The running supervisor's events as they happen, until it stops."""
    spec = build(plugin, opts, verb)
    as_json = bool(verb.get("as_json"))
    with (
        _supervisor(spec, name) as client,
        contextlib.suppress(KeyboardInterrupt),
        client.events() as events,
    ):
        for event in events:
            if as_json:
                emit_json(event)
            else:
                click.echo(_event_line(event))
    return EXIT_OK


def _event_line(event: Mapping[str, Any]) -> str:
    at = event.get("ts")
    when = format_wall(at)[11:19] if isinstance(at, int | float) else "--:--:--"
    parts = [when, str(event.get("event"))]
    if event.get("session") is not None:
        parts.append(str(event["session"]))
    if event.get("pid") is not None:
        parts.append(f"pid {event['pid']}")
    line = " ".join(parts)
    if event.get("reason"):
        line += f": {event['reason']}"
    return line


# --------------------------------------------------------------------- top


def top_action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
    """The live view of the running supervisor (:mod:`wirepool._top`)."""
    import sys

    from wirepool._top import run_top

    spec = build(plugin, opts, verb)
    with _supervisor(spec, name) as client:
        client.hello()  # one clear line now if it does not answer
    try:
        return run_top(spec.state_dir, sys.stdout, _event_line)
    except NoSupervisorError as exc:
        raise CliError(str(exc), EXIT_NOT_RUNNING) from None
