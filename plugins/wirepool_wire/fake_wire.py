"""A fake ``wire`` binary: ``wire daemon`` as a supervisor sees it.

A supervisor only ever observes argv, environment, exit codes, output and
files, so this reproduces exactly those for ``wire daemon`` (wire 0.16:
``cmd_daemon`` in ``src/cli/relay.rs``, the pidfile and ``last_sync.json`` in
``src/ensure_up.rs``, ``run_supervisor`` in ``src/daemon_supervisor.rs``):

* ``wire --version`` prints ``wire X.Y.Z``.
* ``wire daemon --interval N [--once] [--json] [--session NAME]
  [--all-sessions]``; ``--all-sessions`` with ``--once`` or ``--session``
  fails with wire's messages and exit 1; a malformed command line exits 2
  (clap's usage-error code).
* The home comes from ``WIRE_HOME`` (or ``--session``).  A home without
  ``private.key`` or ``agent-card.json`` fails with ``error: not initialized
  ...``, exit 1: the "broken session" a supervisor must back off from.
* Singleton: unless ``--once`` or ``WIRE_DAEMON_NO_SINGLETON``, a
  ``daemon.pid`` that parses *strictly* (all required fields) and names
  another live pid makes it exit 0 ("skipped").  Otherwise it writes the full
  JSON pidfile, non-atomically, like wire.
* Every ``max(1, interval)`` seconds, first one immediately, it rewrites
  ``state/wire/last_sync.json`` and ``notify.cursor`` (``--once`` skips the
  cursor, as wire's ``--once`` skips the notify sweep).
* No signal handlers: SIGTERM/SIGINT/SIGKILL just kill it and ``daemon.pid``
  stays behind naming a dead pid.  Only a normal return (the ``exit_code``
  knob) removes the pidfile, and only if it still names this process.
  ``--once`` never held the singleton, so its pidfile stays, as in wire.
* ``--all-sessions`` is a minimal fake supervisor: the ``supervisor.pid``
  singleton (bare pid), the banner, then idling.  It spawns nothing; it
  exists so tests can have a live process that looks like wire's own
  supervisor.

Deviation: with no ``WIRE_HOME`` (and no ``--session``) it exits 1 instead
of serving the machine-default identity, so a misconfigured test can never
touch a real ``~/.config/wire``.

**Fault knobs** come only from ``<home>/fake-wire.json`` (for
``--all-sessions``: ``<sessions root>/fake-wire.json``), never from ``WIRE_*``
variables, because a faithful supervisor strips those from its children::

    {"exit_code": 3, "exit_after": 0.5,   # exit 3 after 0.5 s (0: before the pidfile)
     "hang_before_pidfile": 2.0,          # sleep between singleton check and claim
     "no_last_sync": true,                # never write last_sync.json / notify.cursor
     "version": "0.13.5",                 # version in the pidfile and --version
     "pidfile_form": "full",              # or "partial" ({"pid": N}) or "bare" ("N\\n")
     "ignore_sigterm": true,              # only SIGKILL stops it
     "interval_override": 1}              # period instead of --interval (still max(1, .))

Every start (not ``--version``) appends one JSON line to
``<home>/fake-wire.invocations.jsonl``: ``pid``, ``ppid``, ``argv`` (after the
program name), ``exe``, ``WIRE_HOME`` (as received), ``wire_env`` (sorted
names of the ``WIRE_*`` variables seen), ``home`` (as resolved) and ``time``.

This module must start fast (it is exec'd hundreds of times per test run):
stdlib only, nothing heavy at import, and :func:`install_fake_wire` writes a
shim that loads this file by path so the ``wirepool_wire`` package (and the
engine it imports) is never imported by the fake.  The few wire rules it
needs (``sanitize_name``, the by-key hash, the sessions root) are
re-implemented here rather than imported from :mod:`wirepool_wire.layout`,
which also makes the fake an independent check of that module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # runtime imports stay minimal: this file is exec'd constantly
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "CONTROL_FILE",
    "DEFAULT_VERSION",
    "INVOCATIONS_FILE",
    "NOT_INITIALIZED",
    "entry",
    "install_fake_wire",
    "main",
]

DEFAULT_VERSION = "0.16.0"
CONTROL_FILE = "fake-wire.json"
INVOCATIONS_FILE = "fake-wire.invocations.jsonl"
NOT_INITIALIZED = "error: not initialized \u2014 run `wire up` first"
PID_SCHEMA = "wire-daemon-pid-v1"
LAST_SYNC_SCHEMA = "wire-daemon-last-sync-v1"
REGISTRY_POLL_SECS = 10

_U32_MAX = 2**32 - 1


class _UsageError(Exception):
    """A command line clap would reject (exit 2)."""


class _Exit(Exception):
    """Leave the run loop with this code (after the normal-exit cleanup)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _err(msg: str) -> None:
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _out(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _rfc3339_now() -> str:
    # The `time` crate's RFC 3339: Z offset, fraction only when non-zero,
    # up to 9 digits with trailing zeros trimmed.
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return base + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def _alive(pid: int) -> bool:
    # wire checks /proc/<pid> on Linux and `kill -0` elsewhere; both call a
    # zombie alive, and so does this.
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _write(path: str, body: str) -> None:
    # Plain truncate-and-write, not tmp+rename: wire's pidfile and last_sync
    # writes are not atomic either, and readers must cope.
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(body)


def _read_text(path: str) -> str | None:
    # Non-blocking open + regular-file check: a FIFO planted where a JSON
    # file belongs must not hang the fake (tests do plant such things).
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 1 << 20).decode("utf-8")
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _parse_uint(text: str, maximum: int) -> int | None:
    s = text.strip()
    digits = s[1:] if s.startswith("+") else s
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    value = int(digits)
    return value if value <= maximum else None


