"""Install ``wirepool run PLUGIN …`` as a per-user OS service (systemd user unit or launchd agent).

``wirepool service install|uninstall|status PLUGIN`` is a thin CLI over this package. Each
service manager is one backend behind the :class:`ServiceManager` protocol
(:mod:`wirepool.service.systemd`, :mod:`wirepool.service.launchd`; each module's docstring says
why its file reads as it does), and :func:`backend` picks the platform's one, once. Everything
is either pure (rendering, paths) or takes its side effects as parameters (``home``,
``platform``, ``uid`` and a ``runner`` standing in for ``systemctl``/``launchctl``), so the
tests never touch the real home directory or the real service manager.

What the backends share
=======================

**Environment= is pinned.** A user manager (and launchd) starts services with a minimal PATH
(``/usr/local/bin:/usr/bin:/bin``, or ``/usr/bin:/bin:/usr/sbin:/sbin`` under launchd) that
misses ``~/.cargo/bin`` and friends, where the programs plugins run often live, so
:func:`build_spec` pins the installing shell's ``PATH``.

**The executable is never resolved through symlinks.** ``sys.executable`` of a virtualenv is a
symlink, and running it *as that path* is what activates the virtualenv. Only a trailing
`` (deleted)`` is stripped: Linux appends it to ``/proc/<pid>/exe`` after the binary was
replaced by an upgrade, and wire once wrote such a path into its units, which then flapped
forever (wire #274/#276).

**Loading and failure reporting.** ``install`` writes the file atomically (temp file in the same
directory, fsync, ``os.replace``), then loads it. A failing manager (no user bus in a container:
"Failed to connect to bus", a missing ``systemctl``, a timeout) never raises: the file stays
written and the result carries the error and the exact commands to run by hand.
:class:`ServiceError` is raised only for things the caller must fix first: an unsupported
platform, an invalid spec, an unwritable file.

**Plugins.** A plugin that knows of a competing service (another supervisor for the same
sessions) says so through :meth:`wirepool.Plugin.service_advice`, which is handed the
:class:`ServiceManager` to look with; nothing here knows any plugin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from wirepool.service._base import Host, ServiceManager
from wirepool.service._results import InstallResult, Manager, ServiceStatus, UninstallResult
from wirepool.service._run import CommandOutcome, Runner, default_runner
from wirepool.service._spec import (
    DELETED_SUFFIX,
    LAUNCHD_LABEL_PREFIX,
    ServiceError,
    ServiceSpec,
    launchd_label,
    name_of,
    service_name,
    strip_deleted_suffix,
)
from wirepool.service.launchd import LaunchdManager, render_launchd_plist
from wirepool.service.systemd import SystemdManager, render_systemd_unit, systemd_exec_start

__all__ = [
    "DELETED_SUFFIX",
    "LAUNCHD_LABEL_PREFIX",
    "CommandOutcome",
    "Host",
    "InstallResult",
    "LaunchdManager",
    "Manager",
    "Runner",
    "ServiceError",
    "ServiceManager",
    "ServiceSpec",
    "ServiceStatus",
    "SystemdManager",
    "UninstallResult",
    "backend",
    "backend_class",
    "build_spec",
    "default_runner",
    "install",
    "launchd_label",
    "manager_for",
    "render_launchd_plist",
    "render_systemd_unit",
    "service_name",
    "status",
    "strip_deleted_suffix",
    "systemd_exec_start",
    "uninstall",
    "unit_path",
]

_BACKENDS: tuple[type[SystemdManager] | type[LaunchdManager], ...] = (
    SystemdManager,
    LaunchdManager,
)


def backend_class(platform: str) -> type[SystemdManager] | type[LaunchdManager]:
    """The backend for a ``sys.platform`` value; ServiceError when there is none."""
    for cls in _BACKENDS:
        if cls.serves(platform):
            return cls
    raise ServiceError(
        f"wirepool service supports Linux (systemd) and macOS (launchd), not {platform!r}; "
        "run `wirepool run` under your platform's service manager instead"
    )


def backend(
    platform: str | None = None,
    *,
    home: Path | None = None,
    runner: Runner = default_runner,
    uid: int | None = None,
    linger_dir: Path | None = None,
) -> ServiceManager:
    """This platform's service manager for the current user (or one living in ``home``)."""
    cls = backend_class(sys.platform if platform is None else platform)
    return cls(Host.of(home, runner=runner, uid=uid, linger_dir=linger_dir))


def manager_for(platform: str) -> Manager:
    """Which service manager a ``sys.platform`` value uses; ServiceError when there is none."""
    return backend_class(platform).kind


def build_spec(
    plugin: str,
    options: Sequence[str] = (),
    *,
    platform: str | None = None,
    home: Path | None = None,
    python: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """The spec for ``<python> -m wirepool run <plugin> <options…>``.

    ``environment`` defaults to the current ``PATH`` (so the plugin's programs are found) plus
    ``PYTHONUNBUFFERED=1`` (so output reaches journald or the log file as it happens). On macOS
    the log goes to ``~/Library/Logs/<name>.log``.
    """
    manager = backend(platform, home=home)
    name = service_name(plugin)
    executable = python if python is not None else sys.executable
    if not executable:
        raise ServiceError("cannot tell which Python interpreter to run (sys.executable is empty)")
    if environment is None:
        environment = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONUNBUFFERED": "1"}
    return ServiceSpec(
        name=name,
        argv=(executable, "-m", "wirepool", "run", plugin, *options),
        description=f"wirepool supervisor for {plugin} sessions",
        environment=environment,
        log_path=manager.log_path(name),
    )


def unit_path(
    spec: ServiceSpec | str, *, platform: str, home: Path, config_home: Path | None = None
) -> Path:
    """Where the unit lives: ``~/.config/systemd/user/<name>.service`` or
    ``~/Library/LaunchAgents/<label>.plist``. ``config_home`` replaces ``~/.config``."""
    name = name_of(spec)
    return backend_class(platform)(Host.of(home, config_home=config_home)).unit_path(name)


def install(
    spec: ServiceSpec,
    *,
    platform: str | None = None,
    home: Path | None = None,
    runner: Runner = default_runner,
    load: bool = True,
    uid: int | None = None,
    linger_dir: Path | None = None,
) -> InstallResult:
    """Write the unit for ``spec`` atomically and (if ``load``) enable and start it.

    Raises :class:`ServiceError` only when nothing could be written (unsupported platform,
    invalid spec, I/O error). A service manager that fails is reported in the result.
    """
    manager = backend(platform, home=home, runner=runner, uid=uid, linger_dir=linger_dir)
    return manager.install(spec, load=load)


def uninstall(
    spec_or_name: ServiceSpec | str,
    *,
    platform: str | None = None,
    home: Path | None = None,
    runner: Runner = default_runner,
    uid: int | None = None,
) -> UninstallResult:
    """Stop and disable the service, then remove its file.

    The session daemons the supervisor started are left running (``KillMode=process`` /
    ``AbandonProcessGroup``). The file is removed even when the manager cannot be reached.
    """
    manager = backend(platform, home=home, runner=runner, uid=uid)
    return manager.uninstall(name_of(spec_or_name))


def status(
    spec_or_name: ServiceSpec | str,
    *,
    platform: str | None = None,
    home: Path | None = None,
    runner: Runner = default_runner,
    uid: int | None = None,
) -> ServiceStatus:
    """Whether the unit file exists, what it runs, and what the manager says about it."""
    return backend(platform, home=home, runner=runner, uid=uid).status(name_of(spec_or_name))
