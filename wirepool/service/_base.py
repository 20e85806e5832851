"""What every backend shares: the :class:`ServiceManager` protocol, the user it manages
(:class:`Host`), the :class:`Backend` base class and the atomic unit-file write.

A backend only decides what its file says and which commands load, stop and query it; how a
file is written, and how a result begins, are decided here once.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final, Protocol

from wirepool._store import atomic_write
from wirepool.service._results import InstallResult, Manager, ServiceStatus, UninstallResult
from wirepool.service._run import Runner, default_runner
from wirepool.service._spec import ServiceError, ServiceSpec

__all__ = [
    "DEFAULT_LINGER_DIR",
    "RESTART_SEC",
    "Backend",
    "Host",
    "ServiceManager",
    "Written",
    "read_text",
    "remove_unit",
    "unit_exists",
    "write_unit",
]

#: Seconds either manager waits before restarting a failed supervisor: slow enough that a crash
#: loop never trips systemd's start limit, fast enough that a crash is mended at once.
RESTART_SEC: Final = 5
#: systemd-logind keeps one empty file per user whose services outlive their sessions.
DEFAULT_LINGER_DIR: Final = Path("/var/lib/systemd/linger")


@dataclass(frozen=True)
class Host:
    """The user whose units are managed: where their files live and how their manager is
    reached. Tests pass a temporary ``home`` and a fake ``runner``; the defaults are the real
    user and the real ``systemctl``/``launchctl``."""

    home: Path
    #: systemd reads user units from ``$XDG_CONFIG_HOME/systemd/user``.
    config_home: Path
    uid: int
    runner: Runner = default_runner
    #: where logind flags the users whose services run without a login (only systemd asks).
    linger_dir: Path = DEFAULT_LINGER_DIR

    @classmethod
    def of(
        cls,
        home: Path | None = None,
        *,
        config_home: Path | None = None,
        runner: Runner = default_runner,
        uid: int | None = None,
        linger_dir: Path | None = None,
    ) -> Host:
        """The real user, or one living in ``home``. ``$XDG_CONFIG_HOME`` is honoured only for
        the real home: a home passed in is a sandbox that must not reach the real config."""
        if home is None:
            home = Path.home()
            if config_home is None:
                xdg = os.environ.get("XDG_CONFIG_HOME", "")
                config_home = Path(xdg) if os.path.isabs(xdg) else None
        return cls(
            home=home,
            config_home=home / ".config" if config_home is None else config_home,
            uid=os.getuid() if uid is None else uid,
            runner=runner,
            linger_dir=DEFAULT_LINGER_DIR if linger_dir is None else linger_dir,
        )


# --------------------------------------------------------------------------------------------
# unit files
# --------------------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    # A manager reading the unit mid-write (daemon-reload, launchd's watch of LaunchAgents)
    # must see the old file or the new one, never half of it.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o644, sync_dir=True)
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc}") from exc


def read_text(path: Path) -> str | None:
    """A unit file's text, or None when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path}: {exc}") from exc


def unit_exists(path: Path) -> bool:
    """A unit file, or a dangling link left where one was."""
    return path.exists() or path.is_symlink()


@dataclass(frozen=True)
class Written:
    """A unit file :func:`write_unit` wrote, and whether it replaced another one."""

    path: Path
    replaced: bool
    changed: bool


def write_unit(path: Path, content: str, log_path: Path | None = None) -> Written:
    """Write a unit file atomically, after creating the directory of the log it names (a
    manager that cannot open the log refuses to start the service)."""
    previous = read_text(path)
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(f"cannot create the log directory for {log_path}: {exc}") from exc
    _write_atomic(path, content.encode("utf-8"))
    return Written(path, replaced=previous is not None, changed=previous != content)


def remove_unit(path: Path) -> None:
    """Remove a unit file; already gone is fine."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ServiceError(f"cannot remove {path}: {exc}") from exc


class Backend(ABC):
    """What every backend class shares: the :class:`Host` it manages, the platform it serves
    and how a status begins (from the unit file alone)."""

    kind: ClassVar[Manager]
    #: the ``sys.platform`` values it serves start with this
    platform_prefix: ClassVar[str]

    def __init__(self, host: Host) -> None:
        self.host = host

    @classmethod
    def serves(cls, platform: str) -> bool:
        """Whether this backend is the one for a ``sys.platform`` value."""
        return platform.startswith(cls.platform_prefix)

    @abstractmethod
    def unit_path(self, name: str) -> Path:
        """Where the unit of service ``name`` lives."""

    def _written(
        self, spec: ServiceSpec, written: Written, manual: Sequence[str], notes: Sequence[str]
    ) -> InstallResult:
        """The unit is written, not loaded yet: ``manual`` would load it."""
        return InstallResult(
            name=spec.name,
            manager=self.kind,
            path=written.path,
            changed=written.changed,
            load_attempted=False,
            loaded=False,
            manual_commands=tuple(manual),
            notes=tuple(notes),
        )

    def _file_status(self, name: str, exec_start_of: Callable[[str], str | None]) -> ServiceStatus:
        """What the unit file alone says (is it there, what does it run), before the manager is
        asked; ``exec_start_of`` reads the command line out of the backend's format."""
        path = self.unit_path(name)
        text = read_text(path)
        return ServiceStatus(
            name=name,
            manager=self.kind,
            path=path,
            installed=text is not None,
            exec_start=None if text is None else exec_start_of(text),
        )


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------


class ServiceManager(Protocol):
    """One service manager (systemd's user instance, launchd's per-user agents) for one
    :class:`Host`. ``wirepool.service.backend()`` picks the one this platform has."""

    kind: ClassVar[Manager]
    host: Host

    def unit_path(self, name: str) -> Path:
        """Where the unit of service ``name`` lives."""
        ...

    def log_path(self, name: str) -> Path | None:
        """Where the service's output goes when the manager keeps no journal (else None)."""
        ...

    def render(self, spec: ServiceSpec) -> str:
        """The unit file for ``spec``, exactly as ``install`` writes it."""
        ...

    def install(self, spec: ServiceSpec, *, load: bool = True) -> InstallResult:
        """Write the unit atomically and (if ``load``) enable and start it."""
        ...

    def uninstall(self, name: str) -> UninstallResult:
        """Stop and disable the service, then remove its file."""
        ...

    def status(self, name: str) -> ServiceStatus:
        """Whether the unit file exists, what it runs, and what the manager says about it."""
        ...

    def installed_files(self, unit: str) -> list[Path]:
        """Files installing someone else's ``unit`` (a systemd unit name, a launchd label) for
        this user: what a plugin checks for a competing supervisor."""
        ...

    def removal_command(self, unit: str, path: Path) -> str:
        """A shell line that stops ``unit`` and removes its file ``path`` by hand."""
        ...
