"""The per-session state machine (:mod:`wirepool._session`), through its pure
``step`` function: a table per event (each phase a row), the lifecycles
end to end, and a property test over random event sequences."""

from __future__ import annotations

from dataclasses import replace

import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st

from wirepool import _session as m
from wirepool._types import ExitStatus, Verdict
from wirepool.restart import RestartPolicy, Streak

POLICY = m.Policy(
    restart=RestartPolicy(wait=tenacity.wait_fixed(5), stop=tenacity.stop_after_attempt(3)),
    grace=10.0,
    stop_grace=4.0,
    failures_before_restart=2,
)
NOW = 100.0
OK = Verdict(True, "ok")
NO = Verdict(False, "down file present")
BASE = m.SessionState(checked=True, verdict=OK)

#: one representative state per phase
PHASES: dict[str, m.SessionState] = {
    "pending": BASE,
    "running": replace(
        BASE,
        phase=m.Phase.RUNNING,
        reason="started",
        running=m.Running(spawned_at=90.0),
        starts=1,
    ),
    "adopted": replace(
        BASE,
        phase=m.Phase.ADOPTED,
        reason="a live daemon already serves it",
        running=m.Running(owned=False, adopted=True),
    ),
    "stopping": replace(
        BASE,
        verdict=NO,
        phase=m.Phase.STOPPING,
        reason="down file present",
        running=m.Running(spawned_at=90.0, stop_reason="down file present", kill_at=104.0),
        starts=1,
    ),
    "stopped": replace(
        BASE,
        phase=m.Phase.STOPPED,
        reason="session vanished; waiting out the grace period",
        vanished_at=95.0,
    ),
    "backoff": replace(
        BASE,
        phase=m.Phase.BACKOFF,
        reason="exit code 1; 1 rapid failure, restart #1 in 5.0s",
        streak=Streak(1, 95.0),
        next_start=103.0,
        starts=1,
    ),
    "failed": replace(
        BASE,
        phase=m.Phase.FAILED,
        reason="gave up",
        failed=True,
        streak=Streak(3, 80.0),
        starts=3,
        restarts=2,
    ),
    "ineligible": replace(BASE, verdict=NO, phase=m.Phase.INELIGIBLE, reason="down file present"),
    "down": replace(
        BASE, phase=m.Phase.DOWN, reason="down by operator", down=True, down_since=1000.0
    ),
}

KEEP = "="  # the row's phase is unchanged
RAISES = "raises"


def names(actions: list[m.Action]) -> list[str]:
    return [f"Emit({a.kind})" if isinstance(a, m.Emit) else type(a).__name__ for a in actions]


def check_table(event: m.Event, table: dict[str, tuple[str, list[str]]], now: float = NOW) -> None:
    assert set(table) == set(PHASES), "every phase has a row"
    for phase, (expected, actions) in table.items():
        before = PHASES[phase]
        if expected == RAISES:
            with pytest.raises(m.TwoChildrenError):
                m.step(before, event, now, POLICY)
            continue
        after, done = m.step(before, event, now, POLICY)
        want = before.phase.value if expected == KEEP else expected
        assert (after.phase.value, names(done)) == (want, actions), phase
        assert after.reason or after.phase is m.Phase.PENDING, (phase, "a reason is always set")


# ------------------------------------------------------------ one table per event


def test_checked_eligible_changes_no_phase_and_says_nothing() -> None:
    check_table(m.Checked(OK), {p: (KEEP, []) for p in PHASES})


def test_checked_ineligible_is_announced_only_where_nothing_runs_and_it_was_eligible() -> None:
    said = ["Emit(ineligible)"]
    check_table(
        m.Checked(NO),
        {
            "pending": (KEEP, said),
            "running": (KEEP, []),  # the stop (and its announcement) comes from Tick
            "adopted": (KEEP, []),
            "stopping": (KEEP, []),
            "stopped": (KEEP, said),
            "backoff": (KEEP, said),
            "failed": (KEEP, said),
            "ineligible": (KEEP, []),  # already was
            "down": (KEEP, said),
        },
    )


