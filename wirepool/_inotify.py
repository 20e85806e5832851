"""inotify(7) through this process's libc: the three calls and the event
records, and no more than the pool, the log keeper and ``logs -f`` use.

Its own binding, not a package's: the one we used imported ``ctypes.util``
to look libc up (with it ``shutil``, ``tempfile``, ``bz2`` and ``lzma``: ~4 ms
of every start), and unless handed a libc ran ``ldconfig -p`` in a child
before the first spawn.  libc's symbols are in this process already
(``CDLL(None)``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

#: whether this platform has inotify at all (elsewhere: the periodic rescans)
AVAILABLE = sys.platform.startswith("linux")


class flags:
    """Read as ``flags.CREATE``: the event bits of ``<sys/inotify.h>``,
    less their ``IN_`` prefix."""

    MODIFY = 0x00000002
    ATTRIB = 0x00000004
    CLOSE_WRITE = 0x00000008
    MOVED_FROM = 0x00000040
    MOVED_TO = 0x00000080
    CREATE = 0x00000100
    DELETE = 0x00000200
    DELETE_SELF = 0x00000400
    MOVE_SELF = 0x00000800
    Q_OVERFLOW = 0x00004000
    IGNORED = 0x00008000


#: One ``struct inotify_event``; ``name`` decoded as a file name is.  The
#: functional form: the class form's annotations are strings here (``from
#: __future__ import annotations``), which typing compiles one by one at
#: import -- 1 ms of every start, before a supervisor's first child.
Event = NamedTuple("Event", [("wd", int), ("mask", int), ("cookie", int), ("name", str)])  # noqa: UP014


_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
#: room for many events; one is at most the header and NAME_MAX + 1 bytes
_READ_SIZE = 64 * 1024
_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            libc.inotify_init1.argtypes = [ctypes.c_int]
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        except AttributeError:  # a libc without inotify
            raise OSError(errno.ENOSYS, "this libc has no inotify") from None
        _libc = libc
    return _libc


def _call(function: Any, *args: Any) -> int:
    while True:
        rc = int(function(*args))
        if rc != -1:
            return rc
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


def parse_events(data: bytes) -> list[Event]:
    """The events in what a read of an inotify descriptor returned."""
    events = []
    at, end, size = 0, len(data), _HEADER.size
    while at + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(data, at)
        at += size
        name = data[at : at + length].split(b"\0", 1)[0]
        at += length
        events.append(Event(wd, mask, cookie, os.fsdecode(name)))
    return events


class INotify:
    """An inotify instance (close-on-exec, non-blocking); :meth:`fileno`
    is readable when events wait.  Raises OSError where there is none."""

    def __init__(self) -> None:
        if not AVAILABLE:
            raise OSError(errno.ENOSYS, f"no inotify on {sys.platform}")
        self._fd = _call(_lib().inotify_init1, os.O_CLOEXEC | os.O_NONBLOCK)

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("inotify instance is closed")
        return self._fd

    def add_watch(self, path: str | os.PathLike[str], mask: int) -> int:
        """The watch descriptor of ``path`` (the same one again for an
        inode already watched: the kernel merges them)."""
        return _call(_lib().inotify_add_watch, self.fileno(), os.fsencode(path), mask)

    def rm_watch(self, wd: int) -> None:
        _call(_lib().inotify_rm_watch, self.fileno(), wd)

    def read(self, timeout: int = 0) -> list[Event]:
        """Every event waiting now (never blocks: ``timeout`` must be 0)."""
        if timeout != 0:
            raise ValueError("only timeout=0 is supported: select on fileno() to wait")
        chunks = []
        while True:
            try:
                chunk = os.read(self.fileno(), _READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return parse_events(b"".join(chunks))

    def close(self, _close: Callable[[int], None] = os.close) -> None:
        # ``os.close`` bound here: __del__ may run at interpreter exit, when
        # this module's globals may be gone.
        fd = getattr(self, "_fd", -1)  # -1 too when __init__ raised
        if fd >= 0:
            self._fd = -1
            _close(fd)

    def __del__(self) -> None:
        # As a file object does: an instance dropped unclosed (a pool made
        # and never run) gives its descriptor back.
        try:  # noqa: SIM105 (contextlib, a global, may be gone by then)
            self.close()
        except OSError:
            pass
