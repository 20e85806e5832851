"""The launchd backend: a per-user agent in ``~/Library/LaunchAgents``, driven by ``launchctl``.

Why each key of the rendered plist
==================================

**KeepAlive = {SuccessfulExit: false}.** ``KeepAlive=true`` (what wire's own agent uses, written
by wire's ``src/service.rs``) relaunches a job whatever its exit status, throttled to every
10 s: a skipped supervisor would be relaunched and skipped again every 10 s, spamming the log.
With ``SuccessfulExit=false`` launchd relaunches only after a non-zero exit or a signal death.
``RunAtLoad`` starts it at load and at login. ``ThrottleInterval=5`` matches systemd's
``RestartSec=5``.

**AbandonProcessGroup = true.** The launchd counterpart of systemd's ``KillMode=process``: when
the job exits, launchd otherwise kills every remaining process in the job's process group, which
would take down children that share it instead of leaving them for adoption.

**ProcessType = Background.** The same as wire's own agent, so the session daemons get exactly
the scheduling they had under it. Output goes to ``StandardOutPath``/``StandardErrorPath``
(``~/Library/Logs/<name>.log`` by default).

Loading is ``launchctl bootout`` (its failure just means "was not loaded") followed by
``launchctl bootstrap``.
"""

from __future__ import annotations

import plistlib
import re
import shlex
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Final
from xml.parsers.expat import ExpatError

from wirepool.service._base import RESTART_SEC, Backend, remove_unit, unit_exists, write_unit
from wirepool.service._results import InstallResult, Manager, ServiceStatus, UninstallResult
from wirepool.service._run import CommandOutcome, call
from wirepool.service._spec import ServiceError, ServiceSpec, launchd_label

__all__ = ["LaunchdManager", "render_launchd_plist"]

_BOOTSTRAP_RETRY_DELAY_S: Final = 1.0
_LAUNCHCTL_FIELD_RE: Final = re.compile(r"^\t(state|pid) = (.*)$", re.MULTILINE)


def render_launchd_plist(spec: ServiceSpec, label: str) -> str:
    """The launchd agent plist for ``spec`` (XML); see the module docstring for each key."""
    plist: dict[str, object] = {
        "Label": label,
        "ProgramArguments": list(spec.argv),
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": RESTART_SEC,
        "AbandonProcessGroup": True,
        "ProcessType": "Background",
    }
    if spec.environment:
        plist["EnvironmentVariables"] = dict(spec.environment)
    if spec.log_path is not None:
        plist["StandardOutPath"] = str(spec.log_path)
        plist["StandardErrorPath"] = str(spec.log_path)
    try:
        return plistlib.dumps(plist, fmt=plistlib.FMT_XML).decode("utf-8")
    except ValueError as exc:  # plistlib refuses control characters in strings
        raise ServiceError(f"cannot write {spec.name} as a launchd plist: {exc}") from exc


def _exec_start_of(text: str) -> str | None:
    try:
        plist = plistlib.loads(text.encode("utf-8"))
    except (plistlib.InvalidFileException, ValueError, ExpatError):
        return None
    args = plist.get("ProgramArguments") if isinstance(plist, dict) else None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return shlex.join(args)
    return None


def _not_loaded(outcome: CommandOutcome) -> bool:
    # launchctl's "no such process" (3) and "could not find service" (113): nothing to stop.
    text = f"{outcome.stdout}\n{outcome.stderr}".lower()
    return outcome.returncode in (3, 113) or "no such process" in text or "could not find" in text


class LaunchdManager(Backend):
    """launchd's per-user GUI domain (``gui/<uid>``) for one :class:`Host`."""

    kind: ClassVar[Manager] = "launchd"
    platform_prefix: ClassVar[str] = "darwin"

    def _target(self, label: str) -> str:
        return f"gui/{self.host.uid}/{label}"

    def unit_path(self, name: str) -> Path:
        return self.host.home / "Library" / "LaunchAgents" / f"{launchd_label(name)}.plist"

    def log_path(self, name: str) -> Path | None:
        return self.host.home / "Library" / "Logs" / f"{name}.log"

    def render(self, spec: ServiceSpec) -> str:
        return render_launchd_plist(spec, spec.label)

    def install(self, spec: ServiceSpec, *, load: bool = True) -> InstallResult:
        written = write_unit(self.unit_path(spec.name), self.render(spec), spec.log_path)
        bootout = ("launchctl", "bootout", self._target(spec.label))
        bootstrap = ("launchctl", "bootstrap", f"gui/{self.host.uid}", str(written.path))
        result = self._written(
            spec,
            written,
            [shlex.join(bootout) + " || true", shlex.join(bootstrap)],
            [] if spec.log_path is None else [f"logs: {spec.log_path}"],
        )
        if not load:
            return result
        outcomes = [call(self.host.runner, bootout)]  # fails when it was not loaded: fine
        outcome = call(self.host.runner, bootstrap)
        outcomes.append(outcome)
        if not outcome.ok and outcomes[0].ok:
            # bootout returns before launchd has fully removed the job; a bootstrap right after
            # it can fail with "5: Input/output error". One retry after a pause covers that race.
            time.sleep(_BOOTSTRAP_RETRY_DELAY_S)
            outcome = call(self.host.runner, bootstrap)
            outcomes.append(outcome)
        if outcome.ok:
            return result.after_load(outcomes, None, ())
        return result.after_load(outcomes, outcome, (shlex.join(bootstrap),))

    def uninstall(self, name: str) -> UninstallResult:
        path = self.unit_path(name)
        existed = unit_exists(path)
        bootout = ("launchctl", "bootout", self._target(launchd_label(name)))
        outcome = call(self.host.runner, bootout)
        error: str | None = None
        manual: tuple[str, ...] = ()
        if existed and not outcome.ok and not _not_loaded(outcome):
            error = outcome.failure
            manual = (shlex.join(bootout),)
        if existed:
            remove_unit(path)
        return UninstallResult(name, self.kind, path, existed, (outcome,), error, manual)

    def status(self, name: str) -> ServiceStatus:
        """``launchctl print gui/<uid>/<label>``: its ``state`` and ``pid`` lines."""
        base = self._file_status(name, _exec_start_of)
        outcome = call(self.host.runner, ("launchctl", "print", self._target(launchd_label(name))))
        if not outcome.ok:
            if _not_loaded(outcome):
                return replace(base, loaded=False, active=False)
            return replace(base, error=outcome.reason)
        found = {key: value.strip() for key, value in _LAUNCHCTL_FIELD_RE.findall(outcome.stdout)}
        state = found.get("state")
        pid_text = found.get("pid", "")
        return replace(
            base,
            loaded=True,
            active=state == "running",
            state=state,
            pid=int(pid_text) if pid_text.isdigit() else None,
        )

    def installed_files(self, unit: str) -> list[Path]:
        path = self.host.home / "Library" / "LaunchAgents" / f"{unit}.plist"
        return [path] if unit_exists(path) else []

    def removal_command(self, unit: str, path: Path) -> str:
        return (
            f"{shlex.join(('launchctl', 'bootout', self._target(unit)))}; "
            f"rm {shlex.quote(str(path))}"
        )