def test_check_failed_keeps_the_verdict_and_records_why() -> None:
    why = "eligibility check failed: boom"
    check_table(m.CheckFailed(why), {p: (KEEP, []) for p in PHASES})
    after, _ = m.step(PHASES["running"], m.CheckFailed(why), NOW, POLICY)
    assert after.verdict == OK and after.reason == why
    # never checked: ineligible with the reason, not "no change"
    fresh, _ = m.step(m.SessionState(), m.CheckFailed(why), NOW, POLICY)
    assert fresh.checked and fresh.verdict == Verdict(False, why)


def test_changed_lifts_only_a_failed_mark() -> None:
    check_table(m.Changed(), {p: (KEEP, []) for p in PHASES})
    after, _ = m.step(PHASES["failed"], m.Changed(), NOW, POLICY)
    assert not after.failed and after.streak == Streak() and after.next_start == 0.0
    assert after.reason == "session changed; trying again"
    assert m.step(PHASES["backoff"], m.Changed(), NOW, POLICY)[0] == PHASES["backoff"]


def test_seen_and_vanished_only_move_the_vanish_time() -> None:
    check_table(m.Seen(), {p: (KEEP, []) for p in PHASES})
    check_table(m.Vanished(), {p: (KEEP, []) for p in PHASES})
    assert m.step(PHASES["stopped"], m.Seen(), NOW, POLICY)[0].vanished_at is None
    assert m.step(PHASES["running"], m.Vanished(), NOW, POLICY)[0].vanished_at == NOW
    # a second vanish keeps the first time: the grace counts from it
    assert m.step(PHASES["stopped"], m.Vanished(), NOW, POLICY)[0].vanished_at == 95.0


def test_tick_decides_by_phase() -> None:
    check_table(
        m.Tick(),
        {
            "pending": (KEEP, ["Spawn"]),
            "running": (KEEP, []),
            "adopted": (KEEP, []),
            "stopping": (KEEP, []),
            "stopped": (KEEP, ["WakeAt"]),  # the end of its grace
            "backoff": (KEEP, ["WakeAt"]),  # its next start
            "failed": (KEEP, []),
            "ineligible": (KEEP, []),
            "down": (KEEP, []),
        },
    )


def test_tick_stops_what_should_not_run() -> None:
    running = PHASES["running"]
    for state, reason in (
        (replace(running, verdict=NO), "down file present"),
        (replace(running, vanished_at=NOW - 10.0), "session gone"),
        (replace(running, down=True), "down by operator"),
        (
            replace(running, running=replace(running.running, unhealthy="unhealthy: stale")),  # type: ignore[arg-type]
            "unhealthy: stale",
        ),
    ):
        after, actions = m.step(state, m.Tick(), NOW, POLICY)
        assert after.phase is m.Phase.STOPPING and after.reason == reason
        assert m.Terminate(reason) in actions and m.WakeAt(NOW + POLICY.stop_grace) in actions
        assert after.running is not None and after.running.kill_at == NOW + POLICY.stop_grace


def test_regression_adopted_daemon_of_an_ineligible_session_says_it_is_not_ours_to_stop() -> None:
    # The planner's "not ours to stop: <reason>" used to be dropped (planned
    # states were applied only to sessions without a worker), so status kept
    # the stale "a live daemon already serves it".
    after, actions = m.step(replace(PHASES["adopted"], verdict=NO), m.Tick(), NOW, POLICY)
    assert after.phase is m.Phase.ADOPTED
    assert after.reason == "not ours to stop: down file present"
    assert not any(isinstance(a, m.Terminate) for a in actions)


def test_tick_releases_a_gone_daemon_that_is_not_ours_and_forgets_a_gone_session() -> None:
    gone = NOW - POLICY.grace
    after, actions = m.step(replace(PHASES["adopted"], vanished_at=gone), m.Tick(), NOW, POLICY)
    assert names(actions) == ["Emit(released)", "Release"]
    assert after.running is None and (after.phase, after.reason) == (
        m.Phase.STOPPED,
        "session gone",
    )
    after, actions = m.step(replace(PHASES["pending"], vanished_at=gone), m.Tick(), NOW, POLICY)
    assert names(actions) == ["Emit(forgotten)", "Forget"]


