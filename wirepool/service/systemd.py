"""The systemd backend: a user unit in ``~/.config/systemd/user``, driven by ``systemctl --user``.

Why each line of the rendered unit
==================================

**Restart=on-failure, not Restart=always.** The supervisor exits 0 when it is "skipped"
(another supervisor already holds the state directory's lock) and when it is asked to stop.
``Restart=always`` would restart a skipped supervisor every ``RestartSec`` forever, each time
only to be skipped again. ``on-failure`` restarts after a non-zero exit, an unclean signal
(SIGKILL from the OOM killer, SIGSEGV, SIGABRT), a core dump or a timeout, which are exactly the
cases where a fresh supervisor helps. A clean ``kill`` (SIGTERM/SIGINT/SIGHUP/SIGPIPE) also
counts as success, so an operator who kills it by hand is obeyed. wire's own unit (written by
wire's ``src/service.rs``) makes the same choice.

**RestartSec=5.** The same pace as wire's own unit. It also keeps a crash loop under systemd's
default start limit (5 starts within 10 s): at one start per 5 s the limit can never trigger, so
the unit keeps retrying slowly instead of being parked in ``failed`` (the "never give up, slow
down" behaviour operators ask every supervisor for). systemd's geometric ``RestartSteps=`` needs
v254, so it is left out to keep older hosts free of unknown-key warnings.

**KillMode=process.** By default (``control-group``) systemd kills *every* process in the unit's
cgroup when the unit stops or restarts, and the per-session daemons the supervisor starts live in
that cgroup whatever their process group. wirepool deliberately leaves those long-lived
children running when the supervisor exits, so that the next supervisor *adopts* them from its
pidfiles instead of killing and respawning every session (wire's own supervisor,
``src/daemon_supervisor.rs``, never kills a daemon it did not start either).
``KillMode=process`` makes systemd signal only the supervisor itself. The side effect is
deliberate: ``systemctl --user stop`` (and ``wirepool service uninstall``) stop the supervisor
but leave the session daemons running; stop those with wirepool itself. When the whole user
manager goes away (logout without linger) the user's processes are cleaned up regardless.

**After=default.target, not network-online.target.** A *user* manager cannot see system units,
so ``network-online.target`` does not exist there: an ``After=``/``Wants=
network-online.target`` in a user unit (wire's has one) is a silent no-op. Ordering after
``default.target`` starts the supervisor once the rest of the login session's units are up. It
is not an ordering cycle with ``WantedBy=default.target``: a target adds its implicit ``After=``
on wanted units only when the unit does not already order itself after the target (checked with
``systemd-analyze verify`` in the tests). The supervisor and its children cope with a network
that comes up later.

**Type=simple.** ``wirepool run`` stays in the foreground and does not speak ``sd_notify``.

Output goes to journald. Loading is ``daemon-reload``, ``try-restart`` when an existing unit
changed (so new options take effect), then ``enable --now``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, Final

from wirepool.service._base import RESTART_SEC, Backend, remove_unit, unit_exists, write_unit
from wirepool.service._results import InstallResult, Manager, ServiceStatus, UninstallResult
from wirepool.service._run import call, run_sequence
from wirepool.service._spec import ServiceError, ServiceSpec, has_control

__all__ = ["SystemdManager", "render_systemd_unit", "systemd_exec_start"]

_SYSTEMCTL: Final = ("systemctl", "--user")
_STATUS_PROPERTIES: Final = "LoadState,ActiveState,SubState,MainPID,UnitFileState"

# Words made only of these need no quotes in ExecStart ('%' and '$' are doubled regardless).
_SAFE_WORD_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=:,./@%$"
)
_C_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------


def _systemd_escape(text: str, *, dollar: bool) -> str:
    out: list[str] = []
    for ch in text:
        if ch == "%":
            out.append("%%")  # specifier expansion happens on every word, quoted or not
        elif ch == "$" and dollar:
            out.append("$$")  # environment expansion happens at exec time, quoted or not
        elif ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif has_control(ch):
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _systemd_word(word: str, *, dollar: bool = True) -> str:
    escaped = _systemd_escape(word, dollar=dollar)
    if word and all(ch in _SAFE_WORD_CHARS for ch in word):
        return escaped
    return f'"{escaped}"'


def systemd_exec_start(argv: Sequence[str]) -> str:
    """Quote ``argv`` as the value of ``ExecStart=`` under systemd's own rules.

    Each word is unquoted and C-unescaped, then ``%`` specifiers are expanded, then, at exec
    time, ``$VAR``/``${VAR}`` are substituted. So: words with anything but safe characters are
    double-quoted with ``\\\\``, ``\\"`` and C escapes; ``%`` becomes ``%%`` everywhere; ``$``
    becomes ``$$`` in the arguments. The executable path gets specifier expansion but no
    variable expansion, and systemd refuses quotes, backslashes and control characters in it
    ("Executable name contains special characters"), so those, and ``$`` (which systemd would
    still expand in the argv[0] it passes), are refused here with a clear message instead.
    """
    if not argv:
        raise ServiceError("a service needs a command: argv is empty")
    executable = argv[0]
    bad = sorted({ch for ch in executable if ch in "\"'\\$" or has_control(ch)})
    if bad:
        raise ServiceError(
            f"systemd cannot start an executable whose path contains {''.join(bad)!r}: "
            f"{executable!r}; move it (or the virtualenv) to a plain path"
        )
    if not os.path.isabs(executable):
        raise ServiceError(f"the service executable must be an absolute path: {executable!r}")
    words = [_systemd_word(executable, dollar=False)]
    words.extend(_systemd_word(arg) for arg in argv[1:])
    return " ".join(words)


def _systemd_plain_value(text: str) -> str:
    """A free-text value (Description=): one line, specifiers escaped, no line continuation."""
    flat = "".join(" " if has_control(ch) else ch for ch in text).strip().rstrip("\\").strip()
    return flat.replace("%", "%%")


def render_systemd_unit(spec: ServiceSpec) -> str:
    """The systemd user unit for ``spec``; see the module docstring for why each line is there."""
    lines = [
        "# Written by `wirepool service install`; reinstalling overwrites it.",
        "[Unit]",
        f"Description={_systemd_plain_value(spec.description) or spec.name}",
        "After=default.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={systemd_exec_start(spec.argv)}",
    ]
    lines.extend(
        f'Environment="{_systemd_escape(f"{key}={value}", dollar=False)}"'
        for key, value in spec.environment.items()
    )
    lines += [
        "Restart=on-failure",
        f"RestartSec={RESTART_SEC}",
        "KillMode=process",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


def _exec_start_of(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return line[len("ExecStart=") :]
    return None


# --------------------------------------------------------------------------------------------
# the manager
# --------------------------------------------------------------------------------------------


class SystemdManager(Backend):
    """systemd's user instance (``systemctl --user``) for one :class:`Host`."""

    kind: ClassVar[Manager] = "systemd"
    platform_prefix: ClassVar[str] = "linux"

    def unit_path(self, name: str) -> Path:
        return self.host.config_home / "systemd" / "user" / f"{name}.service"

    def log_path(self, name: str) -> Path | None:
        return None  # journald keeps it: journalctl --user -u <name>.service

    def render(self, spec: ServiceSpec) -> str:
        return render_systemd_unit(spec)

    def _run(self, *args: str) -> tuple[str, ...]:
        return (*_SYSTEMCTL, *args)

    def install(self, spec: ServiceSpec, *, load: bool = True) -> InstallResult:
        written = write_unit(self.unit_path(spec.name), self.render(spec), spec.log_path)
        commands = [self._run("daemon-reload")]
        if written.replaced and written.changed:
            # enable --now does not restart a running unit; try-restart applies the new
            # ExecStart to a running one (its children survive: KillMode=process).
            commands.append(self._run("try-restart", spec.unit_name))
        commands.append(self._run("enable", "--now", spec.unit_name))
        notes = [f"logs: journalctl --user -u {spec.unit_name}"]
        note = self._linger_note()
        if note is not None:
            notes.append(note)
        result = self._written(spec, written, [shlex.join(c) for c in commands], notes)
        if not load:
            return result
        return result.after_load(*run_sequence(self.host.runner, commands))

    def _linger_note(self) -> str | None:
        try:
            import pwd

            user = pwd.getpwuid(self.host.uid).pw_name
        except (ImportError, KeyError):
            return None
        if (self.host.linger_dir / user).exists():
            return None
        return (
            f"linger is off for {user}: the service runs only while you are logged in; "
            f"run `loginctl enable-linger {user}` to keep it running without a session"
        )

    def uninstall(self, name: str) -> UninstallResult:
        path = self.unit_path(name)
        existed = unit_exists(path)
        unit = f"{name}.service"
        error: str | None = None
        manual: tuple[str, ...] = ()
        if existed:
            outcome = call(self.host.runner, self._run("disable", "--now", unit))
            if not outcome.ok:
                error = outcome.failure
                manual = (
                    shlex.join(self._run("stop", unit)),
                    shlex.join(self._run("daemon-reload")),
                )
        else:  # a unit whose file was deleted by hand may still be running
            outcome = call(self.host.runner, self._run("stop", unit))
        outcomes = [outcome]
        # left behind when disable could not reach the manager
        with contextlib.suppress(OSError):
            wants = path.parent / "default.target.wants" / path.name
            if wants.is_symlink():
                wants.unlink()
        if existed:
            remove_unit(path)
            reload = call(self.host.runner, self._run("daemon-reload"))
            outcomes.append(reload)
            if not reload.ok and error is None:
                error = reload.failure
                manual = (shlex.join(reload.argv),)
        return UninstallResult(name, self.kind, path, existed, tuple(outcomes), error, manual)

    def status(self, name: str) -> ServiceStatus:
        """``systemctl --user show``: LoadState, ActiveState, SubState, MainPID, UnitFileState."""
        base = self._file_status(name, _exec_start_of)
        argv = self._run("show", f"{name}.service", f"--property={_STATUS_PROPERTIES}")
        outcome = call(self.host.runner, argv)
        if not outcome.ok:
            return replace(base, error=outcome.reason)
        fields = dict(line.split("=", 1) for line in outcome.stdout.splitlines() if "=" in line)
        active_state = fields.get("ActiveState", "")
        sub_state = fields.get("SubState", "")
        pid_text = fields.get("MainPID", "0")
        return replace(
            base,
            loaded=fields.get("LoadState", "") == "loaded",
            active=active_state == "active",
            enabled=fields.get("UnitFileState") == "enabled" if "UnitFileState" in fields else None,
            state=f"{active_state} ({sub_state})" if sub_state else active_state or None,
            pid=int(pid_text) if pid_text.isdigit() and int(pid_text) > 0 else None,
        )

    def installed_files(self, unit: str) -> list[Path]:
        # Where `systemctl --user` reads it from, and ~/.config even when $XDG_CONFIG_HOME
        # points elsewhere: installers that ignore XDG write it there.
        found: list[Path] = []
        for base in (self.host.home / ".config", self.host.config_home):
            candidate = base / "systemd" / "user" / unit
            if candidate not in found and unit_exists(candidate):
                found.append(candidate)
        return found

    def removal_command(self, unit: str, path: Path) -> str:
        return (
            f"{shlex.join(self._run('disable', '--now', unit))}; rm {shlex.quote(str(path))}; "
            f"{shlex.join(self._run('daemon-reload'))}"
        )
