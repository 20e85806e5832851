"""Filesystem change notification as a file descriptor for the pool's selector.

inotify (:mod:`wirepool._inotify`: libc through ctypes, no thread) on Linux;
elsewhere nothing, and the pool's periodic rescan does the job alone.  The
watcher only ever *hastens* a rescan: it carries no state the scan relies on,
so an overflowed queue or a missed event costs latency, not correctness.
But an event names what changed, and the pool looks again at just that
session, so each watch's name must be right: a watch follows its inode, and
a directory moved away is unwatched at once, not left under its old name.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from wirepool import _inotify
from wirepool._log import logger
from wirepool._value import Record, field, record


@record(slots=True)
class Changes(Record):
    """What a :meth:`Watcher.drain` saw: entries (watched directory, name)
    that changed, or ``everything`` (look at it all again)."""

    everything: bool = False
    paths: set[tuple[Path, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.everything or bool(self.paths)


def _watch_mask() -> int:
    flags = _inotify.flags
    return int(
        flags.CREATE
        | flags.DELETE
        | flags.MOVED_FROM
        | flags.MOVED_TO
        | flags.ATTRIB
        | flags.CLOSE_WRITE
        | flags.DELETE_SELF
        | flags.MOVE_SELF
    )


class Watcher:
    """Watches a set of directories; :meth:`fileno` is readable on a change."""

    def __init__(self) -> None:
        self._ino: _inotify.INotify | None = None
        self._wds: dict[Path, int] = {}
        # A watch is per inode: two watched paths to one directory (a
        # symlinked session) share it, and an event in it concerns both.
        # a tuple, not a set: nearly every watch is of one path (a set was
        # 0.2 KB a session)
        self._paths: dict[int, tuple[Path, ...]] = {}
        self._warned = False
        #: every path of the last :meth:`update` is watched
        self.complete = False
        if _inotify.AVAILABLE:
            try:
                self._ino = _inotify.INotify()
            except OSError as exc:
                logger.warning("inotify unavailable ({}); relying on periodic rescans", exc)
                self._ino = None

    @property
    def available(self) -> bool:
        return self._ino is not None

    def fileno(self) -> int | None:
        return self._ino.fileno() if self._ino is not None else None

    def update(self, paths: Iterable[Path], refresh: Iterable[Path] | None = None) -> int:
        """Make the watched set exactly ``paths`` (cheap when unchanged).
        Returns how many watches were added: a change inside a directory
        before its watch existed was not seen, so the caller should look
        once more.

        Paths in ``refresh`` (every path, when None) that are already watched
        are checked again: a watch follows an inode, and the directory at a
        path can change with no event on the watch (a symlink retargeted,
        something mounted over it, an IN_IGNORED lost to a queue overflow).
        The kernel answers with the same watch for the same inode, so this
        costs a system call and adds nothing when nothing changed."""
        if self._ino is None:
            return 0
        wanted = set(paths)
        for gone in set(self._wds) - wanted:
            self._unwatch(gone)
        added = 0
        self.complete = True
        recheck = wanted & set(self._wds) if refresh is None else wanted & set(refresh)
        mask = _watch_mask()
        for path in (wanted - set(self._wds)) | recheck:
            try:
                wd = self._ino.add_watch(os.fspath(path), mask)
            except OSError as exc:
                if path in self._wds and exc.errno == errno.ENOENT:
                    self._unwatch(path)  # gone: a later event or pass says so
                    continue
                self.complete = False
                # ENOSPC: out of watches. Say it once; rescans still work.
                if not self._warned:
                    logger.warning("cannot watch {} ({}); relying on periodic rescans", path, exc)
                    self._warned = True
                continue
            if self._wds.get(path) == wd:
                continue
            if path in self._wds:
                self._unwatch(path)
            self._wds[path] = wd
            self._paths[wd] = (*self._paths.get(wd, ()), path)
            added += 1
        return added

    def _unwatch(self, path: Path) -> None:
        wd = self._wds.pop(path)
        sharing = tuple(p for p in self._paths.get(wd, ()) if p != path)
        if sharing:  # another watched path still needs it
            self._paths[wd] = sharing
        else:
            self._paths.pop(wd, None)
            if self._ino is not None:
                with contextlib.suppress(OSError):
                    self._ino.rm_watch(wd)

    def drain(self, relevant: Callable[[Path, str], bool] | None = None) -> Changes:
        """Consume pending events: the ``relevant(dir, name)`` ones (every
        one, without a filter), or ``Changes.everything`` after a queue
        overflow (events were lost)."""
        changes = Changes()
        if self._ino is None:
            return changes
        try:
            events = self._ino.read(timeout=0)
        except OSError:
            return changes
        flags = _inotify.flags
        for ev in events:
            if ev.mask & flags.Q_OVERFLOW:
                changes.everything = True
                continue
            paths = self._paths.get(ev.wd)
            if not paths:
                # A watch we removed (its IN_IGNORED, or events queued before
                # the removal): its directory stopped mattering, and if it
                # comes back its parent's watch says so.
                continue
            gone = ev.mask & (flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF)
            if ev.mask & (flags.IGNORED | flags.MOVE_SELF):
                # Deleted: the kernel dropped the watch.  Moved: the watch
                # follows the inode, so its names are wrong from now on and
                # a change in it would be put down to the wrong session.
                # Forget it either way; the next update() watches whatever
                # is at those paths now, and says it added a watch.
                del self._paths[ev.wd]
                for path in paths:
                    self._wds.pop(path, None)
                if not ev.mask & flags.IGNORED:
                    with contextlib.suppress(OSError):
                        self._ino.rm_watch(ev.wd)
            for path in paths:
                if gone:
                    # The directory itself went: named as an entry of its
                    # parent, never filtered (the parent may be the root).
                    changes.paths.add((path.parent, path.name))
                elif relevant is None or relevant(path, ev.name):
                    changes.paths.add((path, ev.name))
        return changes

    def close(self) -> None:
        if self._ino is not None:
            with contextlib.suppress(OSError):
                self._ino.close()
            self._ino = None
            self._wds.clear()
            self._paths.clear()
