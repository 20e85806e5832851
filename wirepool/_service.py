"""Install ``wirepool run PLUGIN …`` as a per-user OS service (systemd user unit or launchd agent).

``wirepool service install|uninstall|status PLUGIN`` is a thin CLI over this module. Everything
here is either pure (rendering, paths) or takes its side effects as parameters (``home``,
``platform``, ``uid`` and a ``runner`` standing in for ``systemctl``/``launchctl``), so the tests
never touch the real home directory or the real service manager.

Why each choice in the rendered files
=====================================

**Restart=on-failure, not Restart=always (systemd).** The supervisor exits 0 when it is
"skipped" (another supervisor already holds the state directory's lock) and when it is asked to
stop. ``Restart=always`` would restart a skipped supervisor every ``RestartSec`` forever, each
time only to be skipped again. ``on-failure`` restarts after a non-zero exit, an unclean signal
(SIGKILL from the OOM killer, SIGSEGV, SIGABRT), a core dump or a timeout, which are exactly the
cases where a fresh supervisor helps. A clean ``kill`` (SIGTERM/SIGINT/SIGHUP/SIGPIPE) also
counts as success, so an operator who kills it by hand is obeyed. wire's own unit makes the same
choice (wire-layout §5.7).

**RestartSec=5.** The same pace as wire's own unit. It also keeps a crash loop under systemd's
default start limit (5 starts within 10 s): at one start per 5 s the limit can never trigger, so
the unit keeps retrying slowly instead of being parked in ``failed`` (the "never give up, slow
down" behaviour operators ask every supervisor for; see notes-prior-art §3.4). systemd's
geometric ``RestartSteps=`` needs v254, so it is left out to keep older hosts free of
unknown-key warnings.

**KillMode=process.** By default (``control-group``) systemd kills *every* process in the unit's
cgroup when the unit stops or restarts, and the per-session daemons the supervisor starts live in
that cgroup whatever their process group. wirepool deliberately leaves those long-lived
children running when the supervisor exits, so that the next supervisor *adopts* them from its
pidfiles instead of killing and respawning every session (the wire supervisor never kills live
daemons either: wire-layout §5.2 and #198). ``KillMode=process`` makes systemd signal only the
supervisor itself. The side effect is deliberate: ``systemctl --user stop`` (and
``wirepool service uninstall``) stop the supervisor but leave the session daemons running; stop
those with wirepool itself. When the whole user manager goes away (logout without linger) the
user's processes are cleaned up regardless.

**After=default.target, not network-online.target.** A *user* manager cannot see system units,
so ``network-online.target`` does not exist there: wire's own ``After=``/``Wants=
network-online.target`` is a silent no-op. Ordering after ``default.target`` starts the
supervisor once the rest of the login session's units are up. It is not an ordering cycle with
``WantedBy=default.target``: a target adds its implicit ``After=`` on wanted units only when the
unit does not already order itself after the target (checked with ``systemd-analyze verify`` in
the tests). The supervisor and its children cope with a network that comes up later.

**Type=simple.** ``wirepool run`` stays in the foreground and does not speak ``sd_notify``.

**Environment= is pinned.** A user manager (and launchd) starts services with a minimal PATH
(``/usr/local/bin:/usr/bin:/bin``, or ``/usr/bin:/bin:/usr/sbin:/sbin`` under launchd) that
misses ``~/.cargo/bin`` and friends, where ``wire`` usually lives, so :func:`build_spec` pins
the installing shell's ``PATH``.

**The executable is never resolved through symlinks.** ``sys.executable`` of a virtualenv is a
symlink, and running it *as that path* is what activates the virtualenv. Only a trailing
`` (deleted)`` is stripped: Linux appends it to ``/proc/<pid>/exe`` after the binary was
replaced by an upgrade, and wire once wrote such a path into its units, which then flapped
forever (wire #274/#276).

**launchd: KeepAlive = {SuccessfulExit: false}.** ``KeepAlive=true`` (what wire uses) relaunches
a job whatever its exit status, throttled to every 10 s: a skipped supervisor would be relaunched
and skipped again every 10 s, spamming the log (wire-layout §5.7). With ``SuccessfulExit=false``
launchd relaunches only after a non-zero exit or a signal death. ``RunAtLoad`` starts it at load
and at login. ``ThrottleInterval=5`` matches systemd's ``RestartSec=5``.

**launchd: AbandonProcessGroup = true.** The launchd counterpart of ``KillMode=process``: when
the job exits, launchd otherwise kills every remaining process in the job's process group, which
would take down children that share it instead of leaving them for adoption.

**launchd: ProcessType = Background.** The same as wire's own agent, so the session daemons get
exactly the scheduling they had under it. Output goes to ``StandardOutPath``/
``StandardErrorPath`` (``~/Library/Logs/<name>.log`` by default); on Linux it goes to journald.

Loading and failure reporting
=============================

:func:`install` writes the file atomically (temp file in the same directory, fsync,
``os.replace``), then loads it: ``systemctl --user daemon-reload``, ``try-restart`` when an
existing unit changed (so new options take effect), ``enable --now``; or, on macOS, ``launchctl
bootout`` (its failure just means "was not loaded") followed by ``launchctl bootstrap``. A
failing manager (no user bus in a container: "Failed to connect to bus", a missing
``systemctl``, a timeout) never raises: the file stays written and the result carries the error
and the exact commands to run by hand. :class:`ServiceError` is raised only for things the
caller must fix first: an unsupported platform, an invalid spec, an unwritable file.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import re
import shlex
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal
from xml.parsers.expat import ExpatError

__all__ = [
    "DELETED_SUFFIX",
    "LAUNCHD_LABEL_PREFIX",
    "RUST_WIRE_LAUNCHD_LABEL",
    "RUST_WIRE_SYSTEMD_UNIT",
    "CommandOutcome",
    "InstallResult",
    "Manager",
    "Runner",
    "ServiceError",
    "ServiceSpec",
    "ServiceStatus",
    "UninstallResult",
    "build_spec",
    "default_runner",
    "detect_rust_wire_units",
    "install",
    "launchd_label",
    "manager_for",
    "render_launchd_plist",
    "render_systemd_unit",
    "rust_wire_removal_advice",
    "service_name",
    "status",
    "strip_deleted_suffix",
    "systemd_exec_start",
    "uninstall",
    "unit_path",
]

Manager = Literal["systemd", "launchd"]
#: Runs one service-manager command; :func:`default_runner` wraps ``subprocess.run``.
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

#: Linux appends this to ``/proc/<pid>/exe`` once the running binary was replaced (wire #274).
DELETED_SUFFIX: Final = " (deleted)"
#: launchd labels are reverse-DNS; the service name is appended: ``dev.wirepool.wirepool-wire``.
LAUNCHD_LABEL_PREFIX: Final = "dev.wirepool"
#: wire's own supervisor units (wire-layout §5.7), which compete with the ``wire`` plugin.
RUST_WIRE_SYSTEMD_UNIT: Final = "wire-daemon.service"
RUST_WIRE_LAUNCHD_LABEL: Final = "sh.slancha.wire.daemon"

RESTART_SEC: Final = 5
_DEFAULT_LINGER_DIR: Final = Path("/var/lib/systemd/linger")
_RUNNER_TIMEOUT_S: Final = 60.0
_BOOTSTRAP_RETRY_DELAY_S: Final = 1.0
_SYSTEMCTL: Final = ("systemctl", "--user")

# Plugin and service names become file names, unit names and launchd labels: keep them to a
# set all three accept, with no '@' (a systemd template) and no path separators.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words made only of these need no quotes in ExecStart ('%' and '$' are doubled regardless).
_SAFE_WORD_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=:,./@%$"
)
_C_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


class ServiceError(RuntimeError):
    """The service cannot be rendered or written: unsupported platform, invalid spec, I/O error.

    A service manager that cannot be reached is *not* a ``ServiceError``; it is reported in the
    result of :func:`install`, :func:`uninstall` or :func:`status`.
    """


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def strip_deleted_suffix(path: str) -> str:
    """Drop a trailing `` (deleted)`` that Linux adds to the exe link of a replaced binary."""
    while path.endswith(DELETED_SUFFIX):
        path = path[: -len(DELETED_SUFFIX)]
    return path


def _check_name(name: str, what: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ServiceError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class ServiceSpec:
    """What to run as a service. Construct it with :func:`build_spec` for ``wirepool run``.

    ``argv[0]`` must be an absolute path; a trailing `` (deleted)`` is stripped from it.
    ``environment`` is copied into a read-only mapping.
    """

    name: str
    argv: tuple[str, ...]
    description: str
    environment: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    def __post_init__(self) -> None:
        _check_name(self.name, "service name")
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
            if _has_control(value):
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
    return f"wirepool-{_check_name(plugin, 'plugin name')}"


def launchd_label(name: str) -> str:
    """The launchd label for a service name: ``dev.wirepool.<name>``."""
    return f"{LAUNCHD_LABEL_PREFIX}.{_check_name(name, 'service name')}"


def manager_for(platform: str) -> Manager:
    """Which service manager a ``sys.platform`` value uses; ServiceError when there is none."""
    if platform.startswith("linux"):
        return "systemd"
    if platform == "darwin":
        return "launchd"
    raise ServiceError(
        f"wirepool service supports Linux (systemd) and macOS (launchd), not {platform!r}; "
        "run `wirepool run` under your platform's service manager instead"
    )


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

    ``environment`` defaults to the current ``PATH`` (so ``wire`` and friends are found) plus
    ``PYTHONUNBUFFERED=1`` (so output reaches journald or the log file as it happens). On macOS
    the log goes to ``~/Library/Logs/<name>.log``.
    """
    platform = sys.platform if platform is None else platform
    manager = manager_for(platform)
    name = service_name(plugin)
    executable = python if python is not None else sys.executable
    if not executable:
        raise ServiceError("cannot tell which Python interpreter to run (sys.executable is empty)")
    if environment is None:
        environment = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONUNBUFFERED": "1"}
    log_path = None
    if manager == "launchd":
        log_path = (Path.home() if home is None else home) / "Library" / "Logs" / f"{name}.log"
    return ServiceSpec(
        name=name,
        argv=(executable, "-m", "wirepool", "run", plugin, *options),
        description=f"wirepool supervisor for {plugin} sessions",
        environment=environment,
        log_path=log_path,
    )