def test_tick_leaves_a_session_known_only_from_its_record_as_it_is() -> None:
    record_only = m.SessionState(phase=m.Phase.BACKOFF, reason="from the record", next_start=0.0)
    assert m.step(record_only, m.Tick(), NOW, POLICY) == (record_only, [])


def test_spawn_outcomes() -> None:
    check_table(
        m.Deferred(),
        {p: ("backoff", []) for p in PHASES},
    )
    no_child = {p: RAISES for p in ("running", "adopted", "stopping")}
    check_table(
        m.Spawned(),
        {
            p: (no_child.get(p, "running"), [] if p in no_child else ["Emit(spawned)"])
            for p in PHASES
        },
    )
    check_table(
        m.Adopted(False, "a live daemon already serves it"),
        {
            p: (no_child.get(p, "adopted"), [] if p in no_child else ["Emit(adopted)"])
            for p in PHASES
        },
    )
    check_table(m.AdoptFailed(), {p: (KEEP, ["PlanNow"]) for p in PHASES})
    backoff = ["WakeAt", "Emit(backoff)"]
    check_table(
        m.SpawnFailed("spawn failed: ENOENT"),
        {
            **{p: ("backoff", backoff) for p in PHASES},
            "failed": ("failed", ["WakeAt", "Emit(failed)"]),
        },
    )


def test_spawned_counts_restarts_from_the_second_start() -> None:
    first, actions = m.step(BASE, m.Spawned(), NOW, POLICY)
    assert (first.starts, first.restarts) == (1, 0) and actions == [
        m.Emit("spawned", data={"restarts": 0})
    ]
    exited, _ = m.step(first, m.Exited(ExitStatus(code=0), 60.0, 1.0), NOW + 60, POLICY)
    second, _ = m.step(exited, m.Spawned(), NOW + 60, POLICY)
    assert (second.starts, second.restarts) == (2, 1)


def test_the_backoff_reason_counts_as_restarts_does() -> None:
    """The reason beside the RESTARTS column names the restart it waits
    for: ``restarts`` counts the restarts done, the streak the failures
    seen, and a spawn that fails is a failure but no restart."""
    policy = replace(POLICY, restart=RestartPolicy(wait=tenacity.wait_fixed(5)))
    state, _ = m.step(BASE, m.SpawnFailed("spawn failed: ENOENT"), NOW, policy)
    assert state.reason == "spawn failed: ENOENT; 1 rapid failure, start in 5.0s"
    for n in range(1, 4):
        state, _ = m.step(state, m.Spawned(), NOW + n, policy)
        state, _ = m.step(state, m.Exited(ExitStatus(code=1), 0.1, 1.0), NOW + n, policy)
        assert state.restarts == n - 1
        assert state.reason == (
            f"exit code 1; {n + 1} rapid failures in a row, restart #{n} in 5.0s"
        )
    state, _ = m.step(state, m.SpawnFailed("spawn failed: ENOENT"), NOW + 5, policy)
    assert state.restarts == 2 and state.reason.endswith(
        "5 rapid failures in a row, restart #3 in 5.0s"
    )


def test_exited_by_phase() -> None:
    check_table(
        m.Exited(ExitStatus(code=1), 2.0, 5000.0),
        {
            "pending": (KEEP, []),  # no child: nothing to do
            "running": ("backoff", ["PlanNow", "Emit(exited)", "WakeAt", "Emit(backoff)"]),
            "adopted": ("pending", ["PlanNow", "Emit(exited)"]),  # not ours: take over now
            "stopping": ("stopped", ["PlanNow", "Emit(exited)", "Emit(stopped)"]),
            "stopped": (KEEP, []),
            "backoff": (KEEP, []),
            "failed": (KEEP, []),
            "ineligible": (KEEP, []),
            "down": (KEEP, []),
        },
    )
    after, _ = m.step(PHASES["running"], m.Exited(ExitStatus(code=1), 2.0, 5000.0), NOW, POLICY)
    assert after.running is None and after.last_exit == ExitStatus(code=1)
    assert after.last_exit_at == 5000.0 and after.next_start == NOW + 5
    assert after.reason == "exit code 1; 1 rapid failure, restart #1 in 5.0s"


