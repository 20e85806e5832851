"""The ``wirepool`` command.

Exit codes (stable; scripts may rely on them):

==  ==========================================================================
0   success; also ``run`` skipped because the plugin's own guard found
    another supervisor (wire's Rust one: it prints ``{"status": "skipped",
    ...}`` with ``--json``, as wire's supervisor does), and ``run --json``
    skipped because another wirepool supervisor holds the state directory
1   runtime error (one line on stderr, never a traceback)
2   usage error
3   no supervisor is running: ``status`` still prints what it knows; a verb
    that needs one (``restart``, ``down``, ``up``, ``signal``, ``events``)
    does nothing
4   the plugin is unknown or failed to load
5   ``run``: another wirepool supervisor holds the state directory (without
    --json)
6   ``stop``: the supervisor did not exit within the timeout
7   the state directory is not safe to use: not a directory, owned by
    another user, or writable by group or others (every verb that reads
    or acts on it checks first, ``run`` included; nothing is done)
8   a session name is unknown or ambiguous (nothing is done; the error
    lists close matches, or each session the name fits)
9   the supervisor refused the request: restart of a session held down,
    a signal to a session with no child, a child not started by this pool
==  ==========================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wirepool import _log
from wirepool._args import Argument, Option
from wirepool._cli_common import (
    EXIT_ERROR,
    EXIT_PLUGIN,
    CliError,
    configure_logging,
    fail,
    invoke,
    json_option,
    lines_option,
    sessions_argument,
    state_dir_option,
)
from wirepool._cli_run import run_action, run_params, stop_action, stop_params
from wirepool._cli_status import (
    _fmt_exit,
    read_status,
    render_table,
    status_action,
    status_params,
)
from wirepool._cli_verbs import (
    down_action,
    events_action,
    logs_action,
    reset_action,
    restart_action,
    signal_action,
    top_action,
    up_action,
)
from wirepool._version import version
from wirepool.errors import PluginError
from wirepool.plugin import Plugin, find_plugins, is_run_only, load_plugin

# what tests and the demo import from here
__all__ = ["_fmt_exit", "entry", "main", "read_status", "render_table"]


def entry() -> None:
    """The ``wirepool`` command (:func:`wirepool._main.entry`: an ordinary
    ``run`` line is read without click)."""
    from wirepool._main import entry

    entry()


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # click.version_option, but asking for the version only when --version is given
    # (its argument is read at import: wirepool._version is lazy for start-up time)
    if value and not ctx.resilient_parsing:
        click.echo(f"{ctx.find_root().info_name}, version {version()}", color=ctx.color)
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
def main(verbose: int, quiet: bool) -> None:
    """Keep one long-running daemon alive per session."""
    # loguru is imported once the first children are started (`run`), or at the
    # first message (any other command: most log nothing) -- wirepool._log
    _log.hold(logs=click.get_current_context().invoked_subcommand == "run")
    configure_logging(-1 if quiet else verbose)


# ----------------------------------------------------------- plugin commands

Action = Callable[[Plugin, str, Mapping[str, Any], Mapping[str, Any]], int]


def _to_click(
    param: Option | Argument | click.Parameter, *, hidden: bool = False
) -> click.Parameter:
    if isinstance(param, Option | Argument):
        return param.to_click(hidden=hidden)
    return param


class PluginGroup(click.Group):
    """``wirepool <verb> <plugin> [plugin options] [verb options]``: one
    subcommand per installed plugin, built lazily from the plugin's own
    options plus the verb's.  ``does`` says what the verb does, at the top
    of each plugin's ``--help``; a plugin option only ``run`` uses (its
    timings, say) is still taken by the other verbs, so one command line
    serves them all, but shown only by ``run --help``."""

    def __init__(
        self,
        name: str,
        action: Action,
        verb_params: Callable[[], Sequence[Option | Argument | click.Parameter]],
        help: str,
        does: str,
    ) -> None:
        super().__init__(name=name, help=help)
        self.action = action
        self.verb_params = verb_params
        self.does = does

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [info.name for info in find_plugins()]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            plugin = load_plugin(cmd_name)
        except PluginError as exc:
            fail(CliError(str(exc), EXIT_PLUGIN))
            return None
        verb_params = [_to_click(p) for p in self.verb_params()]
        verb_names = {p.name for p in verb_params}
        plugin_params = [
            _to_click(p, hidden=self.name != "run" and is_run_only(p)) for p in plugin.options()
        ]
        if self.name != "run":
            for param in plugin_params:
                if is_run_only(param) and isinstance(param, click.Option):
                    param.hidden = True

        def callback(**params: Any) -> None:
            verb = {k: v for k, v in params.items() if k in verb_names}
            opts = {k: v for k, v in params.items() if k not in verb_names}
            code = invoke(lambda: self.action(plugin, cmd_name, opts, verb))
            click.get_current_context().exit(code)

        return click.Command(
            cmd_name,
            params=[*plugin_params, *verb_params],
            callback=callback,
            help=f"{self.does.format(plugin=cmd_name)}\n\n{plugin.description}",
        )


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
        fail(CliError(str(exc)))
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
        fail(CliError(str(exc)))
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


def _session_arg() -> click.Argument:
    return click.Argument(["session"], metavar="SESSION")


def _verb(
    name: str,
    action: Action,
    params: Callable[[], Sequence[Option | Argument | click.Parameter]],
    usage: str,
    does: str,
) -> None:
    shown = does.format(plugin="PLUGIN")
    main.add_command(PluginGroup(name, action, params, help=f"{shown} {usage}", does=does))


_verb(
    "run",
    run_action,
    run_params,
    "wirepool run PLUGIN [options].",
    "Run the supervisor of the {plugin} pool in the foreground.",
)
_verb(
    "status",
    status_action,
    status_params,
    "wirepool status PLUGIN [options] [SESSION...].",
    "Show the {plugin} pool's supervisor and every session as a table, or each SESSION "
    "named in detail (state, pid, uptime, restarts, last exit, log and its last lines). "
    "Exits 3 when no supervisor runs.",
)
_verb(
    "stop",
    stop_action,
    stop_params,
    "wirepool stop PLUGIN [options] [--children].",
    "Stop the {plugin} pool's supervisor (its children are left for the next one, "
    "or stopped too with --children).",
)
_verb(
    "restart",
    restart_action,
    lambda: [
        sessions_argument(),
        state_dir_option(),
        click.Option(
            ["--no-wait"], is_flag=True, help="Return once asked, not once the new child runs."
        ),
        json_option(),
    ],
    "wirepool restart PLUGIN [options] SESSION...",
    "Restart sessions of the {plugin} pool: SIGTERM, the stop grace, SIGKILL, then a new "
    "child at once (not counted as a failure); a session backing off or failed starts now.",
)
_verb(
    "down",
    down_action,
    lambda: [sessions_argument(), state_dir_option(), json_option()],
    "wirepool down PLUGIN [options] SESSION...",
    "Hold sessions of the {plugin} pool down: their children are stopped and none is "
    "started until `up`; kept across supervisor restarts.",
)
_verb(
    "up",
    up_action,
    lambda: [sessions_argument(), state_dir_option(), json_option()],
    "wirepool up PLUGIN [options] SESSION...",
    "Let sessions of the {plugin} pool held down run again.",
)
_verb(
    "signal",
    signal_action,
    lambda: [
        _session_arg(),
        click.Argument(["sig"], metavar="SIGNAL"),
        state_dir_option(),
        json_option(),
    ],
    "wirepool signal PLUGIN [options] SESSION SIGNAL",
    "Send SIGNAL (HUP, SIGUSR1, 15, ...) to the child of a session of the {plugin} pool.",
)
_verb(
    "reset",
    reset_action,
    lambda: [
        sessions_argument(required=False),
        state_dir_option(),
        click.Option(
            ["--session", "session_opts"],
            multiple=True,
            hidden=True,  # the older spelling, still taken
            help="Session name (repeatable).",
        ),
        json_option(),
    ],
    "wirepool reset PLUGIN [options] SESSION...",
    "Clear the backoff and failed mark of sessions of the {plugin} pool, through the "
    "running supervisor or, with none, in the records the next one reads.",
)
_verb(
    "logs",
    logs_action,
    lambda: [
        _session_arg(),
        state_dir_option(),
        lines_option("How many of the last lines to show."),
        click.Option(
            ["-f", "--follow"], is_flag=True, help="Then show what it writes, across rotations."
        ),
    ],
    "wirepool logs PLUGIN [options] SESSION [-n N] [-f]",
    "Show the log of a session of the {plugin} pool: its child's output, with a "
    "`wirepool:` line at each start and exit.  Works with no supervisor.",
)
_verb(
    "top",
    top_action,
    lambda: [state_dir_option()],
    "wirepool top PLUGIN [options]",
    "A live view of the running {plugin} supervisor: sessions by state, problems first, "
    "countdowns ticking; q quits, / filters, r/d/u restart, down or up the selected "
    "session.  With no terminal, a line per event.",
)
_verb(
    "events",
    events_action,
    lambda: [state_dir_option(), json_option("One JSON object per event (as run --json).")],
    "wirepool events PLUGIN [options] [--json]",
    "Stream the running {plugin} supervisor's events until it stops.",
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
