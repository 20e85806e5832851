"""Plugins: one class per kind of session, found through entry points.

A plugin turns command-line options into the four strategies (plus restart
timing and where state lives) for one kind of session.  Plugins are found
through the ``wirepool.plugins`` entry-point group -- the bundled ``wire`` and
``servicedir`` plugins are registered exactly the way a third-party one is,
so the real discovery path is the one the tests exercise.

A plugin that fails to import is reported with its error (``wirepool
plugins``), never as a traceback, and never takes the other plugins down.
"""

from __future__ import annotations

import os
import stat
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypedDict

from wirepool import _dists
from wirepool._args import Argument, Option
from wirepool._proc import ProcessIdentity
from wirepool._types import Session, Verdict

# What a plugin needs, from this one module: `from wirepool.plugin import
# CommandSpawner, DirectoryScan, Plugin, PoolSpec, ...` (the names are the
# same objects as wirepool's own).
from wirepool._value import Record, Value, field, frozen, record
from wirepool.discovery import DirectoryScan, Discovery, StaticDiscovery
from wirepool.eligibility import (
    ActiveWithin,
    Always,
    Bound,
    Eligibility,
    HasMarker,
    NoDownFile,
)
from wirepool.errors import ConfigError, PluginError, SpawnError
from wirepool.health import HealthCheck, HeartbeatCheck, PidfileCheck
from wirepool.restart import RestartPolicy, SpawnRateLimit, wait_jitter
from wirepool.spawn import CallableSpawner, CommandSpawner, Environment, Spawner

if TYPE_CHECKING:
    import importlib.metadata as md

    import click

    from wirepool._pool import SessionPool
    from wirepool.discovery import DiscoveryLike
    from wirepool.eligibility import EligibilityLike
    from wirepool.service import ServiceManager

__all__ = [
    "ActiveWithin",
    "Always",
    "Argument",
    "Bound",
    "CallableSpawner",
    "CommandSpawner",
    "ConfigError",
    "DirectoryScan",
    "Discovery",
    "Eligibility",
    "Environment",
    "Guard",
    "HasMarker",
    "HealthCheck",
    "HeartbeatCheck",
    "NoDownFile",
    "Option",
    "PidfileCheck",
    "Plugin",
    "PluginError",
    "PluginInfo",
    "PoolSpec",
    "ProcessIdentity",
    "RestartPolicy",
    "Session",
    "SpawnError",
    "SpawnRateLimit",
    "Spawner",
    "StaticDiscovery",
    "Verdict",
    "duration_callback",
    "find_plugins",
    "load_plugin",
    "parse_duration",
    "spec_tail",
    "timing_from",
    "timing_options",
    "wait_jitter",
]

GROUP = "wirepool.plugins"


class Guard(ABC):
    """An extra singleton a plugin honours besides the pool's own lock (the
    wire plugin's ``supervisor.pid``, shared with the Rust supervisor)."""

    @abstractmethod
    def acquire(self) -> int | None:
        """Claim it; return the holder's pid instead if someone else has it."""

    @abstractmethod
    def release(self) -> None:
        """Give it up (only if it is still ours)."""

    def describe(self, holder: int) -> str:
        """Who holds it, for the line ``wirepool run`` prints as it skips."""
        return f"another supervisor is already running (pid {holder})"

    def claim(self) -> None:  # noqa: B027 -- optional hook
        """Called once the pool holds its own lock: make the singleton name
        us again.  Two supervisors started together may both have found it
        free and written it, the loser last."""


@record
class PoolSpec(Record):
    """Everything a :class:`SessionPool` needs, as a plugin builds it."""

    discovery: DiscoveryLike
    spawner: Spawner
    state_dir: Path
    eligibility: EligibilityLike | None = None
    health: HealthCheck | None = None
    restart: RestartPolicy | None = None
    on_exit: Literal["leave", "stop"] = "leave"
    grace: float = 10.0
    stop_grace: float = 10.0
    rescan_interval: float = 30.0
    #: seconds between rescans while inotify watches every path discovery
    #: depends on (None: ``rescan_interval`` anyway); see :class:`SessionPool`
    watched_rescan_interval: float | None = None
    spawn_limit: SpawnRateLimit | None = None
    guard: Guard | None = None
    #: edits a status document in place when ``wirepool status`` reads it:
    #: plugin facts computed live (it may scan processes; the pool's own
    #: ``status.json`` writes stay cheap and never call it).
    annotate: Callable[[dict[str, Any]], None] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: the directory discovery reads (:func:`spec_tail` fills it in):
    #: ``wirepool run`` and ``status`` refuse one that is not a directory
    #: (exit 2) -- a typo must not supervise nothing, quietly, forever --
    #: unless ``missing_root_ok`` says an absent root just means no sessions
    root: Path | None = None
    missing_root_ok: bool = False
    #: restart a child whose session's configuration changed (see
    #: :meth:`wirepool.Spawner.fingerprint`); ``wirepool run
    #: --restart-on-change`` turns it on for a plugin that leaves it off
    restart_on_change: bool = False

    def root_problem(self) -> str | None:
        """Why :attr:`root` cannot be supervised (None: it can, or it may
        be absent, or there is none)."""
        if self.root is None or self.missing_root_ok:
            return None
        try:
            is_dir = stat.S_ISDIR(os.stat(self.root).st_mode)
        except FileNotFoundError:
            return f"{self.root} does not exist (the directory to supervise)"
        except OSError as exc:
            return f"cannot look at {self.root}: {exc.strerror or exc}"
        return None if is_dir else f"{self.root} is not a directory (the directory to supervise)"

    def pool(self, plugin: str = "", **overrides: Any) -> SessionPool:
        from wirepool._pool import SessionPool

        kwargs: dict[str, Any] = {
            "on_exit": self.on_exit,
            "grace": self.grace,
            "stop_grace": self.stop_grace,
            "rescan_interval": self.rescan_interval,
            "watched_rescan_interval": self.watched_rescan_interval,
            "spawn_limit": self.spawn_limit,
            "plugin": plugin,
            "restart_on_change": self.restart_on_change,
        }
        kwargs.update(overrides)
        return SessionPool(
            self.discovery,
            self.eligibility,
            self.spawner,
            self.health,
            self.restart,
            self.state_dir,
            **kwargs,
        )


