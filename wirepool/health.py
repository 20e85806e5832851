"""Is a daemon already serving this session?  Is the running child healthy?

``existing()`` is how the pool coexists with daemons it did not start (an
operator's, an editor plugin's, a previous supervisor's): a live daemon is
watched, not duplicated, and when it exits the pool takes over.  A pidfile
is never trusted on its own -- the pid must name a live, non-zombie process
whose start time matches what the file says (and, optionally, whose command
line looks right), so a reused pid never blocks a session forever.

``probe()`` catches the failure a pid check cannot see: a daemon that is
alive but stuck (the Rust supervisor "could not see a hung daemon at all").
A child is restarted only after ``failures_before_restart`` consecutive
failed probes, so one slow cycle is not a death sentence.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC
from collections.abc import Callable, Sequence

from wirepool._proc import ProcessIdentity, cmdline, create_time, identity_of
from wirepool._store import read_small
from wirepool._types import Session, Verdict

__all__ = ["HealthCheck", "HeartbeatCheck", "NoHealthCheck", "PidfileCheck", "read_pid"]

# A pidfile is a few dozen bytes; a planted FIFO or a gigabyte must not
# stall or balloon the loop.
_PIDFILE_LIMIT = 64 << 10


class HealthCheck(ABC):  # noqa: B024 -- every method has a sensible default
    """Both methods are optional; the defaults find nothing and see no fault.

    Attributes:
        interval: seconds between probes of a running child.  **None, the
            default, means never probed**: set it, or :meth:`probe` is
            never called.  The first probe comes one interval after the
            child starts (or is adopted).
        failures_before_restart: consecutive failed probes that restart it
            (default 3).
        timeout: seconds a probe may take before it counts as failed
            (default: the interval).  Probes run on threads of their own,
            so a slow one delays only its own session; one that overruns
            is a failed probe ("did not answer within ..."), and while it
            is still stuck, every interval counts as one more.
    """

    interval: float | None = None
    failures_before_restart: int = 3
    timeout: float | None = None

    @property
    def deadline(self) -> float | None:
        """Seconds a probe may take: :attr:`timeout`, else the interval."""
        return self.timeout if self.timeout is not None else self.interval

    def existing(self, session: Session) -> ProcessIdentity | None:
        """A live daemon already serving ``session``, verified, or None."""
        return None

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        """Healthy (True) or not, with the reason.  ``now`` is wall time.

        Called on a worker thread, never in the pool's loop, and for
        different sessions at once (never twice at once for one session):
        keep per-session state keyed by ``session.name``."""
        return Verdict(True, "no probe")

    def problem(self, session: Session) -> str | None:
        """Why the last :meth:`existing` could not use what it found (a
        garbage pidfile, say), or None.  The pool shows it on the session:
        a bad file is worth a reason, not only a log line."""
        return None

    def __and__(self, other: HealthCheck) -> HealthCheck:
        return _Both(self, other)


class NoHealthCheck(HealthCheck):
    def __repr__(self) -> str:
        return "NoHealthCheck()"


class _Both(HealthCheck):
    def __init__(self, first: HealthCheck, second: HealthCheck) -> None:
        self.first, self.second = first, second
        intervals = [i for i in (first.interval, second.interval) if i is not None]
        self.interval = min(intervals) if intervals else None
        self.failures_before_restart = max(
            first.failures_before_restart, second.failures_before_restart
        )
        # one probe runs the other's after its own
        deadlines = [d for d in (first.deadline, second.deadline) if d is not None]
        self.timeout = sum(deadlines) if deadlines else None

    def existing(self, session: Session) -> ProcessIdentity | None:
        return self.first.existing(session) or self.second.existing(session)

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        return self.first.probe(session, identity, now) & self.second.probe(session, identity, now)

    def problem(self, session: Session) -> str | None:
        found = [p for p in (self.first.problem(session), self.second.problem(session)) if p]
        return "; ".join(found) or None

    def __repr__(self) -> str:
        return f"{self.first!r} & {self.second!r}"


def read_pid(text: str) -> tuple[int, float | None]:
    """Parse a pidfile: JSON ``{"pid": N, ...}`` or a bare integer.

    Returns (pid, start time as epoch seconds if the file records one under
    ``started_at`` (RFC 3339) or ``start_time`` (epoch)).  Raises ValueError
    with a one-line reason for anything else.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty pidfile")
    if re.fullmatch(r"[+-]?\d+", stripped):
        pid = int(stripped)
        if pid <= 0:
            raise ValueError(f"invalid pid {pid}")
        return pid, None
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ValueError(f"neither an integer nor JSON ({exc.msg})") from None
    except RecursionError:  # "[[[[..." is one more bad file, not a crash
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError("JSON pidfile is not an object")
    value = data.get("pid")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"JSON pidfile has no valid pid ({value!r})")
    started: float | None = None
    raw_start = data.get("start_time")
    if isinstance(raw_start, int | float) and not isinstance(raw_start, bool):
        try:
            started = float(raw_start)
        except OverflowError:  # an integer too big for a float
            started = math.inf
        # NaN compares false with everything, so it would pass the pid-reuse
        # check; infinity would pass it too.  Neither is a time.
        if not math.isfinite(started):
            raise ValueError(f"JSON pidfile has an invalid start_time ({raw_start!r})")
    elif isinstance(data.get("started_at"), str):
        started = parse_rfc3339(data["started_at"])
    return value, started


