"""The ``wirepool`` command.

Exit codes (stable; scripts may rely on them):

==  ==========================================================================
0   success; also ``run --json`` refused because another supervisor runs
    (it prints ``{"status": "skipped", ...}``, as wire's supervisor does)
1   runtime error (one line on stderr, never a traceback)
2   usage error
3   ``status``: no supervisor is running (the table is still printed)
4   the plugin is unknown or failed to load
5   ``run``: another supervisor holds the state directory (without --json)
6   ``stop``: the supervisor did not exit within the timeout
7   the state directory is not safe to use: not a directory, owned by
    another user, or writable by group or others (every verb that reads
    or acts on it checks first, ``run`` included; nothing is done)
==  ==========================================================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from loguru import logger

from wirepool import _term
from wirepool._format import format_age
from wirepool._proc import ProcessIdentity, identity_of, is_alive
from wirepool._status import SessionStatus, normalize_status, status_document
from wirepool._store import (
    STATUS_SCHEMA,
    StateDir,
    acquire_lock,
    atomic_write_json,
    dumps_strict,
    from_strict_json,
    lock_holder,
    lock_is_held,
)
from wirepool._version import VERSION
from wirepool.errors import LockHeldError, PluginError, UnsafeStateDirError
from wirepool.plugin import Plugin, PoolSpec, find_plugins, load_plugin

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
EXIT_PLUGIN, EXIT_LOCKED, EXIT_TIMEOUT, EXIT_UNSAFE_STATE = 4, 5, 6, 7


class CliError(Exception):
    """One line on stderr and a documented exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _fail(exc: CliError) -> None:
    click.echo(f"wirepool: error: {exc}", err=True)
    click.get_current_context().exit(exc.code)


def configure_logging(verbosity: int) -> None:
    """Loguru sinks belong to the application, not the library: the CLI is
    the application here."""
    level = {-1: "WARNING", 0: "INFO"}.get(verbosity, "DEBUG")
    logger.remove()
    logger.add(
        sys.stderr,
        level=level,
        format=_log_format,
        backtrace=False,
        diagnose=False,
    )
    for name in ("wirepool", "wirepool_servicedir", "wirepool_wire"):
        logger.enable(name)


def _log_format(record: Any) -> str:
    # A message quotes names, paths and reasons from outside: escaped whole,
    # so an embedded newline cannot forge a second log line either.
    record["extra"]["_escaped"] = _term.escape(record["message"])
    return "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {extra[_escaped]}\n{exception}"


def entry() -> None:
    """The ``wirepool`` command: everything it prints goes through one
    escaping layer (:mod:`wirepool._term`), installed before click parses a
    single argument, so even a usage error quoting a hostile name is safe."""
    _term.install()
    main(prog_name="wirepool")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.version_option(VERSION, package_name="wirepool")
def main(verbose: int, quiet: bool) -> None:
    """Keep one long-running daemon alive per session."""
    configure_logging(-1 if quiet else verbose)


# ----------------------------------------------------------- plugin commands

Action = Callable[[Plugin, str, Mapping[str, Any], Mapping[str, Any]], int]


