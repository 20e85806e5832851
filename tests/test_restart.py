"""Unit tests for restart timing: :class:`RestartPolicy` on tenacity's wait and
stop strategies, :func:`wait_jitter`, :class:`Streak` and :class:`SpawnRateLimit`.

Time is always a :class:`MockClock` (or an explicit number): nothing sleeps.
Jitter is pinned through an injected RNG.
"""

from __future__ import annotations

import random

import pytest
import tenacity
from tenacity import stop_after_attempt, stop_after_delay, wait_chain, wait_exponential, wait_fixed

from wirepool.restart import RestartPolicy, SpawnRateLimit, Streak, default_wait, wait_jitter
from wirepool.testing import MockClock

CURVE = [1, 2, 4, 8, 16, 32, 60, 60]


class NoJitter(random.Random):
    """An RNG whose draws are always 0: ``wait_jitter`` then shortens nothing."""

    def random(self) -> float:
        return 0.0


class MaxJitter(random.Random):
    """Draws as close to 1 as ``random()`` ever gets: the largest shortening."""

    def random(self) -> float:
        return 1.0 - 2.0**-53


def exponential() -> wait_exponential:
    return wait_exponential(multiplier=1, min=1, max=60)


def rapid_failures(policy: RestartPolicy, clock: MockClock, n: int) -> list[float]:
    """``n`` consecutive children that each died 0.5 s after their start."""
    streak = Streak()
    delays = []
    for _ in range(n):
        decision = policy.on_exit(streak, lived=0.5, now=clock.monotonic())
        assert decision.rapid
        delays.append(decision.delay)
        streak = decision.streak
        clock.advance(decision.delay + 0.5)
    return delays


# ------------------------------------------------------------------ curve


@pytest.mark.parametrize(
    "wait",
    [
        pytest.param(lambda: wait_jitter(exponential(), rng=NoJitter()), id="jitter-pinned"),
        pytest.param(lambda: default_wait(rng=NoJitter()), id="default-wait-pinned"),
        pytest.param(exponential, id="plain-exponential"),
    ],
)
def test_rapid_failures_follow_the_doubling_curve_capped_at_60(wait) -> None:
    policy = RestartPolicy(wait=wait())
    assert rapid_failures(policy, MockClock(), 8) == CURVE


def test_streak_counts_failures_and_remembers_when_it_began() -> None:
    clock = MockClock(start=500.0)
    policy = RestartPolicy(wait=exponential())
    streak = Streak()
    for expected in range(1, 5):
        decision = policy.on_exit(streak, lived=1.0, now=clock.monotonic())
        streak = decision.streak
        assert streak.failures == expected
        assert streak.since == 500.0  # the first failure of the streak, not the latest
        clock.advance(3.0)


def test_a_long_life_resets_the_delay_and_the_streak() -> None:
    clock = MockClock()
    policy = RestartPolicy(wait=exponential(), rapid_window=10.0)
    streak = Streak()
    for _ in range(5):
        streak = policy.on_exit(streak, lived=0.5, now=clock.monotonic()).streak
    assert streak.failures == 5

    healthy = policy.on_exit(streak, lived=10.0, now=clock.monotonic())  # not < window
    assert healthy.delay == 0.0
    assert healthy.streak == Streak()
    assert healthy.streak.failures == 0
    assert healthy.streak.since is None
    assert not healthy.rapid
    assert not healthy.give_up

    again = policy.on_exit(healthy.streak, lived=0.5, now=clock.monotonic())
    assert again.delay == 1.0  # the curve starts over
    assert again.streak.failures == 1


def test_a_life_just_inside_the_window_is_rapid() -> None:
    policy = RestartPolicy(wait=exponential(), rapid_window=10.0)
    decision = policy.on_exit(Streak(failures=2, since=0.0), lived=9.99, now=100.0)
    assert decision.rapid
    assert decision.streak.failures == 3
    assert decision.delay == 4.0


def test_custom_rapid_window() -> None:
    policy = RestartPolicy(wait=exponential(), rapid_window=120.0)
    assert policy.on_exit(Streak(), lived=60.0, now=0.0).rapid
    assert not policy.on_exit(Streak(), lived=120.0, now=0.0).rapid


def test_a_spawn_that_failed_outright_counts_as_rapid() -> None:
    policy = RestartPolicy(wait=exponential())
    first = policy.on_exit(Streak(), lived=None, now=0.0)
    assert first.rapid
    assert first.streak.failures == 1
    assert first.delay == 1.0
    second = policy.on_exit(first.streak, lived=None, now=1.0)
    assert second.delay == 2.0


def test_default_policy_never_gives_up() -> None:
    policy = RestartPolicy()
    streak = Streak()
    for i in range(50):
        decision = policy.on_exit(streak, lived=0.0, now=float(i) * 100)
        assert not decision.give_up
        streak = decision.streak
    assert streak.failures == 50


