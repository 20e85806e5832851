"""Unit tests for the pure decision step, :func:`wirepool._planner.plan`.

Every rule of the Rust supervisor (wire's ``src/daemon_supervisor.rs``) and every rule we
added is checked here with explicit ``now`` values: no process, no sleep, no
clock.  A seeded random loop at the end checks the invariants that must hold
for *any* input.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from wirepool._planner import Desired, Observed, Pending, Plan, plan
from wirepool._types import Session, Verdict

NOW = 1000.0
GRACE = 30.0

OK = Verdict(True, "has run")
IDLE = Verdict(False, "idle for 9.0d (limit 7.0d)")


def session(name: str) -> Session:
    return Session(name=name, home=Path("/sessions") / name)


def want(name: str, verdict: Verdict = OK, vanished_at: float | None = None) -> dict[str, Desired]:
    return {name: Desired(session(name), verdict, vanished_at)}


def run(
    desired: dict[str, Desired] | None = None,
    observed: dict[str, Observed] | None = None,
    pending: dict[str, Pending] | None = None,
    now: float = NOW,
    grace: float = GRACE,
) -> Plan:
    return plan(desired or {}, observed or {}, pending or {}, now, grace)


def acts(result: Plan) -> tuple[object, ...]:
    """Every action of a plan, for "nothing happens" assertions."""
    return (result.spawn, result.stop, result.release, result.forget)


# --------------------------------------------------------------- spawning


def test_eligible_session_without_worker_and_no_backoff_is_spawned() -> None:
    result = run(want("a"))
    assert result.spawn == ("a",)
    assert result.stop == result.release == result.forget == ()
    assert result.wake_at is None


def test_restart_that_is_exactly_due_is_spawned() -> None:
    result = run(want("a"), pending={"a": Pending(next_start=NOW, reason="exit code 1")})
    assert result.spawn == ("a",)
    assert "a" not in result.states


def test_backoff_pending_is_reported_and_wakes_at_next_start() -> None:
    result = run(want("a"), pending={"a": Pending(next_start=NOW + 4.0, reason="exit code 1")})
    assert result.spawn == ()
    assert result.states["a"] == ("backoff", "exit code 1")
    assert result.wake_at == NOW + 4.0


def test_backoff_over_spawns_on_the_next_plan() -> None:
    pending = {"a": Pending(next_start=NOW + 4.0, reason="exit code 1")}
    assert run(want("a"), pending=pending, now=NOW + 3.999).spawn == ()
    assert run(want("a"), pending=pending, now=NOW + 4.0).spawn == ("a",)


def test_failed_session_is_not_spawned() -> None:
    result = run(want("a"), pending={"a": Pending(failed=True, reason="gave up after 5")})
    assert result.spawn == ()
    assert result.states["a"] == ("failed", "gave up after 5")
    assert result.wake_at is None


def test_failed_session_is_not_spawned_even_when_its_backoff_is_over() -> None:
    result = run(want("a"), pending={"a": Pending(next_start=0.0, failed=True, reason="x")})
    assert result.spawn == ()
    assert result.states["a"][0] == "failed"


def test_ineligible_session_without_worker_is_not_spawned_and_says_why() -> None:
    result = run(want("a", IDLE))
    assert result.spawn == ()
    assert result.states["a"] == ("ineligible", IDLE.reason)


def test_spawn_order_follows_due_time_then_name() -> None:
    desired = {**want("c"), **want("a"), **want("b"), **want("d"), **want("e")}
    pending = {
        "a": Pending(next_start=NOW - 1.0),
        "b": Pending(next_start=NOW - 9.0),
        "c": Pending(next_start=0.0),
        "d": Pending(next_start=NOW - 1.0),
        # "e": no pending entry at all: due since forever, like next_start=0
    }
    result = run(desired, pending=pending)
    assert result.spawn == ("c", "e", "b", "a", "d")


def test_skip_sessions_with_a_live_external_daemon() -> None:
    """Seed rule: a daemon somebody else started is watched, never duplicated."""
    result = run(want("a"), observed={"a": Observed(owned=False)})
    assert acts(result) == ((), (), (), ())


def test_running_healthy_worker_gets_no_action() -> None:
    result = run(want("a"), observed={"a": Observed()})
    assert acts(result) == ((), (), (), ())
    assert result.wake_at is None


def test_a_worker_blocks_a_spawn_whatever_its_pending_state() -> None:
    result = run(want("a"), observed={"a": Observed()}, pending={"a": Pending(next_start=0.0)})
    assert result.spawn == ()


# --------------------------------------------------------------- stopping


def test_ineligible_owned_worker_is_stopped_with_the_verdict_reason() -> None:
    result = run(want("a", IDLE), observed={"a": Observed(owned=True)})
    assert result.stop == (("a", IDLE.reason),)
    assert result.states["a"] == ("stopping", IDLE.reason)
    assert result.spawn == ()


def test_ineligible_external_worker_is_not_stopped() -> None:
    result = run(want("a", IDLE), observed={"a": Observed(owned=False)})
    assert result.stop == ()
    assert result.release == ()
    state, reason = result.states["a"]
    assert state == "adopted"
    assert IDLE.reason in reason
    assert "not ours" in reason


def test_unhealthy_owned_worker_is_stopped_with_the_unhealthy_reason() -> None:
    why = "unhealthy: heartbeat for 300s (limit 60s): hung"
    result = run(want("a"), observed={"a": Observed(unhealthy=why)})
    assert result.stop == (("a", why),)
    assert result.states["a"] == ("stopping", why)


def test_unhealthy_external_worker_is_not_stopped() -> None:
    result = run(want("a"), observed={"a": Observed(owned=False, unhealthy="hung")})
    assert acts(result) == ((), (), (), ())


@pytest.mark.parametrize(
    ("desired", "seen"),
    [
        pytest.param(want("a", IDLE), Observed(stopping=True), id="ineligible"),
        pytest.param(want("a"), Observed(stopping=True, unhealthy="hung"), id="unhealthy"),
        pytest.param({}, Observed(stopping=True), id="gone"),
        pytest.param(want("a", vanished_at=NOW - 99), Observed(stopping=True), id="past-grace"),
    ],
)
def test_a_stopping_worker_gets_no_second_stop(desired: dict[str, Desired], seen: Observed) -> None:
    result = run(desired, observed={"a": seen})
    assert result.stop == ()
    assert result.release == ()
    assert result.spawn == ()
    assert result.states["a"][0] == "stopping"


# -------------------------------------------------- sessions that vanished


def test_vanished_within_grace_keeps_its_worker_and_wakes_when_grace_ends() -> None:
    vanished = NOW - 10.0
    result = run(want("a", vanished_at=vanished), observed={"a": Observed()})
    assert acts(result) == ((), (), (), ())
    assert result.wake_at == vanished + GRACE


def test_vanished_within_grace_without_worker_is_neither_spawned_nor_forgotten() -> None:
    vanished = NOW - 10.0
    result = run(want("a", vanished_at=vanished), pending={"a": Pending(next_start=0.0)})
    assert result.spawn == ()
    assert result.forget == ()
    assert result.states["a"][0] == "stopped"
    assert "grace" in result.states["a"][1]
    assert result.wake_at == vanished + GRACE


def test_vanished_past_grace_owned_worker_is_stopped_as_session_gone() -> None:
    result = run(want("a", vanished_at=NOW - GRACE - 1), observed={"a": Observed()})
    assert result.stop == (("a", "session gone"),)
    assert result.states["a"] == ("stopping", "session gone")
    assert result.wake_at is None


def test_grace_ends_exactly_at_vanished_at_plus_grace() -> None:
    vanished = NOW - 5.0
    before = run(want("a", vanished_at=vanished), observed={"a": Observed()}, now=vanished + 29.9)
    at = run(want("a", vanished_at=vanished), observed={"a": Observed()}, now=vanished + GRACE)
    assert before.stop == ()
    assert at.stop == (("a", "session gone"),)


def test_vanished_past_grace_external_worker_is_released_not_stopped() -> None:
    result = run(want("a", vanished_at=NOW - GRACE), observed={"a": Observed(owned=False)})
    assert result.stop == ()
    assert result.release == ("a",)
    assert result.states["a"] == ("stopped", "session gone")


def test_vanished_past_grace_without_worker_is_forgotten() -> None:
    result = run(want("a", vanished_at=NOW - GRACE), pending={"a": Pending(next_start=NOW + 5)})
    assert result.forget == ("a",)
    assert result.spawn == ()
    assert "a" not in result.states
    assert result.wake_at is None  # its backoff no longer matters


def test_pending_entry_for_an_unknown_session_is_forgotten() -> None:
    result = run(pending={"ghost": Pending(next_start=NOW + 5, reason="exit code 1")})
    assert result.forget == ("ghost",)
    assert result.wake_at is None


def test_kill_children_whose_session_left() -> None:
    """Seed rule: a child whose session is no longer discovered is stopped;
    the others are left alone."""
    desired = {**want("stays"), **want("left", vanished_at=NOW - 3600)}
    observed = {"stays": Observed(), "left": Observed(), "dropped": Observed()}
    result = run(desired, observed=observed)
    assert sorted(result.stop) == [("dropped", "session gone"), ("left", "session gone")]
    assert result.spawn == ()


def test_wake_at_is_the_earliest_deadline() -> None:
    desired = {**want("a"), **want("b"), **want("c", vanished_at=NOW - 25.0)}
    pending = {"a": Pending(next_start=NOW + 8.0), "b": Pending(next_start=NOW + 2.0)}
    result = run(desired, observed={"c": Observed()}, pending=pending)
    assert result.wake_at == NOW + 2.0
    result = run(desired, observed={"c": Observed()}, pending=pending, now=NOW + 3.0)
    assert result.wake_at == NOW - 25.0 + GRACE  # c's grace (at NOW+5) is now the next


def test_plan_does_not_mutate_its_inputs_and_is_deterministic() -> None:
    desired = {**want("a"), **want("b", IDLE), **want("c", vanished_at=NOW - 99)}
    observed = {"b": Observed(), "c": Observed(owned=False)}
    pending = {"a": Pending(next_start=NOW + 1)}
    # the values are frozen, so copying the dicts is a full snapshot
    snapshot = (dict(desired), dict(observed), dict(pending))
    first = run(desired, observed, pending)
    second = run(desired, observed, pending)
    assert (desired, observed, pending) == snapshot
    assert first == second


# ------------------------------------------------------------- invariants


def _random_case(
    rng: random.Random,
) -> tuple[dict[str, Desired], dict[str, Observed], dict[str, Pending], float, float]:
    now = rng.uniform(0.0, 10_000.0)
    grace = rng.choice([0.0, 1.0, 30.0, 300.0])
    desired: dict[str, Desired] = {}
    observed: dict[str, Observed] = {}
    pending: dict[str, Pending] = {}
    for i in range(rng.randint(0, 10)):
        name = f"s{i}"
        if rng.random() < 0.8:
            verdict = Verdict(rng.random() < 0.6, rng.choice(["", "why", "idle"]))
            vanished = rng.choice([None, None, None, now - rng.uniform(0, 2 * grace + 1), now])
            desired[name] = Desired(session(name), verdict, vanished)
        if rng.random() < 0.4:
            observed[name] = Observed(
                owned=rng.random() < 0.7,
                stopping=rng.random() < 0.2,
                unhealthy=rng.choice([None, None, "unhealthy: hung"]),
            )
        if rng.random() < 0.6:
            pending[name] = Pending(
                next_start=rng.choice([0.0, now, now - 5.0, now + rng.uniform(0.001, 100.0)]),
                failed=rng.random() < 0.15,
                reason=rng.choice(["", "exit code 1"]),
            )
    return desired, observed, pending, now, grace


def test_invariants_hold_for_random_inputs() -> None:
    rng = random.Random(20260619)
    for _ in range(500):
        desired, observed, pending, now, grace = _random_case(rng)
        result = plan(desired, observed, pending, now, grace)
        case = (desired, observed, pending, now, grace)

        assert len(set(result.spawn)) == len(result.spawn), case
        for name in result.spawn:
            want_ = desired[name]  # never spawn a session discovery did not report
            waiting = pending.get(name, Pending())
            assert name not in observed, case  # never a second worker
            assert want_.verdict.eligible, case
            assert want_.vanished_at is None, case
            assert not waiting.failed, case
            assert waiting.next_start <= now, case  # never inside its backoff

        stopped = [name for name, _ in result.stop]
        assert len(set(stopped)) == len(stopped), case
        for name, _reason in result.stop:
            assert name in observed, case
            assert observed[name].owned, case
            assert not observed[name].stopping, case

        for name in result.release:
            assert name in observed, case
            assert not observed[name].owned, case
            assert not observed[name].stopping, case
        for name in result.forget:
            assert name not in observed, case

        touched = [*result.spawn, *stopped, *result.release, *result.forget]
        assert len(touched) == len(set(touched)), case  # one action per session

        dues = [pending.get(n, Pending()).next_start for n in result.spawn]
        assert dues == sorted(dues), case

        if result.wake_at is not None:
            assert result.wake_at > now, case

        # Liveness: every session that should run and can run now is spawned.
        for name, want_ in desired.items():
            waiting = pending.get(name, Pending())
            if (
                name not in observed
                and want_.verdict.eligible
                and want_.vanished_at is None
                and not waiting.failed
                and waiting.next_start <= now
            ):
                assert name in result.spawn, case
