"""Which sessions exist right now?

A discovery pass that raises means "no change this pass", never "every
session is gone": the Rust supervisor treated a listing error as zero
sessions and SIGKILLed every child it had.  The pool also keeps a vanished
session for a grace period before stopping its child, so a directory that
disappears for a moment (a checkout being switched, an rsync) costs nothing.

``watch_paths()`` is an accelerator, not the source of truth: the pool
rescans on a timer anyway (correct on NFS, immune to a missed event), and an
inotify event on a watched path only makes the next scan happen now.

A discovery that can tell which sessions an event concerns (``affected``)
lets the pool look at just those (``rediscover``): a new directory in a pool
of a thousand was a full rescan, 25 ms of CPU, before its child started.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wirepool._types import Session
from wirepool.errors import ConfigError

__all__ = ["DirectoryScan", "Discovery", "DiscoveryLike", "StaticDiscovery", "as_discovery"]


class Discovery(ABC):
    """Subclass and implement :meth:`discover`."""

    __slots__ = ()

    @abstractmethod
    def discover(self) -> Iterable[Session]:
        """Every session that exists now.  Raise to mean "I cannot tell"."""

    def watch_paths(self) -> Sequence[Path]:
        """Directories whose changes should trigger an immediate rescan."""
        return ()

    def unreadable(self) -> Mapping[str, str]:
        """Sessions the last :meth:`discover` saw but could not read:
        name -> why.  The pool keeps each as it was -- "cannot tell" is no
        change, exactly as for a whole discovery that fails -- and shows why
        in its status."""
        return {}

    def relevant(self, directory: Path, name: str) -> bool:
        """Whether a change to ``name`` inside watched ``directory`` is worth
        a rescan.  Daemons write in their own directories all the time
        (pidfiles, sockets, state); each rescan costs a pass over every
        session, so a busy pool must not rescan for them."""
        return True

    def affected(self, changes: Collection[tuple[Path, str]]) -> Collection[str] | None:
        """The names of the sessions these changes (a watched directory and
        the name of an entry in it, each one :meth:`relevant`) can concern,
        for :meth:`rediscover` to look at alone; None, the default, means
        "cannot tell" and costs a full :meth:`discover`."""
        return None

    def rediscover(self, names: Collection[str]) -> Iterable[Session]:
        """:meth:`discover` for just ``names`` (what :meth:`affected`
        returned): those of them that are sessions now.  :meth:`unreadable`
        and :meth:`watch_paths` must then be up to date for these names.
        Raise to mean "I cannot tell" (the pool keeps what it knew)."""
        raise NotImplementedError(f"{type(self).__name__} has no rediscover()")


DiscoveryLike = Discovery | Callable[[], Iterable[Session]]


class _FromCallable(Discovery):
    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Iterable[Session]]) -> None:
        self.fn = fn

    def discover(self) -> Iterable[Session]:
        return self.fn()

    def __repr__(self) -> str:
        return f"as_discovery({self.fn!r})"


def as_discovery(value: DiscoveryLike) -> Discovery:
    if isinstance(value, Discovery):
        return value
    if callable(value):
        return _FromCallable(value)
    raise TypeError(f"not a discovery strategy: {value!r}")


class StaticDiscovery(Discovery):
    """A fixed list, for embedding and tests.  :meth:`set` replaces it (and the
    pool notices on its next pass; call ``pool.rescan()`` to make that now)."""

    __slots__ = ("_sessions",)

    def __init__(self, sessions: Iterable[Session] = ()) -> None:
        self._sessions: tuple[Session, ...] = tuple(sessions)

    def set(self, sessions: Iterable[Session]) -> None:
        self._sessions = tuple(sessions)

    def discover(self) -> Iterable[Session]:
        return self._sessions

    def __repr__(self) -> str:
        return f"StaticDiscovery({len(self._sessions)} sessions)"


#: errors that mean "not there", as opposed to "cannot tell"
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def _marker_exists(path: str) -> bool:
    """Whether a marker is there; raises when that cannot be told.

    Not ``os.path.exists``: it answers False for a directory we may not
    read, which would pass for "gone" and stop a healthy child.  A marker
    that is a dangling symlink or a symlink loop is simply not there (as
    ``Path.exists`` has it)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in _GONE:
            return False
        raise
    return True