# --------------------------------------------------------------------------------------------
# systemd rendering
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
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
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
    bad = sorted({ch for ch in executable if ch in "\"'\\$" or _has_control(ch)})
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
    flat = "".join(" " if _has_control(ch) else ch for ch in text).strip().rstrip("\\").strip()
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


# --------------------------------------------------------------------------------------------
# launchd rendering
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------


def _name_of(spec_or_name: ServiceSpec | str) -> str:
    if isinstance(spec_or_name, ServiceSpec):
        return spec_or_name.name
    return _check_name(spec_or_name, "service name")


def _homes(home: Path | None) -> tuple[Path, Path]:
    """(home, XDG config home). ``$XDG_CONFIG_HOME`` is honoured only for the real home."""
    if home is not None:
        return home, home / ".config"
    real = Path.home()
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    return real, Path(xdg) if os.path.isabs(xdg) else real / ".config"


def unit_path(
    spec: ServiceSpec | str, *, platform: str, home: Path, config_home: Path | None = None
) -> Path:
    """Where the unit lives: ``~/.config/systemd/user/<name>.service`` or
    ``~/Library/LaunchAgents/<label>.plist``. ``config_home`` replaces ``~/.config``."""
    name = _name_of(spec)
    if manager_for(platform) == "systemd":
        base = config_home if config_home is not None else home / ".config"
        return base / "systemd" / "user" / f"{name}.service"
    return home / "Library" / "LaunchAgents" / f"{launchd_label(name)}.plist"