# ---------------------------------------------------------------------------
# wire rules the fake needs (independent copies; see module docstring)
# ---------------------------------------------------------------------------


def _sanitize_name(raw: str) -> str:
    out: list[str] = []
    prev_dash = False
    for ch in raw:
        ok = (ch.isascii() and ch.isalnum()) or ch in "-_"
        c = ch.lower() if ok else "-"
        if c == "-":
            if not prev_dash and out:
                out.append("-")
            prev_dash = True
        else:
            out.append(c)
            prev_dash = False
    trimmed = "".join(out).strip("-")
    if not trimmed:
        return "wire-session"
    return trimmed[:32].rstrip("-") if len(trimmed) > 32 else trimmed


def _by_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _display_handle(did: str) -> str:
    stripped = did[len("did:wire:") :] if did.startswith("did:wire:") else did
    head, sep, tail = stripped.rpartition("-")
    if sep and len(tail) == 8 and all(c in "0123456789abcdefABCDEF" for c in tail):
        return head
    return stripped


def _sessions_root(env: Mapping[str, str]) -> str:
    wire_home = env.get("WIRE_HOME", "")
    if wire_home:
        direct = os.path.join(wire_home, "sessions")
        if os.path.exists(direct):
            return direct
        cand = wire_home.rstrip("/") or "/"
        while True:
            if os.path.basename(cand) == "sessions":
                return cand
            parent = os.path.dirname(cand)
            if parent == cand:
                return direct
            cand = parent
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "wire", "sessions")
    xdg = env.get("XDG_STATE_HOME", "")
    state = xdg if xdg and os.path.isabs(xdg) else os.path.join(home, ".local", "state")
    return os.path.join(state, "wire", "sessions")


def _card(home: str) -> tuple[str | None, str | None]:
    text = _read_text(os.path.join(home, "config", "wire", "agent-card.json"))
    try:
        value = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        return None, None
    did = value.get("did") if isinstance(value.get("did"), str) else None
    handle = value.get("handle")
    if not isinstance(handle, str):
        handle = _display_handle(did) if did is not None else None
    return did, handle


def _find_session_home(root: str, name: str) -> str | None:
    # wire's find_session_home_by_name: the by-key home of the sanitized
    # name, else a walk matching the handle, the sanitized name or the raw
    # hash directory (initialized homes only).
    sanitized = _sanitize_name(name)
    by_key = os.path.join(root, "by-key")
    direct = os.path.join(by_key, _by_key(sanitized))
    if os.path.isdir(direct):
        return direct
    try:
        names = sorted(os.listdir(by_key))
    except OSError:
        return None
    for entry in names:
        home = os.path.join(by_key, entry)
        if not os.path.isdir(home):
            continue
        did, handle = _card(home)
        if did is None:
            continue
        if name in (handle, entry) or handle == sanitized:
            return home
    return None


