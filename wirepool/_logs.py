"""Session logs: opened without following a planted name, and kept to their
size while the child writes, by one background thread.

**Where a child writes.**  Straight to its log file (``O_APPEND``), never into
a pipe the supervisor reads: a child outlives its supervisor
(``on_exit="leave"``) and the next one adopts it, and the write end of a pipe
whose reader died gets EPIPE/SIGPIPE -- a supervisor restart would break
every child's stdout.  With a file nothing of the supervisor's is in the data
path: a supervisor that is slow, stopped or gone costs a child nothing.
``benchmarks/bench_logs.py`` measures this design against a pipe read by a
log writer.

**How the size is kept.**  :class:`LogKeeper` is one daemon thread that
sleeps in ``poll`` on an inotify descriptor watching the log directories for
``IN_MODIFY``: an idle pool never wakes it, a log that grows wakes it at
once.  When a log has passed ``max_bytes`` it copies the log's tail into a
new file (at most ``2 * max_bytes``, and only the last ``max_bytes`` of a
log larger than that, so a 3 GB log costs what a 10 MB one does), truncates
the live file -- the child's ``O_APPEND`` writes go on at the new end --
and then shifts the older copies and renames the new one to ``<log>.1``.
It holds one descriptor per log directory, none per log: it looks at a log
by name (``fstatat``, no link followed) and opens it only to rotate it, and
only while the name still is the file the child was given (its device and
inode, taken when the keeper was told).  A descriptor per log would be one
more per child in every child's inherited table (each spawn pays to close
them all: ~1.5 ms per spawn at 5 000 children, measured) and would put ten
thousand children past a 20 000 descriptor limit.  It looks at growing logs at most once per
:data:`SETTLE` seconds (a flood costs 200 wake-ups a second, not one per
write), and copies a log out at most once per :data:`COPY_EVERY` seconds (a
rotation sooner only truncates: a child that writes more than ``max_bytes``
a second loses its middle anyway).  The pool's loop thread never copies,
truncates or scans a log.

**The overshoot.**  A file has no back pressure: between two looks the child
writes what it writes.  A live log passes ``max_bytes`` by what its child
writes in one reaction of the keeper, about 10 ms while the keeper has a
core: measured 35-55 MB for a child writing 5-6 GB/s in 64 KiB blocks (the
page cache's top speed on a two-core VM), 1-2 MB at 140 MB/s in 100-byte
lines (``benchmarks/README.md``).  When every core is busy the reaction
waits for the scheduler and the overshoot grows with the wait; several logs
flooding at once are looked at one after the other.  Bytes written between
the copy and the truncate are lost, as with logrotate's ``copytruncate``;
a slow writer's lines written during the copy are copied too
(:data:`CATCH_UP`).

**Who can plant what.**  Every open goes through a descriptor of the log
directory, whose owner and mode are checked on that descriptor: a directory
that is not ours, or that group or others can write, is refused (the child
still starts; its output is discarded).  Inside it, nothing follows a
symlink: the live log is opened ``O_NOFOLLOW`` and checked to be a regular
file of ours with one link; a rotated copy is written to a fresh ``O_EXCL``
file and renamed over ``<log>.1`` (a rename replaces a planted link, never
writes through it).  Every file is ``0600``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import select
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any

from wirepool import _inotify
from wirepool._log import logger
from wirepool._types import ExitStatus
from wirepool._value import Record, record

__all__ = [
    "LogKeeper",
    "exit_mark",
    "format_mark",
    "log_file_id",
    "mark_pattern",
    "open_child_log",
    "open_log",
    "open_log_dir",
    "open_session_log",
    "open_session_log_to_read",
    "rotate_open_log",
    "shift_and_rename",
    "write_mark",
]

#: seconds the keeper waits before looking again while logs keep growing
SETTLE = 0.005
#: bytes written during a copy that are copied too before the truncate
CATCH_UP = 64 * 1024
#: seconds between size checks of logs no inotify watch covers
POLL = 1.0
#: a log is copied out at most this often; a rotation sooner only truncates
COPY_EVERY = 1.0
#: seconds the keeper lets requests gather after the first wakes it
BATCH = 0.02


def open_log_dir(directory: Path, *, create: bool) -> int:
    """A descriptor of ``directory``, refused (``PermissionError``) unless we
    own it and neither group nor others can write it.

    Whoever can write the log directory can plant ``<session>.log`` or
    ``<session>.log.1`` as a link to any file (truncated and copied out by a
    rotation, as root) and can swap a checked name for another at will; no
    care inside such a directory is enough, so it is not used at all."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(directory, flags)
    except FileNotFoundError:
        if not create:
            raise
        # Made only when missing: a mkdir that fails with EEXIST on every
        # spawn and mark is a system call and an exception for nothing.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(directory, flags)
    try:
        st = os.fstat(fd)
        euid = os.geteuid()
        if st.st_uid != euid:
            raise PermissionError(
                errno.EPERM,
                f"log directory is owned by uid {st.st_uid}, not {euid}; "
                "refusing to write logs there",
                str(directory),
            )
        if st.st_mode & 0o022:
            raise PermissionError(
                errno.EPERM,
                f"log directory is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):o}); refusing to write logs there",
                str(directory),
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_log(dir_fd: int, name: str, *, create: bool, append: bool) -> int:
    """Open the log ``name`` in the directory ``dir_fd``: for the child
    (``append``: ``O_WRONLY | O_APPEND``) or for the keeper (``O_RDWR``).

    Never through a symlink, never a FIFO or device (opened non-blocking, so
    a FIFO cannot hang the caller), never a file of another user or one with
    a second hard link; a loose mode left by an older version is tightened."""
    flags = (os.O_WRONLY | os.O_APPEND) if append else os.O_RDWR
    return _open_checked(dir_fd, name, flags | (os.O_CREAT if create else 0))


def _open_checked(dir_fd: int, name: str, flags: int) -> int:
    """``name`` in ``dir_fd`` opened with ``flags``, under :func:`open_log`'s
    rules."""
    return _open_checked_stat(dir_fd, name, flags)[0]


def _open_checked_stat(dir_fd: int, name: str, flags: int) -> tuple[int, os.stat_result]:
    """:func:`_open_checked`, and the file's stat as it was checked."""
    flags |= os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link; not followed", name) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", name)
        if st.st_uid != os.geteuid():
            raise PermissionError(errno.EPERM, f"owned by uid {st.st_uid}", name)
        if st.st_nlink != 1:
            raise PermissionError(errno.EPERM, f"has {st.st_nlink} hard links", name)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        os.set_blocking(fd, True)  # the child inherits the file's flags
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_session_log(path: Path) -> int:
    """The descriptor a child's stdout and stderr go to: ``path`` created
    ``0600`` in its checked directory (made ``0700`` if missing)."""
    dir_fd = open_log_dir(path.parent, create=True)
    try:
        return open_log(dir_fd, path.name, create=True, append=True)
    finally:
        os.close(dir_fd)


