"""One session's lifecycle, as a pure state machine.

h11 and wsproto are the model: no I/O here, no clock, no process.  The
shell (:mod:`wirepool._pool`) turns what happens -- a verdict, a spawn, an
exit, a probe, an operator's request, a deadline -- into an *event*, calls
:func:`step` with the session's current :class:`SessionState`, stores the
state it gets back and performs the *actions*: spawn a child, terminate or
kill it, release or forget it, wake at a time, emit an event.  This module
is the one place that writes a session's phase and reason.

::

    pending ─► running ─(exit)─► backoff ─(due)─► running ...
       │          │                  └─(give up)─► failed ─(reset/change)─► pending
       │          ├─(ineligible, gone, unhealthy, operator)─► stopping ─(exit)─► stopped
       │          └─(found a live daemon)─► adopted
       └─► ineligible / stopped (vanished, in its grace period) / down

What stays pool-wide lives in the shell: the order in which due spawns run
and the spawn-rate limit (a spawn the limit holds back is the
:class:`Deferred` event here).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from wirepool._events import EventKind
from wirepool._types import ExitStatus, Verdict
from wirepool._value import Value, field, frozen, replace
from wirepool.restart import RestartPolicy, Streak

__all__ = [
    "Action",
    "Event",
    "Phase",
    "Plan",
    "Policy",
    "Running",
    "SessionState",
    "TwoChildrenError",
    "step",
]


class Phase(enum.StrEnum):
    """What status shows as a session's ``state`` (the JSON value is the
    member's value: output unchanged from when these were bare strings)."""

    PENDING = "pending"
    RUNNING = "running"
    ADOPTED = "adopted"
    STOPPING = "stopping"
    STOPPED = "stopped"
    BACKOFF = "backoff"
    FAILED = "failed"
    INELIGIBLE = "ineligible"
    DOWN = "down"


@frozen
class Policy(Value):
    """The pool's settings a transition depends on."""

    restart: RestartPolicy = field(default_factory=RestartPolicy)
    grace: float = 10.0  # a vanished session keeps its child this long
    stop_grace: float = 10.0  # SIGTERM to SIGKILL
    failures_before_restart: int = 3  # failed probes before an owned child is restarted


# a compiled __init__: one per child, at each of its steps
@frozen(fast_init=True)
class Running(Value):
    """The child (or adopted daemon) the session has now."""

    owned: bool = True  # ours to signal; a daemon found by a health check is not
    adopted: bool = False
    spawned_at: float | None = None  # monotonic; None when adopted
    why: str = ""  # why it was adopted, shown while it runs as one
    stop_reason: str | None = None  # set once a stop is under way
    stop_as_failure: bool = False  # an unhealthy child's stop counts as a failure
    restart_after: bool = False  # an operator's restart: start again at once
    kill_at: float | None = None  # when SIGKILL follows the SIGTERM
    health_failures: int = 0
    unhealthy: str | None = None


# Its equality is compiled: the shell compares the old and the new state at
# every step, and the compiled method's attribute loads are two to three
# times as fast as Value's one look-up of all of them.
@frozen(eq=True, fast_init=True)
class SessionState(Value):
    """One session's state: what :func:`step` reads and returns."""

    phase: Phase = Phase.PENDING
    reason: str = ""
    verdict: Verdict = field(default_factory=lambda: Verdict(False, "not checked yet"))
    checked: bool = False  # a verdict was reached (or a vanish seen) this run
    vanished_at: float | None = None  # monotonic; discovery stopped reporting it
    running: Running | None = None
    streak: Streak = field(default_factory=Streak)
    next_start: float = 0.0  # monotonic; 0 = may start now
    failed: bool = False  # gave up: waits for a reset or a change
    #: why it is held back (its failed mark or its backoff), kept apart from
    #: ``reason``: a spell of another phase (ineligible, vanished) shows its
    #: own reason, and the hold's comes back after it
    held: str = ""
    down: bool = False  # held down by the operator
    down_since: float | None = None  # wall time
    restarts: int = 0
    starts: int = 0
    last_exit: ExitStatus | None = None
    last_exit_at: float | None = None  # wall time

    @property
    def known(self) -> bool:
        """Discovery has confirmed or denied the session this run; one known
        only from its record is left exactly as it is (no change, not gone)."""
        return self.checked or self.vanished_at is not None