def test_a_long_life_resets_the_streak_and_restarts_at_once() -> None:
    state = replace(PHASES["running"], streak=Streak(2, 10.0))
    after, actions = m.step(state, m.Exited(ExitStatus(signal=9), 60.0, 1.0), NOW, POLICY)
    assert after.streak == Streak() and after.next_start == NOW
    assert names(actions) == ["PlanNow", "Emit(exited)", "PlanNow"]
    assert after.reason == "killed by SIGKILL"


def test_the_third_rapid_failure_gives_up_and_reset_or_a_change_lifts_it() -> None:
    state = BASE
    for n in range(3):
        state, _ = m.step(state, m.Spawned(), NOW + n, POLICY)
        state, actions = m.step(state, m.Exited(ExitStatus(code=1), 0.1, 1.0), NOW + n, POLICY)
    assert state.phase is m.Phase.FAILED and state.failed
    assert state.reason == "gave up after 3 rapid failures: exit code 1"
    assert "Emit(failed)" in names(actions)
    # failed: the plan starts nothing
    assert m.step(state, m.Tick(), NOW + 50, POLICY)[1] == []
    reset, actions = m.step(state, m.Reset(), NOW + 50, POLICY)
    assert names(actions) == ["Emit(reset)", "PlanNow"]
    assert m.step(reset, m.Tick(), NOW + 50, POLICY)[1] == [m.Spawn(priority=0.0)]


def test_stop_requests_escalation_and_already_gone() -> None:
    check_table(
        m.StopRequested("x"),
        {
            **{p: (KEEP, []) for p in PHASES},
            "running": ("stopping", ["Terminate", "WakeAt"]),
            "adopted": (KEEP, []),  # not ours to signal, whoever asks
        },
    )
    check_table(
        m.LetGo("supervisor stopping"),
        {**{p: (KEEP, []) for p in PHASES}, "adopted": ("stopped", ["Emit(released)", "Release"])},
    )
    check_table(m.ChildLost(), {p: (KEEP, []) for p in PHASES})
    lost, _ = m.step(m.SessionState(), m.ChildLost(), NOW, POLICY)
    assert lost.reason == "its child ended while no supervisor was running"
    check_table(
        m.AlreadyGone(), {**{p: (KEEP, []) for p in PHASES}, "stopping": (KEEP, ["WakeAt"])}
    )
    # the kill comes only once the grace is over, then again every grace/4 (>= 1 s)
    check_table(m.KillDue(), {p: (KEEP, []) for p in PHASES}, now=103.9)
    check_table(
        m.KillDue(),
        {**{p: (KEEP, []) for p in PHASES}, "stopping": (KEEP, ["Kill", "WakeAt"])},
        now=104.0,
    )
    _, actions = m.step(PHASES["stopping"], m.KillDue(), 104.0, POLICY)
    assert actions == [m.Kill(), m.WakeAt(105.0)]


def test_a_stop_of_an_ineligible_child_is_announced() -> None:
    _, actions = m.step(replace(PHASES["running"], verdict=NO), m.Tick(), NOW, POLICY)
    assert m.Emit("ineligible", "down file present") in actions


