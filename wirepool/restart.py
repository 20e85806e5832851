"""When may a session's child be started again?  tenacity answers.

Any tenacity wait strategy (and any combination: ``+``, ``wait_chain``,
``wait_random_exponential``...) is accepted unchanged; the pool never drives
tenacity's ``Retrying`` engine, it calls the wait and stop strategies directly
with a ``RetryCallState`` it keeps per failure streak.  That is tenacity's
stable surface; ``Retrying.iter`` internals changed across 8.x.

The rules, and why:

* A child that lived longer than ``rapid_window`` (10 s, as the Rust
  supervisor's RAPID_FAIL_WINDOW) was healthy; it is restarted at once and its
  streak forgotten.  supervisord's linear start-only backoff and systemd's
  missing reset are the two complaints this answers.
* Consecutive rapid failures (and spawns that fail outright: a missing binary
  is as rapid as failures get) wait 1 s, 2 s, 4 s... capped at 60 s, the curve
  Kubernetes KEP-4603 and the Rust supervisor both settled on.
* Jitter is on by default and only ever *shortens* a delay, so the cap stays
  a cap: twenty sessions that fail together (supervisor#1640) drift apart
  instead of restarting in lock-step.
* An optional tenacity stop strategy gives up: the session is marked
  ``failed`` until it changes or an operator resets it.  The default never
  gives up -- "slow down, don't die" is what users of every supervisor ask for.
* :class:`SpawnRateLimit` is pool-wide: a token bucket so a mass failure
  (a shared dependency down) cannot become a fork storm.  It paces restarts
  only: a session's first start is never held back (ten thousand sessions
  come up as fast as fork allows, as under s6 or runit), and the burst
  (1 000) lets a wave of restarts through before the rate applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wirepool._value import Value, frozen, replace

if TYPE_CHECKING:
    import random

    from tenacity import RetryCallState, Retrying
    from tenacity.stop import stop_base
    from tenacity.wait import wait_base

    #: a tenacity wait strategy, or a plain ``retry_state -> seconds``
    #: callable (tenacity accepts both)
    WaitStrategy = wait_base | Callable[[RetryCallState], float | int]

# tenacity itself (15-20 ms to import: asyncio, concurrent.futures) is
# imported at the first rapid failure, not at start-up: a healthy pool
# never needs it.

__all__ = ["RestartPolicy", "SpawnRateLimit", "Streak", "wait_jitter"]


class _ChildFailed(Exception):
    """The outcome recorded in tenacity's state for a rapid failure."""


class wait_jitter:  # tenacity's naming, so it reads like its siblings
    """Scale another wait by a random factor in ``[1 - spread, 1]``.

    Downward only, so a capped curve keeps its cap; the RNG is injectable so
    tests can pin it.  Combines with tenacity's waits (``+``, ``sum``) as
    theirs do; not a subclass of theirs, so that defining it needs no
    tenacity.
    """

    def __init__(
        self, wait: WaitStrategy, spread: float = 0.2, rng: random.Random | None = None
    ) -> None:
        if not 0.0 <= spread < 1.0:
            raise ValueError("spread must be in [0, 1)")
        self.wait = wait
        self.spread = spread
        self._rng = rng

    @property
    def rng(self) -> random.Random:
        if self._rng is None:
            # made at the first rapid failure: importing random was ~1 ms
            # of every start, before the first spawn
            import random

            self._rng = random.Random()
        return self._rng

    def __call__(self, retry_state: RetryCallState) -> float:
        base = float(self.wait(retry_state))
        return base * (1.0 - self.spread * self.rng.random())

    def __repr__(self) -> str:
        return f"wait_jitter({self.wait!r}, spread={self.spread})"

    # tenacity's wait_base.__add__ and __radd__, to the letter
    def __add__(self, other: WaitStrategy) -> wait_base:
        from tenacity.wait import wait_combine

        return wait_combine(self, other)

    def __radd__(self, other: WaitStrategy | int) -> wait_jitter | wait_base:
        if isinstance(other, int):  # sum() starts from 0
            return self
        return self.__add__(other)


@frozen
class Streak(Value):
    """The consecutive rapid failures of one session: what survives a
    supervisor restart (it is written into the session's record)."""

    failures: int = 0
    since: float | None = None  # monotonic time of the first failure of the streak

    def to_json(self) -> dict[str, int]:
        return {"failures": self.failures}


