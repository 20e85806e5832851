"""How a session's child is started, and the handle the pool watches it by.

Two stock spawners:

* :class:`CommandSpawner` -- an external command via libc's ``posix_spawn``
  (:mod:`wirepool._exec`; ``subprocess`` where libc lacks it): vfork + exec,
  safe from a threaded parent; every descriptor closed so that no child
  inherits the supervisor's lock or pipes, but one read-only descriptor on
  its identity file, passed on purpose (see :class:`_HeldFile`); every
  signal at its default and none blocked, whatever the supervisor ignores.
  The argv is a list; session data is substituted into single elements,
  never into a shell string.  The environment is built explicitly: wire's
  #174 fork storm came from what a child was told, and a daemon that
  inherits ``WIRE_SESSION_ID`` from a terminal serves the wrong home.
* :class:`CallableSpawner` -- a Python callable via ``multiprocess`` with an
  explicit start method (``forkserver`` on Linux, ``spawn`` elsewhere).  Never
  plain ``fork``: a forked child inherits the supervisor's threads, its
  loguru queue thread and, worst, the open file description that holds the
  singleton ``flock`` -- the lock would outlive the supervisor.

Every child runs in its own process group (so a stop reaches grandchildren),
and carries two marker variables, ``WIREPOOL_POOL`` and ``WIREPOOL_SESSION``,
so that a later supervisor can find it even if every state file was lost;
an exec'd child also holds its identity file open, which a daemon that
rewrites its process title (and with it the environment ``/proc`` shows)
keeps.

Output goes straight from the child to a per-session log file (no Python in
the data path, nothing that breaks when the supervisor restarts).  While the
pool watches a child, one background thread keeps its log within
``log_max_bytes``, copy-truncate style, reacting to the log's growth: a live
log passes the limit by what its child writes in about 10 ms (35-55 MB for
a child writing 5 GB/s, more when every core is busy), and nothing is
copied on the pool's loop thread.  Logs live in a directory only the
supervisor's user can write; one that others can write is refused and the
children's output discarded.  See :mod:`wirepool._logs`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wirepool import _exec
from wirepool._log import logger
from wirepool._logs import (
    LogKeeper,
    log_file_id,
    open_child_log,
    open_log,
    open_log_dir,
    open_session_log,
    rotate_open_log,
    shift_and_rename,
)
from wirepool._proc import (
    ProcessIdentity,
    boot_id,
    environ_markers,
    fds_under,
    has_marked_ancestor,
    identity_of,
    open_pidfd,
    session_leaders,
    signal_group,
    wirepool_environ,
)
from wirepool._store import SMALL_STATE_LIMIT, StateDir, read_json, read_small, sha256
from wirepool._types import ExitStatus, Session
from wirepool._value import Value, field, frozen

__all__ = [
    "AdoptedWorker",
    "CallableSpawner",
    "CommandSpawner",
    "Environment",
    "Spawner",
    "Worker",
    "rotate_log",
    "safe_filename",
    "validate_template",
]

#: the most of an input file :meth:`CommandSpawner.fingerprint` reads
INPUT_LIMIT = 1 << 20

POOL_MARKER = "WIREPOOL_POOL"
SESSION_MARKER = "WIREPOOL_SESSION"


class Worker(ABC):
    """A live (or just ended) child.  Exposes what the engine needs: who it is
    (:attr:`identity`), a file descriptor that becomes readable when it exits
    (:meth:`fileno`; None means "poll me"), how it ended (:meth:`poll`) and
    how to stop it."""

    # A subclass without __slots__ has its __dict__ as always; one with them
    # (a pool keeps one worker per child) costs no dict.
    __slots__ = ()

    identity: ProcessIdentity
    started_at: float  # wall clock, for uptime in status
    log_path: Path | None = None
    #: True when the pool may signal it (its own child, or one a previous
    #: supervisor of this pool started); False for a daemon somebody else
    #: started, which the pool only watches.
    owned: bool = True

    @property
    def pid(self) -> int:
        return self.identity.pid

    @abstractmethod
    def fileno(self) -> int | None: ...

    @abstractmethod
    def poll(self) -> ExitStatus | None:
        """How the child ended, or None while it runs.  Never blocks."""

    def send_signal(self, sig: int) -> bool:
        """Signal the child's process group; False if it is already gone."""
        return signal_group(self.identity, sig)

    def terminate(self) -> bool:
        return self.send_signal(signal.SIGTERM)

    def kill(self) -> bool:
        return self.send_signal(signal.SIGKILL)

    def close(self) -> None:  # noqa: B027 -- optional hook
        """Release the exit fd once the pool has stopped watching it."""

    def detach(self) -> None:
        """Let go of a child that keeps running (the pool exits and leaves
        it for the next supervisor)."""
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid}>"


