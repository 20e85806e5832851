"""The servicedir plugin: the s6 / runit / daemontools service directory.

``wirepool run servicedir ROOT``: each immediate subdirectory of ROOT whose
name does not start with ``.`` and that holds a ``run`` is a service; it runs
when ``run`` is an executable regular file (started as ``./run`` with the
subdirectory as its working directory).  A ``down`` file keeps a service down (and stops a
running one); an ``env/`` directory supplies one variable per file, as
``s6-envdir`` reads it.

A ``run`` that is writable by group or others, owned by another user, or a
symlink is refused with the reason, and so is a service directory that is
writable by group or others or owned by anyone but the supervisor's user or
root: whoever can write either can run code as the supervisor's user, and
an operator should hear about that rather than find out later.  A ROOT
entry may be a symlink to a service directory elsewhere (an s6 scan
directory), if the supervisor's user or root placed it.

Differences from runit and s6, deliberately: a vanished directory is stopped
after a grace period (runit stops at once, s6 never does); restarts back off
exponentially instead of a flat 1 s; and the supervisor adopts services left
running by a previous supervisor instead of relying on one ``supervise``
process per service.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wirepool import (
    CommandSpawner,
    DirectoryScan,
    Eligibility,
    NoDownFile,
    Plugin,
    PoolSpec,
    Session,
    SpawnError,
    Verdict,
    Worker,
)
from wirepool._store import read_small
from wirepool.eligibility import (
    executable_problem,
    ownership_problem,
    session_dir_problem,
    stat_failure,
)
from wirepool.plugin import Argument, Option, spec_tail, timing_from, timing_options

__all__ = ["RunScriptCheck", "ServiceDirPlugin", "read_envdir", "servicedir_spec"]

_ENVFILE_LIMIT = 1 << 20

#: who may own a service directory, or a ROOT symlink to one, besides the
#: supervisor's user
_OWNERS = frozenset({os.getuid(), 0})


class RunScriptCheck(Eligibility):
    """Eligible when the service directory is trusted and ``run`` is a safe,
    executable regular file in it.

    The directory must be owned by the supervisor's user or root and not be
    writable by group or others: whoever can write it can put their own
    ``run`` there, link a program of ours in as ``run`` (``/usr/bin/make``,
    with their ``Makefile`` next to it), or swap ``run`` between this check
    and the exec.  A ROOT entry that is a symlink (an s6 scan directory is
    made of them) is followed only if its owner is the supervisor's user or
    root; the directory it leads to is then held to the same rule.  ``run``
    itself is never followed through a symlink: it must be a regular file
    owned by the supervisor's user, so what is judged is what runs."""

    __slots__ = ("owners", "uid")

    def __init__(self, uid: int | None = None) -> None:
        self.uid = os.getuid() if uid is None else uid
        #: who may own the service directory, or a symlink to it
        self.owners = frozenset({self.uid, 0})

    def check(self, session: Session, now: float) -> Verdict:
        # Judge what discovery saw (its stats are in the session's attrs):
        # a second stat here could see a `run` deleted in between and stop
        # the child at once, instead of after the grace period a vanished
        # service gets.
        attrs = session.attrs
        if not _has_stats(attrs):
            try:
                attrs = _run_attrs(session.home)
            except FileNotFoundError:
                return Verdict(False, "no run file")
            except OSError as exc:
                return stat_failure("run", exc)
        problem = _service_problem(str(session.home), attrs, self.uid, self.owners)
        if problem is not None:
            return Verdict(False, problem)
        return Verdict(True, "run is executable")

    def __repr__(self) -> str:
        return "RunScriptCheck()"


def _has_stats(attrs: Mapping[str, Any]) -> bool:
    link_uid = attrs.get("link_uid")
    return (link_uid is None or isinstance(link_uid, int)) and all(
        isinstance(attrs.get(key), int)
        for key in ("run_st_mode", "run_uid", "dir_st_mode", "dir_uid")
    )


def _service_problem(
    home: str, attrs: Mapping[str, Any], uid: int, owners: frozenset[int]
) -> str | None:
    """Why the service at ``home`` must not run, from the stats of
    :func:`_run_attrs`; the directory first: if it is not trusted, nothing
    in it can be."""
    problem = session_dir_problem(
        home,
        attrs["dir_st_mode"],
        attrs["dir_uid"],
        link_uid=attrs.get("link_uid"),
        what="service directory",
        owners=owners,
    )
    if problem is not None:
        return problem
    if stat.S_ISLNK(attrs["run_st_mode"]):
        # Followed, the link's target would be judged and something else
        # might run: a link swapped in between, or a trusted program (make,
        # an interpreter) run with input from wherever it sits.
        return "run is a symlink, which is not followed; make it a regular file"
    return executable_problem(attrs["run_st_mode"], attrs["run_uid"], what="run", owners=(uid,))


