"""wire's own supervisor installed as a service, which competes with ``wirepool run wire``.

``wire service install`` (wire's ``src/service.rs``) installs ``wire daemon --all-sessions`` as
the systemd user unit ``wire-daemon.service`` or the launchd agent ``sh.slancha.wire.daemon``.
That supervisor serves the same sessions as this plugin: at best it starts only to exit as
skipped (the plugin holds ``supervisor.pid``, and launchd's ``KeepAlive`` true relaunches it
every ~10 s), at worst both supervisors spawn daemons. ``wirepool service install|status wire``
therefore looks for those units through :meth:`WirePlugin.service_advice` and says how to
remove them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from wirepool.service import Manager, ServiceError, ServiceManager, backend

__all__ = [
    "RUST_WIRE_LAUNCHD_LABEL",
    "RUST_WIRE_SYSTEMD_UNIT",
    "detect_rust_wire_units",
    "rust_wire_removal_advice",
    "service_advice",
]

RUST_WIRE_SYSTEMD_UNIT: Final = "wire-daemon.service"
RUST_WIRE_LAUNCHD_LABEL: Final = "sh.slancha.wire.daemon"
_RUST_WIRE_UNITS: Final[Mapping[Manager, str]] = {
    "systemd": RUST_WIRE_SYSTEMD_UNIT,
    "launchd": RUST_WIRE_LAUNCHD_LABEL,
}


def _rust_wire_units(manager: ServiceManager) -> list[Path]:
    return manager.installed_files(_RUST_WIRE_UNITS[manager.kind])


def detect_rust_wire_units(*, platform: str | None = None, home: Path | None = None) -> list[Path]:
    """wire's own supervisor units present for this user (none on a platform with neither
    manager)."""
    try:
        manager = backend(platform, home=home)
    except ServiceError:
        return []
    return _rust_wire_units(manager)


def rust_wire_removal_advice(paths: Sequence[Path], *, uid: int | None = None) -> str:
    """One paragraph telling the user how to remove wire's own supervisor units ("" if none)."""
    if not paths:
        return ""
    manual: list[str] = []
    for path in paths:
        # wire writes a plist only for launchd and a .service only for systemd.
        manager = backend("darwin" if path.suffix == ".plist" else "linux", uid=uid)
        manual.append(manager.removal_command(_RUST_WIRE_UNITS[manager.kind], path))
    where = ", ".join(str(p) for p in paths)
    return (
        f"wire's own supervisor is installed as a service ({where}). It runs "
        "`wire daemon --all-sessions` for the same sessions as wirepool's wire plugin: at best "
        "it starts only to exit as skipped (launchd relaunches it every ~10 s), at worst both "
        "supervisors spawn daemons. Remove it with `wire service uninstall`, or by hand: "
        + " ; ".join(f"`{m}`" for m in manual)
        + "."
    )


def service_advice(manager: ServiceManager) -> list[str]:
    """The removal advice for wire's own units installed in ``manager``, if there are any."""
    advice = rust_wire_removal_advice(_rust_wire_units(manager), uid=manager.host.uid)
    return [advice] if advice else []
