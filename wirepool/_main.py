"""The ``wirepool`` command's entry point.

An ordinary ``wirepool [-q|-v] run PLUGIN ...`` or ``status PLUGIN ...``
line, with a plugin that declares its options with
:class:`wirepool.plugin.Option` and :class:`~wirepool.plugin.Argument`, is
read here without importing click (:mod:`wirepool._args`): a supervisor's
first child starts that much sooner, and an operator's most frequent
question is answered sooner too (one session of 10 000 in 103 ms against
167 ms through click, measured in the same minutes).
Every other line -- another verb, help, a usage error, a plugin with click
parameters of its own -- goes to click (:mod:`wirepool.cli`), which reads it
from the start; so does one whose plugin raises a click exception as it
builds its pool (click's message has the usage line).  What is said and
returned otherwise -- an unknown plugin, a ``CliError``, Ctrl-C -- is what
click's path says and returns.  The plugin's ``build`` then runs with no
click context.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wirepool import _term

if TYPE_CHECKING:
    from wirepool.plugin import PoolSpec

__all__ = ["entry"]

_QUIET = ("-q", "--quiet")
_VERBOSE = ("-v", "--verbose")


def entry() -> None:
    """The ``wirepool`` command: everything it prints goes through one
    escaping layer (:mod:`wirepool._term`), installed before a single
    argument is read, so even a usage error quoting a hostile name is safe."""
    _term.install()
    # No collection until `run` has its plugin and pool and freezes what
    # it made (wirepool._cli_run.settle_heap): the engine's import left
    # ~10 000 objects in the middle generation, and its next collection,
    # as the first children started, walked them all (3-7 ms here).  A
    # `status` read here runs without one: it is over in a moment.
    gc.disable()
    try:
        code = run_without_click(sys.argv[1:])
    finally:
        gc.enable()
    if code is None:
        from wirepool.cli import main

        main(prog_name="wirepool")
    sys.exit(code)


def run_without_click(line: Sequence[str]) -> int | None:
    """Carry out ``line`` if it is an ordinary ``run`` or ``status`` and
    return the exit code; None, having done nothing it will do again, if
    click is to read it."""
    quiet, verbose, at = False, 0, 0
    while at < len(line) and line[at] in (*_QUIET, *_VERBOSE):
        quiet = quiet or line[at] in _QUIET
        verbose += line[at] in _VERBOSE
        at += 1
    if line[at : at + 1] not in (["run"], ["status"]):
        return None
    if at + 1 == len(line) or line[at + 1][:1] == "-":
        return None
    try:
        return _verb(line[at], line[at + 1], line[at + 2 :], -1 if quiet else verbose)
    except KeyboardInterrupt:  # as click says it
        sys.stderr.write("\nAborted!\n")
        return 1


def _verb(verb_name: str, name: str, rest: Sequence[str], verbosity: int) -> int | None:
    from wirepool import _args, _log
    from wirepool._cli_common import (
        EXIT_PLUGIN,
        CliError,
        build,
        configure_logging,
        invoke,
        is_click_exception,
        report,
    )
    from wirepool.errors import PluginError
    from wirepool.plugin import load_plugin

    # As the click group does for `run` before it imports the plugin: log
    # lines held (wirepool._log), for `run` until its first children are
    # started, for `status` until its pool is built (a plugin's usage error
    # builds it again on click's path, and its lines must come once).  Made
    # again on click's path, where the set-up is the same.
    _log.hold(logs=True)
    configure_logging(verbosity)
    try:
        plugin = load_plugin(name)
    except PluginError as exc:  # what click's path says (`wirepool.cli.PluginGroup`)
        return report(CliError(str(exc), EXIT_PLUGIN))
    if verb_name == "run":
        from wirepool._cli_run import run_params

        verb_params: list[_args.Option | _args.Argument] = list(run_params())
    else:
        from wirepool._cli_status import status_params

        verb_params = status_params()
    plugin_params = list(plugin.options())
    if not _args.all_light(plugin_params):
        return None
    values = _args.parse([*plugin_params, *verb_params], rest)
    if values is None:
        return None
    verb_names = {p.name for p in verb_params}
    verb = {k: v for k, v in values.items() if k in verb_names}
    opts = {k: v for k, v in values.items() if k not in verb_names}
    built: list[PoolSpec] = []
    logged_before = _log.kept()

    def build_spec() -> int:
        built.append(build(plugin, opts, verb))
        return 0

    try:
        code = invoke(build_spec)
    except Exception as exc:
        if is_click_exception(exc):
            # The plugin's own usage error, which only click shows as it
            # should (with the usage line): click builds the pool again,
            # so what this build logged (and is still held) is dropped.
            _log.forget(logged_before)
            if verb_name != "run":  # where click's path holds only the set-up
                _log.hold_setup_only()
            return None
        raise
    if not built:
        return code
    if verb_name == "status":
        from wirepool._cli_status import show_status

        # what it logs from here on comes in order with what it prints (and
        # a status that logs nothing never imports loguru)
        _log.hold_setup_only()
        return invoke(lambda: show_status(built[0], name, verb))
    from wirepool._cli_run import run_spec

    try:
        return invoke(lambda: run_spec(built[0], name, verb))
    except Exception as exc:
        if not is_click_exception(exc):
            raise
        return _shown(exc)


def _shown(exc: Exception) -> int:
    """A click exception raised once the supervisor has started (too late
    to read the line again), shown and answered as click's own main does."""
    import click

    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.exceptions.Exit):
        return exc.exit_code
    sys.stderr.write("Aborted!\n")  # click.Abort
    return 1
