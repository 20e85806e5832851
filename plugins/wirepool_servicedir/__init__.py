"""The servicedir plugin: the s6 / runit / daemontools service directory.

``wirepool run servicedir ROOT``: each immediate subdirectory of ROOT whose
name does not start with ``.`` and that holds a ``run`` is a service; it runs
when ``run`` is an executable regular file (started as ``./run`` with the
subdirectory as its working directory).  A ``down`` file keeps a service down (and stops a
running one); an ``env/`` directory supplies one variable per file, as
``s6-envdir`` reads it.

A ``run`` that is writable by group or others, or owned by another user, is
refused with the reason: whoever can write it can run code as the
supervisor's user, and an operator should hear about that rather than find
out later.

Differences from runit and s6, deliberately: a vanished directory is stopped
after a grace period (runit stops at once, s6 never does); restarts back off
exponentially instead of a flat 1 s; and the supervisor adopts services left
running by a previous supervisor instead of relying on one ``supervise``
process per service.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

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
)
from wirepool._store import read_small
from wirepool.eligibility import executable_problem
from wirepool.plugin import timing_from, timing_options

__all__ = ["RunScriptCheck", "ServiceDirPlugin", "read_envdir", "servicedir_spec"]

_ENVFILE_LIMIT = 1 << 20


class RunScriptCheck(Eligibility):
    """Eligible when ``run`` is a safe, executable regular file."""

    __slots__ = ("uid",)

    def __init__(self, uid: int | None = None) -> None:
        self.uid = os.getuid() if uid is None else uid

    def check(self, session: Session, now: float) -> Verdict:
        # Judge the `run` that discovery saw (its stat is in the session's
        # attrs): a second stat here could see a `run` deleted in between
        # and stop the child at once, instead of after the grace period a
        # vanished service gets.
        mode, uid = session.attrs.get("run_st_mode"), session.attrs.get("run_uid")
        if not isinstance(mode, int) or not isinstance(uid, int):
            try:
                st = (session.home / "run").stat()
            except FileNotFoundError:
                return Verdict(False, "no run file")
            except OSError as exc:
                return Verdict(False, f"cannot stat run: {exc.strerror or exc}")
            mode, uid = st.st_mode, st.st_uid
        problem = executable_problem(mode, uid, what="run", owners=(self.uid,))
        if problem is not None:
            return Verdict(False, problem)
        return Verdict(True, "run is executable")

    def __repr__(self) -> str:
        return "RunScriptCheck()"


def read_envdir(directory: Path, *, owner: int | None = None) -> dict[str, str | None]:
    """``s6-envdir`` semantics: the first line of each file, trailing blanks
    removed, NULs as newlines; an empty file means "unset this variable".
    Raises SpawnError naming the file that could not be used.

    With ``owner``, the directory and every file must belong to that uid and
    not be writable by group or others -- the rule ``run`` already follows,
    for the same reason: ``env/LD_PRELOAD`` runs code as surely as ``run``."""
    env: dict[str, str | None] = {}
    try:
        entries = sorted(directory.iterdir())
        if owner is not None:
            _check_owner(directory, directory.stat(), owner)
    except FileNotFoundError:
        return env
    except SpawnError:
        raise
    except OSError as exc:
        raise SpawnError(f"cannot read {directory}: {exc.strerror or exc}") from None
    for entry in entries:
        name = entry.name
        if name.startswith(".") or "=" in name or not entry.is_file():
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
    if st.st_uid != owner:
        raise SpawnError(f"{path} is owned by uid {st.st_uid}, not {owner}; refusing it")
    if st.st_mode & 0o022:
        raise SpawnError(
            f"{path} is writable by group or others (mode {st.st_mode & 0o777:o}); refusing it"
        )


class _EnvDirSpawner(CommandSpawner):
    def environment(self, session: Session) -> dict[str, str]:
        env = super().environment(session)
        for key, value in read_envdir(session.home / "env", owner=os.getuid()).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


def _run_attrs(path: Path) -> Mapping[str, Any]:
    """One stat of ``run`` per pass, shared by discovery and eligibility.

    Part of the session's identity: editing ``run`` makes the session
    "changed", which lifts a ``failed`` mark -- the operator fixed it.  A
    ``run`` that cannot be stat'ed raises: the directory is skipped this pass
    (a vanished service, with its grace period)."""
    st = os.stat(f"{path}/run")  # a string, not a Path: this runs per session per rescan
    return {
        "run_mtime": st.st_mtime_ns,
        "run_mode": st.st_mode & 0o7777,
        "run_st_mode": st.st_mode,
        "run_uid": st.st_uid,
    }


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
        discovery=DirectoryScan(
            root, marker="run", attrs=_run_attrs, watch_names=("run", "down", "env")
        ),
        eligibility=RunScriptCheck() & NoDownFile(),
        spawner=_EnvDirSpawner(["./run"], cwd="{home}"),
        state_dir=(state_dir or root / ".wirepool").absolute(),
        on_exit="stop" if on_exit == "stop" else "leave",
        grace=grace,
        stop_grace=stop_grace,
        rescan_interval=rescan_interval,
        # Every verdict comes from `run`, `down` and `env/`, all watched: with
        # inotify working, the timer rescan is only a net.
        watched_rescan_interval=watched_rescan_interval,
    )


class ServiceDirPlugin(Plugin):
    """Supervise every ROOT/<service>/run (the s6/runit convention)."""

    name = "servicedir"
    description = "one daemon per ROOT/<service>/run, with down files and env/ dirs (s6/runit)"

    def options(self) -> Sequence[click.Parameter]:
        return [
            click.Argument(["root"], type=click.Path(file_okay=False, path_type=Path)),
            *timing_options(what="service directory"),
            click.Option(
                ["--watched-rescan-interval"],
                type=click.FloatRange(min=0.1),
                default=300.0,
                show_default=True,
                help="Seconds between full rescans while inotify watches every service "
                "directory (set it to --rescan-interval on a network file system).",
            ),
        ]

    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        return servicedir_spec(
            Path(options["root"]),
            **timing_from(options),
            watched_rescan_interval=float(options.get("watched_rescan_interval", 300.0)),
        )
