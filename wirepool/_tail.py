"""Reading session logs from their end: the last lines of a log (bounded,
whatever its size), the last output of a child's run (what status shows
beside its exit), and following a log as it grows, across the rotations
:class:`wirepool._logs.LogKeeper` makes.

**Bounded.**  Nothing here reads a log from its start: a read seeks to the
end and takes at most ``max_bytes`` back from there, so a 1 GB log costs
what a 1 KB one does.

**Lines.**  Bytes are decoded as UTF-8 with ``errors="replace"``; a line's
``\\n`` (and a ``\\r`` before it) is dropped.  When the byte bound cuts the
oldest line of a tail at its start, that fragment is dropped, unless it is
all there is (one line longer than the bound): then its end is kept,
starting with ``…``.  What the terminal shows of a line is the caller's to
escape (:mod:`wirepool._term`): it is the child's bytes.

**Following.**  :class:`Follower` yields the last lines, then every line
written after them, waiting on inotify (a watch on the file for writes and
truncation, one on its directory for a file put in its place) with a slow
poll as a net: an idle follower costs a wake-up per ``poll`` seconds.  A line
is yielded once complete: a last line without its newline yet is held back
until the newline comes, or until the file is rotated or replaced under it
(then it is yielded as it is: its end, if any, is in the next file); one
still unfinished when the follower stops is not yielded.

Rotations as wirepool makes them: the keeper copies the log's tail into
``<log>.1`` and truncates the live file in place.  The follower notices that
the bytes before its offset are no longer the ones it read (a size check
alone misses a truncated log that has grown past the old size again), finds
where it stood in the fresh copy by the last bytes it read, yields what it
had not read yet from there, and goes on from the live file's start.  When
the copy does not hold its place (a rotation that only truncated, or a
follower more than a rotation behind), those lines are gone for the
follower as they are for everyone: it never yields a line twice instead.  A
log replaced by another file (renamed away, or deleted and created again) is
read to its end, then the new one from its start.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from wirepool import _inotify
from wirepool._logs import mark_pattern, open_session_log_to_read
from wirepool._store import open_regular

__all__ = ["Follower", "follow", "last_lines", "last_output"]

#: what :func:`last_lines` reads at most, from the end
TAIL_MAX_BYTES = 1 << 20
#: a run's last output, as status keeps it: at most this many lines ...
LAST_OUTPUT_LINES = 5
#: ... and this many bytes
LAST_OUTPUT_BYTES = 1024
#: seconds between a follower's looks when no event wakes it
POLL = 1.0
#: a line longer than this is yielded in pieces of it
MAX_LINE = 64 * 1024

_CHUNK = 64 * 1024
#: the most a follower reads before it yields and looks at its stop again
_STEP = 4 << 20
#: the last bytes a follower read, by which it finds its place in a copy
_PLACE = 4096
#: of those, what is compared with the live file to see it was not truncated
_CHECK = 64
#: how much of a rotated copy is searched for the follower's place
_COPY_SEARCH = 8 << 20
_CUT = "…".encode()

Stop = Callable[[], object] | threading.Event


def open_to_read(path: Path) -> int:
    """``path`` opened read-only: never through a symlink (``ELOOP``, said as
    such), never a FIFO or device (opened non-blocking, then refused)."""
    try:
        return open_regular(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link; not followed", str(path)) from None
        raise


def last_lines(path: Path | str, n: int, *, max_bytes: int = TAIL_MAX_BYTES) -> list[str]:
    """The last ``n`` lines of the file ``path`` (a last line without its
    newline included), reading at most ``max_bytes`` from its end.

    Raises OSError when it cannot be read: missing, a symlink (not
    followed), not a regular file, no permission; its ``strerror`` and
    ``filename`` make the caller's one line."""
    if n <= 0:
        return []
    fd = open_to_read(Path(path))
    try:
        data, whole = _read_back(fd, os.fstat(fd).st_size, n, max_bytes)
    finally:
        os.close(fd)
    return [_text(line) for line in _split(data, whole)[-n:]]


