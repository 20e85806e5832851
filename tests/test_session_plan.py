"""The pool-wide decision, :func:`wirepool._session.plan`: every session's
machine takes a ``Tick`` and the due spawns are put in order.

These are the rules the old pure planner (``plan(desired, observed, pending,
now, grace)``) was tested for, each checked against the machine: every rule
of the Rust supervisor (wire's ``src/daemon_supervisor.rs``) and every rule
we added, with explicit ``now`` values -- no process, no sleep, no clock.
The old inputs map onto a :class:`~wirepool._session.SessionState`: what
discovery reported is ``checked``/``verdict``/``vanished_at``, the worker is
``running``, the restart bookkeeping is ``next_start``/``failed``/``reason``.
A session the old planner did not find in its ``desired`` input is one that
vanished past its grace; one known only from its record is left alone.
Property tests at the end check the invariants that must hold for *any*
input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wirepool import _session as m
from wirepool._types import Verdict

NOW = 1000.0
GRACE = 30.0
STOP_GRACE = 4.0
POLICY = m.Policy(grace=GRACE, stop_grace=STOP_GRACE)
GONE_AT = NOW - 3600.0  # vanished long past its grace

OK = Verdict(True, "has run")
IDLE = Verdict(False, "idle for 9.0d (limit 7.0d)")

WORKER = m.Running(spawned_at=NOW - 60.0)  # our child
EXTERNAL = m.Running(owned=False, adopted=True)  # a daemon somebody else started


def stopping(reason: str) -> m.Running:
    """Our child, with a stop under way."""
    return replace(WORKER, stop_reason=reason, kill_at=NOW + 2.0)


def _phase_of(running: m.Running | None) -> m.Phase:
    if running is None:
        return m.Phase.PENDING
    if running.stop_reason is not None:
        return m.Phase.STOPPING
    return m.Phase.ADOPTED if running.adopted else m.Phase.RUNNING


def session(
    verdict: Verdict = OK,
    *,
    vanished_at: float | None = None,
    running: m.Running | None = None,
    next_start: float = 0.0,
    failed: bool = False,
    reason: str = "",
    held: str = "",
) -> m.SessionState:
    """A session discovery reported (``vanished_at``: it stopped reporting it
    then), with the phase its child implies."""
    return m.SessionState(
        phase=_phase_of(running),
        reason=reason,
        held=held,
        verdict=verdict,
        checked=True,
        vanished_at=vanished_at,
        running=running,
        next_start=next_start,
        failed=failed,
    )


def run(states: Mapping[str, m.SessionState], now: float = NOW) -> m.Plan:
    return m.plan(states, now, POLICY)


def stops(result: m.Plan) -> list[tuple[str, str]]:
    return sorted(
        (name, a.reason)
        for name, done in result.actions.items()
        for a in done
        if isinstance(a, m.Terminate)
    )


def with_action(result: m.Plan, kind: type) -> list[str]:
    """The sessions told to ``kind`` (Release, Forget)."""
    return sorted(n for n, done in result.actions.items() if any(isinstance(a, kind) for a in done))


def wake_at(result: m.Plan) -> float | None:
    """The plan's next deadline: the earliest WakeAt any session asked for."""
    times = [a.at for done in result.actions.values() for a in done if isinstance(a, m.WakeAt)]
    return min(times, default=None)


def shown(result: m.Plan, name: str) -> tuple[str, str]:
    """What status shows for the session: (state, reason)."""
    state = result.states[name]
    return state.phase.value, state.reason


# --------------------------------------------------------------- spawning


def test_eligible_session_without_worker_and_no_backoff_is_spawned() -> None:
    result = run({"a": session()})
    assert result.spawn == ("a",)
    assert result.actions == {}  # no stop, release, forget, nor wake-up
    assert wake_at(result) is None


def test_restart_that_is_exactly_due_is_spawned() -> None:
    before = session(next_start=NOW, reason="exit code 1")
    result = run({"a": before})
    assert result.spawn == ("a",)
    # the old planner reported no state for it; the machine leaves it to the
    # Spawned (or Deferred) event that follows
    assert result.states["a"] == before