def parse_rfc3339(value: str) -> float | None:
    """RFC 3339 with ``Z`` and 1-9 fractional digits -> epoch seconds.

    ``datetime.fromisoformat`` takes at most 6 fractional digits; Rust's
    ``time`` crate writes up to 9, so the extra ones are cut first.
    """
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", value.strip()
    )
    if not match:
        return None
    base, frac, tz = match.groups()
    iso = base + (f".{(frac or '')[:6].ljust(6, '0')}" if frac else "")
    iso += "+00:00" if tz == "Z" else tz
    from datetime import datetime  # here: only a heartbeat check reads one

    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


class PidfileCheck(HealthCheck):
    """Finds a daemon through a pidfile under the session's home.

    Args:
        relpath: the pidfile, relative to the home.
        cmdline_match: optional predicate on the process's argv; a process
            that fails it is not the daemon (a reused pid).
        start_tolerance: seconds the recorded start time may differ from the
            kernel's.  A process that started *later* than the record by more
            than this is a stranger that inherited the pid.
    """

    def __init__(
        self,
        relpath: str,
        *,
        cmdline_match: Callable[[Sequence[str]], bool] | None = None,
        start_tolerance: float = 2.0,
    ) -> None:
        self.relpath = relpath
        self.cmdline_match = cmdline_match
        self.start_tolerance = start_tolerance
        self.last_error: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"PidfileCheck({self.relpath!r})"

    def existing(self, session: Session) -> ProcessIdentity | None:
        path = session.home / self.relpath
        try:
            text = read_small(path, _PIDFILE_LIMIT).decode("utf-8", errors="replace")
        except FileNotFoundError:
            self.last_error.pop(session.name, None)
            return None
        except OSError as exc:
            self.last_error[session.name] = f"cannot read {self.relpath}: {exc.strerror or exc}"
            return None
        try:
            pid, recorded_start = read_pid(text)
        except ValueError as exc:
            self.last_error[session.name] = f"{self.relpath}: {exc}"
            return None
        self.last_error.pop(session.name, None)
        return self.verify(pid, recorded_start)

    def problem(self, session: Session) -> str | None:
        return self.last_error.get(session.name)

    def verify(self, pid: int, recorded_start: float | None) -> ProcessIdentity | None:
        ident = identity_of(pid)
        if ident is None:
            return None
        if recorded_start is not None:
            actual = create_time(pid)
            if actual is None or actual > recorded_start + self.start_tolerance:
                return None
        if self.cmdline_match is not None:
            argv = cmdline(pid)
            if argv is None or not self.cmdline_match(argv):
                return None
        # Re-read: the process could have exited and the pid moved on while
        # we looked at its start time and argv.
        return ident if identity_of(pid) == ident else None


class HeartbeatCheck(HealthCheck):
    """Unhealthy when the session's heartbeat is older than ``max_age``
    seconds.  A child gets ``max_age`` from its own start before the first
    verdict counts (no heartbeat yet is not a fault during start-up).

    The heartbeat is the mtime of ``home/<relpath>``, or whatever
    ``beat(session)`` returns (epoch seconds or None) -- the wire plugin reads
    the timestamp inside ``last_sync.json``.  ``name`` is how reasons call it.
    """

    def __init__(
        self,
        relpath: str,
        max_age: float,
        *,
        interval: float | None = None,
        failures_before_restart: int = 1,
        beat: Callable[[Session], float | None] | None = None,
        name: str = "heartbeat",
    ) -> None:
        self.relpath = relpath
        self.max_age = float(max_age)
        self.interval = interval if interval is not None else max(1.0, self.max_age / 4)
        self.failures_before_restart = failures_before_restart
        self.beat = beat
        self.name = name
        self._future: dict[str, tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"HeartbeatCheck({self.relpath!r}, max_age={self.max_age})"

    def last_beat(self, session: Session) -> float | None:
        if self.beat is not None:
            found = self.beat(session)
            if found is not None:
                return found
        try:
            return (session.home / self.relpath).stat().st_mtime
        except OSError:
            return None

    def _not_future(self, key: str, when: float, now: float) -> float:
        if when <= now:
            self._future.pop(key, None)
            return when
        seen = self._future.get(key)
        if seen is None or seen[0] != when:
            seen = self._future[key] = (when, now)
        return seen[1]

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        last = self.last_beat(session)
        # Without a readable start time (hidepid, another user's process) the
        # heartbeat alone decides; with neither, there is nothing to judge.
        started = create_time(identity.pid)
        if started is None:
            started = now if last is None else 0.0
        # After the wall clock steps back, the start time and the last beat
        # lie in the future and "age" would stay 0 until the clock caught up
        # -- a daemon hung across the step went unseen for the whole step.
        # A future time counts from the probe that first saw it.
        started = self._not_future(f"start:{session.name}", started, now)
        if last is not None:
            last = self._not_future(f"beat:{session.name}", last, now)
        newest = max(last or 0.0, started)
        age = max(0.0, now - newest)
        if age <= self.max_age:
            return Verdict(True, f"{self.name} {age:.0f}s old")
        what = f"no {self.name}" if last is None or last < started else self.name
        return Verdict(False, f"{what} for {age:.0f}s (limit {self.max_age:.0f}s): hung")