@frozen
class Decision(Value):
    """What :meth:`RestartPolicy.on_exit` decided of one exit."""

    delay: float
    streak: Streak
    give_up: bool
    rapid: bool


class RestartPolicy:
    """Restart timing for every session of a pool.

    Args:
        wait: any tenacity wait strategy; attempt ``n`` is the ``n``-th
            consecutive rapid failure.  Default: 1 s doubling to 60 s, with
            20 % downward jitter.
        stop: optional tenacity stop strategy; when it fires the session is
            marked ``failed``.  ``seconds_since_start`` counts from the first
            failure of the streak.
        rapid_window: a child that lived less than this failed "rapidly".
    """

    def __init__(
        self,
        wait: WaitStrategy | None = None,
        stop: stop_base | None = None,
        *,
        rapid_window: float = 10.0,
    ) -> None:
        self._wait = wait
        self.stop = stop
        self.rapid_window = float(rapid_window)
        self._retrying: Retrying | None = None

    @property
    def wait(self) -> WaitStrategy:
        if self._wait is None:
            self._wait = default_wait()
        return self._wait

    def __repr__(self) -> str:
        return (
            f"RestartPolicy(wait={self.wait!r}, stop={self.stop!r}, "
            f"rapid_window={self.rapid_window})"
        )

    def on_exit(self, streak: Streak, lived: float | None, now: float) -> Decision:
        """The child ended after ``lived`` seconds (None: it never started)."""
        rapid = lived is None or lived < self.rapid_window
        if not rapid:
            return Decision(0.0, Streak(), give_up=False, rapid=False)
        failed = replace(
            streak,
            failures=streak.failures + 1,
            since=streak.since if streak.since is not None else now,
        )
        delay, give_up = self._ask_tenacity(failed, now)
        return Decision(delay, failed, give_up=give_up, rapid=True)

    def delay_for(self, streak: Streak, now: float) -> float:
        """The wait owed for a streak read back from a record."""
        if streak.failures <= 0:
            return 0.0
        return self._ask_tenacity(streak, now)[0]

    def _ask_tenacity(self, streak: Streak, now: float) -> tuple[float, bool]:
        import tenacity

        if self._retrying is None:
            self._retrying = tenacity.Retrying(
                wait=self.wait, stop=self.stop or tenacity.stop_never
            )
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = streak.failures
        exc = _ChildFailed(f"rapid failure #{streak.failures}")
        state.set_exception((_ChildFailed, exc, None))
        # tenacity stamps its own time.monotonic(); re-stamp with ours so a
        # MockClock and a resumed streak both see the right elapsed time.
        since = streak.since if streak.since is not None else now
        state.start_time = since
        state.outcome_timestamp = now
        delay = max(0.0, float(self.wait(state)))
        state.upcoming_sleep = delay
        give_up = bool(self.stop(state)) if self.stop is not None else False
        return delay, give_up


def default_wait(rng: random.Random | None = None) -> wait_jitter:
    """1 s, 2 s, 4 s ... capped at 60 s, each shortened by up to 20 %."""
    from tenacity.wait import wait_exponential

    return wait_jitter(wait_exponential(multiplier=1, min=1, max=60), spread=0.2, rng=rng)


class SpawnRateLimit:
    """A token bucket over every spawn in the pool.

    ``burst`` spawns may happen back to back; after that ``rate`` per second.
    The pool asks it for restarts only (a session's first start is never
    paced: bring-up is bounded by fork and exec, as with runit or s6), and
    the defaults hold a pool-wide crash loop to ``rate`` once 1 000 restarts
    have gone at once.  The burst is not what stops a crash
    loop: each session's own backoff (1 s, 2 s, 4 s ...) does, so a thousand
    failing sessions cost a thousand spawns once, then fewer each second.
    ``rate <= 0`` disables the limit.
    """

    def __init__(self, rate: float = 200.0, burst: int = 1000) -> None:
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._at: float | None = None

    def __repr__(self) -> str:
        return f"SpawnRateLimit(rate={self.rate}, burst={self.burst})"

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_acquire(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def next_token_at(self, now: float) -> float:
        if self.rate <= 0:
            return now
        self._refill(now)
        if self._tokens >= 1.0:
            return now
        return now + (1.0 - self._tokens) / self.rate