def _strict_pid(path: str) -> int | None:
    """wire's ``read_pid_record``: only a complete ``DaemonPid`` counts."""
    text = _read_text(path)
    if text is None or not text.strip():
        return None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(rec, dict):
        return None
    pid = rec.get("pid")
    if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 <= pid <= _U32_MAX):
        return None
    if not all(
        isinstance(rec.get(k), str) for k in ("schema", "bin_path", "version", "started_at")
    ):
        return None
    if not all(rec.get(k) is None or isinstance(rec.get(k), str) for k in ("did", "relay_url")):
        return None
    return pid


# ---------------------------------------------------------------------------
# Control file and invocation log
# ---------------------------------------------------------------------------


class _Control:
    # A plain class, not a dataclass: importing dataclasses pulls in inspect,
    # which costs more start-up time than the rest of this module.
    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.exit_after: float = 0.0
        self.hang_before_pidfile: float = 0.0
        self.no_last_sync = False
        self.version: str | None = None
        self.pidfile_form = "full"
        self.ignore_sigterm = False
        self.interval_override: float | None = None


def _load_control(directory: str) -> _Control:
    ctl = _Control()
    path = os.path.join(directory, CONTROL_FILE)
    text = _read_text(path)
    if text is None:
        return ctl
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        _err(f"fake-wire: ignoring {path}: {exc}")
        return ctl
    if not isinstance(raw, dict):
        _err(f"fake-wire: ignoring {path}: not a JSON object")
        return ctl
    # A typo in a knob would silently test nothing; say so on stderr.
    number = (int, float)
    checks: dict[str, Callable[[object], bool]] = {
        "exit_code": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "exit_after": lambda v: isinstance(v, number) and not isinstance(v, bool),
        "hang_before_pidfile": lambda v: isinstance(v, number) and not isinstance(v, bool),
        "no_last_sync": lambda v: isinstance(v, bool),
        "version": lambda v: isinstance(v, str),
        "pidfile_form": lambda v: v in ("full", "partial", "bare"),
        "ignore_sigterm": lambda v: isinstance(v, bool),
        "interval_override": lambda v: isinstance(v, number) and not isinstance(v, bool),
    }
    for key, value in raw.items():
        check = checks.get(key)
        if check is None:
            _err(f"fake-wire: {path}: unknown knob {key!r} ignored")
        elif not check(value):
            _err(f"fake-wire: {path}: bad value for {key!r} ignored: {value!r}")
        else:
            setattr(ctl, key, value)
    return ctl


def _log_invocation(directory: str, args: Sequence[str], home: str) -> None:
    if not os.path.isdir(directory):
        return
    record = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": list(args),
        "exe": os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None,
        "WIRE_HOME": os.environ.get("WIRE_HOME"),
        "wire_env": sorted(k for k in os.environ if k.startswith("WIRE_")),
        "home": home,
        "time": time.time(),
    }
    line = (json.dumps(record, ensure_ascii=True) + "\n").encode()
    try:
        fd = os.open(
            os.path.join(directory, INVOCATIONS_FILE),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
            0o644,
        )
    except OSError as exc:
        _err(f"fake-wire: cannot log invocation: {exc}")
        return
    try:
        os.write(fd, line)  # one O_APPEND write: concurrent starts do not interleave
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


class _Args:
    def __init__(self) -> None:
        self.interval = 5
        self.once = False
        self.as_json = False
        self.session: str | None = None
        self.all_sessions = False


_USAGE = (
    "Usage: wire daemon [--interval <SECS>] [--once] [--json] [--session <NAME>] [--all-sessions]"
)


def _parse_daemon_args(args: Sequence[str]) -> _Args:
    out = _Args()
    seen: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        if name in seen:
            raise _UsageError(f"the argument '{name}' cannot be used multiple times")
        if name in ("--interval", "--session"):
            if eq:
                value = inline
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise _UsageError(f"a value is required for '{name} <VALUE>' but none was supplied")
            if name == "--interval":
                interval = _parse_uint(value, 2**64 - 1)
                if interval is None or value != value.strip():
                    raise _UsageError(
                        f"invalid value '{value}' for '--interval <INTERVAL>': "
                        "invalid digit found in string"
                    )
                out.interval = interval
            else:
                out.session = value
        elif not eq and name == "--once":
            out.once = True
        elif not eq and name == "--json":
            out.as_json = True
        elif not eq and name == "--all-sessions":
            out.all_sessions = True
        else:
            raise _UsageError(f"unexpected argument '{arg}' found")
        seen.add(name)
        i += 1
    return out


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def _sleep_until(deadline: float, exit_at: float | None, exit_code: int | None) -> None:
    """Sleep to ``deadline`` (monotonic); leave early via _Exit at ``exit_at``."""
    while True:
        now = time.monotonic()
        if exit_at is not None and now >= exit_at:
            raise _Exit(exit_code if exit_code is not None else 0)
        wake = deadline if exit_at is None else min(deadline, exit_at)
        if now >= deadline:
            return
        time.sleep(min(wake - now, 3600.0))