def read_envdir(directory: Path, *, owner: int | None = None) -> dict[str, str | None]:
    """``s6-envdir`` semantics: the first line of each file, trailing blanks
    removed, NULs as newlines; an empty file means "unset this variable".
    Raises SpawnError naming the file that could not be used.

    With ``owner``, the directory and every file must belong to that uid and
    not be writable by group or others -- the rule ``run`` already follows,
    for the same reason: ``env/LD_PRELOAD`` runs code as surely as ``run``."""
    env: dict[str, str | None] = {}
    try:
        # Names, not Paths: most services have no env/, and this runs before
        # every spawn (a missing directory cost a Path and an exception
        # through pathlib: twice the time of the listdir).
        names = sorted(os.listdir(str(directory)))
        if owner is not None:
            _check_owner(directory, directory.stat(), owner)
    except FileNotFoundError:
        return env
    except SpawnError:
        raise
    except OSError as exc:
        raise SpawnError(f"cannot read {directory}: {exc.strerror or exc}") from None
    for name in names:
        if name.startswith(".") or "=" in name:
            continue
        entry = directory / name
        if not entry.is_file():
            continue
        try:
            # Bounded and non-blocking: a FIFO or a huge file swapped in
            # after the is_file() above must not hang or bloat the loop.
            raw = read_small(entry, _ENVFILE_LIMIT)
            if owner is not None:
                _check_owner(entry, entry.stat(), owner)
        except SpawnError:
            raise
        except OSError as exc:
            raise SpawnError(f"cannot read {entry}: {exc.strerror or exc}") from None
        if not raw:
            env[name] = None
            continue
        first = raw.split(b"\n", 1)[0].rstrip(b" \t\r").replace(b"\0", b"\n")
        env[name] = first.decode("utf-8", "surrogateescape")
    return env


def _check_owner(path: Path, st: os.stat_result, owner: int) -> None:
    problem = ownership_problem(st.st_mode, st.st_uid, what=str(path), owners=(owner,))
    if problem is not None:
        raise SpawnError(f"{problem}; refusing it")


class _EnvDirSpawner(CommandSpawner):
    def spawn(self, session: Session) -> Worker:
        # Judged again right before the exec: a restart after a backoff
        # reuses the session of the last discovery pass, and whoever can
        # rename entries of ROOT (mode 0777, no sticky bit) could have put
        # their own directory in the trusted one's place since.
        try:
            attrs = _run_attrs(session.home)
        except OSError as exc:
            raise SpawnError(f"cannot stat {session.home}/run: {exc.strerror or exc}") from None
        problem = _service_problem(str(session.home), attrs, os.getuid(), _OWNERS)
        if problem is not None:
            raise SpawnError(problem)
        return super().spawn(session)

    def environment(self, session: Session) -> dict[str, str]:
        env = super().environment(session)
        for key, value in read_envdir(session.home / "env", owner=os.getuid()).items():
            if key.startswith("WIREPOOL_"):
                # The markers are how a later supervisor knows its children:
                # env/ may not forge or erase them.
                continue
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


def _run_attrs(path: Path) -> Mapping[str, Any]:
    """The stats a service is judged by, taken once per pass and shared by
    discovery and eligibility: an ``lstat`` of ``run`` (never followed), an
    ``lstat`` of the ROOT entry, and a ``stat`` of the directory only when
    that entry is a symlink.

    Part of the session's identity: editing ``run`` (or fixing the
    directory's owner or mode) makes the session "changed", which lifts a
    ``failed`` mark -- the operator fixed it.  A ``run`` that cannot be
    stat'ed raises: the directory is skipped this pass (a vanished service,
    with its grace period)."""
    home = str(path)  # a string, not a Path: this runs per session per rescan
    run = os.lstat(f"{home}/run")
    entry = os.lstat(home)
    if stat.S_ISLNK(entry.st_mode):
        target, link_uid = os.stat(home), entry.st_uid
    else:
        target, link_uid = entry, None
    return {
        "run_mtime": run.st_mtime_ns,
        "run_mode": run.st_mode & 0o7777,
        "run_st_mode": run.st_mode,
        "run_uid": run.st_uid,
        "dir_st_mode": target.st_mode,
        "dir_uid": target.st_uid,
        "link_uid": link_uid,
    }