def _wants_link(path: Path) -> Path:
    return path.parent / "default.target.wants" / path.name


# --------------------------------------------------------------------------------------------
# running the service manager
# --------------------------------------------------------------------------------------------


def default_runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a manager command, capturing text output, never raising on a non-zero exit."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=_RUNNER_TIMEOUT_S,
    )


@dataclass(frozen=True)
class CommandOutcome:
    """One service-manager command and how it ended (127: not found, 124: timed out)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command(self) -> str:
        """The command as a shell line, for messages."""
        return shlex.join(self.argv)

    @property
    def reason(self) -> str:
        """The first line the command printed about its failure."""
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
        return f"exit status {self.returncode}"


def _call(runner: Runner, argv: Sequence[str]) -> CommandOutcome:
    args = tuple(argv)
    try:
        done = runner(args)
    except FileNotFoundError:
        return CommandOutcome(args, 127, "", f"{args[0]}: command not found")
    except subprocess.TimeoutExpired as exc:
        return CommandOutcome(args, 124, "", f"{args[0]} timed out after {exc.timeout:g} s")
    except OSError as exc:
        return CommandOutcome(args, 126, "", f"{args[0]}: {exc}")
    return CommandOutcome(args, done.returncode, done.stdout or "", done.stderr or "")


def _uid(uid: int | None) -> int:
    return os.getuid() if uid is None else uid


# --------------------------------------------------------------------------------------------
# install / uninstall / status
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallResult:
    """What :func:`install` did. The file is always written when this is returned."""

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
    """What :func:`uninstall` did. ``removed`` is False when no unit file was there."""

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


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable; not all FSes allow it
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc}") from exc


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceError(f"cannot read {path}: {exc}") from exc


def _linger_note(uid: int, linger_dir: Path) -> str | None:
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return None
    if (linger_dir / user).exists():
        return None
    return (
        f"linger is off for {user}: the service runs only while you are logged in; "
        f"run `loginctl enable-linger {user}` to keep it running without a session"
    )


def _run_sequence(
    runner: Runner, commands: Sequence[Sequence[str]]
) -> tuple[list[CommandOutcome], CommandOutcome | None, tuple[str, ...]]:
    """Run until one fails; return (outcomes, the failure, the commands still to run by hand)."""
    outcomes: list[CommandOutcome] = []
    for index, argv in enumerate(commands):
        outcome = _call(runner, argv)
        outcomes.append(outcome)
        if not outcome.ok:
            return outcomes, outcome, tuple(shlex.join(c) for c in commands[index:])
    return outcomes, None, ()


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
    platform = sys.platform if platform is None else platform
    manager = manager_for(platform)
    home, config_home = _homes(home)
    path = unit_path(spec, platform=platform, home=home, config_home=config_home)
    if manager == "systemd":
        content = render_systemd_unit(spec)
    else:
        content = render_launchd_plist(spec, spec.label)
    previous = _read_text(path)
    changed = previous != content
    if spec.log_path is not None:
        try:
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceError(
                f"cannot create the log directory for {spec.log_path}: {exc}"
            ) from exc
    _write_atomic(path, content.encode("utf-8"))

    notes: list[str] = []
    if manager == "systemd":
        commands: list[tuple[str, ...]] = [(*_SYSTEMCTL, "daemon-reload")]
        if previous is not None and changed:
            # enable --now does not restart a running unit; try-restart applies the new
            # ExecStart to a running one (its children survive: KillMode=process).
            commands.append((*_SYSTEMCTL, "try-restart", spec.unit_name))
        commands.append((*_SYSTEMCTL, "enable", "--now", spec.unit_name))
        notes.append(f"logs: journalctl --user -u {spec.unit_name}")
        note = _linger_note(_uid(uid), _DEFAULT_LINGER_DIR if linger_dir is None else linger_dir)
        if note is not None:
            notes.append(note)
        if not load:
            manual = tuple(shlex.join(c) for c in commands)
            return InstallResult(
                name=spec.name,
                manager=manager,
                path=path,
                changed=changed,
                load_attempted=False,
                loaded=False,
                manual_commands=manual,
                notes=tuple(notes),
            )
        outcomes, failure, manual = _run_sequence(runner, commands)
        return InstallResult(
            name=spec.name,
            manager=manager,
            path=path,
            changed=changed,
            load_attempted=True,
            loaded=failure is None,
            commands=tuple(outcomes),
            error=None if failure is None else f"`{failure.command}` failed: {failure.reason}",
            manual_commands=manual,
            notes=tuple(notes),
        )

    domain = f"gui/{_uid(uid)}"
    bootout = ("launchctl", "bootout", f"{domain}/{spec.label}")
    bootstrap = ("launchctl", "bootstrap", domain, str(path))
    if spec.log_path is not None:
        notes.append(f"logs: {spec.log_path}")
    if not load:
        manual = (shlex.join(bootout) + " || true", shlex.join(bootstrap))
        return InstallResult(
            name=spec.name,
            manager=manager,
            path=path,
            changed=changed,
            load_attempted=False,
            loaded=False,
            manual_commands=manual,
            notes=tuple(notes),
        )
    outcomes = [_call(runner, bootout)]  # fails when it was not loaded: that is fine
    outcome = _call(runner, bootstrap)
    outcomes.append(outcome)
    if not outcome.ok and outcomes[0].ok:
        # bootout returns before launchd has fully removed the job; a bootstrap right after it
        # can fail with "5: Input/output error". One retry after a pause covers that race.
        time.sleep(_BOOTSTRAP_RETRY_DELAY_S)
        outcome = _call(runner, bootstrap)
        outcomes.append(outcome)
    return InstallResult(
        name=spec.name,
        manager=manager,
        path=path,
        changed=changed,
        load_attempted=True,
        loaded=outcome.ok,
        commands=tuple(outcomes),
        error=None if outcome.ok else f"`{outcome.command}` failed: {outcome.reason}",
        manual_commands=() if outcome.ok else (shlex.join(bootstrap),),
        notes=tuple(notes),
    )


def _launchd_not_loaded(outcome: CommandOutcome) -> bool:
    text = f"{outcome.stdout}\n{outcome.stderr}".lower()
    return outcome.returncode in (3, 113) or "no such process" in text or "could not find" in text


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
    platform = sys.platform if platform is None else platform
    manager = manager_for(platform)
    name = _name_of(spec_or_name)
    home, config_home = _homes(home)
    path = unit_path(name, platform=platform, home=home, config_home=config_home)
    existed = path.exists() or path.is_symlink()
    outcomes: list[CommandOutcome] = []
    error: str | None = None
    manual: tuple[str, ...] = ()

    if manager == "systemd":
        unit = f"{name}.service"
        if existed:
            outcome = _call(runner, (*_SYSTEMCTL, "disable", "--now", unit))
            if not outcome.ok:
                error = f"`{outcome.command}` failed: {outcome.reason}"
                manual = (
                    shlex.join((*_SYSTEMCTL, "stop", unit)),
                    shlex.join((*_SYSTEMCTL, "daemon-reload")),
                )
        else:  # a unit whose file was deleted by hand may still be running
            outcome = _call(runner, (*_SYSTEMCTL, "stop", unit))
        outcomes.append(outcome)
        link = _wants_link(path)  # left behind when disable could not reach the manager
        if link.is_symlink():
            with contextlib.suppress(OSError):
                link.unlink()
    else:
        label = launchd_label(name)
        bootout = ("launchctl", "bootout", f"gui/{_uid(uid)}/{label}")
        outcome = _call(runner, bootout)
        outcomes.append(outcome)
        if existed and not outcome.ok and not _launchd_not_loaded(outcome):
            error = f"`{outcome.command}` failed: {outcome.reason}"
            manual = (shlex.join(bootout),)

    if existed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ServiceError(f"cannot remove {path}: {exc}") from exc
        if manager == "systemd":
            reload = _call(runner, (*_SYSTEMCTL, "daemon-reload"))
            outcomes.append(reload)
            if not reload.ok and error is None:
                error = f"`{reload.command}` failed: {reload.reason}"
                manual = (shlex.join(reload.argv),)
    return UninstallResult(name, manager, path, existed, tuple(outcomes), error, manual)


_LAUNCHCTL_FIELD_RE: Final = re.compile(r"^\t(state|pid) = (.*)$", re.MULTILINE)


def _exec_start_of(text: str | None, manager: Manager) -> str | None:
    if text is None:
        return None
    if manager == "systemd":
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                return line[len("ExecStart=") :]
        return None
    try:
        plist = plistlib.loads(text.encode("utf-8"))
    except (plistlib.InvalidFileException, ValueError, ExpatError):
        return None
    args = plist.get("ProgramArguments") if isinstance(plist, dict) else None
    if isinstance(args, list) and all(isinstance(a, str) for a in args):
        return shlex.join(args)
    return None


def status(
    spec_or_name: ServiceSpec | str,
    *,
    platform: str | None = None,
    home: Path | None = None,
    runner: Runner = default_runner,
    uid: int | None = None,
) -> ServiceStatus:
    """Whether the unit file exists, what it runs, and what the manager says about it.

    systemd: ``systemctl --user show`` (LoadState, ActiveState, SubState, MainPID,
    UnitFileState). launchd: ``launchctl print gui/<uid>/<label>``.
    """
    platform = sys.platform if platform is None else platform
    manager = manager_for(platform)
    name = _name_of(spec_or_name)
    home, config_home = _homes(home)
    path = unit_path(name, platform=platform, home=home, config_home=config_home)
    text = _read_text(path)
    base = ServiceStatus(
        name=name,
        manager=manager,
        path=path,
        installed=text is not None,
        exec_start=_exec_start_of(text, manager),
    )

    if manager == "systemd":
        props = "LoadState,ActiveState,SubState,MainPID,UnitFileState"
        outcome = _call(runner, (*_SYSTEMCTL, "show", f"{name}.service", f"--property={props}"))
        if not outcome.ok:
            return replace(base, error=outcome.reason)
        fields = dict(line.split("=", 1) for line in outcome.stdout.splitlines() if "=" in line)
        load_state = fields.get("LoadState", "")
        active_state = fields.get("ActiveState", "")
        sub_state = fields.get("SubState", "")
        pid_text = fields.get("MainPID", "0")
        pid = int(pid_text) if pid_text.isdigit() and int(pid_text) > 0 else None
        return replace(
            base,
            loaded=load_state == "loaded",
            active=active_state == "active",
            enabled=fields.get("UnitFileState") == "enabled" if "UnitFileState" in fields else None,
            state=f"{active_state} ({sub_state})" if sub_state else active_state or None,
            pid=pid,
        )

    outcome = _call(runner, ("launchctl", "print", f"gui/{_uid(uid)}/{launchd_label(name)}"))
    if not outcome.ok:
        if _launchd_not_loaded(outcome):
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


# --------------------------------------------------------------------------------------------
# wire's own supervisor units
# --------------------------------------------------------------------------------------------


def detect_rust_wire_units(*, platform: str | None = None, home: Path | None = None) -> list[Path]:
    """wire's own supervisor units (``wire service install``) present for this user.

    They run ``wire daemon --all-sessions``, which competes with the ``wire`` plugin for the
    same sessions.
    """
    platform = sys.platform if platform is None else platform
    try:
        manager = manager_for(platform)
    except ServiceError:
        return []
    real_home, config_home = _homes(home)
    if manager == "systemd":
        candidates = [
            real_home / ".config" / "systemd" / "user" / RUST_WIRE_SYSTEMD_UNIT,
            config_home / "systemd" / "user" / RUST_WIRE_SYSTEMD_UNIT,
        ]
    else:
        candidates = [real_home / "Library" / "LaunchAgents" / f"{RUST_WIRE_LAUNCHD_LABEL}.plist"]
    found: list[Path] = []
    for candidate in candidates:
        if candidate not in found and (candidate.exists() or candidate.is_symlink()):
            found.append(candidate)
    return found


def rust_wire_removal_advice(paths: Sequence[Path], *, uid: int | None = None) -> str:
    """One paragraph telling the user how to remove wire's own supervisor units ("" if none)."""
    if not paths:
        return ""
    manual: list[str] = []
    for path in paths:
        if path.suffix == ".plist":
            manual.append(
                f"launchctl bootout gui/{_uid(uid)}/{RUST_WIRE_LAUNCHD_LABEL}; "
                f"rm {shlex.quote(str(path))}"
            )
        else:
            manual.append(
                f"systemctl --user disable --now {RUST_WIRE_SYSTEMD_UNIT}; "
                f"rm {shlex.quote(str(path))}; systemctl --user daemon-reload"
            )
    where = ", ".join(str(p) for p in paths)
    return (
        f"wire's own supervisor is installed as a service ({where}). It runs "
        "`wire daemon --all-sessions` for the same sessions as wirepool's wire plugin: at best "
        "it starts only to exit as skipped (launchd relaunches it every ~10 s), at worst both "
        "supervisors spawn daemons. Remove it with `wire service uninstall`, or by hand: "
        + " ; ".join(f"`{m}`" for m in manual)
        + "."
    )