def open_child_log(path: Path, line: bytes) -> tuple[int, tuple[int, int]]:
    """:func:`open_session_log` with ``line`` (a :func:`format_mark`)
    appended first, as :func:`write_mark` appends it: the start line and the
    child's descriptor from one opening of the directory and the file, where
    each was two (a tenth of a spawn's system calls).  Returns the
    descriptor and the log's ``(st_dev, st_ino)`` (see :func:`log_file_id`).
    Raises OSError, with nothing left open, when the log cannot be opened or
    cannot take the line."""
    dir_fd = open_log_dir(path.parent, create=True)
    try:
        fd, st = _open_checked_stat(dir_fd, path.name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            if st.st_size and _last_byte(dir_fd, path.name, st) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(dir_fd)
    return fd, (st.st_dev, st.st_ino)


def _last_byte(dir_fd: int, name: str, st: os.stat_result) -> bytes:
    """The last byte of the log ``st`` is the stat of (a child's descriptor
    cannot read it: a read-only one, to the same file, looks)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not now.st_size:
            return b"\n"  # replaced or emptied meanwhile: nothing to end
        return os.pread(fd, 1, now.st_size - 1)
    finally:
        os.close(fd)


def log_file_id(dir_fd: int, name: str) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the log ``name`` in ``dir_fd``, not following
    a link (what :meth:`LogKeeper.watch` is told).  Raises OSError."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    return st.st_dev, st.st_ino


def open_session_log_to_read(path: Path) -> int:
    """``path`` opened read-only by :func:`open_log`'s rules, in a directory
    checked as :func:`open_log_dir` checks it: what the supervisor reads of
    a log goes into status.json, and a planted ``<session>.log ->
    /etc/shadow`` must not put a line of it there."""
    dir_fd = open_log_dir(path.parent, create=False)
    try:
        return _open_checked(dir_fd, path.name, os.O_RDONLY)
    finally:
        os.close(dir_fd)


# The supervisor's own lines in a session log: one at each start and exit of
# its child, so that the log shows restarts where they happened.  The child
# writes the rest.


@functools.cache
def mark_pattern() -> re.Pattern[bytes]:
    """A line of the supervisor's: UTC time to the millisecond, the tag, a
    word (compiled when first asked, not as ``wirepool run`` starts)."""
    return re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z wirepool: (\S+)")


def format_mark(text: str, wall: float) -> bytes:
    """``2026-12-02T09:30:01.250Z wirepool: <text>\\n``; ``text`` is kept
    to one line (its line breaks are escaped)."""
    try:
        secs, ms = divmod(int(wall * 1000), 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"
    except (OverflowError, ValueError, OSError):  # a clock out of any calendar
        stamp = "1970-01-01T00:00:00.000Z"
    one_line = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"{stamp} wirepool: {one_line}\n".encode("utf-8", "backslashreplace")


def exit_mark(pid: int, status: ExitStatus) -> str:
    """The text of an exit line: ``pid 123 exited, code 64``."""
    if status.signal is not None:
        try:
            how = f"signal {signal.Signals(status.signal).name}"
        except ValueError:
            how = f"signal {status.signal}"
    elif status.code is not None:
        how = f"code {status.code}"
    else:
        how = "status unknown (not our child)"
    return f"pid {pid} exited, {how}"


def write_mark(path: Path, text: str, wall: float) -> None:
    """Append one line of the supervisor's (:func:`format_mark`) to the log
    ``path``, by the rules the child's own opening follows (a checked
    directory, no link followed, a ``0600`` file of ours).  A few system
    calls; raises OSError when the log cannot take it (a full disk, a
    refused directory).

    ``O_APPEND``, like the child: a line lands whole at the end, wherever a
    concurrent write or a rotation's truncate left it.  A child that died in
    mid-line gets its line ended first, so the mark starts a line."""
    line = format_mark(text, wall)
    dir_fd = open_log_dir(path.parent, create=True)
    try:
        fd = _open_checked(dir_fd, path.name, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    finally:
        os.close(dir_fd)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def rotate_open_log(dir_fd: int, name: str, fd: int, max_bytes: int, backups: int) -> bool:
    """Copy-truncate the live log ``fd`` (``name`` in ``dir_fd``) if it is
    larger than ``max_bytes``: copy the log's tail into a new file, truncate
    ``fd`` to 0, then shift ``name.1``... up by one and rename the copy to
    ``name.1``.  Returns whether it rotated.

    The copy is the whole log up to ``2 * max_bytes`` (a log noticed soon
    after passing the limit loses nothing) and only its last ``max_bytes``
    beyond that: its cost is bounded whatever the log's size.  The truncate
    comes before the shift because dropping the oldest copy frees its pages,
    which took longer than the copy (measured: 8 ms of 15 under a flood), and
    the child writes on meanwhile.  The log is truncated even if the copy
    fails (a full disk, say): the bound is the point, and the error is
    raised after it."""
    size = os.fstat(fd).st_size
    if max_bytes <= 0 or size <= max_bytes:
        return False
    tmp: str | None = None
    try:
        if backups > 0:
            start = 0 if size <= 2 * max_bytes else size - max_bytes
            tmp = _copy_out(dir_fd, f"{name}.1", fd, start, size)
    finally:
        os.ftruncate(fd, 0)
    if tmp is not None:
        try:
            _shift_backups(dir_fd, name, backups)
            os.replace(tmp, f"{name}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    return True


def shift_and_rename(dir_fd: int, name: str, backups: int) -> None:
    """Rename-style rotation of a log nobody writes: ``name`` becomes
    ``name.1`` (or is emptied, without backups)."""
    if backups <= 0:
        fd = open_log(dir_fd, name, create=False, append=False)
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        return
    _shift_backups(dir_fd, name, backups)
    os.replace(name, f"{name}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _shift_backups(dir_fd: int, name: str, backups: int) -> None:
    # rename moves a planted link as a link: nothing is followed
    for n in range(backups - 1, 0, -1):
        older = f"{name}.{n}"
        with contextlib.suppress(FileNotFoundError):
            _tighten(dir_fd, older)
            os.replace(older, f"{name}.{n + 1}", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _tighten(dir_fd: int, name: str) -> None:
    """A copy an older version left readable by others becomes 0600."""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except FileNotFoundError:
        raise
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _copy_out(dir_fd: int, target: str, src: int, start: int, end: int) -> str:
    """Copy ``src[start:end]`` (plus what was appended meanwhile, up to
    :data:`CATCH_UP`) into a new ``0600`` file, to be renamed over
    ``target``; returns its name."""
    tmp = f".{target}.rotating"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        out = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    except FileExistsError:  # left by a supervisor killed mid-copy
        os.unlink(tmp, dir_fd=dir_fd)
        out = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        copied = _copy_range(src, out, start, end)
        now = os.fstat(src).st_size
        if 0 < now - copied <= CATCH_UP:
            _copy_range(src, out, copied, now)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    finally:
        os.close(out)
    return tmp


def _copy_range(src: int, dst: int, start: int, end: int) -> int:
    """Append ``src[start:end]`` to ``dst`` in the kernel; returns the offset
    reached (short if ``src`` shrank meanwhile)."""
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(src, dst, end - pos, pos)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = _copy_chunk(src, dst, pos, min(end - pos, 1 << 20))
        if n <= 0:
            break
        pos += n
    return pos


def _copy_chunk(src: int, dst: int, pos: int, count: int) -> int:
    data = os.pread(src, count, pos)
    view = memoryview(data)
    while view:
        view = view[os.write(dst, view) :]
    return len(data)


@record(slots=True)
class _Log(Record):
    """A live log the keeper keeps to size."""

    token: int
    dir_key: tuple[int, int]
    name: str
    file: tuple[int, int]  # (st_dev, st_ino) of the file the child writes
    copied_at: float = float("-inf")  # monotonic time of the last rotated copy


@record(slots=True)
class _Dir(Record):
    """A directory of live logs, open and watched while a log in it is."""

    fd: int
    wd: int | None  # None: no inotify watch, its logs are polled
    users: int


_Request = tuple[str, str, int, int, str, tuple[int, int]]
_NO_FILE = (-1, -1)


class LogKeeper:
    """Keeps live logs within ``max_bytes`` (see the module docstring) from
    one daemon thread, started by the first :meth:`watch`.

    :meth:`watch`, :meth:`forget` and :meth:`check` queue a request and
    return at once (the pool's loop thread calls them).  The descriptors are
    used and closed by the keeper's thread alone, so none is closed under a
    copy still using it.  :meth:`close` stops the thread, which closes every
    descriptor; a closed keeper refuses (and closes) what it is given."""

    def __init__(
        self, max_bytes: int, backups: int, *, settle: float = SETTLE, poll: float = POLL
    ) -> None:
        self.max_bytes = max_bytes
        self.backups = backups
        self.settle = settle
        self.poll = poll
        #: how many times a log was rotated (for tests and benchmarks)
        self.rotations = 0
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Used by the keeper's thread only:
        self._logs: dict[str, _Log] = {}
        self._names: dict[tuple[tuple[int, int], str], str] = {}
        self._dirs: dict[tuple[int, int], _Dir] = {}
        self._by_wd: dict[int, tuple[int, int]] = {}
        self._ino: Any = None
        self._said: set[str] = set()

    @property
    def native_id(self) -> int | None:
        """The thread's kernel id (``/proc/self/task/<id>``), once started."""
        thread = self._thread
        return thread.native_id if thread is not None else None

    @property
    def closed(self) -> bool:
        """Closed, or its thread ended: it keeps nothing any more."""
        return self._stopped()

    def watch(self, key: str, token: int, dir_fd: int, name: str, file: tuple[int, int]) -> None:
        """Keep the log ``name`` in directory ``dir_fd`` within the bound,
        under ``key`` (replacing what ``key`` held), and look at it at once.
        ``file``: the ``(st_dev, st_ino)`` of the file the child writes (see
        :func:`log_file_id`); a file that no longer has the name is left
        alone.  Takes the descriptor."""
        self._request(("watch", key, token, dir_fd, name, file))

    def forget(self, key: str, token: int) -> None:
        """Stop watching ``key``'s log if ``token`` is still the one watched."""
        self._request(("forget", key, token, -1, "", _NO_FILE))

    def check(self, key: str | None = None) -> None:
        """Look at ``key``'s log (every log, for None) soon: a net under an
        event that was lost."""
        self._request(("check", key or "", 0, -1, "", _NO_FILE))

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread; it closes every descriptor it was given."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is None:
                self._close_pipe()
            else:
                self._poke()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ---------------------------------------------------------- any thread

    def _request(self, request: _Request) -> None:
        with self._lock:
            if not self._closed:
                self._requests.append(request)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="wirepool-logs", daemon=True
                    )
                    self._thread.start()
                if len(self._requests) == 1:
                    # else the first one's wake-up is pending still (the
                    # thread drains the pipe before it takes the requests):
                    # a sweep's check of ten thousand logs is one write
                    self._poke()
                return
        if request[3] >= 0:
            with contextlib.suppress(OSError):
                os.close(request[3])

    def _poke(self) -> None:
        # Under the lock: the pipe is closed under it, and a write racing
        # the close could land in whatever file reuses the number.
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                os.write(self._wake_w, b"\0")

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    # ------------------------------------------------------- keeper thread

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # not one pass failing: the thread itself
            logger.opt(exception=exc).error("log keeper stopped: {}", exc)
        finally:
            with self._lock:
                self._closed = True
                requests, self._requests = self._requests, []
                self._close_pipe()
            for request in requests:
                if request[3] >= 0:
                    with contextlib.suppress(OSError):
                        os.close(request[3])
            for key in list(self._logs):
                self._drop(key)
            if self._ino is not None:
                with contextlib.suppress(OSError):
                    self._ino.close()
                self._ino = None

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        ino_fd = self._open_inotify()
        if ino_fd is not None:
            poller.register(ino_fd, select.POLLIN)
        last_look = float("-inf")
        while True:
            polled = [d for d, info in self._dirs.items() if info.wd is None]
            ready = poller.poll(self.poll * 1000 if polled else None)
            if self._stopped():
                return
            try:
                woken = {fd for fd, _ in ready}
                due: set[str] = set()
                if self._wake_r in woken:  # a request comes with a poke
                    # Take them in batches: a pool bringing up thousands
                    # asks once a spawn, and a thread woken for each one
                    # took the interpreter lock from the loop each time --
                    # a wait for a core, when the children's execs hold
                    # both.  A log is looked at a little later, never less.
                    time.sleep(BATCH)
                    with contextlib.suppress(OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                    if self._stopped():  # its poke was drained with the rest
                        return
                    due = self._apply_requests()
                grew: set[str] = set()
                if ino_fd in woken:
                    # At most one look per `settle` at growing logs: a
                    # flood's writes wake us once per pause, not per write,
                    # while a line now and then is looked at at once.
                    pause = last_look + self.settle - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    last_look = time.monotonic()
                    grew = self._modified()
                if not ready:
                    due |= {k for k, log in self._logs.items() if log.dir_key in polled}
                for key in due | grew:
                    self._check(key)
            except Exception as exc:  # never die of one bad pass: say so once, go on
                self._say_once(f"pass:{type(exc).__name__}:{exc}", "log keeper: {}", exc)
                time.sleep(0.1)

    def _stopped(self) -> bool:
        with self._lock:
            return self._closed

    def _open_inotify(self) -> int | None:
        if not _inotify.AVAILABLE:
            return None
        try:
            self._ino = _inotify.INotify()
        except OSError as exc:
            logger.warning(
                "log keeper: no inotify ({}); logs are checked every {}s", exc, self.poll
            )
            return None
        return int(self._ino.fileno())

    def _apply_requests(self) -> set[str]:
        with self._lock:
            requests, self._requests = self._requests, []
        due: set[str] = set()
        for op, key, token, dir_fd, name, file in requests:
            if op == "watch":
                self._drop(key)
                try:
                    dir_key = self._add_dir(dir_fd)
                except OSError as exc:
                    self._say_once(f"dir:{exc}", "log keeper: cannot watch {}: {}", name, exc)
                    continue
                self._logs[key] = _Log(token, dir_key, name, file)
                self._names[(dir_key, name)] = key
                due.add(key)
            elif op == "forget":
                log = self._logs.get(key)
                if log is not None and log.token == token:
                    self._drop(key)
            elif key:
                due |= {key} & self._logs.keys()
            else:
                due |= set(self._logs)
        return due

    def _add_dir(self, dir_fd: int) -> tuple[int, int]:
        try:
            st = os.fstat(dir_fd)
        except OSError:
            os.close(dir_fd)
            raise
        dir_key = (st.st_dev, st.st_ino)
        known = self._dirs.get(dir_key)
        if known is not None:
            os.close(dir_fd)  # one descriptor per directory is enough
            known.users += 1
            return dir_key
        wd: int | None = None
        if self._ino is not None:
            try:
                # the directory we hold, whatever its path names now
                wd = int(self._ino.add_watch(f"/proc/self/fd/{dir_fd}", _inotify.flags.MODIFY))
            except OSError as exc:
                self._say_once(
                    f"watch:{exc.errno}", "log keeper: cannot watch logs ({}); polling", exc
                )
        self._dirs[dir_key] = _Dir(dir_fd, wd, 1)
        if wd is not None:
            self._by_wd[wd] = dir_key
        return dir_key

    def _drop(self, key: str) -> None:
        log = self._logs.pop(key, None)
        if log is None:
            return
        self._names.pop((log.dir_key, log.name), None)
        info = self._dirs[log.dir_key]
        info.users -= 1
        if info.users > 0:
            return
        del self._dirs[log.dir_key]
        if info.wd is not None:
            self._by_wd.pop(info.wd, None)
            with contextlib.suppress(OSError):
                self._ino.rm_watch(info.wd)
        with contextlib.suppress(OSError):
            os.close(info.fd)

    def _modified(self) -> set[str]:
        """The logs inotify says grew (every log after a queue overflow)."""
        flags = _inotify.flags
        keys: set[str] = set()
        for event in self._ino.read(timeout=0):
            if event.mask & flags.Q_OVERFLOW:
                keys |= set(self._logs)
                continue
            dir_key = self._by_wd.get(event.wd)
            if dir_key is None:
                continue
            if event.mask & flags.IGNORED:  # the directory went: poll its logs
                del self._by_wd[event.wd]
                if dir_key in self._dirs:
                    self._dirs[dir_key].wd = None
                keys |= {k for k, log in self._logs.items() if log.dir_key == dir_key}
                continue
            key = self._names.get((dir_key, event.name))
            if key is not None:
                keys.add(key)
        return keys

    def _check(self, key: str) -> None:
        log = self._logs.get(key)
        if log is None:
            return
        try:
            info = self._dirs[log.dir_key]
            # A child that writes more than max_bytes a second floods its
            # log, and its history is seconds long whatever we do.  Copying
            # out on every rotation doubled the keeper's work and the time
            # the child writes on before the truncate (measured: 85 MB over
            # the limit at 4 GB/s, 41 MB without); one copy a second keeps
            # a recent stretch beside the live log.
            st = os.stat(log.name, dir_fd=info.fd, follow_symlinks=False)
            if st.st_size <= self.max_bytes:
                return  # the usual look: one system call, nothing opened
            if (st.st_dev, st.st_ino) != log.file:
                # Removed or replaced by someone: the child writes on to a
                # file we can no longer reach by name, and this one is not
                # its log.  Said once; the next child's log is kept again.
                self._say_once(
                    f"moved:{key}:{log.file}",
                    "log keeper: {} is no longer the file its child writes; not kept to size",
                    log.name,
                )
                return
            now = time.monotonic()
            backups = self.backups if now - log.copied_at >= COPY_EVERY else 0
            fd = open_log(info.fd, log.name, create=False, append=False)
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != log.file:  # swapped since the look
                    return
                rotated = rotate_open_log(info.fd, log.name, fd, self.max_bytes, backups)
            finally:
                os.close(fd)
            if rotated:
                self.rotations += 1
                if backups:
                    log.copied_at = now
        except FileNotFoundError:
            return  # removed: see above; a new child makes a new log
        except OSError as exc:
            self._say_once(
                f"rotate:{key}:{exc.errno}", "log keeper: cannot rotate {}: {}", log.name, exc
            )

    def _say_once(self, what: str, message: str, *args: object) -> None:
        if what not in self._said:
            self._said.add(what)
            logger.warning(message, *args)
