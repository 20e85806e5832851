"""What ``install``, ``uninstall`` and ``status`` report, each with its one line for the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from wirepool.service._run import CommandOutcome

__all__ = ["InstallResult", "Manager", "ServiceStatus", "UninstallResult"]

Manager = Literal["systemd", "launchd"]


@dataclass(frozen=True)
class InstallResult:
    """What ``install`` did. The file is always written when this is returned."""

    name: str
    manager: Manager
    path: Path
    changed: bool
    load_attempted: bool
    loaded: bool
    commands: tuple[CommandOutcome, ...] = ()
    error: str | None = None
    manual_commands: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.loaded or not self.load_attempted

    def after_load(
        self,
        outcomes: Sequence[CommandOutcome],
        failure: CommandOutcome | None,
        manual: tuple[str, ...],
    ) -> InstallResult:
        """This result once the manager was asked to load the unit: ``failure`` is the command
        that failed (None: loaded), ``manual`` what is still to run by hand."""
        return replace(
            self,
            load_attempted=True,
            loaded=failure is None,
            commands=tuple(outcomes),
            error=None if failure is None else failure.failure,
            manual_commands=manual,
        )

    def summary(self) -> str:
        """One line for the CLI."""
        if self.loaded:
            return f"installed {self.path} and started it under {self.manager}"
        manual = " && ".join(self.manual_commands)
        if not self.load_attempted:
            return f"wrote {self.path}; load it with: {manual}"
        return f"wrote {self.path} but could not load it ({self.error}); load it by hand: {manual}"


@dataclass(frozen=True)
class UninstallResult:
    """What ``uninstall`` did. ``removed`` is False when no unit file was there."""

    name: str
    manager: Manager
    path: Path
    removed: bool
    commands: tuple[CommandOutcome, ...] = ()
    error: str | None = None
    manual_commands: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        """One line for the CLI."""
        what = f"removed {self.path}" if self.removed else f"{self.path} was not installed"
        if self.error is None:
            return what
        manual = " && ".join(self.manual_commands)
        return f"{what}, but {self.manager} reported: {self.error}; finish by hand: {manual}"


@dataclass(frozen=True)
class ServiceStatus:
    """The state of an installed (or not) service. ``None`` means "could not ask the manager"."""

    name: str
    manager: Manager
    path: Path
    installed: bool
    loaded: bool | None = None
    active: bool | None = None
    enabled: bool | None = None
    state: str | None = None
    pid: int | None = None
    exec_start: str | None = None
    error: str | None = None

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.installed and not self.loaded:
            head = f"{self.name}: not installed ({self.path} is absent)"
        else:
            head = f"{self.name}: {'installed' if self.installed else 'file missing'}"
            if self.error is not None:
                head += f", {self.manager} state unknown ({self.error})"
            elif not self.loaded:
                head += f", not loaded in {self.manager}"
            else:
                head += f", {self.state or 'loaded'}"
                if self.pid is not None:
                    head += f" (pid {self.pid})"
        return head
