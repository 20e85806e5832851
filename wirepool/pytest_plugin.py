"""pytest fixtures shipped with wirepool (entry point ``pytest11``).

Imported on every pytest run in an environment that has wirepool, so it
does nothing at import time: no logging changes, no threads.  Block it with
``-p no:wirepool``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wirepool.testing import MockClock


@pytest.fixture
def mock_clock() -> MockClock:
    """A :class:`wirepool.testing.MockClock` at a fixed start."""
    return MockClock()


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