def test_probes() -> None:
    check_table(m.Probed(True, "fine"), {p: (KEEP, []) for p in PHASES})
    check_table(m.Probed(False, "stale"), {p: (KEEP, []) for p in PHASES})
    once, _ = m.step(PHASES["running"], m.Probed(False, "stale"), NOW, POLICY)
    assert once.running is not None and once.running.health_failures == 1
    healed, _ = m.step(once, m.Probed(True, "fine"), NOW, POLICY)
    assert healed.running is not None and healed.running.health_failures == 0
    stepped, _ = m.step(once, m.WallStepped(), NOW, POLICY)
    assert stepped.running is not None and stepped.running.health_failures == 0
    # the limit: an owned child is stopped, and that counts as a failure
    twice, actions = m.step(once, m.Probed(False, "stale"), NOW, POLICY)
    assert twice.phase is m.Phase.STOPPING and twice.reason == "unhealthy: stale"
    assert names(actions) == ["Emit(unhealthy)", "Terminate", "WakeAt"]
    after, _ = m.step(twice, m.Exited(ExitStatus(signal=15), 2.0, 1.0), NOW, POLICY)
    assert after.phase is m.Phase.BACKOFF and after.streak.failures == 1
    # after a long life the restart is owed at once, and the reason stays
    after, _ = m.step(twice, m.Exited(ExitStatus(signal=15), 30.0, 1.0), NOW, POLICY)
    assert (after.phase, after.reason, after.next_start) == (
        m.Phase.PENDING,
        "unhealthy: stale",
        NOW,
    )
    # a daemon that is not ours is reported once, never stopped
    adopted = PHASES["adopted"]
    for n, want in ((1, []), (2, ["Emit(unhealthy)"]), (3, [])):
        adopted, actions = m.step(adopted, m.Probed(False, "stale"), NOW, POLICY)
        assert names(actions) == want, n
    assert adopted.phase is m.Phase.ADOPTED


def test_wall_step_changes_no_phase() -> None:
    check_table(m.WallStepped(), {p: (KEEP, []) for p in PHASES})


def test_reset_lifts_the_mark_and_the_backoff_wherever_it_is() -> None:
    check_table(m.Reset(), {p: (KEEP, ["Emit(reset)", "PlanNow"]) for p in PHASES})
    after, _ = m.step(PHASES["backoff"], m.Reset(), NOW, POLICY)
    assert (after.streak, after.next_start, after.reason) == (Streak(), 0.0, "reset by operator")


def test_operator_restart() -> None:
    check_table(
        m.Restart(),
        {
            **{p: (KEEP, ["PlanNow"]) for p in PHASES},
            "running": ("stopping", ["Terminate", "WakeAt"]),
            "adopted": (KEEP, []),  # not ours to stop
            "stopping": (KEEP, []),  # a stop is under way
        },
    )
    stopping, _ = m.step(PHASES["running"], m.Restart(), NOW, POLICY)
    after, _ = m.step(stopping, m.Exited(ExitStatus(signal=15), 1.0, 1.0), NOW, POLICY)
    # not a failure, even after a one-second life; started again at once
    assert after.streak == Streak() and after.phase is m.Phase.PENDING
    assert after.reason == "restarted by operator"
    assert m.step(after, m.Tick(), NOW, POLICY)[1] == [m.Spawn(priority=NOW)]


def test_operator_down_and_up() -> None:
    check_table(
        m.Down(2000.0),
        {**{p: (KEEP, ["Emit(down)", "PlanNow"]) for p in PHASES}, "down": (KEEP, [])},
    )
    # the phase follows at the next decision (a Tick), as for every input
    check_table(
        m.Up(), {**{p: (KEEP, []) for p in PHASES}, "down": (KEEP, ["Emit(up)", "PlanNow"])}
    )
    down, _ = m.step(PHASES["running"], m.Down(2000.0), NOW, POLICY)
    stopping, _ = m.step(down, m.Tick(), NOW, POLICY)
    assert stopping.reason == "down by operator"
    stopped, _ = m.step(stopping, m.Exited(ExitStatus(signal=15), 50.0, 1.0), NOW, POLICY)
    held, actions = m.step(stopped, m.Tick(), NOW, POLICY)
    assert (held.phase, held.reason, actions) == (m.Phase.DOWN, "down by operator", [])
    assert held.down_since == 2000.0
    up, _ = m.step(held, m.Up(), NOW, POLICY)
    assert not up.down and m.step(up, m.Tick(), NOW, POLICY)[1] == [m.Spawn(priority=0.0)]


# ------------------------------------------------------------------- property


