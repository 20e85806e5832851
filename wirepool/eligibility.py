"""Should this session have a child right now?  Always answered with a reason.

Eligibility is re-evaluated on every discovery pass, not just at start (as
systemd's conditions are): a session that goes idle, grows a ``down`` file or
loses its ``run`` script has its child stopped, and ``status`` says why.

The Rust supervisor's lesson is in :class:`ActiveWithin`: wire's ``wire
daemon --all-sessions`` once ran 100+ daemons for ~5 real sessions on a box
with 147 homes (wire #212) because every Claude tab minted a home; the idle
filter is what fixed it.  Its activity probe is injectable, as wire's
``supervisor_eligible`` (``src/daemon_supervisor.rs``) takes the last-active
time as a parameter, so the rule is testable without touching mtimes.
"""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from wirepool._format import format_age
from wirepool._types import Session, Verdict
from wirepool.discovery import _GONE
from wirepool.errors import ConfigError

__all__ = [
    "ActiveWithin",
    "Always",
    "Bound",
    "Eligibility",
    "EligibilityLike",
    "HasMarker",
    "NoDownFile",
    "TrustedDirectory",
    "as_eligibility",
    "directory_problem",
    "executable_problem",
    "newest_mtime",
    "ownership_problem",
    "session_dir_problem",
    "stat_failure",
    "symlink_problem",
]

CheckFn = Callable[[Session, float], "Verdict | bool"]


class Eligibility(ABC):
    """Subclass and implement :meth:`check`; combine with ``&``, ``|``, ``~``.

    ``now`` is wall-clock time (epoch seconds), because the facts eligibility
    looks at (file mtimes) are on the wall clock.
    """

    __slots__ = ()

    @abstractmethod
    def check(self, session: Session, now: float) -> Verdict: ...

    def __call__(self, session: Session, now: float) -> Verdict:
        return self.check(session, now)

    def __and__(self, other: EligibilityLike) -> Eligibility:
        return _AllOf((self, as_eligibility(other)))

    def __rand__(self, other: EligibilityLike) -> Eligibility:
        return _AllOf((as_eligibility(other), self))

    def __or__(self, other: EligibilityLike) -> Eligibility:
        return _AnyOf((self, as_eligibility(other)))

    def __ror__(self, other: EligibilityLike) -> Eligibility:
        return _AnyOf((as_eligibility(other), self))

    def __invert__(self) -> Eligibility:
        return _Not(self)


EligibilityLike = Eligibility | CheckFn


class _FromCallable(Eligibility):
    __slots__ = ("fn",)

    def __init__(self, fn: CheckFn) -> None:
        self.fn = fn

    def check(self, session: Session, now: float) -> Verdict:
        return Verdict.of(self.fn(session, now), getattr(self.fn, "__name__", "check"))

    def __repr__(self) -> str:
        return f"as_eligibility({self.fn!r})"


def as_eligibility(value: EligibilityLike) -> Eligibility:
    """Accept a strategy or a plain ``(session, now) -> bool | Verdict``."""
    if isinstance(value, Eligibility):
        return value
    if callable(value):
        return _FromCallable(value)
    raise TypeError(f"not an eligibility check: {value!r}")


class _Combined(Eligibility):
    """``a & b & c`` or ``a | b | c``: the parts are flattened (so a long
    chain is one loop, not a deep recursion), checked in order, and the
    first verdict that decides the whole is the reason -- later, possibly
    costly, probes are not run for a session that is already decided."""

    __slots__ = ("parts",)
    parts: tuple[Eligibility, ...]
    decides_on: bool  # the verdict that ends the loop: False for &, True for |
    joiner: str

    def __init__(self, parts: Sequence[Eligibility]) -> None:
        flat: list[Eligibility] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, type(self)) else (part,))
        self.parts = tuple(flat)

    def check(self, session: Session, now: float) -> Verdict:
        verdict = Verdict(not self.decides_on, "")
        unsure: ConfigError | None = None
        for part in self.parts:
            try:
                found = part.check(session, now)
            except ConfigError as exc:
                # "Cannot tell" decides nothing yet: a later part may still
                # decide the whole (an unreadable marker does not matter to
                # a session that is bound anyway); if none does, the whole
                # cannot tell either.
                unsure = unsure or exc
                continue
            verdict = (verdict | found) if self.decides_on else (verdict & found)
            if bool(verdict) == self.decides_on:
                return verdict
        if unsure is not None:
            raise unsure
        return verdict

    def __repr__(self) -> str:
        return self.joiner.join(repr(p) for p in self.parts)