# ------------------------------------------------------------------ events


@frozen
class _Bare(Value):
    """An event, action or command that carries nothing but its class.  Such classes
    subclass this one instead of each being a dataclass of its own: creating
    a frozen dataclass compiles its ``__init__`` and frozen pair from source,
    at every start.  A subclass (with ``__slots__ = ()``) behaves as its
    own dataclass would: equal only to an instance of its class, the same
    hash, ``Name()`` as its repr, no ``__dict__``, no attribute to assign."""


@frozen
class _Because(Value):
    """An event or action that carries only a reason (shared as :class:`_Bare` is)."""

    reason: str


@frozen
class Checked(Value):
    """An eligibility verdict."""

    verdict: Verdict


@frozen
class CheckFailed(Value):
    """The eligibility check raised: a session with a verdict keeps it (a
    running child is not stopped for a failing check); one without is
    ineligible with the reason."""

    why: str


class Changed(_Bare):
    """Discovery reports the session with new data (the operator edited it)."""

    __slots__ = ()


class Seen(_Bare):
    """Discovery reports the session (again)."""

    __slots__ = ()


class Vanished(_Bare):
    """Discovery no longer reports the session."""

    __slots__ = ()


class Tick(_Bare):
    """Decide: start, stop, release or forget, by the session's inputs."""

    __slots__ = ()


class Deferred(_Bare):
    """A due spawn waits for the pool-wide spawn-rate limit."""

    __slots__ = ()


class Spawned(_Bare):
    """A child was started."""

    __slots__ = ()


class SpawnFailed(_Because):
    """The child could not be started."""

    __slots__ = ()


@frozen
class Adopted(Value):
    """A live process is now watched as the session's child."""

    owned: bool
    why: str


class AdoptFailed(_Bare):
    """The process to adopt died in between: decide again."""

    __slots__ = ()


@frozen
class Exited(Value):
    """The child ended."""

    status: ExitStatus
    lived: float | None  # seconds; None when it never really started
    wall: float  # when, on the wall clock (for status)


@frozen
class StopRequested(Value):
    """Stop the child (``as_failure``: the stop counts as a failure)."""

    reason: str
    as_failure: bool = False


class LetGo(_Because):
    """Stop watching a daemon that is not ours (the pool is stopping)."""

    __slots__ = ()


class ChildLost(_Bare):
    """Recovery: the record named a child that is no longer there."""

    __slots__ = ()


class AlreadyGone(_Bare):
    """The SIGTERM found no process: finish the stop at the next deadline."""

    __slots__ = ()


class KillDue(_Bare):
    """The grace after SIGTERM is over and the child is still there."""

    __slots__ = ()


@frozen
class Probed(Value):
    """A health probe's answer."""

    healthy: bool
    reason: str


class WallStepped(_Bare):
    """The wall clock jumped: heartbeats are judged afresh."""

    __slots__ = ()


class Reset(_Bare):
    """The operator lifts a ``failed`` mark and the backoff."""

    __slots__ = ()


@frozen
class Restart(Value):
    """The operator asks for a new child now (not counted as a failure);
    so does the pool, for a child started from an older configuration."""

    reason: str = "restart requested by the operator"


@frozen
class Down(Value):
    """The operator holds the session down (its child is stopped)."""

    wall: float


class Up(_Bare):
    """The operator lets the session run again."""

    __slots__ = ()