class Plugin(ABC):
    """Subclass, set :attr:`name` and :attr:`description`, implement
    :meth:`build`, and register the class under ``wirepool.plugins``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def options(self) -> Sequence[Option | Argument | click.Parameter]:
        """The options of ``wirepool run <plugin> ...`` (and of every other
        verb on the plugin).  Declare them with :class:`Option` and
        :class:`Argument`: ``wirepool run`` then reads an ordinary command
        line without importing click (~15 ms of its start-up).  click's own
        parameters are taken too, and send every line through click."""
        return ()

    @abstractmethod
    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        """Turn parsed options into a :class:`PoolSpec`.  Raise
        ``click.UsageError`` or :class:`PluginError` for bad options."""

    def service_advice(self, manager: ServiceManager) -> Sequence[str]:
        """Paragraphs ``wirepool service install|status <plugin>`` prints
        beside its result: what else installed in ``manager`` competes with
        this plugin's supervisor (another supervisor for the same sessions),
        and how to remove it.  Look with ``manager.installed_files(unit)``
        and ``manager.removal_command(unit, path)``.  The default finds
        nothing."""
        return ()


_RUN_ONLY = "_wirepool_run_only"


def run_only(*params: Any) -> list[Any]:
    """Mark options that matter only to ``wirepool run`` (timings, how a
    child starts): the other verbs still take them, so one command line
    serves every verb, but only ``run --help`` shows them.  For an
    :class:`Option`, ``Option(..., run_only=True)`` says the same."""
    for param in params:
        if isinstance(param, Option):
            param.run_only = True
        elif not isinstance(param, Argument):  # an argument is never hidden
            setattr(param, _RUN_ONLY, True)
    return list(params)


def is_run_only(param: object) -> bool:
    if isinstance(param, Option):
        return param.run_only
    return bool(getattr(param, _RUN_ONLY, False))


def timing_options(*, rescan_interval: float = 30.0, what: str = "session") -> list[Any]:
    """The pool timings every plugin exposes: ``--grace``, ``--stop-grace``,
    ``--rescan-interval`` (run-only: see :func:`run_only`).  Read them back
    with :func:`timing_from`."""
    return run_only(
        Option(
            "--grace",
            kind=float,
            min=0,
            default=10.0,
            show_default=True,
            help=f"Seconds a vanished {what} keeps its child.",
        ),
        Option(
            "--stop-grace",
            kind=float,
            min=0,
            default=10.0,
            show_default=True,
            help="Seconds between SIGTERM and SIGKILL.",
        ),
        Option(
            "--rescan-interval",
            kind=float,
            min=0.1,
            default=rescan_interval,
            show_default=True,
            help="Seconds between full rescans (inotify triggers them early).",
        ),
    )


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds, or a number with one unit
    (``90s``, ``30m``, ``2.5h``, ``7d``, ``1w``).  ValueError, naming the
    accepted forms, for anything else -- including negative, infinite and
    NaN values, which would silently mean "never" or "always"."""
    raw = text.strip().lower()
    unit = 1.0
    if raw and raw[-1] in _UNITS:
        unit, raw = _UNITS[raw[-1]], raw[:-1]
    try:
        value = float(raw) * unit
    except ValueError:
        value = float("nan")
    if not (value >= 0 and value != float("inf")):
        raise ValueError(
            f"{text!r} is not a duration (use seconds, or a number with s, m, h, d or w)"
        )
    return value