def test_backoff_pending_is_reported_and_wakes_at_next_start() -> None:
    result = run({"a": session(next_start=NOW + 4.0, reason="exit code 1")})
    assert result.spawn == ()
    assert shown(result, "a") == ("backoff", "exit code 1")
    assert result.actions == {"a": [m.WakeAt(NOW + 4.0)]}


def test_backoff_over_spawns_on_the_next_plan() -> None:
    states = {"a": session(next_start=NOW + 4.0, reason="exit code 1")}
    assert run(states, now=NOW + 3.999).spawn == ()
    assert run(states, now=NOW + 4.0).spawn == ("a",)


def test_failed_session_is_not_spawned() -> None:
    result = run({"a": session(failed=True, reason="gave up after 5")})
    assert result.spawn == ()
    assert shown(result, "a") == ("failed", "gave up after 5")
    assert wake_at(result) is None


@pytest.mark.parametrize("next_start", [0.0, NOW - 5.0, NOW])
def test_failed_session_is_not_spawned_even_when_its_backoff_is_over(next_start: float) -> None:
    result = run({"a": session(next_start=next_start, failed=True, reason="x")})
    assert result.spawn == ()
    assert shown(result, "a") == ("failed", "x")


def test_ineligible_session_without_worker_is_not_spawned_and_says_why() -> None:
    result = run({"a": session(IDLE)})
    assert result.spawn == ()
    assert shown(result, "a") == ("ineligible", IDLE.reason)


def test_spawn_order_follows_due_time_then_name() -> None:
    result = run(
        {
            "c": session(next_start=0.0),
            "a": session(next_start=NOW - 1.0),
            "b": session(next_start=NOW - 9.0),
            "d": session(next_start=NOW - 1.0),
            "e": m.SessionState(checked=True, verdict=OK),  # never started: next_start=0
        }
    )
    assert result.spawn == ("c", "e", "b", "a", "d")


def test_skip_sessions_with_a_live_external_daemon() -> None:
    """Seed rule: a daemon somebody else started is watched, never duplicated."""
    before = session(running=EXTERNAL)
    result = run({"a": before})
    assert (result.spawn, result.actions) == ((), {})
    assert result.states["a"] == before


def test_running_healthy_worker_gets_no_action() -> None:
    before = session(running=WORKER, reason="started")
    result = run({"a": before})
    assert (result.spawn, result.actions) == ((), {})
    assert result.states["a"] == before
    assert wake_at(result) is None


@pytest.mark.parametrize("running", [WORKER, EXTERNAL], ids=["owned", "external"])
@pytest.mark.parametrize("next_start", [0.0, NOW])
def test_a_worker_blocks_a_spawn_whatever_its_pending_state(
    running: m.Running, next_start: float
) -> None:
    result = run({"a": session(running=running, next_start=next_start)})
    assert result.spawn == ()


# --------------------------------------------------------------- stopping


def test_ineligible_owned_worker_is_stopped_with_the_verdict_reason() -> None:
    result = run({"a": session(IDLE, running=WORKER)})
    assert stops(result) == [("a", IDLE.reason)]
    assert shown(result, "a") == ("stopping", IDLE.reason)
    assert result.spawn == ()
    # the machine also sets the SIGKILL deadline and announces the verdict
    assert result.actions["a"] == [
        m.Terminate(IDLE.reason),
        m.WakeAt(NOW + STOP_GRACE),
        m.Emit("ineligible", IDLE.reason),
    ]


def test_ineligible_external_worker_is_not_stopped() -> None:
    result = run({"a": session(IDLE, running=EXTERNAL)})
    assert result.actions == {}  # neither stopped nor released
    assert result.states["a"].running == EXTERNAL
    assert shown(result, "a") == ("adopted", f"not ours to stop: {IDLE.reason}")


def test_unhealthy_owned_worker_is_stopped_with_the_unhealthy_reason() -> None:
    why = "unhealthy: heartbeat for 300s (limit 60s): hung"
    result = run({"a": session(running=replace(WORKER, unhealthy=why))})
    assert stops(result) == [("a", why)]
    assert shown(result, "a") == ("stopping", why)
    # New in the machine: this stop counts as a failure (its exit backs off),
    # unlike a stop for a verdict or a vanish.
    after = result.states["a"].running
    assert after is not None and after.stop_as_failure