Event = (
    Checked
    | CheckFailed
    | Changed
    | Seen
    | Vanished
    | Tick
    | Deferred
    | Spawned
    | SpawnFailed
    | Adopted
    | AdoptFailed
    | Exited
    | StopRequested
    | LetGo
    | ChildLost
    | AlreadyGone
    | KillDue
    | Probed
    | WallStepped
    | Reset
    | Restart
    | Down
    | Up
)


# ----------------------------------------------------------------- actions


@frozen
class Spawn(Value):
    """Start a child (or adopt the daemon already serving the session);
    ``priority``: due spawns run in this order (the longest-waiting first)."""

    priority: float = 0.0


class Terminate(_Because):
    """Ask the child to stop (SIGTERM); a WakeAt for the kill deadline follows."""

    __slots__ = ()


class Kill(_Bare):
    """SIGKILL the child (its stop grace is over)."""

    __slots__ = ()


class Release(_Bare):
    """Stop watching a daemon that is not ours (it keeps running)."""

    __slots__ = ()


class Forget(_Bare):
    """The session is gone and nothing runs: drop it and its record."""

    __slots__ = ()


@frozen
class WakeAt(Value):
    """Decide for this session again at ``at``."""

    at: float  # monotonic


class PlanNow(_Bare):
    """Decide for this session again, at once (a restart owed no delay)."""

    __slots__ = ()


@frozen
class Emit(Value):
    """Publish an event of the session."""

    kind: EventKind
    reason: str = ""
    data: dict[str, Any] | None = None


Action = Spawn | Terminate | Kill | Release | Forget | WakeAt | PlanNow | Emit


# --------------------------------------------------------------- transition


@frozen
class Plan(Value):
    """What every session decided at one Tick (see :func:`plan`)."""

    states: dict[str, SessionState]
    actions: dict[str, list[Action]]  # without the spawns, which ``spawn`` orders
    spawn: tuple[str, ...]  # the due spawns, the longest-waiting first (then by name)


def plan(states: Mapping[str, SessionState], now: float, policy: Policy) -> Plan:
    """Let each session decide (:class:`Tick`); the pool-wide part is only
    the order of the due spawns.  Whether each of them may run now (the
    spawn-rate limit) is the shell's to say."""
    new: dict[str, SessionState] = {}
    actions: dict[str, list[Action]] = {}
    due: list[tuple[float, str]] = []
    for name in sorted(states):
        new[name], done = step(states[name], Tick(), now, policy)
        due.extend((a.priority, name) for a in done if isinstance(a, Spawn))
        rest: list[Action] = [a for a in done if not isinstance(a, Spawn)]
        if rest:
            actions[name] = rest
    due.sort()
    return Plan(new, actions, tuple(name for _, name in due))


def restore(
    *,
    reason: str,
    streak: Streak,
    restarts: int,
    started: bool,
    failed: bool,
    last_exit: ExitStatus | None,
    last_exit_at: float | None,
    next_start: float,
    down: bool = False,
    down_since: float | None = None,
) -> SessionState:
    """A session as its record left it (``started``: the record named a
    child), before any event of this run."""
    return SessionState(
        reason=reason,
        held=reason if failed or next_start > 0 else "",
        streak=streak,
        restarts=restarts,
        starts=restarts + (1 if started else 0),
        failed=failed,
        last_exit=last_exit,
        last_exit_at=last_exit_at,
        next_start=next_start,
        down=down,
        down_since=down_since if down else None,
    )


def step(
    state: SessionState, event: Event, now: float, policy: Policy
) -> tuple[SessionState, list[Action]]:
    """The session's next state and what the shell must do, for ``event``
    at monotonic time ``now``.  Pure: the same inputs give the same outputs
    (but for a restart policy with jitter, which draws a random number)."""
    out: list[Action] = []
    new = _step(state, event, now, policy, out)
    return new, out


