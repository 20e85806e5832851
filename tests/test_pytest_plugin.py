"""The fixtures wirepool ships for its users' test suites (entry point
``pytest11``): they are available here without any import or conftest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from wirepool import CommandSpawner, Session, SessionPool, StaticDiscovery
from wirepool._proc import identity_of
from wirepool.testing import MockClock

pytest_plugins = ["pytester"]


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


USER_TESTS = """
import time

from wirepool import CommandSpawner, DirectoryScan, Session, StaticDiscovery
from wirepool.testing import FakeDaemon, PoolFactory, assert_one_child_per_session


def test_one_daemon_per_directory(pool_factory: PoolFactory, session_root) -> None:
    for name in ("a", "b"):
        (session_root / name).mkdir()
    pool = pool_factory(DirectoryScan(session_root), FakeDaemon(pidfile="pid").spawner())
    snap = pool.wait_until(lambda s: all(n in s and s[n].state == "running" for n in "ab"))
    assert assert_one_child_per_session(pool)["a"].pid == snap["a"].pid
    (session_root / "c").mkdir()
    pool.wait_until(lambda s: "c" in s and s["c"].state == "running")


def test_restarts_counted_without_sleeping(pool_factory: PoolFactory, session_root) -> None:
    pool = pool_factory(
        StaticDiscovery([Session("x", session_root)]),
        FakeDaemon(exit_after=0.05, exit_code=2).spawner(),
        start=False,
    )
    with pool.events() as events:
        pool.start()
        events.wait_for(lambda e: e.kind == "exited" and e.data["code"] == 2, count=2)


def test_virtual_time(mock_clock) -> None:
    before = mock_clock.monotonic()
    mock_clock.advance(3600)
    assert mock_clock.monotonic() - before == 3600


def test_leaves_a_child_behind(pool_factory: PoolFactory, session_root) -> None:
    pool = pool_factory(
        StaticDiscovery([Session("left", session_root)]),
        CommandSpawner(["sleep", "1000"]),
        on_exit="leave",
    )
    pool.wait_until(lambda s: "left" in s and s["left"].state == "running")
    (session_root / "pid").write_text(str(pool.snapshot()["left"].pid))
    pool.stop()  # leaves the child running: the fixture must fail the test
"""


def test_fixtures_work_from_a_users_own_test_file(pytester: pytest.Pytester) -> None:
    """As a user's suite meets them: a separate test file in a separate
    pytest run, with the plugin found through its ``pytest11`` entry point."""
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_child_behind*",
            "*LeakError: 1 process(es) outlived their pool: pid * (session 'left')*",
        ]
    )
    pid = int(next(pytester.path.rglob("pid")).read_text())
    assert identity_of(pid) is None  # the fixture killed what leaked


def test_importing_the_plugin_has_no_side_effects() -> None:
    code = (
        "import json, signal, sys, threading\n"
        "from loguru import logger\n"
        "handlers = len(logger._core.handlers)\n"
        "sigs = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)]\n"
        "import wirepool.pytest_plugin\n"
        "print(json.dumps({\n"
        "  'threads': threading.active_count(),\n"
        "  'handlers': len(logger._core.handlers) - handlers,\n"
        "  'signals': sigs == [signal.getsignal(s)\n"
        "              for s in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)],\n"
        "  'testing': 'wirepool.testing' in sys.modules,\n"
        "}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == {
        "threads": 1,
        "handlers": 0,
        "signals": True,
        "testing": False,  # the helpers load when a fixture is used
    }