class _SpawnedWorker(Worker):
    """A child of ours, started by :func:`wirepool._exec.spawn` (or by
    ``subprocess.Popen`` where libc cannot) and waited for by its pid alone:
    no ``Popen`` object (with its arguments, ~0.7 KB a child, 7 MB at ten
    thousand) is kept.

    Its identity (the start time in ``/proc/PID/stat``) is read when first
    asked for, not at the spawn: read at once, it waited for the child's
    exec to finish (~0.3 ms a spawn, the kernel holds the task while it
    execs), while a pool bringing up thousands asks for it after the next
    spawns.  The child is unreaped until :meth:`poll` reaps it, which reads
    it first, so the pid cannot name anyone else meanwhile; its identity
    file (``held``) is finished then too."""

    __slots__ = ("_ended", "_fd", "_held", "_identity", "_pid", "log_path", "started_at")

    def __init__(self, pid: int, log_path: Path | None, held: _HeldFile | None = None) -> None:
        self._pid = pid
        self._ended: ExitStatus | None = None
        self._identity: ProcessIdentity | None = None
        self._held = held
        self.started_at = time.time()
        self.log_path = log_path
        # Opened when first asked for (fileno): a pool that finds its
        # children's exits by SIGCHLD never asks, and a pidfd opened and
        # closed again was two system calls a spawn.  -1: not asked yet.
        self._fd: int | None = -1

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def identity(self) -> ProcessIdentity:
        ident = self._identity
        if ident is None:
            pid = self._pid
            # None: it already exited (a `run` that fails at once): still a
            # real start, and the zombie keeps the pid ours until we poll.
            ident = identity_of(pid) or ProcessIdentity(pid, _zombie_start(pid))
            self._identity = ident
            held, self._held = self._held, None
            if held is not None:
                held.commit(ident)
        return ident

    @identity.setter
    def identity(self, ident: ProcessIdentity) -> None:
        self._identity = ident

    def fileno(self) -> int | None:
        fd = self._fd
        if fd == -1:
            fd = None
            if self._ended is None:
                # Unreaped until poll() reaps it, so its pid cannot name
                # anyone else yet: opening the pidfd now cannot race.
                with contextlib.suppress(AttributeError, OSError):
                    fd = os.pidfd_open(self._pid)
            self._fd = fd
        return fd

    def poll(self) -> ExitStatus | None:
        if self._ended is not None:
            return self._ended
        if self._identity is None:
            self.identity  # noqa: B018 -- read while the zombie still pins the pid
        if _exited_unreaped(self._pid):
            # What the child left in its group (a helper it forked) dies with
            # it, or it outlives every later stop: nothing would signal that
            # group again.  Safe only before reaping: the zombie pins its pid,
            # so the group id cannot yet name anyone else's processes.
            _kill_leftover_group(self._pid)
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            # Reaped by someone else (a stray waitpid(-1) in a plugin): it
            # ended, and how is lost.
            self._ended = ExitStatus()
            return self._ended
        if pid == 0:
            return None
        self._ended = ExitStatus.from_wait_status(status)
        return self._ended

    def send_signal(self, sig: int) -> bool:
        if self._ended is not None:
            return False
        try:
            os.killpg(self._pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, sig)
        return True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and fd >= 0:
            os.close(fd)


def _exited_unreaped(pid: int) -> bool:
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, AttributeError, OSError):
        return False
    return result is not None