def duration_callback(ctx: Any, param: Any, value: Any) -> float | None:
    """A click ``callback`` turning an option's text into seconds with
    :func:`parse_duration` (use with ``metavar="DURATION"``).  An
    :class:`Option` takes ``callback=parse_duration`` itself."""
    import click

    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


# The functional form, for SpecTail and Timing: the class form's annotations
# are strings in this module, which typing compiles one by one at import
# (0.8 ms of every start, before a supervisor's first child).
SpecTail = TypedDict(  # noqa: UP013
    "SpecTail",
    {
        "root": Path,
        "missing_root_ok": bool,
        "state_dir": Path,
        "on_exit": Literal["leave", "stop"],
        "grace": float,
        "stop_grace": float,
        "rescan_interval": float,
    },
)


def spec_tail(
    root: Path,
    *,
    state_dir: Path | None = None,
    on_exit: str = "leave",
    grace: float = 10.0,
    stop_grace: float = 10.0,
    rescan_interval: float = 30.0,
    missing_root_ok: bool = False,
) -> SpecTail:
    """The part of a plugin's :class:`PoolSpec` every plugin spells the same
    way, as keyword arguments: the root (which ``wirepool run`` refuses when
    it is not a directory, unless ``missing_root_ok``: say so when an absent
    root just means no sessions yet), the state directory (``ROOT/.wirepool``
    unless given, made absolute: a pool's id is a hash of its real path),
    ``on_exit`` (anything but ``"stop"`` leaves the children for the next
    supervisor) and the timings (:func:`timing_from` reads them from
    options)::

        PoolSpec(discovery=..., spawner=..., **spec_tail(root, **timing_from(options)))
    """
    return {
        "root": Path(root).absolute(),
        "missing_root_ok": missing_root_ok,
        "state_dir": Path(state_dir or Path(root) / ".wirepool").absolute(),
        "on_exit": "stop" if on_exit == "stop" else "leave",
        "grace": float(grace),
        "stop_grace": float(stop_grace),
        "rescan_interval": float(rescan_interval),
    }


Timing = TypedDict("Timing", {"grace": float, "stop_grace": float, "rescan_interval": float})  # noqa: UP013


def timing_from(options: Mapping[str, Any], *, rescan_interval: float = 30.0) -> Timing:
    """``grace``, ``stop_grace`` and ``rescan_interval`` from parsed options."""
    return {
        "grace": float(options.get("grace", 10.0)),
        "stop_grace": float(options.get("stop_grace", 10.0)),
        "rescan_interval": float(options.get("rescan_interval", rescan_interval)),
    }


@frozen
class PluginInfo(Value):
    """An installed plugin, as ``wirepool plugins`` lists it."""

    name: str
    value: str
    distribution: str | None
    version: str | None
    origin: str | None
    description: str = ""
    error: str | None = None
    cls: type[Plugin] | None = None


def _entry_points() -> list[md.EntryPoint]:
    import importlib.metadata as md

    return sorted(md.entry_points(group=GROUP), key=lambda ep: ep.name)


def _load(value: str, load: Callable[[], object]) -> type[Plugin] | str:
    """The class an entry point names, or why it is not one."""
    try:
        obj = load()
    except Exception as exc:  # a broken plugin is reported, not raised
        return f"{type(exc).__name__}: {exc}"
    if not (isinstance(obj, type) and issubclass(obj, Plugin)):
        return f"{value} is not a wirepool.Plugin subclass"
    return obj


def _info(ep: md.EntryPoint) -> PluginInfo:
    dist = ep.dist
    dist_name = dist.metadata["Name"] if dist is not None else None
    version = dist.version if dist is not None else None
    obj = _load(ep.value, ep.load)
    if isinstance(obj, str):
        return PluginInfo(ep.name, ep.value, dist_name, version, None, error=obj)
    module = sys.modules.get(obj.__module__)  # ep.load() imported it
    origin = getattr(module, "__file__", None)
    description = obj.description or next(iter((obj.__doc__ or "").strip().splitlines()), "")
    return PluginInfo(ep.name, ep.value, dist_name, version, origin, description, None, obj)


def find_plugins() -> list[PluginInfo]:
    """Every installed plugin, loaded; broken ones carry ``error``."""
    return [_info(ep) for ep in _entry_points()]


def load_plugin(name: str) -> Plugin:
    # the installed metadata read directly first: importing importlib.metadata
    # is a tenth of `wirepool run`'s start-up (see wirepool._dists)
    value = _dists.entry_point(GROUP, name)
    if value is not None:
        found = _load(value, lambda: _dists.load(value))
    else:
        eps = _entry_points()
        ep = next((ep for ep in eps if ep.name == name), None)
        if ep is None:
            known = ", ".join(ep.name for ep in eps) or "none"
            raise PluginError(f"no plugin named {name!r} (installed: {known})")
        found = _load(ep.value, ep.load)
    if isinstance(found, str):
        raise PluginError(f"plugin {name!r} failed to load: {found}")
    return found()