def _pid_body(pid: int, form: str, version: str, did: str | None, relay_url: str | None) -> str:
    if form == "bare":
        return f"{pid}\n"
    if form == "partial":
        return json.dumps({"pid": pid}, indent=2)
    return json.dumps(
        {
            "schema": PID_SCHEMA,
            "pid": pid,
            "bin_path": os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else "",
            "version": version,
            "started_at": _rfc3339_now(),
            "did": did,
            "relay_url": relay_url,
        },
        indent=2,
    )


def _relay_url(home: str) -> str | None:
    text = _read_text(os.path.join(home, "config", "wire", "relay.json"))
    try:
        state = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None
    me = state.get("self") if isinstance(state, dict) else None
    url = me.get("relay_url") if isinstance(me, dict) else None
    return url if isinstance(url, str) else None


def _run_daemon(home: str, opts: _Args, ctl: _Control, version: str) -> int:
    started = time.monotonic()
    exit_at = started + ctl.exit_after if ctl.exit_code is not None else None
    config = os.path.join(home, "config", "wire")
    if not (
        os.path.exists(os.path.join(config, "private.key"))
        and os.path.exists(os.path.join(config, "agent-card.json"))
    ):
        _err(NOT_INITIALIZED)
        return 1
    if ctl.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    state = os.path.join(home, "state", "wire")
    pidfile = os.path.join(state, "daemon.pid")
    me = os.getpid()
    did, _handle = _card(home)
    holds_singleton = False
    try:
        if exit_at is not None and ctl.exit_after <= 0:
            raise _Exit(ctl.exit_code if ctl.exit_code is not None else 0)
        singleton = not opts.once and "WIRE_DAEMON_NO_SINGLETON" not in os.environ
        if singleton:
            holder = _strict_pid(pidfile)
            if holder is not None and holder != me and _alive(holder):
                if opts.as_json:
                    _out(
                        json.dumps(
                            {
                                "status": "skipped",
                                "reason": "daemon already running",
                                "holder_pid": holder,
                            },
                            separators=(",", ":"),
                        )
                    )
                else:
                    _err(
                        f"wire daemon: another daemon is already running (pid {holder}); "
                        "not starting a second polling loop. "
                        "Set WIRE_DAEMON_NO_SINGLETON=1 to override."
                    )
                return 0
        if ctl.hang_before_pidfile > 0:
            _sleep_until(time.monotonic() + ctl.hang_before_pidfile, exit_at, ctl.exit_code)
        os.makedirs(state, exist_ok=True)
        body = _pid_body(me, ctl.pidfile_form, version, did, _relay_url(home))
        if singleton:
            # claim_daemon_singleton: ensure_dirs, then the pidfile.
            os.makedirs(os.path.join(state, "inbox"), exist_ok=True)
            os.makedirs(os.path.join(state, "outbox"), exist_ok=True)
            _write(pidfile, body)
            holds_singleton = True
        if not opts.as_json:
            if opts.once:
                _err("wire daemon: single sync cycle, then exit")
            else:
                _err(f"wire daemon: syncing every {opts.interval}s. SIGINT to stop.")
        if not holds_singleton and _strict_pid(pidfile) != me:
            # write_self_daemon_pid: with --once this overwrites a running
            # daemon's pidfile, a real wire hazard the fake keeps.
            _write(pidfile, body)

        interval = ctl.interval_override if ctl.interval_override is not None else opts.interval
        period = max(1.0, float(interval))
        next_cycle = time.monotonic()
        while True:
            _sleep_until(next_cycle, exit_at, ctl.exit_code)
            _cycle(state, opts, ctl)
            if opts.once:
                return 0
            next_cycle += period
            if next_cycle < time.monotonic():  # suspended or slow: do not burst
                next_cycle = time.monotonic() + period
    except _Exit as stop:
        if holds_singleton:
            _release(pidfile, me)
        return stop.code


