"""The decision step: a pure function from what is wanted and what is seen
to what to do next.

Functional core, imperative shell: everything here is data in, data out,
with ``now`` passed in, so every rule of the Rust supervisor (and every rule
we added) is tested exhaustively without a process or a sleep.  The shell
(:mod:`wirepool._pool`) gathers the inputs, performs the actions and sleeps
until ``wake_at`` or the next event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wirepool._types import Session, Verdict

__all__ = ["Desired", "Observed", "Pending", "Plan", "plan"]


@dataclass(frozen=True, slots=True)
class Desired:
    """A session discovery reported (``vanished_at`` set: it stopped reporting
    it at that monotonic time, and the grace period is running)."""

    session: Session
    verdict: Verdict
    vanished_at: float | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """A worker the shell is watching for a session."""

    owned: bool = True
    stopping: bool = False
    unhealthy: str | None = None  # set once failed probes reached the limit


@dataclass(frozen=True, slots=True)
class Pending:
    """Restart bookkeeping for a session without a worker."""

    next_start: float = 0.0  # monotonic; 0 = may start now
    failed: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    spawn: tuple[str, ...] = ()
    stop: tuple[tuple[str, str], ...] = ()  # (name, reason)
    release: tuple[str, ...] = ()  # stop watching a daemon we do not own
    forget: tuple[str, ...] = ()  # gone past grace, nothing running
    states: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (state, reason)
    wake_at: float | None = None


def plan(
    desired: Mapping[str, Desired],
    observed: Mapping[str, Observed],
    pending: Mapping[str, Pending],
    now: float,
    grace: float,
) -> Plan:
    spawn: list[tuple[float, str]] = []
    stop: list[tuple[str, str]] = []
    release: list[str] = []
    forget: list[str] = []
    states: dict[str, tuple[str, str]] = {}
    wake: list[float] = []

    for name in sorted(set(desired) | set(observed) | set(pending)):
        want = desired.get(name)
        seen = observed.get(name)
        waiting = pending.get(name, Pending())
        gone = want is None or (want.vanished_at is not None and now - want.vanished_at >= grace)
        if want is not None and want.vanished_at is not None and not gone:
            wake.append(want.vanished_at + grace)

        if seen is not None:
            if seen.stopping:
                states[name] = ("stopping", "")
            elif gone:
                if seen.owned:
                    stop.append((name, "session gone"))
                    states[name] = ("stopping", "session gone")
                else:
                    release.append(name)
                    states[name] = ("stopped", "session gone")
            elif want is not None and not want.verdict.eligible:
                if seen.owned:
                    stop.append((name, want.verdict.reason))
                    states[name] = ("stopping", want.verdict.reason)
                else:
                    states[name] = ("adopted", f"not ours to stop: {want.verdict.reason}")
            elif seen.unhealthy is not None and seen.owned:
                stop.append((name, seen.unhealthy))
                states[name] = ("stopping", seen.unhealthy)
            continue

        if gone:
            forget.append(name)
            continue
        assert want is not None
        if want.vanished_at is not None:
            states[name] = ("stopped", "session vanished; waiting out the grace period")
        elif not want.verdict.eligible:
            states[name] = ("ineligible", want.verdict.reason)
        elif waiting.failed:
            states[name] = ("failed", waiting.reason)
        elif waiting.next_start > now:
            states[name] = ("backoff", waiting.reason)
            wake.append(waiting.next_start)
        else:
            spawn.append((waiting.next_start, name))

    spawn.sort()
    return Plan(
        spawn=tuple(name for _, name in spawn),
        stop=tuple(stop),
        release=tuple(release),
        forget=tuple(forget),
        states=states,
        wake_at=min(wake) if wake else None,
    )
