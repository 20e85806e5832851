"""``wirepool run`` and ``wirepool stop``: the supervisor's own life (its
options, the plugin's guard, metrics, and stopping it with or without its
children)."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wirepool._args import Option
from wirepool._cli_common import (
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_TIMEOUT,
    CliError,
    build,
    emit_json,
    require_root,
    say,
    state_dir_option,
)
from wirepool._events import Event, EventKind
from wirepool._proc import ProcessIdentity, identity_of
from wirepool._store import StateDir, acquire_lock, lock_holder, lock_is_held
from wirepool._value import replace
from wirepool.errors import LockHeldError
from wirepool.plugin import Plugin, PoolSpec

if TYPE_CHECKING:
    pass


def run_action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
    return run_spec(build(plugin, opts, verb), name, verb)


def run_spec(spec: PoolSpec, name: str, verb: Mapping[str, Any]) -> int:
    """``wirepool run``, once the plugin has built its pool spec."""
    require_root(spec)
    as_json = bool(verb.get("as_json"))
    guard = spec.guard
    if guard is not None:
        # A supervisor holding this pool's lock is met before the plugin's
        # singleton is touched: written by a loser, it named a process that
        # was about to exit, and its exit removed it.
        state = StateDir(spec.state_dir)
        if lock_is_held(state):
            held_by = lock_holder(state)
            if as_json:
                return _skipped(held_by, "supervisor already running", as_json)
            say(
                f"wirepool: another supervisor is already running on {state.root} "
                f"(pid {held_by or 'unknown'}); skipped",
                err=True,
            )
            return EXIT_OK
        holder = guard.acquire()
        if holder is not None:
            # The plugin's own supervisor (wire's Rust one) runs: skipped,
            # exit 0, as `wire daemon --all-sessions` does beside it, so a
            # unit or script that ran that one keeps working.
            if as_json:
                return _skipped(holder, "supervisor already running", as_json)
            say(f"wirepool: {guard.describe(holder)}; skipped", err=True)
            return EXIT_OK
    if verb.get("log_max_size") is not None:
        spec.spawner.log_max_bytes = int(verb["log_max_size"])  # parse_size, as parsed
    if verb.get("log_backups") is not None:
        spec.spawner.log_backups = int(verb["log_backups"])
    try:
        pool = spec.pool(
            name,
            on_exit=verb.get("on_exit") or spec.on_exit,
            restart_on_change=bool(verb.get("restart_on_change")) or spec.restart_on_change,
        )
        if as_json:
            pool.subscribe(lambda event: emit_json(event.to_json()))
        if guard is not None:
            claim = guard.claim  # the lock is ours from the first event on

            def claim_once(event: Event) -> None:
                if event.kind == EventKind.SUPERVISOR_STARTED:
                    claim()

            pool.subscribe(claim_once)
        metrics = _serve_metrics(pool, name, verb)
        settle_heap()
        try:
            pool.run_forever()
        except LockHeldError as exc:
            return _skipped(
                exc.holder_pid, "supervisor already running", as_json, state_dir=exc.state_dir
            )
        finally:
            if metrics is not None:
                metrics.close()
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


def settle_heap() -> None:
    """Move every object made so far (the modules, the plugin, the pool)
    out of the collector's reach, and let it collect from here on (see
    :func:`wirepool._main.entry`).  They live as long as the process, and
    no collection need walk them again."""
    gc.freeze()
    gc.enable()


def _skipped(holder: int | None, reason: str, as_json: bool, state_dir: Path | None = None) -> int:
    if as_json:
        emit_json({"status": "skipped", "reason": reason, "holder_pid": holder})
        return EXIT_OK
    where = f" on {state_dir}" if state_dir else ""
    say(
        f"wirepool: another supervisor is already running{where} "
        f"(pid {holder if holder else 'unknown'}); not starting a second one",
        err=True,
    )
    return EXIT_LOCKED


def run_params() -> list[Option]:
    return [
        state_dir_option(),
        Option(
            "--on-exit",
            kind=("leave", "stop"),
            default=None,
            help="On exit, leave the children for the next supervisor or stop them "
            "(plugin default).",
        ),
        Option(
            "--log-max-size",
            metavar="SIZE",
            default=None,
            callback=parse_size,
            help="Keep each session's log within SIZE (bytes, or 64K, 10M, 1G; 0: unbounded; "
            "default 10M), rotating to .1, .2, ...",
        ),
        Option(
            "--log-backups",
            kind=int,
            min=0,
            default=None,
            help="How many rotated copies of each log are kept (default 3).",
        ),
        Option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout."),
        Option(
            "--restart-on-change",
            is_flag=True,
            help="Restart a child when its session's configuration changes (what the "
            "plugin's spawner fingerprints: command, environment, input files); without "
            "it, status only says the child runs from an older configuration.",
        ),
        *_metrics_params(),
    ]


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes in ``64K``, ``10M``, ``1G`` or a plain number; ValueError else."""
    raw = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = raw[-1:] if raw[-1:] in _SIZE_UNITS and raw[-1:] else ""
    number = raw[: len(raw) - len(unit)]
    if not number.isdigit():
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M or G)")
    return int(number) * _SIZE_UNITS[unit]