def test_a_stop_for_a_verdict_or_a_vanish_is_no_failure() -> None:
    result = run(
        {
            "ineligible": session(IDLE, running=WORKER),
            "gone": session(vanished_at=GONE_AT, running=WORKER),
        }
    )
    assert stops(result) == [("gone", "session gone"), ("ineligible", IDLE.reason)]
    for name in ("ineligible", "gone"):
        after = result.states[name].running
        assert after is not None and not after.stop_as_failure, name


def test_unhealthy_external_worker_is_not_stopped() -> None:
    before = session(running=replace(EXTERNAL, unhealthy="hung"))
    result = run({"a": before})
    assert (result.spawn, result.actions) == ((), {})
    assert result.states["a"] == before


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(session(IDLE, running=stopping(IDLE.reason)), id="ineligible"),
        pytest.param(
            session(running=replace(stopping("unhealthy: hung"), unhealthy="unhealthy: hung")),
            id="unhealthy",
        ),
        # the old "gone" (not reported at all): vanished, its grace just over
        pytest.param(session(vanished_at=NOW - GRACE, running=stopping("session gone")), id="gone"),
        pytest.param(session(vanished_at=NOW - 99, running=stopping("x")), id="past-grace"),
        pytest.param(replace(session(running=stopping("down by operator")), down=True), id="down"),
    ],
)
def test_a_stopping_worker_gets_no_second_stop(before: m.SessionState) -> None:
    result = run({"a": before})
    assert (result.spawn, result.actions) == ((), {})  # no Terminate, no Release
    # the old planner showed ("stopping", ""); the machine keeps the stop's reason
    assert result.states["a"] == before
    assert shown(result, "a")[0] == "stopping"


def test_a_session_held_down_is_not_spawned_and_only_our_worker_is_stopped() -> None:
    # "down" is an input the old planner did not have: it ranks after a
    # vanish and before the verdict
    def down(state: m.SessionState) -> m.SessionState:
        return replace(state, down=True)

    result = run(
        {
            "idle": down(session()),
            "ours": down(session(IDLE, running=WORKER)),
            "theirs": down(session(running=EXTERNAL)),
            "vanished": down(session(vanished_at=NOW - 10.0)),
        }
    )
    assert result.spawn == ()
    assert shown(result, "idle") == ("down", "down by operator")
    assert stops(result) == [("ours", "down by operator")]
    assert shown(result, "theirs") == ("adopted", "not ours to stop: down by operator")
    assert shown(result, "vanished")[0] == "stopped"
    # held down, a stop is not announced as ineligible
    assert m.Emit("ineligible", "down by operator") not in result.actions["ours"]


# -------------------------------------------------- sessions that vanished


def test_vanished_within_grace_keeps_its_worker_and_wakes_when_grace_ends() -> None:
    vanished = NOW - 10.0
    result = run({"a": session(vanished_at=vanished, running=WORKER)})
    assert result.spawn == ()
    assert result.actions == {"a": [m.WakeAt(vanished + GRACE)]}


def test_vanished_within_grace_without_worker_is_neither_spawned_nor_forgotten() -> None:
    vanished = NOW - 10.0
    result = run({"a": session(vanished_at=vanished, next_start=0.0)})
    assert result.spawn == ()
    assert with_action(result, m.Forget) == []
    assert shown(result, "a") == ("stopped", "session vanished; waiting out the grace period")
    assert wake_at(result) == vanished + GRACE


def test_vanished_past_grace_owned_worker_is_stopped_as_session_gone() -> None:
    result = run({"a": session(vanished_at=NOW - GRACE - 1, running=WORKER)})
    assert stops(result) == [("a", "session gone")]
    assert shown(result, "a") == ("stopping", "session gone")
    # The old planner had no deadline here (the shell kept the SIGKILL's);
    # the machine asks to wake for it, and a gone session is not announced
    # as ineligible.
    assert result.actions["a"] == [m.Terminate("session gone"), m.WakeAt(NOW + STOP_GRACE)]
    assert wake_at(result) == NOW + STOP_GRACE