class _AllOf(_Combined):
    __slots__ = ()
    decides_on = False
    joiner = " & "


class _AnyOf(_Combined):
    __slots__ = ()
    decides_on = True
    joiner = " | "

    def __repr__(self) -> str:
        return f"({super().__repr__()})"


class _Not(Eligibility):
    __slots__ = ("inner",)

    def __init__(self, inner: Eligibility) -> None:
        self.inner = inner

    def check(self, session: Session, now: float) -> Verdict:
        return ~self.inner.check(session, now)

    def __repr__(self) -> str:
        return f"~{self.inner!r}"


class Always(Eligibility):
    """Every discovered session is eligible."""

    __slots__ = ()

    def check(self, session: Session, now: float) -> Verdict:
        return Verdict(True, "always")

    def __repr__(self) -> str:
        return "Always()"


class Bound(Eligibility):
    """Eligible while the session is bound to a working directory
    (``session.cwd`` is set): someone is using it from a project."""

    __slots__ = ()

    def check(self, session: Session, now: float) -> Verdict:
        if session.cwd is None:
            return Verdict(False, "not bound to a cwd")
        return Verdict(True, f"bound to {session.cwd}")

    def __repr__(self) -> str:
        return "Bound()"


class HasMarker(Eligibility):
    """Eligible while ``home/<relpath>`` exists (optionally: is executable)."""

    __slots__ = ("executable", "relpath")

    def __init__(self, relpath: str, *, executable: bool = False) -> None:
        self.relpath = relpath
        self.executable = executable

    def check(self, session: Session, now: float) -> Verdict:
        path = session.home / self.relpath
        try:
            # pathlib answers False itself for what is not there
            exists = path.is_file() if self.executable else path.exists()
        except OSError as exc:
            raise ConfigError(f"cannot check {self.relpath}: {exc.strerror or exc}") from None
        if not exists:
            return Verdict(False, f"no {self.relpath}")
        if self.executable and not os.access(path, os.X_OK):
            return Verdict(False, f"{self.relpath} is not executable")
        return Verdict(True, f"has {self.relpath}")

    def __repr__(self) -> str:
        return f"HasMarker({self.relpath!r})"


class NoDownFile(Eligibility):
    """The daemontools convention: a ``down`` file keeps the session down."""

    __slots__ = ("relpath",)

    def __init__(self, relpath: str = "down") -> None:
        self.relpath = relpath

    def check(self, session: Session, now: float) -> Verdict:
        try:
            # os.stat of a string: this runs per session on every rescan, and
            # Path's parsing cost more than the system call.
            os.stat(f"{session.home}/{self.relpath}")
            down = True
        except (FileNotFoundError, NotADirectoryError):
            down = False
        except OSError as exc:
            # A directory unreadable for a moment (a chmod, a restore) says
            # nothing about a down file: "cannot tell", which keeps a running
            # child running -- not "ineligible", which would stop it.
            raise ConfigError(f"cannot check {self.relpath}: {exc.strerror or exc}") from None
        if down:
            return Verdict(False, f"{self.relpath} file present")
        return Verdict(True, f"no {self.relpath} file")

    def __repr__(self) -> str:
        return f"NoDownFile({self.relpath!r})"


def stat_failure(what: object, exc: OSError) -> Verdict:
    """The verdict of a check whose ``stat`` of ``what`` failed with ``exc``:
    a plain no when it is not there; for anything else (EACCES, EIO) the
    check cannot tell, and raises :class:`~wirepool.errors.ConfigError`, so
    the session keeps what it has -- a running child goes on running --
    and its status says why.  A directory that is unreadable for a moment
    must not stop a healthy child."""
    why = f"cannot stat {what}: {exc.strerror or exc}"
    if exc.errno in _GONE:
        return Verdict(False, why)
    raise ConfigError(why) from None