def _cycle(state: str, opts: _Args, ctl: _Control) -> None:
    if not ctl.no_last_sync:
        record = {
            "schema": LAST_SYNC_SCHEMA,
            "ts": _rfc3339_now(),
            "push_n": 0,
            "pull_n": 0,
            "rejected_n": 0,
        }
        try:
            _write(os.path.join(state, "last_sync.json"), json.dumps(record, indent=2))
            if not opts.once:
                _write(os.path.join(state, "notify.cursor"), "{}")
        except OSError as exc:
            _err(f"daemon: last-sync persist error (non-fatal): {exc}")
    if opts.as_json:
        line = {
            "ts": _rfc3339_now(),
            "push": {"pushed": [], "skipped": []},
            "pull": {"written": [], "rejected": [], "total_seen": 0},
        }
        _out(json.dumps(line, separators=(",", ":")))


def _release(pidfile: str, me: int) -> None:
    """DaemonPidGuard: remove the pidfile only if it still names us."""
    text = _read_text(pidfile)
    if text is None:
        return
    pid = _strict_pid(pidfile)
    if pid is None:
        pid = _parse_uint(text, _U32_MAX)
    if pid == me:
        with contextlib.suppress(OSError):
            os.unlink(pidfile)


def _cutoff_line(raw: str | None, default: int, unit: str, off: str) -> str:
    if raw is None:
        return f"{default} {unit}"
    value = _parse_uint(raw, 2**64 - 1)
    value = default if value is None else value
    return off if value == 0 else f"{value} {unit}"


def _run_supervisor(args: Sequence[str], opts: _Args) -> int:
    root = _sessions_root(os.environ)
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        _err(f"error: creating {root!r}: {exc}")
        return 1
    _log_invocation(root, args, root)
    ctl = _load_control(root)
    pid_path = os.path.join(root, "supervisor.pid")
    text = _read_text(pid_path)
    holder = _parse_uint(text, _U32_MAX) if text is not None else None
    if holder is not None and _alive(holder):
        if opts.as_json:
            msg = {
                "status": "skipped",
                "reason": "supervisor already running",
                "holder_pid": holder,
            }
            _out(json.dumps(msg, separators=(",", ":")))
        else:
            _err(
                f"wire daemon --all-sessions: another supervisor is already running "
                f"(pid {holder}); not starting a second one."
            )
        return 0
    me = os.getpid()
    _write(pid_path, str(me))  # bare decimal, no newline, as wire writes it
    if opts.as_json:
        banner = {
            "status": "supervisor_started",
            "interval_secs": opts.interval,
            "registry_poll_secs": REGISTRY_POLL_SECS,
        }
        _out(json.dumps(banner, separators=(",", ":")))
    else:
        _err(
            f"wire daemon --all-sessions: supervisor up. interval={opts.interval}s, "
            f"registry-poll={REGISTRY_POLL_SECS}s. SIGINT to stop."
        )
    env = os.environ
    idle = _cutoff_line(
        env.get("WIRE_ALL_SESSIONS_MAX_IDLE_DAYS"), 7, "days", "disabled (spawn-for-all)"
    )
    husk = _cutoff_line(env.get("WIRE_HUSK_REAP_MAX_AGE_HOURS"), 48, "hours", "disabled")
    _err(f"supervisor: idle cutoff for unbound sessions = {idle}")
    _err(f"supervisor: husk reap cutoff = {husk}")
    if ctl.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_at = time.monotonic() + ctl.exit_after if ctl.exit_code is not None else None
    try:
        while True:
            _sleep_until(time.monotonic() + 3600.0, exit_at, ctl.exit_code)
    except _Exit as stop:
        # SupervisorPidGuard: only if the file still names us.
        body = _read_text(pid_path)
        if body is not None and _parse_uint(body, _U32_MAX) == me:
            with contextlib.suppress(OSError):
                os.unlink(pid_path)
        return stop.code