def _step(
    s: SessionState, event: Event, now: float, policy: Policy, out: list[Action]
) -> SessionState:
    match event:
        case Checked(verdict):
            was_eligible = s.checked and s.verdict.eligible
            if was_eligible and not verdict.eligible and s.running is None:
                out.append(Emit(EventKind.INELIGIBLE, verdict.reason))
            return replace(s, verdict=verdict, checked=True)
        case CheckFailed(why):
            if s.checked or s.running is not None:
                return replace(s, reason=why)
            return _step(s, Checked(Verdict(False, why)), now, policy, out)
        case Changed():
            if s.failed:
                return replace(
                    s,
                    failed=False,
                    held="",
                    streak=Streak(),
                    next_start=0.0,
                    reason="session changed; trying again",
                )
            return s
        case Seen():
            return replace(s, vanished_at=None) if s.vanished_at is not None else s
        case Vanished():
            return replace(s, vanished_at=now) if s.vanished_at is None else s
        case Tick():
            return _decide(s, now, policy, out)
        case Deferred():
            return _phase(s, Phase.BACKOFF, "waiting for the pool-wide spawn rate limit")
        case Spawned():
            _no_child_yet(s, event)
            s = replace(
                s,
                held="",
                restarts=s.restarts + (1 if s.starts > 0 else 0),
                starts=s.starts + 1,
                running=Running(owned=True, adopted=False, spawned_at=now),
            )
            out.append(Emit(EventKind.SPAWNED, data={"restarts": s.restarts}))
            return _phase(s, Phase.RUNNING, "started")
        case SpawnFailed(reason):
            return _after_failure(s, None, now, reason, policy, out)
        case Adopted(owned, why):
            _no_child_yet(s, event)
            s = replace(s, running=Running(owned=owned, adopted=True, why=why))
            out.append(Emit(EventKind.ADOPTED, why, {"owned": owned}))
            return _phase(s, Phase.ADOPTED, why)
        case AdoptFailed():
            out.append(PlanNow())
            return s
        case Exited(status, lived, wall):
            return _exited(s, status, lived, wall, now, policy, out)
        case StopRequested(reason, as_failure):
            return _stop(s, reason, now, policy, out, as_failure=as_failure)
        case LetGo(reason):
            return _let_go(s, reason, out)
        case ChildLost():
            return replace(s, reason="its child ended while no supervisor was running")
        case AlreadyGone():
            if s.running is None or s.running.stop_reason is None:
                return s
            out.append(WakeAt(now))
            return replace(s, running=replace(s.running, kill_at=now))
        case KillDue():
            run = s.running
            if run is None or run.kill_at is None or now < run.kill_at:
                return s
            out.append(Kill())
            # again shortly, in case the exit event is lost
            kill_at = now + max(1.0, policy.stop_grace / 4)
            out.append(WakeAt(kill_at))
            return replace(s, running=replace(run, kill_at=kill_at))
        case Probed(healthy, reason):
            return _probed(s, healthy, reason, now, policy, out)
        case WallStepped():
            if s.running is None or s.running.health_failures == 0:
                return s
            return replace(s, running=replace(s.running, health_failures=0))
        case Reset():
            out.append(Emit(EventKind.RESET))
            out.append(PlanNow())
            return replace(
                s,
                failed=False,
                held="",
                streak=Streak(),
                next_start=0.0,
                reason="reset by operator",
            )
        case Restart(why):
            if s.running is None:
                out.append(PlanNow())
                return replace(s, streak=Streak(), next_start=0.0, failed=False, held="")
            if not s.running.owned:
                return s  # not ours to stop; the shell refuses it first
            s = _stop(s, why, now, policy, out)
            assert s.running is not None
            return replace(s, running=replace(s.running, restart_after=True))
        case Down(wall):
            if s.down:
                return s
            s = replace(s, down=True, down_since=wall)
            out.append(Emit(EventKind.DOWN))
            out.append(PlanNow())
            return s
        case Up():
            if not s.down:
                return s
            out.append(Emit(EventKind.UP))
            out.append(PlanNow())
            return replace(s, down=False, down_since=None, streak=Streak(), next_start=0.0, held="")
    raise TypeError(f"not a session event: {event!r}")  # pragma: no cover