def _kill_leftover_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class AdoptedWorker(Worker):
    """A process the pool did not start in this life: a child a previous
    supervisor left running, or a daemon found through a health check.

    It is watched through a pidfd (Linux), which works for processes that
    are not our children; the kernel only tells the real parent the exit
    status, so :meth:`poll` reports an unknown status.
    """

    def __init__(
        self,
        identity: ProcessIdentity,
        *,
        owned: bool,
        started_at: float | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.identity = identity
        self.owned = owned
        self.log_path = log_path
        self.started_at = started_at if started_at is not None else time.time()
        self._group_cleared = False
        self._fd = open_pidfd(identity)

    def fileno(self) -> int | None:
        return self._fd

    def poll(self) -> ExitStatus | None:
        if identity_of(self.identity.pid) == self.identity:
            return None
        if self.owned and not self._group_cleared:
            # As for a child of ours (see _SpawnedWorker.poll), but the leader
            # was reaped by someone else: rely on the rule signal_group relies
            # on, that a group id is not reused while any member lives.
            self._group_cleared = True
            signal_group(self.identity, signal.SIGKILL)
        return ExitStatus()

    def send_signal(self, sig: int) -> bool:
        if not self.owned:
            return signal_group(self.identity, sig, group=False)
        return signal_group(self.identity, sig)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Spawner(ABC):
    """Subclass and implement :meth:`spawn`.  Raise (any ``OSError`` or
    :class:`wirepool.SpawnError`) for a start that failed: the pool counts it
    as a rapid failure and shows the message as the reason.

    The pool calls :meth:`spawn` and the hooks around it on its loop thread,
    or, for many starts at once, on one of two threads that take turns
    (never two calls at once): keep state per session, not per thread."""

    #: Where per-session logs go; the pool fills it in (``<state>/logs``)
    #: when left None.  A directory that is not the supervisor user's, or
    #: that group or others can write, is refused: children start with their
    #: output discarded, and a warning says why.
    log_dir: Path | None = None
    #: A live log is kept within this many bytes (plus about 10 ms of the
    #: child's output) while the pool watches its child; 0: unbounded.
    log_max_bytes: int = 10 * 1024 * 1024
    #: How many rotated copies (``<log>.1`` ...) are kept.
    log_backups: int = 3
    #: Whether a child may be left running when the supervisor exits (to be
    #: adopted by the next one).  False makes ``on_exit="leave"`` stop them.
    survives_supervisor: bool = True
    #: Marker variables the pool asks every child to carry.
    markers: Mapping[str, str] = MappingProxyType({})
    #: Whether the child's output goes to :meth:`log_path`.  The pool then
    #: writes a line there at each start and exit of the child, and keeps
    #: the last lines of each run for status (``last_output``).
    output_to_log: bool = False

    @abstractmethod
    def spawn(self, session: Session) -> Worker: ...

    #: Where children that cannot carry marker variables visibly (Python
    #: workers: /proc shows the forkserver's environment) leave a marker file.
    marker_dir: Path | None = None

    def attach(self, state_dir: Path, markers: Mapping[str, str]) -> None:
        """Called once by the pool before the first spawn."""
        if self.log_dir is None:
            self.log_dir = state_dir / "logs"
        self.marker_dir = StateDir(state_dir).markers_dir
        self.markers = MappingProxyType(dict(markers))

    def fingerprint(self, session: Session) -> str | None:
        """What a child started now for ``session`` would be started from,
        as a short digest (None, the default: not tracked).  The pool keeps
        the digest of each child it starts, shows "started from an older
        configuration" while the current one differs, and restarts the
        child when asked to (``restart_on_change``).  Called on the loop for
        every running session on each discovery pass: keep it cheap.
        Raise to mean "cannot tell" (nothing changes)."""
        return None

    def log_path(self, session: Session) -> Path | None:
        if self.log_dir is None:
            return None
        return self.log_dir / log_filename(session)

    #: the log :meth:`_open_log_with_mark` opened for the spawn that follows
    #: (the session, the path, the descriptor, the file's device and inode);
    #: one slot is enough, as for ``_env_for_spawn``: both are set and taken
    #: before :func:`wirepool._exec.hand_off` lets another spawn in
    _log_for_spawn: tuple[Session, Path, int, tuple[int, int]] | None = None
    #: the device and inode of the log each spawn took, by session name, for
    #: the observe after it (spawns overlap: :func:`wirepool._exec.hand_off`)
    _files_for_observe: dict[str, tuple[Session, tuple[int, int]]] | None = None

    def _open_log_with_mark(self, session: Session, path: Path, line: bytes) -> None:
        """Append ``line`` (the pool's "starting" mark) to ``path`` and keep
        the descriptor for the spawn of ``session`` that follows, which
        takes it instead of opening the log again.  Raises OSError (nothing
        kept) when the log cannot take the line; the spawn then opens the
        log by itself."""
        self._drop_log_for_spawn()
        fd, file = open_child_log(path, line)
        self._log_for_spawn = (session, path, fd, file)

    def _drop_log_for_spawn(self) -> None:
        """Close a log kept for a spawn that did not take it (a spawner
        whose spawn opens no log, or a spawn that never came)."""
        kept, self._log_for_spawn = self._log_for_spawn, None
        if kept is not None:
            with contextlib.suppress(OSError):
                os.close(kept[2])

    def _drop_file_for_observe(self, session: Session) -> None:
        """Forget the log file a spawn of ``session`` took, for a spawn that
        failed after taking it (no observe will come for it)."""
        if self._files_for_observe:
            self._files_for_observe.pop(session.name, None)

    def _open_child_log(self, session: Session) -> tuple[Path | None, int | None]:
        """The session's log, opened (created ``0600``) for the child to
        append to; ``(None, None)``, with a warning, when it cannot be."""
        kept = self._log_for_spawn
        if kept is not None and kept[0] is session:
            self._log_for_spawn = None
            if self._files_for_observe is None:
                self._files_for_observe = {}
            self._files_for_observe[session.name] = (session, kept[3])
            return kept[1], kept[2]
        self._drop_log_for_spawn()
        self._drop_file_for_observe(session)
        log_path = self.log_path(session)
        if log_path is None:
            return None, None
        try:
            return log_path, open_session_log(log_path)
        except OSError as exc:
            # The child matters more than its log: a read-only or full
            # state directory, a log directory others can write, or a
            # symlink planted as the log must not stop every start and
            # restart in the pool.
            logger.warning(
                "session {!r}: cannot open its log {} ({}); its output is discarded",
                session.name,
                log_path,
                exc.strerror or exc,
            )
            return None, None

    # The pool calls the four hooks below on its loop thread: each must be
    # quick.  Logs are kept to size by a LogKeeper thread, never here.
    _log_keeper: LogKeeper | None = None

    def observe(self, session: Session, worker: Worker) -> None:
        """The pool watches ``worker`` from now on (just spawned, or adopted
        from a previous supervisor): keep its log within
        :attr:`log_max_bytes`.  Only the log of a child of this pool: a
        daemon found through a health check writes wherever it likes."""
        path = worker.log_path
        files = self._files_for_observe
        kept = files.pop(session.name, None) if files else None
        if not worker.owned or path is None or self.log_max_bytes <= 0:
            return
        dir_fd = open_log_dir(path.parent, create=False)
        try:
            # The file the spawn just opened for the child, or (adopted, or
            # a log opened some other way) the one the name is now.
            file = kept[1] if kept is not None and kept[0] is session else None
            if file is None:
                file = log_file_id(dir_fd, path.name)
        except FileNotFoundError:  # an adopted child whose log is gone: nothing to bound
            os.close(dir_fd)
            return
        except BaseException:
            os.close(dir_fd)
            raise
        if self._log_keeper is None or self._log_keeper.closed:  # none yet, or it died
            self._log_keeper = LogKeeper(self.log_max_bytes, self.log_backups)
        self._log_keeper.watch(session.name, worker.pid, dir_fd, path.name, file)

    def unobserve(self, session: Session, worker: Worker) -> None:
        """The pool no longer watches ``worker`` (it exited, or was released)."""
        if self._log_keeper is not None:
            self._log_keeper.forget(session.name, worker.pid)

    def maintain(self, session: Session) -> None:
        """Periodic upkeep for a running child, from the pool's sweep: asks
        the log keeper to look at the session's log (a net under a lost
        inotify event)."""
        if self._log_keeper is not None:
            self._log_keeper.check(session.name)

    def close(self) -> None:
        """The pool stops: stop the log keeper and close what it holds.  The
        next pool's first :meth:`observe` starts a new one."""
        keeper, self._log_keeper = self._log_keeper, None
        if keeper is not None:
            keeper.close()


def log_filename(session: Session) -> str:
    """A session's log file name: the name an operator knows it by first
    (wire's persona handle, ``real-0.by-key_7343...-1a2b3c4d.log``), then
    its key where that differs, since two sessions may show one name."""
    shown, key = session.display_name, session.name
    if shown == key:
        return f"{safe_filename(key)}.log"
    return f"{safe_filename(shown)}.{safe_filename(key)}.log"


def safe_filename(name: str) -> str:
    """A file name for any session name.

    A name made only of ASCII letters, digits and ``-_.`` is used as it is;
    anything else is cleaned (odd characters become ``_``, at most 80 of
    them, so the name plus a temp-file prefix stays far below the 255-byte
    limit even for CJK names) and gets a short hash of the original, which
    keeps two names that clean alike apart.  A clean name that already ends
    like such a hash gets one too, so it cannot collide with a cleaned one.
    """
    if _is_clean(name) and not _has_hash_suffix(name):
        return name  # the common case, once per spawn and log look: no pass per character
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    cleaned = cleaned[:80].lstrip(".") or "session"
    if cleaned == name and not _has_hash_suffix(name):
        return cleaned
    digest = sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{cleaned}-{digest}"


# String methods, not patterns: compiling the two was ~0.15 ms of a
# supervisor's start, before its first child's log could be named.
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
_HEX = "0123456789abcdef"


def _is_clean(name: str) -> bool:
    """A name the cleaning leaves as it is: ASCII letters, digits and
    ``-_.``, not starting with a dot, 1 to 80 of them (a strip by the
    allowed characters leaves nothing of such a name)."""
    return 0 < len(name) <= 80 and name[0] != "." and not name.strip(_NAME_CHARS)


def _has_hash_suffix(name: str) -> bool:
    """Whether ``name`` ends as :func:`safe_filename`'s hash: ``-`` and 8
    lowercase hex digits."""
    return len(name) >= 9 and name[-9] == "-" and not name[-8:].strip(_HEX)


def rotate_log(path: Path, max_bytes: int, backups: int, *, copy_truncate: bool = False) -> bool:
    """Rotate ``path`` to ``path.1`` ... ``path.<backups>`` if it is larger than
    ``max_bytes``.  With ``copy_truncate`` the live file's tail is copied (see
    :func:`wirepool._logs.rotate_open_log`) and the file truncated in place,
    so a child still writing to it (``O_APPEND``) goes on at the new end --
    logrotate's copytruncate, the one way to rotate a file whose writer we do
    not control.  Returns whether it rotated.

    Nothing is followed: the directory must be ours and not writable by
    group or others, ``path`` must be a regular file of ours, and a planted
    ``path.1`` is replaced, never written through."""
    if max_bytes <= 0:
        return False
    try:
        dir_fd = open_log_dir(path.parent, create=False)
    except OSError:
        return False
    try:
        fd = open_log(dir_fd, path.name, create=False, append=False)
        try:
            if copy_truncate:
                return rotate_open_log(dir_fd, path.name, fd, max_bytes, backups)
            if os.fstat(fd).st_size <= max_bytes:
                return False
        finally:
            os.close(fd)
        shift_and_rename(dir_fd, path.name, backups)
    except OSError:
        return False
    finally:
        os.close(dir_fd)
    return True


@frozen
class Environment(Value):
    """How a child's environment is built, explicitly.

    Start from the supervisor's own environment (``inherit``) or from nothing,
    drop every variable whose name starts with one of ``strip_prefixes``,
    then pin ``set`` -- whose values are templates: ``{name}``, ``{home}`` and
    ``{cwd}`` are replaced with the session's values.
    """

    inherit: bool = True
    strip_prefixes: tuple[str, ...] = ()
    set: Mapping[str, str] = field(default_factory=dict)

    def build(self, session: Session, base: Mapping[str, str] | None = None) -> dict[str, str]:
        drop = (*self.strip_prefixes, "WIREPOOL_")
        if not self.inherit:
            env: dict[str, str] = {}
        elif base is None:
            env = _inherited(drop)
        else:
            env = {k: v for k, v in base.items() if not k.startswith(drop)}
        values = _template_values(session)
        for key, template in self.set.items():
            env[key] = template.format_map(values)
        return env


#: the supervisor's environment as it was last read: its raw bytes and the
#: decoded copy (see _environ)
_last_environ: tuple[dict[bytes, bytes], dict[str, str]] | None = None
#: the last _inherited result: the decoded copy it came from, the prefixes
#: dropped, the result
_last_inherited: tuple[dict[str, str], tuple[str, ...], dict[str, str]] | None = None


def _environ() -> Mapping[str, str]:
    """``os.environ`` decoded, read again only when it changed: decoding it
    was a fifth of the Python a spawn costs (bring-up of 10 000, every
    restart), and each ``os.environ.get`` encodes its key and decodes the
    value.  Compared as its raw bytes, whose values are the same objects
    until someone sets a variable, so the comparison is a pass of identity
    checks.  Read-only: the same dict is handed to every caller."""
    global _last_environ
    raw = getattr(os.environ, "_data", None)
    last = _last_environ
    if isinstance(raw, dict) and last is not None and last[0] == raw:
        return last[1]
    env = dict(os.environ)
    if isinstance(raw, dict):
        _last_environ = (dict(raw), env)
    return env


def _inherited(drop: tuple[str, ...]) -> dict[str, str]:
    """``os.environ`` without the variables starting with ``drop`` (a new
    dict each call, filtered again only when the environment changed)."""
    global _last_inherited
    full = _environ()
    last = _last_inherited
    if last is not None and last[0] is full and last[1] == drop:
        return dict(last[2])
    env = {k: v for k, v in full.items() if not k.startswith(drop)}
    if isinstance(full, dict):
        _last_inherited = (full, drop, env)
    return dict(env)


#: the placeholders argv, cwd and environment templates may use
TEMPLATE_FIELDS = frozenset({"name", "home", "dir", "cwd"})


def validate_template(text: str, allowed: Collection[str] = TEMPLATE_FIELDS) -> None:
    """Raise ValueError unless ``text`` uses only plain ``{field}``
    placeholders from ``allowed`` (``{{``/``}}`` for literal braces).

    Checked when a plugin is built, so a typo fails ``wirepool run`` at once
    with the template named -- not every spawn, session by session, later.
    Attribute and index lookups (``{dir.__class__}``) and conversions are
    refused: a template is data, not a small program."""
    # string.Formatter().parse is this C function; importing `string` to
    # reach it compiled string.Template's pattern, ~0.7 ms of start-up
    import _string  # type: ignore[import-not-found]

    try:
        parsed = list(_string.formatter_parser(text))
    except ValueError as exc:
        raise ValueError(f"bad template {text!r}: {exc}") from None
    for _literal, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in allowed or spec or conversion:
            names = ", ".join("{" + f + "}" for f in sorted(allowed))
            raise ValueError(
                f"bad placeholder {{{field_name}}} in {text!r}: use {names} "
                "(and {{ }} for literal braces)"
            )


def _template_values(session: Session) -> dict[str, str]:
    return {
        "name": session.name,
        "home": str(session.home),
        "dir": str(session.home),
        "cwd": str(session.cwd or session.home),
    }


ArgvLike = Sequence[str] | Callable[[Session], Sequence[str]]


class CommandSpawner(Spawner):
    """Run an external command per session.

    Args:
        argv: a list whose elements may contain ``{name}``, ``{home}`` (or
            its alias ``{dir}``), ``{cwd}``; or a callable ``session -> list``.
        cwd: working directory template (default: the session's home).
        env: an :class:`Environment`.
        env_for: optional per-session extra variables (applied last).
        inputs: files the child reads its configuration from, as templates
            (``"{home}/redis.conf"``): their contents are part of
            :meth:`fingerprint`, beside the command, the working directory
            and the environment the child is given beyond what it inherits.
        log_max_bytes / log_backups: the size bound of the session log, and
            how many rotated copies are kept.  While the pool watches a
            child, a background thread copy-truncates its log as soon as it
            passes ``log_max_bytes``: the live log stays within the limit
            plus what the child writes in about 10 ms (35-55 MB for a child
            writing 5 GB/s, 1-2 MB at 140 MB/s; more when every core is
            busy and the thread waits for one; ``benchmarks/README.md``).
        log_dir: where logs go (default: ``<state dir>/logs``).  It must be
            owned by the supervisor's user and not writable by group or
            others (a shared ``/tmp``-like directory lets anyone plant
            ``<session>.log -> /etc/shadow``).  One that is not is refused
            at each spawn, where the directory is opened and checked, not
            here: it may not exist yet, its mode may change before the
            spawn, and a log problem must not stop the pool.  The child
            then starts with its output discarded, and a warning says why.
    """

    output_to_log = True

    def __init__(
        self,
        argv: ArgvLike,
        *,
        cwd: str | None = "{home}",
        env: Environment | None = None,
        env_for: Callable[[Session], Mapping[str, str]] | None = None,
        log_dir: Path | None = None,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 3,
        inputs: Sequence[str] = (),
    ) -> None:
        if not callable(argv) and (isinstance(argv, str) or not argv):
            raise TypeError("argv must be a non-empty list of strings (never a shell string)")
        if isinstance(inputs, str):
            raise TypeError("inputs must be a list of path templates, not one string")
        for template in inputs:
            validate_template(template)
        self.inputs = tuple(inputs)
        self.argv = argv
        self.cwd = cwd
        self.env = env or Environment()
        self.env_for = env_for
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups

    def __repr__(self) -> str:
        return f"CommandSpawner({self.argv!r})"

    def command(self, session: Session) -> list[str]:
        if callable(self.argv):
            return [str(a) for a in self.argv(session)]
        values = _template_values(session)
        return [a.format_map(values) for a in self.argv]

    def environment(self, session: Session) -> dict[str, str]:
        env = self.env.build(session)
        if self.env_for is not None:
            env.update(self.env_for(session))
        env.update(self.markers)
        if self.markers:
            env[SESSION_MARKER] = session.name
        return env

    #: the environment the last fingerprint was taken of, for the spawn that
    #: follows it (the pool fingerprints right before each spawn): built
    #: once, and what the fingerprint says is exactly what the child gets
    _env_for_spawn: tuple[Session, dict[str, str]] | None = None

    def fingerprint(self, session: Session) -> str | None:
        self._env_for_spawn = None
        values = _template_values(session)
        env = self.environment(session)
        self._env_for_spawn = (session, env)
        inherited = _environ()
        given = sorted(
            (k, v)
            for k, v in env.items()
            if inherited.get(k) != v and not k.startswith("WIREPOOL_")
        )
        digest = sha256(
            json.dumps(
                [self.command(session), self.cwd.format_map(values) if self.cwd else None, given]
            ).encode()
        )
        for template in self.inputs:
            path = Path(template.format_map(values))
            try:
                digest.update(b"\0" + read_small(path, INPUT_LIMIT))
            except FileNotFoundError:
                digest.update(b"\1")  # absent is a state of its own
        return digest.hexdigest()[:16]

    def spawn(self, session: Session) -> Worker:
        argv = self.command(session)
        memo, self._env_for_spawn = self._env_for_spawn, None
        env = memo[1] if memo is not None and memo[0] is session else self.environment(session)
        cwd = self.cwd.format_map(_template_values(session)) if self.cwd else None
        log_path, log_fd = self._open_child_log(session)
        held = _HeldFile.create(self.marker_dir, env) if self.markers else None
        try:
            if _exec.AVAILABLE:
                pid = _exec.spawn(
                    argv, env, cwd, log_fd, held.child_fd if held is not None else None
                )
            else:
                pid = _popen(argv, env, cwd, log_fd, held)
        except BaseException:
            if held is not None:
                held.discard()
            self._drop_file_for_observe(session)
            raise
        finally:
            if log_fd is not None:
                os.close(log_fd)
        if held is not None:
            held.spawned()
        return _SpawnedWorker(pid, log_path, held)


def _popen(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    log_fd: int | None,
    held: _HeldFile | None,
) -> int:
    """:func:`wirepool._exec.spawn` where libc lacks what it uses: the same
    child but for its signals (only the two Python ignores are restored
    to their default) and the number of its identity file's descriptor."""
    import subprocess  # only here: posix_spawn starts every child elsewhere

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL if log_fd is None else log_fd,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        pass_fds=(held.child_fd,) if held is not None else (),
    )
    # From here the child is ours to wait for.  A Popen dropped while its
    # child runs goes on subprocess's list of the unwaited, whose next Popen
    # reaps it behind our back and loses how it ended: a set returncode
    # keeps it off that list (its child is not reaped).
    proc.returncode = 0
    return proc.pid


