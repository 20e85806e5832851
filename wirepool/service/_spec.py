"""What a service runs and what it is called, the same for every service manager.

Plugin and service names become file names, systemd unit names and launchd labels, so they are
kept to a set all three accept. A :class:`ServiceSpec` is validated once, here, so that no
backend ever renders a command it would have to refuse later.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "DELETED_SUFFIX",
    "LAUNCHD_LABEL_PREFIX",
    "ServiceError",
    "ServiceSpec",
    "check_name",
    "has_control",
    "launchd_label",
    "name_of",
    "service_name",
    "strip_deleted_suffix",
]

#: Linux appends this to ``/proc/<pid>/exe`` once the running binary was replaced (wire #274).
DELETED_SUFFIX: Final = " (deleted)"
#: launchd labels are reverse-DNS; the service name is appended: ``dev.wirepool.wirepool-wire``.
LAUNCHD_LABEL_PREFIX: Final = "dev.wirepool"

# No '@' (a systemd template) and no path separators; 200 keeps file names well under NAME_MAX.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ServiceError(RuntimeError):
    """The service cannot be rendered or written: unsupported platform, invalid spec, I/O error.

    A service manager that cannot be reached is *not* a ``ServiceError``; it is reported in the
    result of ``install``, ``uninstall`` or ``status``.
    """


def has_control(text: str) -> bool:
    """Whether ``text`` holds an ASCII control character (no unit format can carry one)."""
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def strip_deleted_suffix(path: str) -> str:
    """Drop a trailing `` (deleted)`` that Linux adds to the exe link of a replaced binary."""
    while path.endswith(DELETED_SUFFIX):
        path = path[: -len(DELETED_SUFFIX)]
    return path


def check_name(name: str, what: str) -> str:
    """``name`` if every service manager accepts it in a file name and a unit name."""
    if not _NAME_RE.fullmatch(name):
        raise ServiceError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ServiceSpec:
    """What to run as a service. Construct it with ``build_spec`` for ``wirepool run``.

    ``argv[0]`` must be an absolute path; a trailing `` (deleted)`` is stripped from it.
    ``environment`` is copied into a read-only mapping.
    """

    name: str
    argv: tuple[str, ...]
    description: str
    environment: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def __post_init__(self) -> None:
        check_name(self.name, "service name")
        argv = tuple(self.argv)
        if not argv or not argv[0]:
            raise ServiceError("a service needs a command: argv is empty")
        if any("\0" in arg for arg in argv):
            raise ServiceError("argv must not contain NUL characters")
        executable = strip_deleted_suffix(argv[0])
        if not os.path.isabs(executable):
            raise ServiceError(
                f"the service executable must be an absolute path, got {executable!r}: "
                "service managers do not search the installing shell's PATH"
            )
        env: dict[str, str] = {}
        for key, value in self.environment.items():
            if not _ENV_NAME_RE.fullmatch(key):
                raise ServiceError(f"invalid environment variable name {key!r}")
            if has_control(value):
                raise ServiceError(f"environment variable {key} contains a control character")
            env[key] = value
        object.__setattr__(self, "argv", (executable, *argv[1:]))
        object.__setattr__(self, "environment", types.MappingProxyType(env))

    @property
    def unit_name(self) -> str:
        """The systemd unit name, ``<name>.service``."""
        return f"{self.name}.service"

    @property
    def label(self) -> str:
        """The launchd label, ``dev.wirepool.<name>``."""
        return launchd_label(self.name)


def service_name(plugin: str) -> str:
    """The service name for a plugin: ``wirepool-<plugin>``."""
    return f"wirepool-{check_name(plugin, 'plugin name')}"


def launchd_label(name: str) -> str:
    """The launchd label for a service name: ``dev.wirepool.<name>``."""
    return f"{LAUNCHD_LABEL_PREFIX}.{check_name(name, 'service name')}"


def name_of(spec_or_name: ServiceSpec | str) -> str:
    """The service name of a spec, or a bare name once checked."""
    if isinstance(spec_or_name, ServiceSpec):
        return spec_or_name.name
    return check_name(spec_or_name, "service name")