# ----------------------------------------------------------------- jitter


def test_jitter_only_shortens_and_never_exceeds_the_cap() -> None:
    seen_below = False
    for seed in range(40):
        policy = RestartPolicy(wait=default_wait(rng=random.Random(seed)))
        for failures in range(1, 13):
            base = min(60.0, 2.0 ** (failures - 1))
            delay = policy.delay_for(Streak(failures=failures), now=0.0)
            assert 0.8 * base <= delay <= base
            assert delay <= 60.0
            seen_below = seen_below or delay < base
    assert seen_below  # jitter is actually applied


def test_jitter_bounds_at_the_extremes_of_the_rng() -> None:
    assert wait_jitter(wait_fixed(10), rng=NoJitter())(None) == 10.0  # type: ignore[arg-type]
    shortest = wait_jitter(wait_fixed(10), rng=MaxJitter())(None)  # type: ignore[arg-type]
    assert 8.0 <= shortest < 8.0001


def test_default_policy_jitters_within_bounds() -> None:
    policy = RestartPolicy()  # the real default, with its own unseeded RNG
    for failures, base in enumerate(CURVE, start=1):
        for _ in range(50):
            delay = policy.delay_for(Streak(failures=failures), now=0.0)
            assert 0.8 * base <= delay <= base


@pytest.mark.parametrize("spread", [-0.1, 1.0, 1.5])
def test_jitter_spread_must_be_a_fraction(spread: float) -> None:
    with pytest.raises(ValueError, match="spread"):
        wait_jitter(wait_fixed(1), spread=spread)


def test_different_rngs_desynchronise_sessions_that_fail_together() -> None:
    one = RestartPolicy(wait=default_wait(rng=random.Random(1)))
    two = RestartPolicy(wait=default_wait(rng=random.Random(2)))
    clock = MockClock()
    assert rapid_failures(one, clock, 8) != rapid_failures(two, MockClock(), 8)
    a = one.on_exit(Streak(), lived=0.1, now=0.0).delay
    b = two.on_exit(Streak(), lived=0.1, now=0.0).delay
    assert a != b


def test_same_seed_gives_the_same_delays() -> None:
    one = RestartPolicy(wait=default_wait(rng=random.Random(7)))
    two = RestartPolicy(wait=default_wait(rng=random.Random(7)))
    assert rapid_failures(one, MockClock(), 8) == rapid_failures(two, MockClock(), 8)


# ------------------------------------------------- any tenacity wait works


@pytest.mark.parametrize(
    ("wait", "expected"),
    [
        pytest.param(wait_fixed(7), [7, 7, 7, 7], id="wait_fixed"),
        pytest.param(
            wait_chain(wait_fixed(1), wait_fixed(2), wait_fixed(10)),
            [1, 2, 10, 10],
            id="wait_chain",
        ),
        pytest.param(wait_fixed(1) + wait_fixed(2), [3, 3, 3, 3], id="wait_combine"),
        pytest.param(lambda rs: 5, [5, 5, 5, 5], id="plain-callable"),
        pytest.param(lambda rs: rs.attempt_number * 1.5, [1.5, 3.0, 4.5, 6.0], id="attempt"),
        pytest.param(lambda rs: -3, [0, 0, 0, 0], id="negative-clamped"),
        pytest.param(
            wait_exponential(multiplier=2, min=3, max=20), [3, 4, 8, 16], id="custom-exponential"
        ),
    ],
)
def test_any_tenacity_wait_works_unchanged(wait, expected: list[float]) -> None:
    policy = RestartPolicy(wait=wait)
    assert rapid_failures(policy, MockClock(), len(expected)) == expected


def test_stop_after_attempt_gives_up_on_the_third_rapid_failure() -> None:
    policy = RestartPolicy(wait=exponential(), stop=stop_after_attempt(3))
    streak = Streak()
    verdicts = []
    for i in range(4):
        decision = policy.on_exit(streak, lived=0.2, now=float(i))
        verdicts.append(decision.give_up)
        streak = decision.streak
    assert verdicts == [False, False, True, True]


def test_a_long_life_clears_a_give_up_streak() -> None:
    policy = RestartPolicy(wait=exponential(), stop=stop_after_attempt(2))
    streak = policy.on_exit(Streak(), lived=0.2, now=0.0).streak
    healthy = policy.on_exit(streak, lived=60.0, now=100.0)
    assert not healthy.give_up
    assert not policy.on_exit(healthy.streak, lived=0.2, now=200.0).give_up