class TwoChildrenError(RuntimeError):
    """The shell reported a second child for a session that has one: a bug
    in the shell, refused here so it cannot go unnoticed."""


def _no_child_yet(s: SessionState, event: Event) -> None:
    if s.running is not None:
        raise TwoChildrenError(f"{event!r} for a session that already has a child")


def _phase(s: SessionState, phase: Phase, reason: str) -> SessionState:
    if s.phase == phase and (not reason or s.reason == reason):
        return s
    return replace(s, phase=phase, reason=reason or s.reason)


_NOT_OURS = "not ours to stop: "


def _decide(s: SessionState, now: float, policy: Policy, out: list[Action]) -> SessionState:
    """The planner's rule for one session: what its inputs call for now."""
    if not s.known:
        return s
    gone = s.vanished_at is not None and now - s.vanished_at >= policy.grace
    if s.vanished_at is not None and not gone:
        out.append(WakeAt(s.vanished_at + policy.grace))
    run = s.running
    # A plugin's rule may give no reason; status must not show a stale one.
    refused = s.verdict.reason or "not eligible (the rule gave no reason)"
    if run is not None:
        if run.stop_reason is not None:
            return s
        if gone:
            if run.owned:
                return _stop(s, "session gone", now, policy, out)
            return _let_go(s, "session gone", out)
        if s.down:
            if run.owned:
                return _stop(s, "down by operator", now, policy, out)
            return _phase(s, Phase.ADOPTED, f"{_NOT_OURS}down by operator")
        if not s.verdict.eligible:
            if run.owned:
                return _stop(s, refused, now, policy, out)
            return _phase(s, Phase.ADOPTED, f"{_NOT_OURS}{refused}")
        if run.unhealthy is not None and run.owned:
            return _stop(s, run.unhealthy, now, policy, out, as_failure=True)
        if s.phase is Phase.ADOPTED and s.reason.startswith(_NOT_OURS):
            return _phase(s, Phase.ADOPTED, run.why or "adopted")  # wanted again
        return s
    if gone:
        out.append(Emit(EventKind.FORGOTTEN, "session gone"))
        out.append(Forget())
        return s
    if s.vanished_at is not None:
        return _phase(s, Phase.STOPPED, "session vanished; waiting out the grace period")
    if s.down:
        return _phase(s, Phase.DOWN, "down by operator")
    if not s.verdict.eligible:
        return _phase(s, Phase.INELIGIBLE, refused)
    if s.failed:
        return _phase(s, Phase.FAILED, s.held or s.reason)
    if s.next_start > now:
        out.append(WakeAt(s.next_start))
        return _phase(s, Phase.BACKOFF, s.held or s.reason)
    out.append(Spawn(priority=s.next_start))
    return s


def _let_go(s: SessionState, reason: str, out: list[Action]) -> SessionState:
    if s.running is None or s.running.owned:
        return s  # ours are stopped, never just let go
    out.append(Emit(EventKind.RELEASED, reason))
    out.append(Release())
    return _phase(replace(s, running=None), Phase.STOPPED, reason)


def _stop(
    s: SessionState,
    reason: str,
    now: float,
    policy: Policy,
    out: list[Action],
    *,
    as_failure: bool = False,
) -> SessionState:
    run = s.running
    if run is None or run.stop_reason is not None or not run.owned:
        return s  # nothing to stop, a stop under way, or not ours to signal
    reason = reason or "stopped"
    kill_at = now + policy.stop_grace
    s = replace(
        s,
        running=replace(run, stop_reason=reason, stop_as_failure=as_failure, kill_at=kill_at),
    )
    out.append(Terminate(reason))
    out.append(WakeAt(kill_at))
    if not s.verdict.eligible and s.vanished_at is None and not s.down:
        out.append(Emit(EventKind.INELIGIBLE, reason))
    return _phase(s, Phase.STOPPING, reason)