def last_output(
    path: Path, *, lines: int = LAST_OUTPUT_LINES, max_bytes: int = LAST_OUTPUT_BYTES
) -> list[str]:
    """What the child's last run wrote last into its log ``path``: at most
    ``lines`` lines within the log's last ``max_bytes`` bytes, after the last
    start or exit line of the supervisor's (:func:`wirepool._logs.mark_pattern`:
    the lines before it are an earlier run's), without the supervisor's
    lines, and without blank ones.

    For the pool's loop thread at a child's exit: two opens, a ``pread`` of
    ``max_bytes`` and two closes, whatever the log's size.  The log is
    opened by the rules its writer follows
    (:func:`wirepool._logs.open_session_log_to_read`)."""
    fd = open_session_log_to_read(path)
    try:
        data, whole = _read_back(fd, os.fstat(fd).st_size, None, max_bytes)
    finally:
        os.close(fd)
    parts = _split(data, whole)
    run: list[bytes] = []
    mark_line = mark_pattern()
    for part in parts:
        mark = mark_line.match(part)
        if mark is None:
            run.append(part)
        elif mark.group(1) != b"adopted":  # an adoption is no new run
            run = []
    kept = [part for part in run if part.strip()]
    return [_text(part) for part in kept[-lines:]] if lines > 0 else []


def _read_back(fd: int, end: int, lines: int | None, max_bytes: int) -> tuple[bytes, bool]:
    """The bytes before ``end`` of ``fd``: back to the start of its last
    ``lines`` lines (all of ``max_bytes``, for None), at most ``max_bytes``;
    and whether they begin at a line's start."""
    buf = b""
    pos = end
    while pos > 0 and len(buf) < max_bytes:
        size = min(_CHUNK, pos, max_bytes - len(buf))
        chunk = os.pread(fd, size, pos - size)
        if len(chunk) < size:  # it shrank meanwhile: what is there is all there is
            return buf, True
        pos -= size
        buf = chunk + buf
        # a newline at the very end ends the last line; it starts none
        if lines is not None and buf.count(b"\n", 0, len(buf) - 1) >= lines:
            break
    return buf, pos == 0 or os.pread(fd, 1, pos - 1) == b"\n"


def _split(data: bytes, whole: bool) -> list[bytes]:
    """The lines of ``data``, without their newlines; a first line cut at
    its start is dropped unless it is the only one (then marked as cut)."""
    if not data:
        return []
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    if not whole:
        if len(parts) > 1:
            parts.pop(0)
        else:
            parts[0] = _CUT + parts[0]
    return parts


def _text(line: bytes) -> str:
    return line.removesuffix(b"\r").decode("utf-8", "replace")