def _owners_text(owners: Collection[int]) -> str:
    return " or ".join("root" if o == 0 else str(o) for o in sorted(owners, reverse=True))


def ownership_problem(mode: int, uid: int, *, what: str, owners: Collection[int]) -> str | None:
    """Why a file or directory (by its ``st_mode`` and ``st_uid``) cannot be
    trusted, or None if it can: it must be owned by one of ``owners`` and
    not be writable by group or others.

    Whoever can write what the supervisor runs or reads its instructions
    from can run code as the supervisor's user.  The sticky bit does not
    help: in a mode-1777 directory anyone may still create what is not
    there yet (a ``Makefile`` next to a ``run`` that execs ``make``)."""
    if mode & 0o022:
        return f"{what} is writable by group or others (mode {mode & 0o7777:o})"
    if uid not in owners:
        return f"{what} is owned by uid {uid}, not {_owners_text(owners)}"
    return None


def executable_problem(mode: int, uid: int, *, what: str, owners: Collection[int]) -> str | None:
    """Why a file (by its ``st_mode`` and ``st_uid``) must not be executed by
    the supervisor, or None if it may.

    Whoever can write a program the supervisor runs can run code as the
    supervisor's user: a program writable by group or others, or owned by
    someone outside ``owners``, is refused with the reason, so an operator
    hears about it instead of finding out later."""
    if not stat.S_ISREG(mode):
        return f"{what} is not a regular file"
    if not mode & 0o111:
        return f"{what} is not executable"
    return ownership_problem(mode, uid, what=what, owners=owners)


def directory_problem(mode: int, uid: int, *, what: str, owners: Collection[int]) -> str | None:
    """Why a directory (by the ``st_mode`` and ``st_uid`` of a ``stat`` that
    followed any symlink) must not hold what the supervisor runs, nor be a
    child's working directory, or None if it may.

    Whoever can write the directory a child runs in can run code as the
    supervisor's user without touching the program: swap the program
    between the check and the exec, link in another one, or plant what the
    program reads from its working directory (``make`` reads a
    ``Makefile``)."""
    if not stat.S_ISDIR(mode):
        return f"{what} is not a directory"
    return ownership_problem(mode, uid, what=what, owners=owners)


def symlink_problem(uid: int, *, what: str, owners: Collection[int]) -> str | None:
    """Why a symlink (by its ``lstat`` ``st_uid``) must not be followed to a
    session's directory, or None if it may.

    Only who placed a link decides where it points: one placed by the
    supervisor's user or root is the operator's choice (an s6 scan directory
    is made of such links); one planted by anyone else is theirs, even when
    it points at a directory that would pass :func:`directory_problem`."""
    if uid not in owners:
        return f"{what} is a symlink owned by uid {uid}, not {_owners_text(owners)}; not followed"
    return None


def session_dir_problem(
    path: str,
    mode: int,
    uid: int,
    *,
    link_uid: int | None,
    what: str,
    owners: Collection[int],
) -> str | None:
    """Why the directory at ``path`` cannot be trusted to run a child in, or
    None.  ``mode`` and ``uid`` are its ``stat`` (through any symlink);
    ``link_uid`` is the ``lstat`` owner when ``path`` is a symlink, else
    None.  The symlink must pass :func:`symlink_problem`, and the directory
    :func:`directory_problem`; a reason names the resolved directory."""
    if link_uid is not None:
        problem = symlink_problem(link_uid, what=path, owners=owners)
        if problem is not None:
            return problem
    problem = directory_problem(mode, uid, what=f"{what} {path}", owners=owners)
    if problem is not None and link_uid is not None:
        # Resolved only now: most of the time nothing is wrong, and this
        # runs per session per rescan.
        real = f"{what} {os.path.realpath(path)} (linked from {path})"
        problem = directory_problem(mode, uid, what=real, owners=owners)
    return problem