def _exited(
    s: SessionState,
    status: ExitStatus,
    lived: float | None,
    wall: float,
    now: float,
    policy: Policy,
    out: list[Action],
) -> SessionState:
    run = s.running
    if run is None:
        return s
    out.append(PlanNow())
    stop_reason = run.stop_reason
    out.append(
        Emit(
            EventKind.EXITED,
            stop_reason or "",
            {
                **status.to_json(),
                "lived": round(lived, 3) if lived is not None else None,
                "owned": run.owned,
            },
        )
    )
    s = replace(s, running=None, last_exit=status, last_exit_at=wall)
    if not run.owned:
        # Not our daemon and not our failure: take over now.
        why = "the daemon we were watching exited; taking over"
        return _phase(replace(s, next_start=now), Phase.PENDING, why)
    if run.restart_after:
        return _phase(
            replace(s, next_start=now, streak=Streak()), Phase.PENDING, "restarted by operator"
        )
    if stop_reason is not None and not run.stop_as_failure:
        out.append(Emit(EventKind.STOPPED, stop_reason))
        return _phase(s, Phase.STOPPED, stop_reason)
    return _after_failure(s, lived, now, stop_reason or status.describe(), policy, out)


_FALLBACK = RestartPolicy()


def _after_failure(
    s: SessionState,
    lived: float | None,
    now: float,
    reason: str,
    policy: Policy,
    out: list[Action],
) -> SessionState:
    try:
        decision = policy.restart.on_exit(s.streak, lived, now)
    except Exception as exc:
        # A plugin's wait or stop strategy is user code: its bug must cost
        # neither the session (stuck with no child and no retry) nor the
        # pool.  The stock curve stands in, and the reason says so.
        decision = _FALLBACK.on_exit(s.streak, lived, now)
        reason = f"{reason} (restart policy failed: {type(exc).__name__}: {exc}; default backoff)"
    s = replace(s, streak=decision.streak, next_start=now + decision.delay)
    if decision.delay <= 0:
        out.append(PlanNow())
    else:
        out.append(WakeAt(s.next_start))
    if decision.give_up:
        why = f"gave up after {decision.streak.failures} rapid failures: {reason}"
        out.append(Emit(EventKind.FAILED, why))
        return _phase(replace(s, failed=True, held=why), Phase.FAILED, why)
    if decision.delay > 0:
        # Worded to agree with the RESTARTS column (``restarts``, starts
        # after the first): the failure just seen is counted, its restart
        # is not yet, so the pending one is restarts + 1.
        n = decision.streak.failures
        failures = "1 rapid failure" if n == 1 else f"{n} rapid failures in a row"
        restart = f"restart #{s.restarts + 1}" if s.starts else "start"
        why = f"{reason}; {failures}, {restart} in {decision.delay:.1f}s"
        out.append(
            Emit(
                EventKind.BACKOFF,
                why,
                {"delay": round(decision.delay, 3), "streak": decision.streak.failures},
            )
        )
        return _phase(replace(s, held=why), Phase.BACKOFF, why)
    return _phase(replace(s, held=""), Phase.PENDING, reason)


def _probed(
    s: SessionState,
    healthy: bool,
    reason: str,
    now: float,
    policy: Policy,
    out: list[Action],
) -> SessionState:
    run = s.running
    if run is None or run.stop_reason is not None:
        return s
    if healthy:
        return replace(s, running=replace(run, health_failures=0)) if run.health_failures else s
    failures = run.health_failures + 1
    s = replace(s, running=replace(run, health_failures=failures))
    limit = policy.failures_before_restart
    if failures < limit:
        return s
    if run.owned:
        unhealthy = f"unhealthy: {reason}"
        assert s.running is not None
        s = replace(s, running=replace(s.running, unhealthy=unhealthy))
        out.append(Emit(EventKind.UNHEALTHY, reason))
        return _stop(s, unhealthy, now, policy, out, as_failure=True)
    if failures == limit:
        out.append(Emit(EventKind.UNHEALTHY, f"{reason} (not ours to restart)"))
    return s