class _ServiceScan(DirectoryScan):
    """The service directories, with each one's ``env/`` watched as well:
    an edited variable is a changed configuration (the fingerprint covers
    the environment), noticed at once, not at the next timer rescan."""

    __slots__ = ("_envs",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the services that have an env/ directory, as last looked at: a
        #: look at every service's env/ on each change was 10 000 system
        #: calls and 50 ms for one new service among ten thousand
        self._envs: set[str] = set()

    def discover(self) -> Iterable[Session]:
        sessions = super().discover()
        self._envs = {name for name in self._last if self._has_env(name)}
        return sessions

    def rediscover(self, names: Collection[str]) -> Iterable[Session]:
        sessions = super().rediscover(names)
        for name in names:
            if name in self._last and self._has_env(name):
                self._envs.add(name)
            else:
                self._envs.discard(name)
        return sessions

    def _has_env(self, name: str) -> bool:
        return os.path.isdir(f"{self.root}/{name}/env")

    def watch_paths(self) -> Sequence[Path]:
        paths = list(super().watch_paths())
        if self.watch_children:
            last = self._last
            paths += [last[name] / "env" for name in self._envs if name in last]
        return paths

    def _env_of(self, directory: Path) -> str | None:
        """The service whose ``env/`` ``directory`` is, or None."""
        if directory.name == "env" and directory.parent.parent == self.root:
            return directory.parent.name
        return None

    def relevant(self, directory: Path, name: str) -> bool:
        return self._env_of(directory) is not None or super().relevant(directory, name)

    def affected(self, changes: Collection[tuple[Path, str]]) -> Collection[str] | None:
        services = {self._env_of(d) for d, _ in changes} - {None}
        rest = [(d, n) for d, n in changes if self._env_of(d) is None]
        found = super().affected(rest) if rest else set()
        return None if found is None else {*found, *(s for s in services if s)}


def servicedir_spec(
    root: Path,
    *,
    state_dir: Path | None = None,
    on_exit: str = "leave",
    grace: float = 10.0,
    stop_grace: float = 10.0,
    rescan_interval: float = 30.0,
    watched_rescan_interval: float = 300.0,
) -> PoolSpec:
    root = Path(root).absolute()
    return PoolSpec(
        # `run` is the marker: a directory without one is not a service, so
        # a `run` that disappears (rm -rf deletes it before its directory; a
        # checkout switch deletes and recreates it) is a vanished session
        # with a grace period, not an instant stop.
        discovery=_ServiceScan(
            root, marker="run", attrs=_run_attrs, watch_names=("run", "down", "env")
        ),
        eligibility=RunScriptCheck() & NoDownFile(),
        # what a child is started from: `run` itself, and env/ (read into
        # its environment, which the fingerprint covers)
        spawner=_EnvDirSpawner(["./run"], cwd="{home}", inputs=["{home}/run"]),
        **spec_tail(
            root,
            state_dir=state_dir,
            on_exit=on_exit,
            grace=grace,
            stop_grace=stop_grace,
            rescan_interval=rescan_interval,
        ),
        # Every verdict comes from `run`, `down` and `env/`, all watched: with
        # inotify working, the timer rescan is only a net.
        watched_rescan_interval=watched_rescan_interval,
    )


class ServiceDirPlugin(Plugin):
    """Supervise every ROOT/<service>/run (the s6/runit convention)."""

    name = "servicedir"
    description = "one daemon per ROOT/<service>/run, with down files and env/ dirs (s6/runit)"

    def options(self) -> Sequence[Option | Argument]:
        return [
            Argument("root", kind=Path, file_okay=False),
            *timing_options(what="service directory"),
            Option(
                "--watched-rescan-interval",
                kind=float,
                min=0.1,
                default=300.0,
                show_default=True,
                run_only=True,
                help="Seconds between full rescans while inotify watches every service "
                "directory, at least: a big pool's also keep to 0.02% of a core (set it "
                "to --rescan-interval on a network file system: rescans every interval).",
            ),
        ]

    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        return servicedir_spec(
            Path(options["root"]),
            **timing_from(options),
            watched_rescan_interval=float(options.get("watched_rescan_interval", 300.0)),
        )