EXTERNAL = st.one_of(
    st.builds(m.Checked, st.sampled_from([OK, NO])),
    st.just(m.CheckFailed("eligibility check failed: boom")),
    st.just(m.Changed()),
    st.just(m.Seen()),
    st.just(m.Vanished()),
    st.just(m.Tick()),
    st.just(m.AlreadyGone()),
    st.just(m.KillDue()),
    st.builds(m.Probed, st.booleans(), st.just("probe says so")),
    st.just(m.WallStepped()),
    st.just(m.Reset()),
    st.just(m.Restart()),
    st.builds(m.Down, st.just(7.0)),
    st.just(m.Up()),
    st.builds(m.StopRequested, st.just("asked"), st.booleans()),
    st.just(m.LetGo("supervisor stopping")),
    st.just("exit"),
)
SPAWN_OUTCOME = st.sampled_from(["spawned", "failed", "deferred", "adopted", "adopt-failed"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(EXTERNAL, SPAWN_OUTCOME, st.floats(min_value=0.0, max_value=30.0)),
        max_size=60,
    )
)
def test_random_event_sequences_keep_the_invariants(
    script: list[tuple[m.Event | str, str, float]],
) -> None:
    """A small shell drives the machine: it performs Spawn as one of its
    possible outcomes, and delivers an exit only when a child runs."""
    state, now = m.SessionState(), 0.0
    children = 0  # live children the shell holds for this session
    forgotten = False
    for external, outcome, dt in script:
        now += dt
        event: m.Event
        if external == "exit":
            if state.running is None:
                continue
            event = m.Exited(ExitStatus(code=1), dt, now)
        else:
            assert not isinstance(external, str)
            event = external
        before = state
        state, actions = m.step(state, event, now, POLICY)
        if isinstance(event, m.Exited):
            children -= 1
        while actions:
            action = actions.pop(0)
            if isinstance(action, m.Forget):
                forgotten = True
            if isinstance(action, m.Release):
                children -= 1
            if isinstance(action, m.Spawn):
                assert state.running is None, "a spawn asked while a child runs"
                reply: m.Event = {
                    "spawned": m.Spawned(),
                    "failed": m.SpawnFailed("spawn failed: boom"),
                    "deferred": m.Deferred(),
                    "adopted": m.Adopted(False, "found one"),
                    "adopt-failed": m.AdoptFailed(),
                }[outcome]
                if outcome in ("spawned", "adopted"):
                    children += 1
                state, more = m.step(state, reply, now, POLICY)
                actions.extend(a for a in more if not isinstance(a, m.Spawn | m.PlanNow))
            if isinstance(action, m.WakeAt):
                # never a backoff shorter than the policy allows
                assert action.at >= now
        # never two running workers; never a child the machine does not know
        assert children == (1 if state.running is not None else 0)
        # never lost: a session is forgotten only when gone past its grace
        if forgotten:
            assert state.vanished_at is not None and now - state.vanished_at >= POLICY.grace
            assert state.running is None
            return
        # a reason is always set once anything happened to it
        if state.phase is not m.Phase.PENDING:
            assert state.reason, (before, event, state)
        # a failure waits exactly what the policy says (5 s), never less
        if state.streak.failures > before.streak.failures:
            assert state.next_start == now + 5.0
        if state.running is not None and state.running.stop_reason is not None:
            assert state.phase is m.Phase.STOPPING
        if state.phase in (m.Phase.RUNNING, m.Phase.ADOPTED, m.Phase.STOPPING):
            assert state.running is not None, (before, event, state)


def test_a_restart_policy_that_raises_falls_back_to_the_stock_curve_and_says_so() -> None:
    def broken(retry_state: tenacity.RetryCallState) -> float:
        raise ZeroDivisionError("a plugin's bug")

    policy = replace(POLICY, restart=RestartPolicy(wait=broken))
    after, actions = m.step(PHASES["running"], m.Exited(ExitStatus(code=1), 0.5, 1.0), NOW, policy)
    assert after.phase is m.Phase.BACKOFF and after.running is None
    assert 0.8 <= after.next_start - NOW <= 1.0  # the stock first step: 1 s less jitter
    assert "restart policy failed: ZeroDivisionError: a plugin's bug" in after.reason
    assert "WakeAt" in names(actions)