class Follower:
    """Yields the last ``lines`` lines of a log, then each line written to it
    after them, across rotations (see the module docstring); an iterator and
    a context manager.

    It ends when ``stop`` says so (a :class:`threading.Event` set, or a
    callable returning true; looked at after each wake-up, so at the latest
    ``poll`` seconds after), when ``timeout`` seconds have passed, or when
    the caller stops iterating and calls :meth:`close`.  Iterate it from one
    thread; another may set the ``stop`` event.  Iterating raises OSError
    (and ends) when a file put in the log's place cannot be read: a symlink,
    a FIFO, no permission."""

    def __init__(
        self,
        path: Path | str,
        *,
        lines: int = 10,
        stop: Stop | None = None,
        timeout: float | None = None,
        poll: float = POLL,
        max_line: int = MAX_LINE,
    ) -> None:
        self.path = Path(path)
        self.poll = poll
        self.max_line = max(1, max_line)
        self._stop = stop
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._out: deque[str] = deque()
        self._pending = b""  # a line not ended yet
        self._recent = b""  # the last bytes read (those of this file: _offset of them)
        self._fd = open_to_read(self.path)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        self._offset = 0
        self._copies: set[tuple[int, int]] = set()  # rotated copies already looked at
        self._known()
        self._ino: Any = None
        self._file_wd: int | None = None
        self._start(lines, st.st_size)
        self._watch()
        self._gen = self._run()

    # ------------------------------------------------------------- interface

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def __enter__(self) -> Follower:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the file and the inotify descriptor (from the iterating
        thread; another thread sets ``stop`` instead)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        ino, self._ino = self._ino, None
        if ino is not None:
            with contextlib.suppress(OSError):
                ino.close()

    # ------------------------------------------------------------------ loop

    def _run(self) -> Iterator[str]:
        try:
            while True:
                while self._out:
                    yield self._out.popleft()
                if self._fd < 0 or self._stopped():
                    return
                more = self._step()
                while self._out:
                    yield self._out.popleft()
                if self._stopped():
                    return
                if not more:
                    self._wait()
        finally:
            self.close()

    def _stopped(self) -> bool:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        stop = self._stop
        if stop is None:
            return False
        return bool(stop.is_set() if isinstance(stop, threading.Event) else stop())

    def _wait(self) -> None:
        wait = self.poll
        if self._deadline is not None:
            wait = max(0.0, min(wait, self._deadline - time.monotonic()))
        if self._ino is None:
            time.sleep(wait)
            return
        ready, _, _ = select.select([self._ino.fileno()], [], [], wait)
        if ready:
            with contextlib.suppress(OSError):
                self._ino.read(timeout=0)  # only a wake-up: _step looks at it all

    # ----------------------------------------------------------------- reads

    def _start(self, lines: int, size: int) -> None:
        # one line more: a last line not ended yet is held back, not shown
        want = max(lines, 0) + 1
        data, whole = _read_back(self._fd, size, want, min(TAIL_MAX_BYTES, want * self.max_line))
        parts = _split(data, whole)
        if data and not data.endswith(b"\n"):
            self._pending = parts.pop()
        for part in parts[-lines:] if lines > 0 else []:
            self._emit(part)
        self._offset = size
        keep = min(_PLACE, size)
        self._recent = os.pread(self._fd, keep, size - keep)

    def _step(self) -> bool:
        """Read what is new; True when there is more to read at once."""
        size = os.fstat(self._fd).st_size
        if self._offset == 0:
            # Nothing read of this file yet: a copy made since holds only
            # lines we have not seen (the truncate it came with cannot be
            # seen from here).
            self._feed(self._fresh_copy())
            self._flush()
        elif not self._intact(size):
            self._feed(self._from_copy(self._recent[-self._offset :]))
            self._flush()
            self._offset = 0
            size = os.fstat(self._fd).st_size
        more = self._read_to(size)
        if not more and self._replaced():
            return True
        return more

    def _intact(self, size: int) -> bool:
        """Whether the bytes before our offset are still the ones we read:
        a log truncated and grown again past our offset is not."""
        if size < self._offset:
            return False
        k = min(_CHECK, len(self._recent), self._offset)
        return os.pread(self._fd, k, self._offset - k) == self._recent[-k:]

    def _read_to(self, size: int) -> bool:
        end = min(size, self._offset + _STEP)
        while self._offset < end:
            chunk = os.pread(self._fd, min(_CHUNK, end - self._offset), self._offset)
            if not chunk:
                return False
            self._offset += len(chunk)
            self._recent = (self._recent + chunk)[-_PLACE:]
            self._feed(chunk)
        return end < size

    def _replaced(self) -> bool:
        """If another file now has the log's name: finish ours (read to its
        end already), switch to the new one from its start.  A log deleted
        and not yet created again is waited for."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (st.st_dev, st.st_ino) == self._ident:
            return False
        try:
            fd = open_to_read(self.path)
        except FileNotFoundError:  # gone again in between: the next look
            return False
        self._read_to(os.fstat(self._fd).st_size)  # what came since our look
        self._flush()
        os.close(self._fd)
        self._copies.add(self._ident)  # renamed to <log>.1: read already
        self._fd = fd
        new = os.fstat(fd)
        self._ident = (new.st_dev, new.st_ino)
        self._offset = 0
        self._watch_file()
        return True

    def _copy_names(self) -> tuple[str, str]:
        # the copy being made (LogKeeper's _copy_out), then the copy made
        name = self.path.name
        return (f".{name}.1.rotating", f"{name}.1")

    def _look(self) -> dict[str, tuple[int, int]]:
        """The copies there now, by name.  What we knew of any other is
        forgotten: its file is shifted out or gone, and a new copy may get
        its inode number (a set of every copy ever seen lost whole
        rotations to that)."""
        present: dict[str, tuple[int, int]] = {}
        for name in self._copy_names():
            with contextlib.suppress(OSError):
                st = os.lstat(self.path.parent / name)
                present[name] = (st.st_dev, st.st_ino)
        self._copies &= set(present.values())
        return present

    def _known(self) -> None:
        """The copies there now are not news from now on."""
        self._copies |= set(self._look().values())

    def _read_copy(self, name: str) -> bytes | None:
        """The end of the copy ``name`` if it is one we have not looked at
        (then it counts as looked at), else None."""
        there = self._look().get(name)
        if there is None or there in self._copies:
            return None
        try:
            fd = open_to_read(self.path.parent / name)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            ident = (st.st_dev, st.st_ino)
            if ident in self._copies:
                return None
            self._copies.add(ident)
            start = max(0, st.st_size - _COPY_SEARCH)
            return os.pread(fd, st.st_size - start, start)
        finally:
            os.close(fd)

    def _from_copy(self, place: bytes) -> bytes:
        """After a truncation: what the fresh copy holds beyond ``place``,
        the last bytes we read (nothing if no copy holds them: a rotation
        that only truncated, or one we are more than a copy behind)."""
        found = b""
        for name in self._copy_names():
            data = self._read_copy(name)
            # The last match: where the copy repeats itself, fewer lines
            # rather than a line twice.
            at = -1 if data is None else data.rfind(place)
            if data is not None and at >= 0:
                found = data[at + len(place) :]
                break
        # Whatever else is there is older than our place, or a copy whose
        # lines we have (partly) read: yielding it would repeat them.
        self._known()
        return found

    def _fresh_copy(self) -> bytes:
        """A copy renamed into place since we last looked, when we have read
        nothing of the live file: its lines are all unread.  (Only the
        renamed one: a copy still being made comes before its truncate.)"""
        return self._read_copy(self._copy_names()[1]) or b""

    # ----------------------------------------------------------------- lines

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        parts = (self._pending + data).split(b"\n")
        self._pending = parts.pop()
        for part in parts:
            self._emit(part)
        while len(self._pending) > self.max_line:
            self._out.append(_text(self._pending[: self.max_line]))
            self._pending = self._pending[self.max_line :]

    def _flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def _emit(self, line: bytes) -> None:
        for at in range(0, max(len(line), 1), self.max_line):
            self._out.append(_text(line[at : at + self.max_line]))

    # ---------------------------------------------------------------- inotify

    def _watch(self) -> None:
        if not _inotify.AVAILABLE:
            return
        try:
            self._ino = _inotify.INotify()
        except OSError:
            return  # polled
        flags = _inotify.flags
        with contextlib.suppress(OSError):  # else a replaced log is seen on the poll
            self._ino.add_watch(
                str(self.path.parent),
                flags.CREATE | flags.MOVED_TO | flags.DELETE | flags.MOVED_FROM,
            )
        self._watch_file()

    def _watch_file(self) -> None:
        if self._ino is None:
            return
        if self._file_wd is not None:
            with contextlib.suppress(OSError):
                self._ino.rm_watch(self._file_wd)
            self._file_wd = None
        with contextlib.suppress(OSError):
            # the file we hold, whatever its name is now
            self._file_wd = int(
                self._ino.add_watch(f"/proc/self/fd/{self._fd}", _inotify.flags.MODIFY)
            )


#: ``follow(path, *, lines=10, stop=None, timeout=None, poll=POLL,
#: max_line=MAX_LINE)``: a :class:`Follower`; raises OSError at once, as
#: :func:`last_lines` does, when the log cannot be opened.
follow = Follower