def _metrics_params() -> list[Option]:
    return [
        Option(
            "--metrics",
            "metrics_address",
            metavar="HOST:PORT",
            callback=_check_metrics_address,
            help="Serve Prometheus metrics on http://HOST:PORT/metrics "
            "(:PORT: every interface; unix:PATH: a unix socket).",
        ),
        Option(
            "--metrics-textfile",
            kind=Path,
            dir_okay=False,
            callback=_check_metrics_textfile,
            help="Write the metrics to PATH (*.prom) for node_exporter's textfile collector.",
        ),
        Option(
            "--metrics-max-sessions",
            kind=int,
            min=0,
            default=1000,
            show_default=True,
            help="Leave out the per-session series when the pool has more sessions.",
        ),
    ]


def _check_metrics_address(value: str) -> Any:
    from wirepool import _metrics

    return _metrics.parse_address(value)


def _check_metrics_textfile(value: Path) -> Path:
    value = value.absolute()
    if value.suffix != ".prom":
        raise ValueError("node_exporter's textfile collector reads only *.prom files")
    if not value.parent.is_dir():
        raise ValueError(f"{value.parent} is not a directory")
    return value


if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from wirepool._metrics import Served
    from wirepool._pool import SessionPool


def _serve_metrics(pool: SessionPool, name: str, verb: Mapping[str, Any]) -> Served | None:
    """Metrics, if asked for: bound before the pool starts, so that a busy
    port is one clear error while nothing has been touched yet -- unless
    another supervisor holds the pool (its own skip says so), in which case
    this one will not start and serves nothing."""
    address, textfile = verb.get("metrics_address"), verb.get("metrics_textfile")
    if (address is None and textfile is None) or lock_is_held(pool.state):
        return None
    from wirepool import _metrics
    from wirepool._core import _describe

    try:
        return _metrics.serve(
            pool,
            name,
            address=address,
            textfile=textfile,
            max_sessions=verb.get("metrics_max_sessions", _metrics.DEFAULT_MAX_SESSIONS),
        )
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {address}: {_describe(exc)}") from None


# -------------------------------------------------------------------- stop


def stop_action(plugin: Plugin, name: str, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> int:
    spec = build(plugin, opts, verb)
    state = StateDir(spec.state_dir)
    children = bool(verb.get("children"))
    timeout = float(verb.get("timeout") or (spec.stop_grace + 20))
    if not state.verify(missing_ok=True):
        say("no supervisor is running" + ("; no records" if children else ""))
        return EXIT_OK
    if lock_is_held(state):
        pid = _running_supervisor(state)
        # ProcessLookupError: it exited by itself meanwhile; the loop sees that
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1 if children else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while lock_is_held(state):
            if time.monotonic() > deadline:
                say(f"wirepool: supervisor pid {pid} still running after {timeout:.0f}s", err=True)
                return EXIT_TIMEOUT
            time.sleep(0.1)
        what = "and its children " if children else ""
        say(f"stopped supervisor pid {pid} {what}".rstrip())
        return EXIT_OK
    if not children:
        say("no supervisor is running")
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
        say(
            f"wirepool: left pid {pid} named by {path.name} running: it does not carry "
            "this pool's markers, and a record alone does not make a process ours",
            err=True,
        )
    left = f"; left {len(refused)} not carrying this pool's markers" if refused else ""
    say(f"no supervisor is running; stopped {stopped} recorded child(ren){left}")
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
        stopped = replace(rec, worker=None, reason="stopped by `wirepool stop --children`")
        with contextlib.suppress(OSError):
            stopped.write(path, durable=True)
    return len(victims), refused


def stop_params() -> list[Option]:
    return [
        state_dir_option(),
        Option(
            "--children",
            is_flag=True,
            help="Stop the children too (default: leave them for the next supervisor).",
        ),
        Option(
            "--timeout",
            kind=float,
            default=None,
            help="Seconds to wait for the supervisor to exit.",
        ),
    ]
