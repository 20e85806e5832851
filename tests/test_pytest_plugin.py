"""The fixtures wirepool ships for its users' test suites (entry point
``pytest11``): they are available here without any import or conftest."""

from __future__ import annotations

from pathlib import Path

from wirepool import CommandSpawner, Session, SessionPool, StaticDiscovery
from wirepool.testing import MockClock


def test_mock_clock_fixture_is_installed(mock_clock: MockClock) -> None:
    start = mock_clock.monotonic()
    mock_clock.advance(5)
    assert mock_clock.monotonic() == start + 5
    assert mock_clock.time() - mock_clock.monotonic() == 1_700_000_000.0 - 1000.0


def test_wirepool_logs_fixture_captures_the_library_logs(
    wirepool_logs: list[str], tmp_path: Path
) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("x", tmp_path)]),
        spawner=CommandSpawner(["false"]),
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool:
        pool.wait_until(lambda s: "x" in s and s["x"].streak >= 1)
    assert any(line.startswith("INFO spawned 'x'") for line in wirepool_logs)
    assert any("backoff 'x'" in line for line in wirepool_logs)