def test_grace_ends_exactly_at_vanished_at_plus_grace() -> None:
    vanished = NOW - 5.0
    states = {"a": session(vanished_at=vanished, running=WORKER)}
    before = run(states, now=vanished + 29.9)
    at = run(states, now=vanished + GRACE)
    assert stops(before) == []
    assert stops(at) == [("a", "session gone")]


def test_vanished_past_grace_external_worker_is_released_not_stopped() -> None:
    result = run({"a": session(vanished_at=NOW - GRACE, running=EXTERNAL)})
    assert stops(result) == []
    assert result.actions["a"] == [m.Emit("released", "session gone"), m.Release()]
    assert shown(result, "a") == ("stopped", "session gone")
    assert result.states["a"].running is None  # no longer watched


def test_vanished_past_grace_without_worker_is_forgotten() -> None:
    before = session(vanished_at=NOW - GRACE, next_start=NOW + 5)
    result = run({"a": before})
    assert result.actions["a"] == [m.Emit("forgotten", "session gone"), m.Forget()]
    assert result.spawn == ()
    # the old planner reported no state for it; the machine leaves it as it
    # was (the shell drops it)
    assert result.states["a"] == before
    assert wake_at(result) is None  # its backoff no longer matters


def test_pending_entry_for_an_unknown_session_is_forgotten() -> None:
    # Known only from its record, and discovery did not report it this run:
    # the shell marks it vanished, and once its grace is over it goes.
    ghost = m.SessionState(
        phase=m.Phase.BACKOFF, reason="exit code 1", next_start=NOW + 5, vanished_at=GONE_AT
    )
    result = run({"ghost": ghost})
    assert with_action(result, m.Forget) == ["ghost"]
    assert result.spawn == ()
    assert wake_at(result) is None


def test_a_session_known_only_from_its_record_is_left_as_it_is() -> None:
    """Neither checked nor seen to vanish this run: discovery has not
    answered for it yet.  Unlike the old planner's unknown session (forgotten,
    its worker stopped), it is neither forgotten, stopped nor spawned, and
    its state is not touched."""
    record_only = {
        "backoff": m.SessionState(phase=m.Phase.BACKOFF, reason="exit code 1", next_start=NOW + 5),
        "due": m.SessionState(next_start=0.0),  # known, it would be spawned
        # a state's default verdict is ineligible: known, this child would be stopped
        "child": m.SessionState(phase=m.Phase.RUNNING, reason="started", running=WORKER),
    }
    assert not m.SessionState().verdict.eligible
    result = run(record_only)
    assert (result.spawn, result.actions) == ((), {})
    assert result.states == record_only


def test_kill_children_whose_session_left() -> None:
    """Seed rule: a child whose session is no longer discovered is stopped;
    the others are left alone."""
    result = run(
        {
            "stays": session(running=WORKER),
            "left": session(vanished_at=GONE_AT, running=WORKER),
            # Known only from its record and not reported: the old planner
            # stopped it at once; the shell now marks it vanished, so it gets
            # the grace like any other.
            "dropped": m.SessionState(
                phase=m.Phase.RUNNING, running=WORKER, vanished_at=NOW - GRACE
            ),
        }
    )
    assert stops(result) == [("dropped", "session gone"), ("left", "session gone")]
    assert "stays" not in result.actions
    assert result.spawn == ()


def test_wake_at_is_the_earliest_deadline() -> None:
    states = {
        "a": session(next_start=NOW + 8.0),
        "b": session(next_start=NOW + 2.0),
        "c": session(vanished_at=NOW - 25.0, running=WORKER),
    }
    assert wake_at(run(states)) == NOW + 2.0
    later = run(states, now=NOW + 3.0)
    assert later.spawn == ("b",)
    assert wake_at(later) == NOW - 25.0 + GRACE  # c's grace (at NOW+5) is now the next


# ------------------------------------------------------------- invariants


def _gone(state: m.SessionState, now: float, grace: float) -> bool:
    return state.vanished_at is not None and now - state.vanished_at >= grace


