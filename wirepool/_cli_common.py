"""What every ``wirepool`` verb shares: exit codes, the one-line error,
building a plugin's pool spec, the options every verb takes, and running a
verb's action.  Without click: ``wirepool run`` gets here without it
(:mod:`wirepool._main`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wirepool import _term
from wirepool._args import Argument, Option
from wirepool._log import logger
from wirepool._store import dumps_strict
from wirepool.errors import PluginError, UnsafeStateDirError
from wirepool.plugin import Plugin, PoolSpec

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
EXIT_PLUGIN, EXIT_LOCKED, EXIT_TIMEOUT, EXIT_UNSAFE_STATE = 4, 5, 6, 7
EXIT_NO_SUCH_SESSION, EXIT_REFUSED = 8, 9


class CliError(Exception):
    """One line on stderr and a documented exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def say(message: str, *, err: bool = False) -> None:
    """A line on stdout (stderr with ``err``), flushed, as ``click.echo``."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


def report(exc: CliError) -> int:
    say(f"wirepool: error: {exc}", err=True)
    return exc.code


def fail(exc: CliError) -> None:
    import click

    report(exc)
    click.get_current_context().exit(exc.code)


def state_dir_option() -> Option:
    return Option(
        "--state-dir",
        kind=Path,
        file_okay=False,
        default=None,
        help="Where the lock, records, logs and status.json live (plugin default).",
    )


def json_option(what: str = "Machine-readable output (JSON).") -> Option:
    return Option("--json", "as_json", is_flag=True, help=what)


def sessions_argument(required: bool = True) -> Argument:
    return Argument("sessions", nargs=-1, required=required, metavar="SESSION...")


def lines_option(help: str) -> Option:
    return Option("-n", "--lines", kind=int, min=0, default=10, show_default=True, help=help)


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


def is_click_exception(exc: BaseException) -> bool:
    """One of click's own (a usage error, its exit, its abort): click says
    it.  Only when click is imported can there be one."""
    click = sys.modules.get("click")
    return click is not None and isinstance(
        exc, click.ClickException | click.exceptions.Exit | click.Abort
    )


def invoke(action: Callable[[], int]) -> int:
    """A verb's action, and its exit code: one clear line for whatever it
    raises, never a traceback (click's own exceptions go on to click)."""
    try:
        return action()
    except BrokenPipeError:
        # `wirepool events ... | head`: the reader is gone, which ends the
        # stream; the interpreter's final flush must not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except CliError as exc:
        return report(exc)
    except UnsafeStateDirError as exc:
        return report(CliError(str(exc), EXIT_UNSAFE_STATE))
    except Exception as exc:
        if is_click_exception(exc):
            raise
        logger.opt(exception=exc).debug("command failed")
        return report(CliError(f"{type(exc).__name__}: {exc}"))


def build(plugin: Plugin, opts: Mapping[str, Any], verb: Mapping[str, Any]) -> PoolSpec:
    try:
        spec = plugin.build(opts)
    except PluginError as exc:
        raise CliError(str(exc), EXIT_PLUGIN) from None
    except (OSError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if verb.get("state_dir") is not None:
        spec.state_dir = Path(verb["state_dir"]).absolute()
    return spec


def require_root(spec: PoolSpec) -> None:
    """A root that is not there is a typo until the plugin says otherwise:
    without this, ``run`` made ``/typo/.wirepool`` and supervised nothing."""
    problem = spec.root_problem()
    if problem is not None:
        raise CliError(problem, EXIT_USAGE)


def emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(dumps_strict(data, default=str) + "\n")
    sys.stdout.flush()