def _zombie_start(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        return int(raw[raw.rfind(b")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _python_child(
    target: Callable[[Session], object],
    session: Session,
    log_path: str | None,
    env: dict[str, str],
    marker_dir: str | None = None,
    log_format: str | None = None,
) -> None:
    """First code run in a Python worker: detach into its own process group,
    leave a marker file (its environment, unlike an exec'd child's, is not
    visible in /proc), point stdout/stderr at the session log (``os.devnull``:
    discard them), then run the target."""
    os.setsid()
    _default_signals()
    os.environ.clear()
    os.environ.update(env)
    me = identity_of(os.getpid())
    if marker_dir is not None and me is not None:
        with contextlib.suppress(OSError):
            write_marker(Path(marker_dir), me, env)
    if log_path is not None:
        try:
            # Checked again here, by the same rules: the worker opens its
            # log itself (a descriptor does not cross the forkserver).
            fd = open_session_log(Path(log_path)) if log_path != os.devnull else -1
        except OSError:
            fd = -1
        if fd < 0:  # refused by the supervisor, or by the check above
            fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if log_format is not None:
        _route_loguru(session, log_format)
    with contextlib.suppress(OSError):
        os.chdir(session.cwd or session.home)
    target(session)


def _default_signals() -> None:
    """As a command child starts (:mod:`wirepool._exec`): nothing blocked,
    and no signal ignored because the supervisor's host ignored it (the
    forkserver passes that on, as ``nohup`` gives SIGHUP); SIGPIPE and
    SIGXFSZ stay as Python sets them, so that a write raises instead, and
    SIGINT gets Python's own default, KeyboardInterrupt, as in a Python
    started with it not ignored."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    keep = {signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP}
    for sig in signal.valid_signals():
        if sig not in keep:
            with contextlib.suppress(OSError, ValueError):
                if signal.getsignal(sig) == signal.SIG_IGN:
                    default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
                    signal.signal(sig, default)


#: the default line format of a Python worker's loguru messages in its log
WORKER_LOG_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {extra[session]} | {name}:{line} - {message}"
)


def _route_loguru(session: Session, log_format: str) -> None:
    """Point the worker's loguru at its (redirected) stderr, tagged with the
    session.  Without this, the handler loguru installed at import time in
    the forkserver keeps writing wherever that process's stderr went, and
    the worker's own ``logger.info`` lines never reach the session log.  The
    supervisor's ``logger.disable("wirepool")`` is lifted too: a worker that
    uses wirepool itself is a different program."""
    from loguru import logger

    logger.remove()
    logger.configure(extra={"session": session.name})
    logger.add(sys.stderr, format=log_format, level="DEBUG", backtrace=False, diagnose=False)


#: what a held identity file is called once its child's pid is known
HELD_SUFFIX = ".held"


class _HeldFile:
    """A child's identity that its daemon cannot erase by accident.

    The marker variables are one signal, but many daemons rewrite their
    process title (redis, postgres, nginx, anything using setproctitle),
    and that overwrites the memory ``/proc/PID/environ`` is read from: the
    markers read as nothing.  So every exec'd child also inherits a
    descriptor, read-only, on a file of its own in the markers directory
    that names its pool and session (as s6-supervise's services hold their
    lock).  A later supervisor finds it by the descriptor, in
    ``/proc/PID/fd``, even when the file was deleted since; and the file,
    named ``<pid>.held``, records the pid, start time and boot for the
    child that sheds both the variables and the descriptor.

    The supervisor keeps no descriptor of it between the spawn and
    :meth:`commit`, which opens it again by name: a burst's commits come
    after up to a whole batch of spawns, and every descriptor still open
    would be copied into each later child's table (vfork) and closed there
    before its exec."""

    __slots__ = ("child_fd", "marker_dir", "markers", "size", "tmp")

    def __init__(
        self, marker_dir: Path, tmp: Path, child_fd: int, markers: dict[str, str], size: int
    ) -> None:
        self.marker_dir, self.tmp, self.child_fd = marker_dir, tmp, child_fd
        #: the child's marker variables (picked out of its environment once)
        self.markers = markers
        #: how many bytes the file holds so far
        self.size = size

    @classmethod
    def create(cls, marker_dir: Path | None, env: Mapping[str, str]) -> _HeldFile | None:
        if marker_dir is None:
            return None
        tmp = marker_dir / f".held-{os.getpid()}-{time.monotonic_ns()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o600)
            except FileNotFoundError:  # the first child (or the directory was removed)
                marker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            logger.warning("cannot make a child's identity file in {}: {}", marker_dir, exc)
            return None
        try:
            try:
                # Named before the child exists: a supervisor killed right
                # after the spawn leaves a child whose descriptor already
                # says whose.
                markers = {k: v for k, v in env.items() if k.startswith("WIREPOOL_")}
                data = _held_bytes(markers, None)
                os.write(fd, data)
            finally:
                os.close(fd)
            child_fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return None
        return cls(marker_dir, tmp, child_fd, markers, len(data))

    def spawned(self) -> None:
        """The child has its copy of the read-only descriptor: ours goes."""
        if self.child_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.child_fd)
            self.child_fd = -1

    def commit(self, ident: ProcessIdentity) -> None:
        """Add the child's start time and boot to its file, and name it
        ``<pid>.held``.  Written in place, never replaced: the inode is the
        one the child's descriptor holds."""
        self.spawned()
        try:
            data = _held_bytes(self.markers, ident)
            # O_NOFOLLOW: the markers directory is ours (0700), but a name
            # that is a link now is not the file we made
            fd = os.open(self.tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.pwrite(fd, data, 0)
                if len(data) < self.size:  # never: it only gains the start and boot
                    os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
            os.replace(self.tmp, self.marker_dir / f"{ident.pid}{HELD_SUFFIX}")
        except (OSError, ValueError) as exc:
            logger.warning("pid {}: cannot finish its identity file: {}", ident.pid, exc)

    def discard(self) -> None:
        self.spawned()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _held_bytes(markers: dict[str, str], ident: ProcessIdentity | None) -> bytes:
    if ident is None:
        return json.dumps(markers).encode()
    return json.dumps({**markers, "start": ident.start, "boot": boot_id()}).encode()


def held_markers(pid: int, marker_dir: Path) -> dict[str, str] | None:
    """The marker variables of the identity file ``pid`` holds open (one
    this pool's markers directory gave it), or None: it holds none."""
    for path in fds_under(pid, os.path.realpath(marker_dir)):
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            # followed: /proc/PID/fd/N is a link to the open file itself
            data = json.loads(read_small(Path(path), SMALL_STATE_LIMIT))
            return {str(k): str(v) for k, v in data.items() if str(k).startswith("WIREPOOL_")}
    return None


def held_files(marker_dir: Path) -> dict[int, tuple[ProcessIdentity, dict[str, str]]]:
    """The children whose identity files (``<pid>.held``) name a live
    process of this boot: pid -> (identity, marker variables).  Files of
    processes that are gone are removed."""
    found: dict[int, tuple[ProcessIdentity, dict[str, str]]] = {}
    try:
        entries = list(marker_dir.glob(f"*{HELD_SUFFIX}"))
    except OSError:
        return found
    boot = boot_id()
    for entry in entries:
        try:
            data = read_json(entry, SMALL_STATE_LIMIT)
            ident = ProcessIdentity(int(entry.name[: -len(HELD_SUFFIX)]), int(data.pop("start")))
            same_boot = data.pop("boot", None) == boot
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
            continue
        if same_boot and identity_of(ident.pid) == ident:
            found[ident.pid] = (ident, {str(k): str(v) for k, v in data.items()})
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return found


def forget_child(marker_dir: Path, pid: int) -> None:
    """Remove what marks ``pid`` as a child (it exited): its marker file and
    its identity file."""
    for name in (f"{pid}.json", f"{pid}{HELD_SUFFIX}"):
        with contextlib.suppress(OSError):
            (marker_dir / name).unlink()


def write_marker(marker_dir: Path, ident: ProcessIdentity, env: Mapping[str, str]) -> Path:
    marker_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = marker_dir / f"{ident.pid}.json"
    tmp = marker_dir / f".{ident.pid}.tmp"
    data = {k: v for k, v in env.items() if k.startswith("WIREPOOL_")}
    tmp.write_text(json.dumps({**data, "start": ident.start}))
    os.replace(tmp, path)
    return path


def read_markers(marker_dir: Path) -> dict[int, dict[str, str]]:
    """Live processes that left a marker file (pid -> its WIREPOOL_* vars);
    files of processes that are gone (or whose pid was reused) are removed."""
    found: dict[int, dict[str, str]] = {}
    try:
        entries = list(marker_dir.glob("*.json"))
    except OSError:
        return found
    for entry in entries:
        marker = _read_marker(entry)
        if marker is not None and identity_of(marker[0].pid) == marker[0]:
            found[marker[0].pid] = marker[1]
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return found


def _read_marker(path: Path) -> tuple[ProcessIdentity, dict[str, str]] | None:
    """The identity and WIREPOOL_* vars a marker file records, or None when
    it is unusable (bounded and non-blocking, as every state file is read)."""
    try:
        data = read_json(path, SMALL_STATE_LIMIT)
        ident = ProcessIdentity(int(path.stem), int(data.pop("start")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    return ident, {str(k): str(v) for k, v in data.items()}


def is_pool_child(
    ident: ProcessIdentity, pool_id: str, session: str, marker_dir: Path | None
) -> bool:
    """Whether the live process ``ident`` is a child pool ``pool_id`` started
    for ``session``: it carries both marker variables (a Python worker, whose
    /proc environment is the forkserver's, by its marker file instead).

    A record naming a pid and start time is not enough to signal a process:
    the record may be stale, copied from another pool, or planted.  The
    identity is checked again after the reads, so what was read belongs to
    the process meant, not to one that took its pid meanwhile."""
    want = {POOL_MARKER: pool_id, SESSION_MARKER: session}
    env = wirepool_environ(ident.pid)
    marked = env is not None and all(env.get(k) == v for k, v in want.items())
    if not marked and marker_dir is not None:
        marker = _read_marker(marker_dir / f"{ident.pid}.json")
        marked = (
            marker is not None
            and marker[0] == ident
            and all(marker[1].get(k) == v for k, v in want.items())
        )
    if not marked and marker_dir is not None:
        # A daemon that rewrote its title has no variables left to read.
        held = held_markers(ident.pid, marker_dir)
        marked = held is not None and all(held.get(k) == v for k, v in want.items())
    return marked and identity_of(ident.pid) == ident


def find_children(pool_id: str, marker_dir: Path | None) -> dict[str, list[ProcessIdentity]]:
    """The live children of pool ``pool_id`` per session, oldest first, found
    without trusting any state record: exec'd children by their marker
    variables in ``/proc``, Python workers by their marker files.

    A child is a session leader none of whose ancestors is marked: a
    daemon's own ``setsid`` helper is a leader too, but under a marked
    parent, and it is not a second child.  Only the session leaders and
    their ancestors are looked at (a pass over every process's environment
    and descriptors cost ~0.1 ms a process at each start), each as the pass
    did: its variables, else its marker file's, else those of the identity
    file it holds."""
    wanted = [os.fsencode(f"{POOL_MARKER}={pool_id}")]
    pool_key = os.fsencode(f"{POOL_MARKER}=")
    files: dict[int, dict[str, str]] = {}
    held_dir = None  # its real path, which a descriptor's link names
    if marker_dir is not None:
        held_dir = os.path.realpath(marker_dir)
        files = {
            pid: env
            for pid, env in read_markers(marker_dir).items()
            if env.get(POOL_MARKER) == pool_id
        }
    own = os.getpid()
    seen: dict[int, dict[str, str] | None] = {}

    def markers(pid: int) -> dict[str, str] | None:
        if pid in seen:
            return seen[pid]
        env = files.get(pid)
        if env is None and pid != own:
            env, elsewhere = environ_markers(pid, wanted, pool_key)
            # Children whose variables read as nothing (a rewritten title),
            # by the identity file they hold (_HeldFile).  Not one marked
            # for another pool: that pool spawned it (a child of ours keeps
            # our marker; a pool closes every descriptor but its own for its
            # children), and reading the descriptors of another pool's ten
            # thousand children was ~0.5 s of every start on their host.
            if env is None and not elsewhere and held_dir is not None and fds_under(pid, held_dir):
                held = held_markers(pid, Path(held_dir))
                if held is not None and held.get(POOL_MARKER) == pool_id:
                    env = held
        seen[pid] = env
        return env

    class _Marked:
        def __contains__(self, pid: object) -> bool:
            return isinstance(pid, int) and markers(pid) is not None

    try:
        candidates = session_leaders()
    except OSError:
        candidates = []
    known = set(candidates)
    candidates += [pid for pid in files if pid not in known]
    leaders: dict[str, list[ProcessIdentity]] = {}
    for pid in candidates:
        env = markers(pid)
        if env is None:
            continue
        name = env.get(SESSION_MARKER)
        try:
            is_leader = os.getsid(pid) == pid
        except OSError:
            continue
        ident = identity_of(pid)
        if name is None or ident is None or not is_leader or has_marked_ancestor(pid, _Marked()):
            continue
        leaders.setdefault(name, []).append(ident)
    for idents in leaders.values():
        idents.sort(key=lambda i: i.start)
    return leaders


class _ProcessWorker(Worker):
    def __init__(self, proc: Any, identity: ProcessIdentity, log_path: Path | None) -> None:
        self.proc = proc
        self.identity = identity
        self.started_at = time.time()
        self.log_path = log_path

    def fileno(self) -> int | None:
        return int(self.proc.sentinel)

    def poll(self) -> ExitStatus | None:
        if self.proc.is_alive():
            return None
        code = self.proc.exitcode
        return ExitStatus() if code is None else ExitStatus.from_returncode(code)

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.proc.close()


class CallableSpawner(Spawner):
    """Run ``target(session)`` in a fresh Python process via ``multiprocess``.

    The target is pickled with dill, so closures work; prefer a small,
    module-level function with the session as its only input (a captured
    lock or socket does not survive the trip).  ``start_method`` defaults to
    ``forkserver`` on Linux and ``spawn`` elsewhere -- never ``fork``.

    The worker's stdout, stderr and loguru messages (``log_format``, or
    ``None`` to leave loguru alone) go to the per-session log, under the same
    rules as a command's: ``log_dir`` must be the supervisor user's and not
    writable by group or others (else the output is discarded), and the log
    is kept within ``log_max_bytes``, with ``log_backups`` copies.  Its exit is
    seen through the process sentinel in the pool's one event loop, so it
    restarts, backs off, shows in status and stops exactly like a command.

    Python workers are always stopped when the supervisor exits, even with
    ``on_exit="leave"``: multiprocess's forkserver and resource tracker live
    as long as any worker does, and the supervisor's interpreter waits for the
    tracker at exit (measured on 3.12/3.13: the exit hangs until the workers
    die).  A supervisor that is killed outright still leaves them running,
    and the next one adopts them by their marker files.
    """

    survives_supervisor = False
    output_to_log = True

    def __init__(
        self,
        target: Callable[[Session], object],
        *,
        start_method: str | None = None,
        env: Environment | None = None,
        log_dir: Path | None = None,
        log_format: str | None = WORKER_LOG_FORMAT,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 3,
    ) -> None:
        if start_method == "fork":
            raise ValueError(
                "fork would hand the supervisor's lock and threads to the child; "
                "use forkserver or spawn"
            )
        self.target = target
        self.start_method = start_method or (
            "forkserver" if sys.platform.startswith("linux") else "spawn"
        )
        self.env = env or Environment()
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.log_format = log_format
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self._ctx: Any = None

    def __repr__(self) -> str:
        return f"CallableSpawner({self.target!r}, start_method={self.start_method!r})"

    def spawn(self, session: Session) -> Worker:
        if self._ctx is None:
            import multiprocess

            self._ctx = multiprocess.get_context(self.start_method)
        env = self.env.build(session)
        env.update(self.markers)
        if self.markers:
            env[SESSION_MARKER] = session.name
        child_log: str | None = None
        if self.log_path(session) is not None:
            # Created and checked here, so that a refusal is said in the
            # supervisor's log; the worker opens it again by the same rules.
            log_path, log_fd = self._open_child_log(session)
            if log_fd is not None:
                os.close(log_fd)
            child_log = os.devnull if log_path is None else str(log_path)
        else:
            log_path = None
        marker_dir = str(self.marker_dir) if self.marker_dir else None
        proc = self._ctx.Process(
            target=_python_child,
            args=(
                self.target,
                session,
                child_log,
                env,
                marker_dir,
                self.log_format,
            ),
            name=f"wirepool:{session.name}",
            daemon=False,
        )
        proc.start()
        ident = identity_of(proc.pid) or ProcessIdentity(proc.pid, _zombie_start(proc.pid))
        return _ProcessWorker(proc, ident, log_path)
