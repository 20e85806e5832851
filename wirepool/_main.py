"""The ``wirepool`` command's entry point.

An ordinary ``wirepool [-q|-v] run PLUGIN ...`` line, with a plugin that
declares its options with :class:`wirepool.plugin.Option` and
:class:`~wirepool.plugin.Argument`, is read here without importing click
(:mod:`wirepool._args`): a supervisor's first child starts that much sooner.
Every other line -- another verb, help, a usage error, an unknown plugin --
goes to click (:mod:`wirepool.cli`), which reads it from the start; so does
one whose plugin cannot build its pool from the options (its message is
click's).
"""

from __future__ import annotations

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
    code = run_without_click(sys.argv[1:])
    if code is None:
        from wirepool.cli import main

        main(prog_name="wirepool")
    sys.exit(code)


def run_without_click(line: Sequence[str]) -> int | None:
    """Carry out ``line`` if it is an ordinary ``run`` and return the exit
    code; None, having done nothing, if click is to read it."""
    quiet, verbose, at = False, 0, 0
    while at < len(line) and line[at] in (*_QUIET, *_VERBOSE):
        quiet = quiet or line[at] in _QUIET
        verbose += line[at] in _VERBOSE
        at += 1
    if line[at : at + 1] != ["run"] or at + 1 == len(line) or line[at + 1][:1] == "-":
        return None
    name = line[at + 1]

    from wirepool import _args
    from wirepool._cli_run import run_params
    from wirepool.errors import PluginError
    from wirepool.plugin import load_plugin

    try:
        plugin = load_plugin(name)
    except PluginError:
        return None
    plugin_params, verb_params = list(plugin.options()), run_params()
    if not _args.all_light(plugin_params):
        return None
    values = _args.parse([*plugin_params, *verb_params], line[at + 2 :])
    if values is None:
        return None

    from wirepool import _log
    from wirepool._cli_common import build, configure_logging, invoke, is_click_exception
    from wirepool._cli_run import run_spec

    verb_names = {p.name for p in verb_params}
    verb = {k: v for k, v in values.items() if k in verb_names}
    opts = {k: v for k, v in values.items() if k not in verb_names}
    # as the click group does for `run`: log lines held until the first
    # children are started (wirepool._log)
    _log.hold(logs=True)
    configure_logging(-1 if quiet else verbose)
    built: list[PoolSpec] = []

    def build_spec() -> int:
        built.append(build(plugin, opts, verb))
        return 0

    try:
        code = invoke(build_spec)
    except Exception as exc:
        if is_click_exception(exc):  # the plugin's own usage error: click shows it
            return None
        raise
    if not built:
        return code
    try:
        return invoke(lambda: run_spec(built[0], name, verb))
    except KeyboardInterrupt:  # as click says it
        sys.stderr.write("\nAborted!\n")
        return 1