@st.composite
def sessions(draw: st.DrawFn, now: float, grace: float) -> m.SessionState:
    """One session as the shell could hold it: reported (perhaps vanishing),
    vanished past its grace (the old planner's unknown session), or known
    only from its record."""
    kind = draw(st.sampled_from(["reported", "reported", "reported", "gone", "record"]))
    checked, vanished_at = True, None
    if kind == "reported":
        when = draw(st.sampled_from(["still", "still", "still", "just now", "a while ago"]))
        if when == "just now":
            vanished_at = now
        elif when == "a while ago":  # within its grace or past it
            vanished_at = now - draw(st.floats(0.0, 2 * grace + 1))
    elif kind == "gone":
        checked = draw(st.booleans())
        vanished_at = now - grace - draw(st.floats(0.0, 100.0))
    else:
        checked = False
    running = None
    if draw(st.sampled_from([False, False, True])):  # most have no worker
        running = m.Running(
            owned=draw(st.booleans()),
            adopted=draw(st.booleans()),
            unhealthy=draw(st.sampled_from([None, None, "unhealthy: hung"])),
        )
        if running.owned and draw(st.sampled_from([False, False, True])):  # only ours are stopped
            running = replace(running, stop_reason="asked", kill_at=now + 1.0)
    when = draw(st.sampled_from(["never", "due", "overdue", "later"]))
    next_start = {"never": 0.0, "due": now, "overdue": now - 5.0}.get(when)
    if next_start is None:
        next_start = now + draw(st.floats(0.001, 100.0))
    return m.SessionState(
        phase=draw(st.sampled_from(m.Phase)),
        reason=draw(st.sampled_from(["", "exit code 1"])),
        verdict=Verdict(
            draw(st.sampled_from([True, True, False])), draw(st.sampled_from(["", "why", "idle"]))
        ),
        checked=checked,
        vanished_at=vanished_at,
        running=running,
        next_start=next_start,
        failed=draw(st.sampled_from([False, False, False, True])),
        down=draw(st.sampled_from([False, False, False, True])),
    )


@st.composite
def pools(draw: st.DrawFn) -> tuple[dict[str, m.SessionState], float, m.Policy]:
    now = draw(st.floats(0.0, 10_000.0))
    grace = draw(st.sampled_from([0.0, 1.0, 30.0, 300.0]))
    count = draw(st.integers(0, 10))
    states = {f"s{i}": draw(sessions(now, grace)) for i in range(count)}
    return states, now, m.Policy(grace=grace, stop_grace=STOP_GRACE)


def _concrete_pool() -> tuple[dict[str, m.SessionState], float, m.Policy]:
    return (
        {
            "a": session(next_start=NOW + 1),
            "b": session(IDLE, running=WORKER),
            "c": session(vanished_at=NOW - 99, running=EXTERNAL),
            "d": m.SessionState(next_start=0.0),  # known only from its record
        },
        NOW,
        POLICY,
    )


@settings(max_examples=200, deadline=None)
@given(pools())
@example(_concrete_pool())
def test_plan_does_not_mutate_its_inputs_and_is_deterministic(
    case: tuple[dict[str, m.SessionState], float, m.Policy],
) -> None:
    states, now, policy = case
    # the states are frozen, so copying the dict is a full snapshot
    snapshot = dict(states)
    first = m.plan(states, now, policy)
    second = m.plan(states, now, policy)
    assert states == snapshot
    assert first == second
    assert first.states is not states
    # nor does the order in which the shell holds its sessions matter
    assert m.plan(dict(reversed(states.items())), now, policy) == first


