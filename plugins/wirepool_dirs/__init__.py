"""The dirs plugin: one daemon per directory matching a glob, for *any* daemon.

``wirepool run dirs ROOT --glob '*/.git/..' --cmd 'git-watch --repo {dir}'``
keeps one ``git-watch`` running per git checkout under ROOT.  The command is
split like a shell would split it (``shlex``) once, when the plugin is built;
after that each argument is a template on its own: ``{dir}`` (the absolute
directory) and ``{name}`` (its path relative to ROOT) are substituted inside
single arguments, and nothing ever goes through a shell.  A directory named
``a b; rm -rf ~`` is one argument with spaces and a semicolon in it.

A matched directory is a session when:

* its path relative to ROOT has no hidden component (the pool's own state
  lives in ``ROOT/.wirepool``; ``*/.git/..`` normalises to the checkout);
* it resolves inside ROOT -- a symlink to elsewhere is listed with the
  reason, not followed: whoever can create a link under ROOT should not be
  able to point the supervisor at a directory outside it;
* it is owned by the supervisor's user or root and not writable by group
  or others (the command runs in it, and programs read their working
  directory: ``make`` runs the ``Makefile`` there); a symlink to it must
  have been placed by the supervisor's user or root;
* the command's program is safe to run (a regular executable file, not
  writable by group or others, owned by the supervisor's user or root; for
  a path relative to the directory, every directory it is looked up through
  is held to the rule above);
* ``--marker`` (if given) exists in it, and ``--max-idle`` (if given) has not
  passed since its last activity (the newest mtime of the directory, its
  marker, and any ``--activity`` files).

Discovery watches ROOT and the directories on the way down to each match
(``ROOT/proj`` for ``*/.git/..``), so a new checkout is picked up as soon as
its ``.git`` appears; a ``**`` pattern falls back to the periodic rescan
below its first level.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import stat
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from wirepool import (
    ActiveWithin,
    CommandSpawner,
    Discovery,
    Eligibility,
    Environment,
    HasMarker,
    Plugin,
    PoolSpec,
    Session,
    SpawnError,
    Verdict,
    Worker,
)
from wirepool.eligibility import (
    TrustedDirectory,
    directory_problem,
    executable_problem,
    stat_failure,
)
from wirepool.plugin import (
    Argument,
    Option,
    parse_duration,
    spec_tail,
    timing_from,
    timing_options,
)
from wirepool.spawn import validate_template

__all__ = ["CommandCheck", "DirsPlugin", "GlobDiscovery", "dirs_spec", "parse_command"]

#: the placeholders ``--cmd`` and ``--env`` templates may use
FIELDS = frozenset({"dir", "name"})

#: most directories watched for one pattern; past it, the periodic rescan
#: is the only way to notice deep changes (inotify watches cost kernel memory)
MAX_WATCHES = 4096


def _has_magic(part: str) -> bool:
    return any(c in part for c in "*?[")


class GlobDiscovery(Discovery):
    """Every directory ``ROOT.glob(pattern)`` yields, as a session named by
    its normalised path relative to ROOT.

    A match that resolves outside ROOT is still a session -- with the
    ``outside_root`` attribute, which :class:`InsideRoot` turns into a
    reason in status -- so the operator sees why it is not running.

    A change is placed in the sessions it concerns (:meth:`affected`,
    :meth:`rediscover`) for patterns whose sessions all lie at one depth:
    components without ``**``, then at most as many ``..`` as there are
    literal components before them (``*``, ``*/*``, ``*/.git/..``).  Any
    other pattern costs a full rescan per change, as before.
    """

    __slots__ = ("_depth", "_known", "_levels", "_watch", "marker", "pattern", "root")

    def __init__(self, root: Path | str, pattern: str, *, marker: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.marker = marker
        if not pattern or Path(pattern).is_absolute():
            raise ValueError(f"--glob must be a relative pattern, not {pattern!r}")
        self.pattern = pattern
        parts = Path(pattern).parts
        # The components that lead down to a match; a change inside a
        # directory at level i matters when its name matches part i.
        levels: list[str] = []
        for part in parts:
            if part in ("..", ".") or part == "**":
                break
            levels.append(part)
        self._levels = tuple(levels)
        self._watch: dict[Path, set[str]] = {}
        self._known: set[str] = set()
        #: how many components every session name has, when a name can be
        #: judged on its own (see the class docstring); None: it cannot
        self._depth: int | None = None
        ups = parts[len(levels) :]
        depth = len(levels) - len(ups)
        if (
            all(part == ".." for part in ups)
            and "**" not in pattern
            and depth >= 1
            and not any(_has_magic(part) for part in levels[depth:])
        ):
            self._depth = depth

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"discovery root {self.root} is not a directory")
        # glob() swallows a PermissionError and yields nothing, which would
        # read as "every session is gone"; listing the root first makes an
        # unreadable root an error -- "no change" to the pool.
        os.listdir(self.root)

    def discover(self) -> Iterable[Session]:
        self._require_root()
        real_root = os.path.realpath(self.root)
        sessions: dict[str, Session] = {}
        for match in self.root.glob(self.pattern):
            path = Path(os.path.normpath(match))
            try:
                rel = path.relative_to(self.root)
            except ValueError:
                continue  # `..` climbed above ROOT
            if not rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            session = self._session(path, rel.as_posix(), real_root)
            if session is not None:
                sessions[session.name] = session
        self._watch = self._watch_dirs(sessions.values())
        self._known = set(sessions)
        return [sessions[n] for n in sorted(sessions)]

    @staticmethod
    def _session(path: Path, name: str, real_root: str) -> Session | None:
        try:
            if not path.is_dir():
                return None
            real = os.path.realpath(path)
        except OSError:
            return None  # vanished or unreadable mid-scan: skip, keep the rest
        inside = real == real_root or real.startswith(real_root + os.sep)
        return Session(name=name, home=path, attrs={} if inside else {"outside_root": real})

    def _watch_dirs(self, sessions: Iterable[Session]) -> dict[Path, set[str]]:
        """Each directory on the way down to a match, with the patterns its
        entries must match to matter (and each session's directory, for its
        marker)."""
        found: dict[Path, set[str]] = {}
        if self.marker:
            for session in sessions:
                found.setdefault(session.home, set()).add(Path(self.marker).parts[0])
        self._walk(found, [self.root], 0)
        return found

    def _walk(self, found: dict[Path, set[str]], frontier: list[Path], level: int) -> None:
        """Add to ``found`` the directories of ``frontier`` (at ``level``)
        and those below them on the way down to a match."""
        for part in self._levels[level:]:
            for directory in frontier:
                found.setdefault(directory, set()).add(part)
            if len(found) >= MAX_WATCHES:
                break
            nxt: list[Path] = []
            for directory in frontier:
                try:
                    entries = list(directory.glob(part))
                except OSError:
                    continue
                for entry in entries:
                    if entry.name.startswith(".") and not part.startswith("."):
                        continue  # the state dir, editor droppings: never sessions
                    try:
                        if entry.is_dir() and not entry.is_symlink():
                            nxt.append(entry)
                    except OSError:
                        continue
            frontier = nxt[: MAX_WATCHES - len(found)]

    def affected(self, changes: Collection[tuple[Path, str]]) -> Collection[str] | None:
        """A change at depth ``i`` concerns the session whose name is its
        first ``depth`` components; above that depth, every session below
        it, known or matching now (and the directory itself, whose watch
        may have to come or go)."""
        depth = self._depth
        if depth is None:
            return None
        names: set[str] = set()
        for directory, name in changes:
            try:
                rel = directory.relative_to(self.root).parts
            except ValueError:
                return None  # the root itself moved or went: look at it all
            parts = (*rel, name) if name else rel
            if not parts:
                return None
            if len(parts) >= depth:
                names.add("/".join(parts[:depth]))
                continue
            prefix = "/".join(parts)
            names.add(prefix)
            names.update(n for n in self._known if n.startswith(prefix + "/"))
            below = "/".join(self._levels[len(parts) : depth])
            with contextlib.suppress(OSError):
                for match in (self.root / prefix).glob(below):
                    names.add(match.relative_to(self.root).as_posix())
        return names

    def rediscover(self, names: Collection[str]) -> Iterable[Session]:
        depth = self._depth
        if depth is None:
            raise NotImplementedError("this pattern has no partial rediscovery")
        self._require_root()
        real_root = os.path.realpath(self.root)
        sessions = []
        # Shallow names first: a directory's watch before those below it.
        for name in sorted(names, key=lambda n: n.count("/")):
            parts = name.split("/")
            # The directories on the way down, through this name (and past
            # it, for the literal parts a `..` climbs back over).
            way = parts if len(parts) < depth else [*parts, *self._levels[depth:]]
            for level in range(1, min(len(way) + 1, len(self._levels))):
                self._rewatch(way[:level])
            session = None
            if len(parts) == depth and self._matches(parts):
                path = self.root.joinpath(*parts)
                if os.path.isdir(path.joinpath(*self._levels[depth:])):
                    session = self._session(path, name, real_root)
            if session is None:
                self._known.discard(name)
                self._unwatch_marker(self.root.joinpath(*parts))
                continue
            self._known.add(name)
            if self.marker:
                self._watch.setdefault(session.home, set()).add(Path(self.marker).parts[0])
            sessions.append(session)
        return sessions

    def _matches(self, parts: Sequence[str]) -> bool:
        """Whether ``parts`` can be a session's name, as :meth:`discover`
        would have found it (each component matching its pattern part, no
        hidden one)."""
        return all(
            part and not part.startswith(".") and part != ".." and fnmatchcase(part, pattern)
            for part, pattern in zip(parts, self._levels, strict=False)
        )

    def _rewatch(self, chain: Sequence[str]) -> None:
        """Watch the directory at ``chain`` (below the root, on the way down
        to a match) when :meth:`_watch_dirs` would, with what lies below it;
        otherwise unwatch it and everything below it."""
        path = self.root.joinpath(*chain)
        level = len(chain)
        parent = path.parent
        wanted = (
            self._levels[level - 1] in self._watch.get(parent, ())
            and fnmatchcase(chain[-1], self._levels[level - 1])
            and not (chain[-1].startswith(".") and not self._levels[level - 1].startswith("."))
            and os.path.isdir(path)
            and not os.path.islink(path)
        )
        part = self._levels[level]
        if wanted:
            if part not in self._watch.get(path, ()) and len(self._watch) < MAX_WATCHES:
                self._walk(self._watch, [path], level)
            return
        # Below it, only a session's marker watch stays: the session's own
        # name is among those looked at, and says whether it goes.
        for watched in [p for p in self._watch if p == path or path in p.parents]:
            kept = self._watch[watched] - set(self._levels)
            if kept:
                self._watch[watched] = kept
            else:
                del self._watch[watched]

    def _unwatch_marker(self, home: Path) -> None:
        if not self.marker or home not in self._watch:
            return
        parts = self._watch[home]
        parts.discard(Path(self.marker).parts[0])
        if not parts:
            del self._watch[home]

    def watch_paths(self) -> Sequence[Path]:
        return list(self._watch) or [self.root]

    def relevant(self, directory: Path, name: str) -> bool:
        parts = self._watch.get(directory)
        # A daemon writing in its own directory (the checkout itself is a
        # watched level for `*/.git/..`) must not set off a rescan each time.
        return parts is None or any(fnmatchcase(name, part) for part in parts)

    def __repr__(self) -> str:
        return f"GlobDiscovery({str(self.root)!r}, {self.pattern!r})"


class InsideRoot(Eligibility):
    """Refuses a session whose directory resolves outside the root."""

    __slots__ = ()

    def check(self, session: Session, now: float) -> Verdict:
        outside = session.attrs.get("outside_root")
        if outside:
            return Verdict(False, f"resolves outside the root, to {outside}")
        return Verdict(True, "inside the root")


class CommandCheck(Eligibility):
    """Eligible when the session's directory is trusted and the program its
    command runs is safe to run.

    The directory is the child's working directory, and programs read their
    working directory (``make`` runs the ``Makefile`` it finds there): it
    must pass :class:`~wirepool.eligibility.TrustedDirectory`'s rule (owned
    by the supervisor's user or root, not writable by group or others; a
    symlink to it placed by one of those).  The program is found (a
    relative path against the session's directory, a bare name on the
    child's ``PATH``) and must be a regular executable file, not writable by
    group or others, owned by the supervisor's user or root.  A relative
    path is resolved as the kernel will resolve it, and every directory a
    name is looked up in on the way (through ``..`` and symlinks) must pass
    the directory rule too: whoever can write one of them can put another
    program in this one's place."""

    __slots__ = ("directory", "owners", "spawner")

    def __init__(self, spawner: CommandSpawner, owners: Iterable[int] | None = None) -> None:
        self.spawner = spawner
        self.owners = frozenset(owners) if owners is not None else frozenset({os.getuid(), 0})
        self.directory = TrustedDirectory("session directory", self.owners)

    def program(self, session: Session) -> Path | None:
        argv0 = self.spawner.command(session)[0]
        if "/" in argv0:
            return session.home / argv0
        found = shutil.which(argv0, path=self.spawner.environment(session).get("PATH", ""))
        return Path(found) if found else None

    def check(self, session: Session, now: float) -> Verdict:
        trusted = self.directory.check(session, now)
        if not trusted.eligible:
            return trusted
        home = str(session.home)
        argv0 = self.spawner.command(session)[0]
        path = self.program(session)
        if path is None:
            return Verdict(False, f"{argv0}: not found on PATH")
        shown = str(path)
        try:
            if "/" in argv0 and not argv0.startswith("/"):
                real_home = os.path.realpath(home)
                real, lookups = resolve(real_home, argv0)
                for directory in lookups:
                    if directory == real_home:
                        continue  # judged above, as the session directory
                    st = os.stat(directory)
                    problem = directory_problem(
                        st.st_mode,
                        st.st_uid,
                        what=f"directory {directory} (on the way to {argv0})",
                        owners=self.owners,
                    )
                    if problem is not None:
                        return Verdict(False, problem)
                if real != os.path.normpath(path):
                    shown = f"{path} (resolved to {real})"
                st = os.stat(real)
            else:
                st = path.stat()
        except OSError as exc:
            return stat_failure(path, exc)
        problem = executable_problem(st.st_mode, st.st_uid, what=shown, owners=self.owners)
        return Verdict(False, problem) if problem else Verdict(True, f"runs {path}")

    def __repr__(self) -> str:
        return f"CommandCheck({self.spawner!r})"


#: symlinks followed while resolving one path, as Linux allows (``ELOOP`` past it)
_MAX_LINKS = 40


def resolve(start: str, relpath: str) -> tuple[str, list[str]]:
    """Resolve ``relpath`` against the directory ``start`` (itself free of
    symlinks) as the kernel does: ``(the path it names, free of symlinks,
    every directory a name was looked up in on the way, in order)``.

    Those directories are the ones whose writers decide what the path
    names; the rest of each one's ancestry does not matter (a symlink is a
    jump, not a climb).  Raises ``OSError`` as a lookup would."""
    lookups: list[str] = []
    current = start
    todo = list(reversed(relpath.split("/")))
    links = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if current not in lookups:
            lookups.append(current)
        if part == "..":
            current = os.path.dirname(current)
            continue
        path = os.path.join(current, part)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(path)
            if target.startswith("/"):
                current = "/"
            todo.extend(reversed(target.split("/")))
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        current = path
    return current, lookups


class _CheckedSpawner(CommandSpawner):
    def spawn(self, session: Session) -> Worker:
        # Judged again right before the exec: a restart after a backoff
        # reuses the verdict of the last pass, and a directory on the way
        # may have been replaced since.
        verdict = CommandCheck(self).check(session, time.time())
        if not verdict.eligible:
            raise SpawnError(verdict.reason)
        return super().spawn(session)


def parse_command(text: str) -> list[str]:
    """Split ``--cmd`` once, shell-style, and check every argument's
    placeholders.  ValueError with the reason."""
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split --cmd {text!r}: {exc}") from None
    if not argv:
        raise ValueError("--cmd is empty")
    for arg in argv:
        validate_template(arg, FIELDS)
    return argv


def _parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or "\0" in item:
            raise ValueError(f"--env wants KEY=VALUE, not {item!r}")
        validate_template(value, FIELDS)
        env[key] = value
    return env


def dirs_spec(
    root: Path,
    pattern: str,
    command: str,
    *,
    env: Sequence[str] = (),
    marker: str | None = None,
    max_idle: float | None = None,
    activity: Sequence[str] = (),
    state_dir: Path | None = None,
    on_exit: str = "leave",
    grace: float = 10.0,
    stop_grace: float = 10.0,
    rescan_interval: float = 30.0,
) -> PoolSpec:
    """The pool for ``wirepool run dirs``; ValueError for a bad pattern,
    command or environment template."""
    root = Path(root).absolute()
    spawner = _CheckedSpawner(
        parse_command(command), cwd="{dir}", env=Environment(set=_parse_env(env))
    )
    eligibility: Eligibility = InsideRoot() & CommandCheck(spawner)
    if marker:
        eligibility = eligibility & HasMarker(marker)
    if max_idle is not None:
        files = [".", *([marker] if marker else []), *activity]
        eligibility = eligibility & ActiveWithin(max_idle, files)
    return PoolSpec(
        discovery=GlobDiscovery(root, pattern, marker=marker),
        eligibility=eligibility,
        spawner=spawner,
        **spec_tail(
            root,
            state_dir=state_dir,
            on_exit=on_exit,
            grace=grace,
            stop_grace=stop_grace,
            rescan_interval=rescan_interval,
        ),
    )


class DirsPlugin(Plugin):
    """Supervise one command per directory matching a glob under ROOT."""

    name = "dirs"
    description = "one daemon per ROOT/<glob> directory, from an argv template (never a shell)"

    def options(self) -> Sequence[Option | Argument]:
        return [
            Argument("root", kind=Path, file_okay=False),
            Option(
                "--glob",
                "pattern",
                required=True,
                help="Which directories are sessions, relative to ROOT ('*', '*/.git/..').",
            ),
            Option(
                "--cmd",
                "command",
                required=True,
                help="The daemon's command line, split shell-style once; {dir} and {name} "
                "are substituted inside each argument. Never run through a shell.",
            ),
            Option(
                "--env",
                "env",
                multiple=True,
                metavar="KEY=VALUE",
                help="Set a variable in the child's environment ({dir}, {name} allowed).",
            ),
            Option("--marker", help="Only directories containing this file (relative path)."),
            Option(
                "--max-idle",
                callback=parse_duration,
                metavar="DURATION",
                help="Skip directories idle longer than this (90s, 30m, 12h, 7d).",
            ),
            Option(
                "--activity",
                multiple=True,
                metavar="PATH",
                help="Files whose mtime counts as activity for --max-idle "
                "(besides the directory and its marker).",
            ),
            *timing_options(what="directory"),
        ]

    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        try:
            return dirs_spec(
                Path(options["root"]),
                str(options["pattern"]),
                str(options["command"]),
                env=tuple(options.get("env") or ()),
                marker=options.get("marker") or None,
                max_idle=options.get("max_idle"),
                activity=tuple(options.get("activity") or ()),
                **timing_from(options),
            )
        except ValueError as exc:
            import click

            raise click.UsageError(str(exc)) from None