def main(argv: Sequence[str] | None = None, *, version: str = DEFAULT_VERSION) -> int:
    """Run the fake ``wire`` with ``argv`` (without the program name); return the exit code.

    ``version`` is the installed binary's version (baked into the shim by
    :func:`install_fake_wire`); ``<home>/fake-wire.json`` can override it.
    Meant to be the program itself; calling it in-process is fine for
    ``--version``, ``--once`` and the error paths, which return promptly.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ
    if not args or args[0] in ("-h", "--help", "help"):
        _out("Usage: wire <COMMAND>\n\nCommands:\n  daemon  long-lived push+pull sync")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        wire_home = env.get("WIRE_HOME", "")
        override = _load_control(wire_home).version if wire_home else None
        _out(f"wire {override or version}")
        return 0
    if args[0] != "daemon":
        _err(f"error: unrecognized subcommand '{args[0]}'\n\n{_USAGE}")
        return 2
    try:
        opts = _parse_daemon_args(args[1:])
    except _UsageError as exc:
        _err(f"error: {exc}\n\n{_USAGE}\n\nFor more information, try '--help'.")
        return 2

    if opts.all_sessions:
        if opts.once:
            _err(
                "error: --all-sessions and --once are mutually exclusive (supervisor runs forever)"
            )
            return 1
        if opts.session is not None:
            _err(
                "error: --all-sessions and --session are mutually exclusive "
                "(supervisor manages every session, not a single named one)"
            )
            return 1
        return _run_supervisor(args, opts)

    if opts.session is not None:
        found = _find_session_home(_sessions_root(env), opts.session)
        if found is None:
            _err(
                f"error: session '{opts.session}' not found \u2014 "
                "run `wire session list` to see initialized sessions"
            )
            return 1
        home = found
        if not opts.as_json:
            _err(f"wire daemon: pinned to session '{opts.session}' (WIRE_HOME={home})")
    else:
        home = env.get("WIRE_HOME", "")
        if not home:
            _err(
                "error: fake wire: WIRE_HOME is not set "
                "(the fake never serves the machine-default identity)"
            )
            return 1
    _log_invocation(home, args, home)
    ctl = _load_control(home)
    try:
        return _run_daemon(home, opts, ctl, ctl.version or version)
    except OSError as exc:  # e.g. the home vanished under us: wire's `error: ...`, exit 1
        _err(f"error: {exc}")
        return 1


def entry(version: str = DEFAULT_VERSION) -> None:
    """Program entry used by the shim: default signal dispositions, then exit."""
    # Python turns SIGINT into KeyboardInterrupt (a traceback and cleanup);
    # the real binary just dies, so restore the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main(version=version))


_SHIM = """\
{shebang}
# Fake `wire` for wirepool tests, written by wirepool_wire.fake_wire.install_fake_wire().
# It loads fake_wire.py by path instead of importing wirepool_wire.fake_wire so that
# the wirepool_wire package (and the engine it imports) is not loaded on each spawn.
import importlib.util as _u
import sys as _sys
_spec = _u.spec_from_file_location("_wirepool_fake_wire", {source!r})
_mod = _u.module_from_spec(_spec)
_sys.modules[_spec.name] = _mod
_spec.loader.exec_module(_mod)
_mod.entry(version={version!r})
"""

# Linux truncates shebang lines (255 bytes, 127 before 5.1) and a path with
# whitespace cannot be a shebang.  Then go through /bin/sh: the line is an
# `exec` to sh and a string literal to Python, and the exec keeps the cmdline
# as `<python> <bin>/wire ...`.
_SH_TRAMPOLINE = """\
#!/bin/sh
''''exec "{python}" "$0" "$@" # '''"""


def install_fake_wire(bin_dir: Path, version: str = DEFAULT_VERSION) -> Path:
    """Write an executable fake ``wire`` into ``bin_dir`` and return its path.

    The file is named exactly ``wire`` so a running fake's cmdline reads
    ``<python> <bin_dir>/wire daemon --interval 5``, which is what
    ``pgrep -f "wire daemon"`` and
    :func:`wirepool_wire.layout.is_wire_daemon_cmdline` look for.  The
    interpreter is the current ``sys.executable``.
    """
    python = sys.executable
    if any(c.isspace() for c in python) or len(python) > 120:
        if any(c in python for c in "'\\\"$`"):
            raise ValueError(f"cannot write a launcher for interpreter path {python!r}")
        shebang = _SH_TRAMPOLINE.format(python=python)
    else:
        shebang = f"#!{python}"
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "wire"
    body = _SHIM.format(shebang=shebang, source=os.path.realpath(__file__), version=str(version))
    tmp = bin_dir / f".wire.{os.getpid()}.tmp"
    tmp.write_text(body, encoding="utf-8")
    tmp.chmod(0o755)
    # Atomic, so a test that re-installs while fakes start never execs half a file.
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    entry()