class PluginGroup(click.Group):
    """``wirepool <verb> <plugin> [plugin options] [verb options]``: one
    subcommand per installed plugin, built lazily from the plugin's own
    options plus the verb's."""

    def __init__(
        self,
        name: str,
        action: Action,
        verb_params: Callable[[], list[click.Parameter]],
        help: str,
    ) -> None:
        super().__init__(name=name, help=help)
        self.action = action
        self.verb_params = verb_params

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [info.name for info in find_plugins()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            plugin = load_plugin(cmd_name)
        except PluginError as exc:
            _fail(CliError(str(exc), EXIT_PLUGIN))
            return None
        verb_params = self.verb_params()
        verb_names = {p.name for p in verb_params}

        def callback(**params: Any) -> None:
            verb = {k: v for k, v in params.items() if k in verb_names}
            opts = {k: v for k, v in params.items() if k not in verb_names}
            try:
                code = self.action(plugin, cmd_name, opts, verb)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except CliError as exc:
                _fail(exc)
                return
            except UnsafeStateDirError as exc:
                _fail(CliError(str(exc), EXIT_UNSAFE_STATE))
                return
            except Exception as exc:  # one clear line, never a traceback
                logger.opt(exception=exc).debug("command failed")
                _fail(CliError(f"{type(exc).__name__}: {exc}"))
                return
            ctx = click.get_current_context()
            ctx.exit(code)

        return click.Command(
            cmd_name,
            params=[*plugin.options(), *verb_params],
            callback=callback,
            help=plugin.description,
        )


def _state_dir_option() -> click.Option:
    return click.Option(
        ["--state-dir"],
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the lock, records, logs and status.json live (plugin default).",
    )


def _json_option() -> click.Option:
    return click.Option(["--json", "as_json"], is_flag=True, help="Machine-readable output.")


def _build(plugin: Plugin, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> PoolSpec:
    try:
        spec = plugin.build(opts)
    except PluginError as exc:
        raise CliError(str(exc), EXIT_PLUGIN) from None
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if verb.get("state_dir") is not None:
        spec.state_dir = Path(verb["state_dir"]).absolute()
    return spec


def _require_root(spec: PoolSpec) -> None:
    """A root that is not there is a typo until the plugin says otherwise:
    without this, ``run`` made ``/typo/.wirepool`` and supervised nothing."""
    problem = spec.root_problem()
    if problem is not None:
        raise CliError(problem, EXIT_USAGE)


def _emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(dumps_strict(data, default=str) + "\n")
    sys.stdout.flush()


def _run_action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
    spec = _build(plugin, opts, verb)
    _require_root(spec)
    as_json = bool(verb.get("as_json"))
    guard = spec.guard
    if guard is not None:
        holder = guard.acquire()
        if holder is not None:
            return _skipped(holder, "supervisor already running", as_json)
    try:
        pool = spec.pool(
            name,
            on_exit=verb.get("on_exit") or spec.on_exit,
            restart_on_change=bool(verb.get("restart_on_change")) or spec.restart_on_change,
        )
        if as_json:
            pool.subscribe(lambda event: _emit_json(event.to_json()))
        try:
            pool.run_forever()
        except LockHeldError as exc:
            return _skipped(
                exc.holder_pid, "supervisor already running", as_json, state_dir=exc.state_dir
            )
    finally:
        if guard is not None:
            guard.release()
    # The process ends now, and every child is stopped or left as asked.
    # The interpreter's final collection walks every object the pool ever
    # made: 80 ms of a 0.25 s stop of 200 children.  Frozen objects are
    # skipped; the kernel takes the memory back anyway, and files are still
    # flushed as their modules are torn down.
    gc.freeze()
    return EXIT_OK


def _skipped(holder: int | None, reason: str, as_json: bool, state_dir: Path | None = None) -> int:
    if as_json:
        _emit_json({"status": "skipped", "reason": reason, "holder_pid": holder})
        return EXIT_OK
    where = f" on {state_dir}" if state_dir else ""
    click.echo(
        f"wirepool: another supervisor is already running{where} "
        f"(pid {holder if holder else 'unknown'}); not starting a second one",
        err=True,
    )
    return EXIT_LOCKED


def _run_params() -> list[click.Parameter]:
    return [
        _state_dir_option(),
        click.Option(
            ["--on-exit"],
            type=click.Choice(["leave", "stop"]),
            default=None,
            help="On exit, leave the children for the next supervisor or stop them "
            "(plugin default).",
        ),
        click.Option(
            ["--json", "as_json"], is_flag=True, help="One JSON object per event on stdout."
        ),
        click.Option(
            ["--restart-on-change"],
            is_flag=True,
            help="Restart a child when its session's configuration changes (what the "
            "plugin's spawner fingerprints: command, environment, input files); without "
            "it, status only says the child runs from an older configuration.",
        ),
    ]


# ------------------------------------------------------------------ status


def read_status(spec: PoolSpec, plugin: str) -> dict[str, Any]:
    """The status document, cross-checked against the live processes.

    Works with no supervisor running: the last ``status.json`` is read and
    every pid in it re-verified; with no ``status.json`` at all, discovery
    and eligibility are run here so the operator still sees the sessions
    and why each would (not) get a child.
    """
    state = StateDir(spec.state_dir)
    # First: a lock someone else holds in a directory they made must not
    # make us report "supervisor: running", nor their status.json be shown
    # as ours.  A state directory not made yet is no supervisor, no status.
    exists = state.verify(missing_ok=True)
    alive = exists and lock_is_held(state)
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
    now = time.time()
    for sess in doc.get("sessions", []):
        pid, start = sess.get("pid"), sess.get("process_start")
        live = (
            isinstance(pid, int)
            and isinstance(start, int)
            and is_alive(ProcessIdentity(pid, start))
        )
        sess["alive"] = live
        if sess.get("state") in ("running", "adopted", "stopping") and not live:
            sess["state"] = "stopped"
            sess["reason"] = (
                "process gone (no supervisor saw it exit)"
                if not alive
                else ("process gone; the supervisor has not caught up yet")
            )
        started = sess.get("started_at")
        sess["uptime"] = (
            round(now - started, 1) if live and isinstance(started, int | float) else None
        )
        nxt = sess.get("next_start_at")
        sess["next_start_in"] = (
            round(max(0.0, nxt - now), 1) if isinstance(nxt, int | float) else None
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
            reason = "no supervisor has run yet" if verdict.eligible else verdict.reason
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
    rows = []
    for s in sorted(doc.get("sessions", []), key=lambda s: str(s.get("display_name") or "")):
        row = [
            str(s.get("display_name") or s.get("name")),
            str(s.get("state")),
            str(s.get("pid") or "-") if s.get("alive") else "-",
            format_age(s.get("uptime"), fine=True),
            str(s.get("restarts", 0)),
            _fmt_exit(s.get("last_exit")),
            format_age(s.get("next_start_in"), fine=True),
            str(s.get("reason") or ""),
        ]
        rows.append([_printable(cell) for cell in row])
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    lines.append(fmt.format(*headers))
    lines.extend(fmt.format(*row) for row in rows)
    counts: dict[str, int] = {}
    for s in doc.get("sessions", []):
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


def _printable(text: str) -> str:
    """A table cell, escaped before layout so its width is that of what the
    terminal shows (the output stream escapes again, which changes nothing)."""
    return _term.escape(text)


def _status_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    spec = _build(plugin, opts, verb)
    _require_root(spec)
    doc = read_status(spec, name)
    if verb.get("as_json") or not sys.stdout.isatty():
        click.echo(dumps_strict(doc, indent=2, default=str))
    else:
        click.echo(render_table(doc))
    return EXIT_OK if doc["supervisor"]["alive"] else EXIT_NOT_RUNNING


# -------------------------------------------------------------------- stop


def _stop_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    spec = _build(plugin, opts, verb)
    state = StateDir(spec.state_dir)
    children = bool(verb.get("children"))
    timeout = float(verb.get("timeout") or (spec.stop_grace + 20))
    if not state.verify(missing_ok=True):
        click.echo("no supervisor is running" + ("; no records" if children else ""))
        return EXIT_OK
    if lock_is_held(state):
        pid = _running_supervisor(state)
        # ProcessLookupError: it exited by itself meanwhile; the loop sees that
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1 if children else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while lock_is_held(state):
            if time.monotonic() > deadline:
                click.echo(
                    f"wirepool: supervisor pid {pid} still running after {timeout:.0f}s", err=True
                )
                return EXIT_TIMEOUT
            time.sleep(0.1)
        what = "and its children " if children else ""
        click.echo(f"stopped supervisor pid {pid} {what}".rstrip())
        return EXIT_OK
    if not children:
        click.echo("no supervisor is running")
        return EXIT_OK
    # Hold the pool's lock meanwhile: a supervisor starting now would adopt
    # these children and then see its records overwritten under it.
    try:
        lock_fd = acquire_lock(state)
    except LockHeldError as exc:
        raise CliError(
            f"a supervisor started meanwhile (pid {exc.holder_pid}); "
            "run the command again to stop it"
        ) from None
    try:
        stopped, refused = _stop_recorded_children(state, spec.stop_grace)
    finally:
        os.close(lock_fd)
    for path, pid in refused:
        click.echo(
            f"wirepool: left pid {pid} named by {path.name} running: it does not carry "
            "this pool's markers, and a record alone does not make a process ours",
            err=True,
        )
    left = f"; left {len(refused)} not carrying this pool's markers" if refused else ""
    click.echo(f"no supervisor is running; stopped {stopped} recorded child(ren){left}")
    return EXIT_OK


def _running_supervisor(state: StateDir) -> int:
    """The pid of the supervisor holding the lock, to signal.

    The kernel's lock table names it where there is one.  Otherwise
    ``supervisor.json`` must name a live process by pid *and* start time: a
    bare pid there (hand-edited, half-written, or outlived by its process)
    could be anyone's, and a stop must never signal a stranger."""
    holder = lock_holder(state)
    if holder is not None and identity_of(holder) is not None:
        return holder
    info = state.read_supervisor() or {}
    pid, start = info.get("pid"), info.get("process_start")
    if (
        isinstance(pid, int)
        and isinstance(start, int)
        and identity_of(pid) == ProcessIdentity(pid, start)
    ):
        return pid
    raise CliError(f"the supervisor holding {state.lock_path} could not be identified")


def _stop_recorded_children(state: StateDir, grace: float) -> tuple[int, list[tuple[Path, int]]]:
    """Stop the children the records name, with no supervisor running.

    Which ones is what a new supervisor's recovery would decide
    (``recorded_worker``): only processes alive with the recorded start
    time, recorded as the pool's own, and carrying this pool's markers.
    Returns how many were stopped, and the record and pid of each left
    alone for lack of markers."""
    from wirepool._records import SessionRecord, recorded_worker
    from wirepool.spawn import AdoptedWorker

    victims: list[tuple[Path, SessionRecord, AdoptedWorker]] = []
    refused: list[tuple[Path, int]] = []
    for path in state.iter_records():
        try:
            rec = SessionRecord.read(path)
            worker = recorded_worker(rec, state.pool_id, state.markers_dir)
        except Exception:  # RecursionError too: one bad record must not stop the rest
            continue
        if worker is None or not worker.owned:
            if worker is not None and worker.unverified:
                refused.append((path, worker.pid))
            continue
        adopted = AdoptedWorker(worker.identity, owned=True)
        adopted.terminate()
        victims.append((path, rec, adopted))
    deadline = time.monotonic() + grace
    while victims and time.monotonic() < deadline and any(w.poll() is None for _, _, w in victims):
        time.sleep(0.1)
    for path, rec, adopted in victims:
        if adopted.poll() is None:
            adopted.kill()
        adopted.close()
        stopped = dataclasses.replace(
            rec, worker=None, reason="stopped by `wirepool stop --children`"
        )
        with contextlib.suppress(OSError):
            stopped.write(path, durable=True)
    return len(victims), refused


def _stop_params() -> list[click.Parameter]:
    return [
        _state_dir_option(),
        click.Option(
            ["--children"],
            is_flag=True,
            help="Stop the children too (default: leave them for the next supervisor).",
        ),
        click.Option(
            ["--timeout"],
            type=float,
            default=None,
            help="Seconds to wait for the supervisor to exit.",
        ),
    ]


# ------------------------------------------------------------------- reset


def _reset_action(
    plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]
) -> int:
    """Lift a ``failed`` mark and clear the backoff of the named sessions."""
    spec = _build(plugin, opts, verb)
    state = StateDir(spec.state_dir)
    names: list[str] = list(verb.get("sessions") or ())
    if not state.verify(missing_ok=True):
        click.echo("no supervisor is running; reset 0 record(s)")
        return EXIT_OK
    if lock_is_held(state):
        pid = _running_supervisor(state)
        state.requests_dir.mkdir(parents=True, exist_ok=True)
        for session in names:
            request = state.requests_dir / f"reset-{time.time_ns()}-{os.getpid()}.json"
            atomic_write_json(request, {"reset": session})
        os.kill(pid, signal.SIGHUP)
        click.echo(f"asked supervisor pid {pid} to reset {', '.join(names)}")
        return EXIT_OK
    from wirepool._records import SessionRecord

    done = 0
    for path in state.iter_records():
        with contextlib.suppress(OSError, ValueError):
            rec = SessionRecord.read(path)
            if rec.session.name in names:
                reset = dataclasses.replace(
                    rec, failed=False, streak=0, next_start_at=None, reason="reset by operator"
                )
                reset.write(path, durable=True)
                done += 1
    click.echo(f"no supervisor is running; reset {done} record(s)")
    return EXIT_OK


# ----------------------------------------------------------------- service


def _validate_run_args(ctx: click.Context, plugin: str, args: Sequence[str]) -> None:
    group = main.commands["run"]
    assert isinstance(group, PluginGroup)
    command = group.get_command(ctx, plugin)
    if command is None:
        raise CliError(f"no plugin named {plugin!r}", EXIT_PLUGIN)
    if "--json" in args:
        raise click.UsageError("--json makes no sense for a service (the journal gets logs)")
    command.make_context(f"wirepool run {plugin}", list(args))


@main.group("service")
def service_group() -> None:
    """Install wirepool as a systemd user unit (Linux) or launchd agent (macOS)."""


_passthrough = {"ignore_unknown_options": True, "allow_interspersed_args": False}

if TYPE_CHECKING:  # the package itself is imported only by the service commands
    from wirepool.service import ServiceManager


def _service_advice(plugin: str, manager: ServiceManager) -> Sequence[str]:
    """What PLUGIN says competes with its service on this host; nothing when
    it cannot be loaded (its unit may outlive it, and status must still answer)."""
    try:
        return load_plugin(plugin).service_advice(manager)
    except PluginError:
        return ()


@service_group.command("install", context_settings=_passthrough)
@click.option("--dry-run", is_flag=True, help="Print the unit file instead of installing it.")
@click.option("--no-load", is_flag=True, help="Write the unit file but do not enable/start it.")
@click.argument("plugin")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def service_install(
    ctx: click.Context, dry_run: bool, no_load: bool, plugin: str, args: tuple[str, ...]
) -> None:
    """Write (and load) a unit running `wirepool run PLUGIN ARGS...`."""
    from wirepool import service

    # our own flags may also come after PLUGIN, among the plugin's options
    dry_run = dry_run or "--dry-run" in args
    no_load = no_load or "--no-load" in args
    args = tuple(a for a in args if a not in ("--dry-run", "--no-load"))
    try:
        _validate_run_args(ctx, plugin, args)
        manager = service.backend()
        spec = service.build_spec(plugin, args)
        if dry_run:
            click.echo(manager.render(spec), nl=False)
        else:
            result = manager.install(spec, load=not no_load)
            click.echo(result.summary())
            if not result.ok:
                ctx.exit(EXIT_ERROR)
    except service.ServiceError as exc:
        _fail(CliError(str(exc)))
        raise  # not reached: _fail exits
    for advice in _service_advice(plugin, manager):
        click.echo(advice, err=True)


_Result = TypeVar("_Result")


def _on_service(
    plugin: str, action: Callable[[ServiceManager, str], _Result]
) -> tuple[ServiceManager, _Result]:
    """Run ``action`` on this host's manager and PLUGIN's service name; one
    clear line on failure."""
    from wirepool import service

    try:
        manager = service.backend()
        return manager, action(manager, service.service_name(plugin))
    except service.ServiceError as exc:
        _fail(CliError(str(exc)))
        raise  # not reached: _fail exits


@service_group.command("uninstall")
@click.argument("plugin")
@click.pass_context
def service_uninstall(ctx: click.Context, plugin: str) -> None:
    """Stop, disable and remove the unit of PLUGIN."""
    _, result = _on_service(plugin, lambda manager, name: manager.uninstall(name))
    click.echo(result.summary())
    if not result.ok:
        ctx.exit(EXIT_ERROR)


@service_group.command("status")
@click.argument("plugin")
def service_status(plugin: str) -> None:
    """Whether the unit of PLUGIN is installed, loaded and running."""
    manager, result = _on_service(plugin, lambda manager, name: manager.status(name))
    click.echo(result.summary())
    for advice in _service_advice(plugin, manager):
        click.echo(advice)


main.add_command(
    PluginGroup(
        "run",
        _run_action,
        _run_params,
        help="Run the supervisor in the foreground: wirepool run PLUGIN [options].",
    )
)
main.add_command(
    PluginGroup(
        "status",
        _status_action,
        lambda: [_state_dir_option(), _json_option()],
        help="Show the supervisor and every session: wirepool status PLUGIN [options].",
    )
)
main.add_command(
    PluginGroup(
        "stop",
        _stop_action,
        _stop_params,
        help="Stop a running supervisor: wirepool stop PLUGIN [options] [--children].",
    )
)


main.add_command(
    PluginGroup(
        "reset",
        _reset_action,
        lambda: [
            _state_dir_option(),
            click.Option(
                ["--session", "sessions"],
                multiple=True,
                required=True,
                help="Session name (repeatable).",
            ),
        ],
        help="Clear a session's backoff and failed mark: wirepool reset PLUGIN [options] "
        "--session NAME.",
    )
)


@main.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins: name, version, origin, description."""
    infos = find_plugins()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "entry_point": i.value,
                        "distribution": i.distribution,
                        "version": i.version,
                        "origin": i.origin,
                        "description": i.description,
                        "error": i.error,
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return
    if not infos:
        click.echo("no plugins installed (entry-point group wirepool.plugins)")
    for i in infos:
        where = f"{i.distribution} {i.version}" if i.distribution else "unknown distribution"
        if i.error:
            click.echo(f"{i.name:<12} BROKEN  {where}  {i.value}: {i.error}")
        else:
            click.echo(
                f"{i.name:<12} {i.version or '-':<8} {where}  {i.origin}\n{'':<12} {i.description}"
            )


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="wirepool")