def test_stop_after_delay_measures_the_streak_on_the_mock_clock() -> None:
    """30 s of *virtual* time since the first failure gives up; real time
    (microseconds here) would never reach it."""
    clock = MockClock(start=1000.0)
    policy = RestartPolicy(wait=wait_fixed(1), stop=stop_after_delay(30))
    first = policy.on_exit(Streak(), lived=0.1, now=clock.monotonic())
    assert not first.give_up
    assert first.streak.since == 1000.0

    clock.advance(29.0)
    second = policy.on_exit(first.streak, lived=0.1, now=clock.monotonic())
    assert not second.give_up
    assert second.streak.since == 1000.0

    clock.advance(1.0)
    third = policy.on_exit(second.streak, lived=0.1, now=clock.monotonic())
    assert third.give_up


def test_stop_after_delay_counts_from_a_resumed_streaks_since() -> None:
    policy = RestartPolicy(wait=wait_fixed(1), stop=stop_after_delay(30))
    old = Streak(failures=4, since=10.0)
    assert policy.on_exit(old, lived=0.1, now=45.0).give_up
    assert not policy.on_exit(old, lived=0.1, now=35.0).give_up


# --------------------------------------------------------------- delay_for


def test_delay_for_reproduces_the_delay_of_a_streak_read_back_from_disk() -> None:
    policy = RestartPolicy(wait=exponential())
    clock = MockClock()
    streak = Streak()
    for expected in CURVE:
        decision = policy.on_exit(streak, lived=0.3, now=clock.monotonic())
        streak = decision.streak
        on_disk = streak.to_json()
        assert on_disk == {"failures": streak.failures}
        restored = Streak(failures=on_disk["failures"])
        assert policy.delay_for(restored, now=clock.monotonic() + 999.0) == decision.delay
        assert decision.delay == expected
        clock.advance(1.0)


def test_delay_for_an_empty_streak_is_zero() -> None:
    policy = RestartPolicy(wait=wait_fixed(9))
    assert policy.delay_for(Streak(), now=0.0) == 0.0
    assert policy.delay_for(Streak(failures=0, since=3.0), now=50.0) == 0.0


def test_delay_for_with_jitter_stays_in_range() -> None:
    policy = RestartPolicy(wait=default_wait(rng=random.Random(3)))
    for failures, base in enumerate(CURVE, start=1):
        assert 0.8 * base <= policy.delay_for(Streak(failures=failures), now=0.0) <= base


def test_policy_passes_a_retry_state_tenacity_understands() -> None:
    seen: list[tenacity.RetryCallState] = []

    def spy(rs: tenacity.RetryCallState) -> float:
        seen.append(rs)
        return 0.0

    policy = RestartPolicy(wait=spy)
    policy.on_exit(Streak(failures=2, since=100.0), lived=0.5, now=130.0)
    (state,) = seen
    assert state.attempt_number == 3
    assert state.seconds_since_start == pytest.approx(30.0)
    assert state.outcome is not None
    assert state.outcome.failed


# ----------------------------------------------------------- rate limiting


def test_rate_limit_allows_a_burst_then_the_rate() -> None:
    clock = MockClock()
    limit = SpawnRateLimit(rate=2.0, burst=3)
    now = clock.monotonic()
    assert [limit.try_acquire(now) for _ in range(4)] == [True, True, True, False]
    assert limit.next_token_at(now) == pytest.approx(now + 0.5)

    clock.advance(0.25)
    assert not limit.try_acquire(clock.monotonic())
    assert limit.next_token_at(clock.monotonic()) == pytest.approx(now + 0.5)

    clock.advance(0.25)
    assert limit.try_acquire(clock.monotonic())
    assert not limit.try_acquire(clock.monotonic())


def test_rate_limit_refills_with_clock_time_up_to_the_burst() -> None:
    clock = MockClock()
    limit = SpawnRateLimit(rate=10.0, burst=5)
    for _ in range(5):
        assert limit.try_acquire(clock.monotonic())
    assert not limit.try_acquire(clock.monotonic())
    clock.advance(3600.0)  # a long idle refills to the burst, never beyond it
    now = clock.monotonic()
    assert [limit.try_acquire(now) for _ in range(6)] == [True] * 5 + [False]


def test_next_token_at_is_now_when_a_token_is_available() -> None:
    limit = SpawnRateLimit(rate=1.0, burst=2)
    assert limit.next_token_at(50.0) == 50.0
    assert limit.try_acquire(50.0)
    assert limit.next_token_at(50.0) == 50.0
    assert limit.try_acquire(50.0)
    assert limit.next_token_at(50.0) == pytest.approx(51.0)
    # asking does not consume
    assert limit.next_token_at(50.0) == pytest.approx(51.0)


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_non_positive_rate_disables_the_limit(rate: float) -> None:
    limit = SpawnRateLimit(rate=rate, burst=1)
    assert all(limit.try_acquire(0.0) for _ in range(1000))
    assert limit.next_token_at(7.0) == 7.0


def test_burst_is_at_least_one() -> None:
    limit = SpawnRateLimit(rate=1.0, burst=0)
    assert limit.burst == 1
    assert limit.try_acquire(0.0)
    assert not limit.try_acquire(0.0)