class DirectoryScan(Discovery):
    """Every entry of ``root`` matching ``pattern`` that is a directory, does
    not start with ``.``, and (if ``marker`` is given) contains ``marker``.

    ``attrs(path)`` may add plugin attributes per session; it need not
    catch ``OSError``: an entry that vanishes (``FileNotFoundError``) is a
    vanished session, and one that cannot be read -- any other ``OSError``,
    or a :class:`~wirepool.errors.ConfigError` for content that does not
    parse -- keeps its session as it was (a running child goes on) with the
    reason in its status.  Someone else's bad directory never costs the
    rest their children; an unreadable *root* raises, which the pool takes
    as "no change".
    """

    __slots__ = (
        "_last",
        "_links",
        "_unreadable",
        "attrs",
        "marker",
        "pattern",
        "root",
        "watch_children",
        "watch_names",
    )

    def __init__(
        self,
        root: Path | str,
        pattern: str = "*",
        *,
        marker: str | None = None,
        attrs: Callable[[Path], Mapping[str, Any]] | None = None,
        watch_children: bool = True,
        watch_names: Collection[str] | None = None,
    ) -> None:
        self.root = Path(root)
        #: names inside a session directory whose change matters (None: all);
        #: the marker always does.
        self.watch_names = None if watch_names is None else frozenset(watch_names)
        self.pattern = pattern
        self.marker = marker
        self.attrs = attrs
        self.watch_children = watch_children
        self._last: dict[str, Path] = {}
        #: entries that are symlinks: what they name can change with no
        #: event of theirs (their target appears, goes, or is replaced)
        self._links: set[str] = set()
        self._unreadable: dict[str, str] = {}

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"discovery root {self.root} is not a directory")

    def _matches(self, name: str) -> bool:
        """An entry name the scan considers: not hidden, matching the
        pattern (on the name alone when it has no ``/``: fnmatch, which
        is all ``Path.match`` would do, without pathlib's parsing)."""
        if not name or name.startswith("."):
            return False
        if "/" in self.pattern:
            return (self.root / name).match(self.pattern)
        return fnmatch.fnmatchcase(name, self.pattern)

    def _candidates(self) -> list[Path]:
        """Directories that are, or may become (once their marker appears),
        sessions.  Listing an unreadable or vanished root raises: that
        propagates, and the pool keeps what it knew.

        ``os.scandir`` and plain strings, not ``Path.iterdir``/``match``/
        ``is_dir``: this runs on every rescan over every entry, and pathlib's
        parsing was most of a rescan's cost at a thousand sessions."""
        self._require_root()
        names = []
        links = set()
        with os.scandir(self.root) as entries:
            for entry in entries:
                name = entry.name
                if not self._matches(name):
                    continue
                try:
                    if entry.is_symlink():
                        links.add(name)
                    if entry.is_dir():  # follows symlinks, as Path.is_dir does
                        names.append(name)
                except OSError as exc:
                    # A symlink into a directory we may not search: "cannot
                    # tell" (kept, marked unreadable), not "gone".
                    if exc.errno not in _GONE:
                        names.append(name)
        self._links = links
        names.sort()
        return [self.root / name for name in names]

    def discover(self) -> Iterable[Session]:
        candidates = self._candidates()
        # Watch candidates too: a directory is often created before its marker.
        self._last = {path.name: path for path in candidates}
        self._unreadable = {}
        return [s for s in map(self._session, candidates) if s is not None]

    def _session(self, path: Path) -> Session | None:
        """The session at candidate ``path``, or None; one that cannot be
        read is noted in ``_unreadable``."""
        try:
            if self.marker is not None and not _marker_exists(f"{path}/{self.marker}"):
                return None
            extra: Mapping[str, Any] = self.attrs(path) if self.attrs is not None else {}
        except (FileNotFoundError, NotADirectoryError):
            return None  # gone mid-scan: a vanished session, with its grace
        except ConfigError as exc:
            # Its configuration does not parse: "cannot tell" too, so a
            # running child keeps its settings until one that parses.
            self._unreadable[path.name] = str(exc)
            return None
        except OSError as exc:
            # There but unreadable (EACCES, EIO, ELOOP inside): not the
            # same as gone, and not a reason to stop its child.
            self._unreadable[path.name] = f"cannot read {path}: {exc.strerror or exc}"
            return None
        return Session(name=path.name, home=path, attrs=extra)

    def _is_candidate(self, name: str) -> bool:
        """What :meth:`_candidates` would say of entry ``name`` (and, as it
        does, note whether it is a symlink)."""
        if "/" in name or not self._matches(name):
            return False
        path = f"{self.root}/{name}"
        if os.path.islink(path):
            self._links.add(name)
        else:
            self._links.discard(name)
        try:
            return stat.S_ISDIR(os.stat(path).st_mode)
        except OSError as exc:
            # Gone is "not a candidate"; anything else is "cannot tell",
            # which a full scan (the type from the listing) would have
            # taken for a candidate and then found unreadable: so do we.
            return exc.errno not in _GONE
        except ValueError:
            return False

    def affected(self, changes: Collection[tuple[Path, str]]) -> Collection[str] | None:
        own = type(self)
        if own.rediscover is DirectoryScan.rediscover and any(
            getattr(own, m) is not getattr(DirectoryScan, m)
            for m in ("discover", "_candidates", "_session")
        ):
            # A subclass's discover() may filter or rename what the scan
            # finds; a rediscover() that bypassed it would disagree with it.
            return None
        names = set()
        for directory, name in changes:
            if directory == self.root and name:
                names.add(name)
                # A symlink's target may be the entry that changed.
                names.update(self._links)
            elif directory.parent == self.root and directory != self.root:
                names.add(directory.name)
            else:
                return None  # the root itself moved or went: look at it all
        return names

    def rediscover(self, names: Collection[str]) -> Iterable[Session]:
        self._require_root()
        sessions = []
        for name in names:
            self._unreadable.pop(name, None)
            if not self._is_candidate(name):
                self._last.pop(name, None)
                continue
            path = self._last.setdefault(name, self.root / name)
            session = self._session(path)
            if session is not None:
                sessions.append(session)
        return sessions

    def unreadable(self) -> Mapping[str, str]:
        return self._unreadable

    def watch_paths(self) -> Sequence[Path]:
        # The entries of the last scan: the pool asks right after discover(),
        # and listing a thousand directories twice per pass is waste.
        return [self.root, *self._last.values()] if self.watch_children else [self.root]

    def relevant(self, directory: Path, name: str) -> bool:
        if directory == self.root or self.watch_names is None:
            return True
        return name in self.watch_names or name == self.marker

    def __repr__(self) -> str:
        return f"DirectoryScan({str(self.root)!r}, {self.pattern!r}, marker={self.marker!r})"