class TrustedDirectory(Eligibility):
    """Eligible while the session's directory may be a child's working
    directory (:func:`session_dir_problem`): owned by one of ``owners``
    (default: the supervisor's user and root), not writable by group or
    others, and reached through a symlink only if that link's owner is one
    of ``owners`` too.  One ``lstat`` per check, and a ``stat`` for a link."""

    __slots__ = ("owners", "what")

    def __init__(
        self, what: str = "session directory", owners: Collection[int] | None = None
    ) -> None:
        self.what = what
        self.owners = frozenset(owners) if owners is not None else frozenset({os.getuid(), 0})

    def check(self, session: Session, now: float) -> Verdict:
        path = str(session.home)
        try:
            entry = os.lstat(path)
            target = os.stat(path) if stat.S_ISLNK(entry.st_mode) else entry
        except OSError as exc:
            return stat_failure(path, exc)
        link_uid = entry.st_uid if stat.S_ISLNK(entry.st_mode) else None
        problem = session_dir_problem(
            path,
            target.st_mode,
            target.st_uid,
            link_uid=link_uid,
            what=self.what,
            owners=self.owners,
        )
        return Verdict(False, problem) if problem else Verdict(True, f"{self.what} is trusted")

    def __repr__(self) -> str:
        return f"TrustedDirectory({self.what!r})"


def newest_mtime(paths: Sequence[Path]) -> float | None:
    """The newest mtime among ``paths`` that exist, or None."""
    return _newest_mtime(paths)[0]


def _newest_mtime(paths: Sequence[Path]) -> tuple[float | None, OSError | None]:
    """The newest mtime among ``paths`` that could be read, and the first
    error other than "not there" met on the way (None if none)."""
    newest: float | None = None
    unread: OSError | None = None
    for path in paths:
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            if exc.errno not in _GONE and unread is None:
                unread = exc
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest, unread


class ActiveWithin(Eligibility):
    """Eligible if the session showed activity within ``max_idle`` seconds.

    Activity is the newest mtime of ``activity_files`` (relative to the home),
    or whatever ``probe(session)`` returns.  A future mtime counts as active
    now (clock skew, a restored backup) -- never as "idle for a negative
    time" nor as something to hold against the session.  ``max_idle=None``
    disables the filter (every session is active), as wire's
    ``WIRE_ALL_SESSIONS_MAX_IDLE_DAYS=0`` does.
    """

    __slots__ = ("activity_files", "max_idle", "probe")

    def __init__(
        self,
        max_idle: float | None,
        activity_files: Sequence[str] = (),
        *,
        probe: Callable[[Session], float | None] | None = None,
    ) -> None:
        if probe is None and not activity_files:
            raise ValueError("ActiveWithin needs activity files or a probe")
        self.max_idle = max_idle
        self.activity_files = tuple(activity_files)
        self.probe = probe

    def last_active(self, session: Session) -> float | None:
        if self.probe is not None:
            return self.probe(session)
        return newest_mtime([session.home / rel for rel in self.activity_files])

    def check(self, session: Session, now: float) -> Verdict:
        if self.max_idle is None:
            return Verdict(True, "idle filter disabled")
        if self.probe is None and type(self).last_active is ActiveWithin.last_active:
            last, unread = _newest_mtime([session.home / rel for rel in self.activity_files])
        else:
            last, unread = self.last_active(session), None
        idle = None if last is None else max(0.0, now - last)
        if idle is not None and idle <= self.max_idle:
            return Verdict(True, f"active {format_age(idle)} ago")
        if unread is not None:
            # A file we could not read may be the newest: "cannot tell",
            # not "idle" -- an unreadable home must not stop its daemon.
            raise ConfigError(f"cannot stat {unread.filename}: {unread.strerror or unread}")
        if idle is None:
            return Verdict(False, "never active")
        return Verdict(False, f"idle for {format_age(idle)} (limit {format_age(self.max_idle)})")

    def __repr__(self) -> str:
        return f"ActiveWithin({self.max_idle!r}, {self.activity_files!r})"
