"""Process identity: a process is (pid, start time), never a bare pid.

wire's Rust supervisor and circus decide "alive" with ``kill(pid, 0)``; after
a reboot or in a busy container a low pid is soon reused, and such a check
then protects (or kills) a stranger.  Here every pid we record carries the
kernel's start time of that process, and every pid we read back is compared
against the live process before it counts.

On Linux the start time is field 22 of ``/proc/<pid>/stat`` in clock ticks
since boot: an exact integer, one small read, no exec.  Elsewhere psutil's
create time stands in.  Zombies are reported as not alive: they hold a pid but
serve nobody (wire's own check counted them as alive).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Container, Sequence

from wirepool._value import Ordered, frozen

__all__ = [
    "ProcessIdentity",
    "cmdline",
    "create_time",
    "identity_of",
    "is_alive",
    "open_pidfd",
    "signal_group",
    "wirepool_environ",
]

_LINUX = sys.platform.startswith("linux")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# Its equality and hash are compiled: identities are compared at every look
# at a child (see wirepool._value).
@frozen(eq=True, fast_init=True)
class ProcessIdentity(Ordered):
    """``start`` is opaque: only equality with a fresh reading means anything."""

    pid: int
    start: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: object) -> ProcessIdentity:
        if not isinstance(data, dict):
            raise ValueError(f"identity must be an object, not {type(data).__name__}")
        pid, start = data.get("pid"), data.get("start")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"identity has no valid pid: {pid!r}")
        if not isinstance(start, int) or isinstance(start, bool):
            raise ValueError(f"identity has no valid start: {start!r}")
        return cls(pid, start)


def stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` from the state on (field 3: state,
    4: ppid, 6: session, 22: start time are items 0, 1, 3 and 19), or None."""
    try:  # os.open, not open(): no buffer, no isatty and seek (a spawn reads it)
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(b")") + 2 :].split()


def _linux_stat(pid: int) -> tuple[str, int] | None:
    tail = stat_fields(pid)
    try:
        return (tail[0].decode(), int(tail[19])) if tail is not None else None
    except (IndexError, ValueError):
        return None


def parent_pid(pid: int) -> int | None:
    if _LINUX:
        tail = stat_fields(pid)
        try:
            return int(tail[1]) if tail is not None else None
        except (IndexError, ValueError):
            return None
    import psutil  # off Linux only: importing it costs ~2.5 MB in every supervisor

    try:
        return psutil.Process(pid).ppid()
    except (psutil.Error, OSError):
        return None


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of the live, non-zombie process ``pid``, or None."""
    if pid <= 0:
        return None
    if _LINUX:
        stat = _linux_stat(pid)
        if stat is None or stat[0] in ("Z", "X", "x"):
            return None
        return ProcessIdentity(pid, stat[1])
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        # microseconds: enough to tell two processes apart at one pid
        return ProcessIdentity(pid, round(proc.create_time() * 1_000_000))
    except (psutil.Error, OSError):
        return None


def is_alive(ident: ProcessIdentity) -> bool:
    return identity_of(ident.pid) == ident


_BOOT_TIME: float | None = None


def _boot_time() -> float:
    global _BOOT_TIME
    if _BOOT_TIME is None:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime "):
                    _BOOT_TIME = float(line.split()[1])
                    break
            else:
                raise OSError("no btime in /proc/stat")
    return _BOOT_TIME


def create_time(pid: int) -> float | None:
    """Wall-clock start time of ``pid`` (epoch seconds), for comparing with a
    start time some other program wrote down (wire's ``started_at``)."""
    if _LINUX:
        stat = _linux_stat(pid)
        if stat is None:
            return None
        try:
            return _boot_time() + stat[1] / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            return None
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def cmdline(pid: int) -> list[str] | None:
    """The process's argv, or None if it cannot be read."""
    if _LINUX:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        if not raw:
            return []  # a zombie or a kernel thread
        # A process that rewrote its argv (setproctitle) may leave one
        # space-separated string instead of NUL-separated arguments.
        parts = raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b" ")
        return [p.decode(errors="surrogateescape") for p in parts]
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None


