"""pytest fixtures shipped with wirepool (entry point ``pytest11``).

Imported on every pytest run in an environment that has wirepool, so it
does nothing at import time: no logging changes, no threads, no wirepool
engine import until a fixture is used.  Block it with ``-p no:wirepool``.

Fixtures:

* ``pool_factory`` -- builds :class:`~wirepool.SessionPool` objects with
  test-friendly defaults and tears every one down: children stopped, then
  the test *fails* if any process a pool started is still alive.
* ``session_root`` -- an empty directory for session directories.
* ``mock_clock`` -- a :class:`~wirepool.testing.MockClock`.
* ``wirepool_logs`` -- wirepool's loguru messages as a list of lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from wirepool import SessionPool
    from wirepool.discovery import DiscoveryLike
    from wirepool.spawn import Spawner
    from wirepool.testing import MockClock, PoolFactory


@pytest.fixture
def mock_clock() -> MockClock:
    """A :class:`wirepool.testing.MockClock` at a fixed start."""
    from wirepool.testing import MockClock

    return MockClock()


@pytest.fixture
def session_root(tmp_path: Path) -> Path:
    """An empty directory to create session directories in."""
    root = tmp_path / "sessions"
    root.mkdir()
    return root


@pytest.fixture
def pool_factory(tmp_path: Path) -> Iterator[PoolFactory]:
    """``pool_factory(discovery, spawner, start=True, **SessionPool kwargs)``.

    Defaults: a fresh state directory under ``tmp_path``, ``on_exit="stop"``,
    no fsync, and a short ``stop_grace``.  Pools are started (pass
    ``start=False`` to subscribe first, then ``pool.start()``).  At teardown
    every pool is stopped with its children and the test fails with a
    :class:`~wirepool.testing.LeakError` if anything it started survived.
    """
    from wirepool import SessionPool
    from wirepool.testing import ProcessLedger, assert_no_leaks

    ledger = ProcessLedger()
    pools: list[SessionPool] = []

    def make(
        discovery: DiscoveryLike, spawner: Spawner, *, start: bool = True, **kwargs: Any
    ) -> SessionPool:
        kwargs.setdefault("state_dir", tmp_path / f"wirepool-state-{len(pools)}")
        kwargs.setdefault("on_exit", "stop")
        kwargs.setdefault("durable", False)
        kwargs.setdefault("stop_grace", 5.0)
        pool = SessionPool(discovery, spawner=spawner, **kwargs)
        ledger.watch(pool)
        pools.append(pool)
        if start:
            pool.start()
        return pool

    yield make
    errors: list[BaseException] = []
    for pool in pools:
        try:
            pool.stop(children=True, timeout=60)
        except Exception as exc:  # keep stopping the others
            errors.append(exc)
    assert_no_leaks(ledger)
    if errors:
        raise errors[0]


@pytest.fixture
def wirepool_logs() -> Iterator[list[str]]:
    """Capture wirepool's loguru messages (which pytest's caplog cannot see)
    as formatted lines, for the duration of one test."""
    from loguru import logger

    lines: list[str] = []
    logger.enable("wirepool")
    sink = logger.add(
        lambda m: lines.append(str(m).rstrip("\n")), level="DEBUG", format="{level} {message}"
    )
    try:
        yield lines
    finally:
        logger.remove(sink)
        logger.disable("wirepool")