@settings(max_examples=500, deadline=None)
@given(pools())
def test_invariants_hold_for_random_inputs(
    case: tuple[dict[str, m.SessionState], float, m.Policy],
) -> None:
    states, now, policy = case
    result = m.plan(states, now, policy)
    grace = policy.grace

    assert set(result.states) == set(states)  # a new state for every session
    assert set(result.actions) <= set(states)
    assert len(set(result.spawn)) == len(result.spawn)
    assert not any(isinstance(a, m.Spawn) for done in result.actions.values() for a in done)
    dues = [(states[n].next_start, n) for n in result.spawn]
    assert dues == sorted(dues)  # the longest-waiting first, then by name

    for name, before in states.items():
        after = result.states[name]
        done = result.actions.get(name, [])
        run_ = before.running
        decisive = [a for a in done if isinstance(a, m.Terminate | m.Release | m.Forget)]
        # one action per session
        assert len(decisive) + (name in result.spawn) <= 1, name

        if not before.known:  # known only from its record: untouched
            assert after == before and done == [] and name not in result.spawn

        if name in result.spawn:
            # never spawn a session discovery did not report, never a second
            # worker, never inside its backoff
            assert before.checked and before.vanished_at is None
            assert run_ is None
            assert before.verdict.eligible and not before.down and not before.failed
            assert before.next_start <= now
            assert after == before  # the Spawned event moves it on

        for action in decisive:
            match action:
                case m.Terminate(reason):
                    assert run_ is not None and run_.owned and run_.stop_reason is None
                    # never a wanted, healthy child
                    assert (
                        _gone(before, now, grace)
                        or before.down
                        or not before.verdict.eligible
                        or run_.unhealthy is not None
                    )
                    assert after.running is not None and after.running.stop_reason == reason
                    assert after.phase is m.Phase.STOPPING
                    # an empty reason (a verdict without one) keeps the reason
                    # shown before: see test_an_empty_verdict_reason_shows_a_stale_one
                    assert after.reason == (reason or before.reason)
                case m.Release():
                    assert run_ is not None and not run_.owned and run_.stop_reason is None
                    assert _gone(before, now, grace)
                    assert after.running is None
                case m.Forget():
                    assert run_ is None and _gone(before, now, grace)

        wakes = [a.at for a in done if isinstance(a, m.WakeAt)]
        assert all(at > now for at in wakes)

        # Liveness: every session that should run and can run now is spawned.
        if (
            before.checked
            and before.vanished_at is None
            and run_ is None
            and before.verdict.eligible
            and not before.down
            and not before.failed
            and before.next_start <= now
        ):
            assert name in result.spawn, name


# ------------------------------------------------- found while porting
# The old planner took the restart bookkeeping's reason apart from what
# status shows; the machine keeps one ``reason`` for both, so a phase that
# only passes by can overwrite the reason the next one shows.  Strict
# Regressions: what a phase shows must not outlive it, nor hide the reason of the next.


def _tick(state: m.SessionState, event: m.Event | None = None) -> m.SessionState:
    if event is not None:
        state, _ = m.step(state, event, NOW, POLICY)
    return run({"a": state}).states["a"]


def test_a_failed_sessions_reason_survives_an_ineligible_spell() -> None:
    why = "gave up after 3 rapid failures: exit code 1"
    state = _tick(session(failed=True, reason=why, held=why))
    state = _tick(state, m.Checked(IDLE))
    assert (state.phase, state.reason) == (m.Phase.INELIGIBLE, IDLE.reason)
    state = _tick(state, m.Checked(OK))
    assert (state.phase, state.reason) == (m.Phase.FAILED, why)  # is: (FAILED, IDLE.reason)


def test_a_backoff_reason_survives_a_vanish_within_grace() -> None:
    why = "exit code 1; 1 rapid failure, restart #1 in 60.0s"
    state = _tick(session(next_start=NOW + 60, reason=why, held=why))
    state = _tick(state, m.Vanished())
    assert state.phase is m.Phase.STOPPED
    state = _tick(state, m.Seen())
    # is: (BACKOFF, "session vanished; waiting out the grace period")
    assert (state.phase, state.reason) == (m.Phase.BACKOFF, why)


def test_an_adopted_daemon_loses_not_ours_to_stop_once_eligible_again() -> None:
    state = _tick(session(IDLE, running=EXTERNAL, reason="a live daemon already serves it"))
    assert state.reason == f"not ours to stop: {IDLE.reason}"
    state = _tick(state, m.Checked(OK))
    assert state.phase is m.Phase.ADOPTED
    assert not state.reason.startswith("not ours to stop")  # is: unchanged


def test_an_empty_verdict_reason_shows_a_stale_one() -> None:
    # Verdict.reason defaults to "", so a plugin's rule may well give none.
    state = _tick(session(Verdict(False), running=WORKER, reason="started"))
    assert state.phase is m.Phase.STOPPING
    assert state.reason != "started"  # is: "started", while it stops for the verdict
