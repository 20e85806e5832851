"""What every ``wirepool`` verb shares: exit codes, the one-line error,
building a plugin's pool spec, and the options every verb takes."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from wirepool._store import dumps_strict
from wirepool.errors import PluginError
from wirepool.plugin import Plugin, PoolSpec

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
EXIT_PLUGIN, EXIT_LOCKED, EXIT_TIMEOUT, EXIT_UNSAFE_STATE = 4, 5, 6, 7
EXIT_NO_SUCH_SESSION, EXIT_REFUSED = 8, 9


class CliError(Exception):
    """One line on stderr and a documented exit code, never a traceback."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def fail(exc: CliError) -> None:
    click.echo(f"wirepool: error: {exc}", err=True)
    click.get_current_context().exit(exc.code)


def state_dir_option() -> click.Option:
    return click.Option(
        ["--state-dir"],
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where the lock, records, logs and status.json live (plugin default).",
    )


def json_option(what: str = "Machine-readable output (JSON).") -> click.Option:
    return click.Option(["--json", "as_json"], is_flag=True, help=what)


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


def emit_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(dumps_strict(data, default=str) + "\n")
    sys.stdout.flush()