def open_pidfd(ident: ProcessIdentity) -> int | None:
    """A pidfd for exactly this process, or None if it is gone (or the
    platform has none).

    The identity is re-checked *after* opening: if it still matches, the fd
    refers to the process we mean, because a pidfd pins one process for life.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(ident.pid)
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.EINVAL):
            return None
        raise
    if identity_of(ident.pid) != ident:
        os.close(fd)
        return None
    return fd


def signal_group(ident: ProcessIdentity, sig: int, *, group: bool = True) -> bool:
    """Signal a process group we created (pgid == leader pid) after checking
    the leader is still who we think.  Returns False if it is gone.

    If the leader already exited but its group lives on (a grandchild), the
    group is still signalled: a pgid cannot be reused while any member lives.
    """
    leader_alive = is_alive(ident)
    if not leader_alive and not group:
        return False
    if group:
        try:
            if leader_alive or _group_exists(ident.pid):
                os.killpg(ident.pid, sig)
                return True
        except (ProcessLookupError, PermissionError):
            # No such group yet (a Python worker before its setsid): fall
            # through and signal the leader itself.
            pass
    if leader_alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ident.pid, sig)
            return True
    return False


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pids_with_environ(markers: Sequence[tuple[str, str]]) -> dict[int, dict[str, str]]:
    """Processes whose environment holds every ``NAME=value`` in ``markers``.

    Every child we spawn carries the pool's marker variables, so it can be
    found without trusting any file (start-up asks this of the session
    leaders alone: :func:`wirepool.spawn.find_children`).  Linux only;
    elsewhere an empty result.
    """
    found: dict[int, dict[str, str]] = {}
    if not _LINUX:
        return found
    wanted = [os.fsencode(f"{k}={v}") for k, v in markers]
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        items = _environ_items(int(entry))
        if items is not None and all(w in items for w in wanted):
            found[int(entry)] = _wirepool_vars(items)
    return found


def fds_under(pid: int, directory: str) -> list[str]:
    """``/proc/PID/fd/N`` of each of ``pid``'s descriptors open on a file in
    ``directory`` (a real path), deleted files included: the kernel names
    an open file by where it was, plus `` (deleted)``.  Empty when ``pid``
    cannot be looked at (gone, another user's, not Linux)."""
    if not _LINUX:
        return []
    base = f"/proc/{pid}/fd"
    prefix = directory.rstrip("/") + "/"
    found = []
    try:
        fds = os.listdir(base)
    except OSError:
        return []
    for fd in fds:
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:
            continue
        if target.startswith(prefix) and "/" not in target[len(prefix) :]:
            found.append(f"{base}/{fd}")
    return found


def session_leaders() -> list[int]:
    """Every process (but this one) that leads its session: a child of a
    pool's is one (see :func:`wirepool.spawn.find_children`).  A ``getsid``
    each, no file read: on a host with thousands of processes, reading
    each one's environment and descriptors was most of a start (~0.1 ms a
    process).  Linux only; elsewhere an empty result."""
    if not _LINUX:
        return []
    own = os.getpid()
    leaders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if pid != own and os.getsid(pid) == pid:
                leaders.append(pid)
        except OSError:
            continue
    return leaders


def environ_markers(
    pid: int, wanted: Sequence[bytes], key: bytes = b""
) -> tuple[dict[str, str] | None, bool]:
    """``pid``'s ``WIREPOOL_*`` variables when its environment holds every
    ``NAME=value`` in ``wanted`` (encoded), else None (as
    :func:`pids_with_environ` tells of one process); and whether its
    environment holds ``key`` (``NAME=``, encoded) with a value ``wanted``
    does not: it is marked as someone else's."""
    items = _environ_items(pid) if _LINUX else None
    if items is None:
        return None, False
    if all(w in items for w in wanted):
        return _wirepool_vars(items), False
    return None, bool(key) and any(i.startswith(key) and i not in wanted for i in items)


@functools.cache
def boot_id() -> str:
    """This boot's random id (Linux), or "" where there is none: a pid and a
    start time name one process within one boot only.  Read once: no process
    outlives its boot (each spawn's identity file carries it)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def wirepool_environ(pid: int) -> dict[str, str] | None:
    """The ``WIREPOOL_*`` variables ``pid`` was started with, or None when
    its environment cannot be read (gone, another user's, no /proc).

    What the process was exec'd with, not what it set since: a child cannot
    shed the markers by unsetting them, only by exec'ing with a new
    environment.  The caller checks the identity again afterwards, so the
    answer is known to be about the process it means."""
    if _LINUX:
        items = _environ_items(pid)
        return None if items is None else _wirepool_vars(items)
    import psutil

    try:
        env = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return None
    return {k: v for k, v in env.items() if k.startswith("WIREPOOL_")}


def _environ_items(pid: int) -> list[bytes] | None:
    # os.open, as stat_fields: the start-up scan reads one per session leader
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError:
        return None
    return b"".join(chunks).split(b"\0")


def _wirepool_vars(items: Sequence[bytes]) -> dict[str, str]:
    # os.fsdecode, as os.environ decodes: a session named by a non-UTF-8
    # directory carries those bytes, and must compare equal to its name.
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(b"=")
        if sep and key.startswith(b"WIREPOOL_"):
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def has_marked_ancestor(pid: int, marked: Container[int]) -> bool:
    """Whether an ancestor of ``pid`` is in ``marked`` (a daemon's own
    helpers inherit its marker variables; they are not separate children)."""
    seen = 0
    parent = parent_pid(pid)
    while parent is not None and parent > 1 and seen < 64:
        if parent in marked:
            return True
        parent = parent_pid(parent)
        seen += 1
    return False
