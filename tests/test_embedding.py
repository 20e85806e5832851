"""Embedding wirepool: Python callables as workers, the context manager,
events and ``wait_until``, and the :mod:`wirepool.testing` helpers -- all
on real processes."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tenacity
from conftest import alive, wait_exec, wait_for

from wirepool import (
    CallableSpawner,
    CommandSpawner,
    HeartbeatCheck,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
)
from wirepool.testing import (
    FakeDaemon,
    LeakError,
    MockClock,
    ProcessLedger,
    assert_no_leaks,
    assert_one_child_per_session,
    live_children,
)

FAST = RestartPolicy(wait=tenacity.wait_fixed(0.2))


def running(pool: SessionPool, *names: str) -> bool:
    snap = pool.snapshot()
    return all(n in snap and snap[n].state == "running" for n in names)


def _sleep_forever(session: Session) -> None:
    time.sleep(1000)


# ------------------------------------------------------------ callable workers


def test_callable_worker_crashes_restarts_with_backoff_and_stops(tmp_path: Path) -> None:
    ledger = ProcessLedger()
    crasher = FakeDaemon(exit_after=0.1, exit_code=3, starts_file="starts")
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session("c", tmp_path)]),
            spawner=CallableSpawner(crasher),
            restart=FAST,
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool.events() as events, pool:
        exits = events.wait_for(lambda e: e.kind == "exited" and e.session == "c", count=3)
        backoffs = [e for e in events.seen if e.kind == "backoff"]
    assert [e.data["code"] for e in exits] == [3, 3, 3]
    assert len(backoffs) >= 2
    starts = (tmp_path / "starts").read_text().split()
    assert len(set(starts)) >= 3  # three distinct processes, each a real start
    snap = pool.snapshot()
    assert snap["c"].restarts >= 2
    assert_no_leaks(ledger)


def test_callable_worker_runs_a_closure_in_its_own_process(tmp_path: Path) -> None:
    token = f"token-{os.getpid()}"

    def work(session: Session) -> None:  # a closure: captures `token`
        (session.home / "out").write_text(f"{token} {os.getpid()} {os.getppid()}")
        time.sleep(1000)

    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session("w", tmp_path)]),
            spawner=CallableSpawner(work),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: "w" in s and s["w"].state == "running")
        text = wait_for(lambda: (tmp_path / "out").exists() and (tmp_path / "out").read_text())
        got_token, pid, _ppid = text.split()
        assert got_token == token
        assert int(pid) == snap["w"].pid != os.getpid()
        assert_one_child_per_session(pool, ["w"])
    assert not alive(int(pid))
    assert_no_leaks(ledger)


def _logs_through_loguru(session: Session) -> None:
    from loguru import logger

    logger.info("hello from {}", session.name)
    print("plain print", flush=True)
    time.sleep(1000)


def test_callable_worker_logs_go_through_loguru_to_the_session_log(tmp_path: Path) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("logger", tmp_path)]),
        spawner=CallableSpawner(_logs_through_loguru),
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool:
        snap = pool.wait_until(lambda s: "logger" in s and s["logger"].state == "running")
        log = Path(snap["logger"].log_path or "")
        text = wait_for(
            lambda: log.exists() and "plain print" in log.read_text() and log.read_text()
        )
    line = next(ln for ln in text.splitlines() if "hello from logger" in ln)
    assert "| INFO     | logger |" in line  # tagged with level and session
    assert_no_leaks(pool)


def test_callable_worker_that_ignores_sigterm_is_killed_at_stop(tmp_path: Path) -> None:
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session("stubborn", tmp_path)]),
            spawner=CallableSpawner(FakeDaemon(ignore_sigterm=True, pidfile="pid")),
            state_dir=tmp_path / "state",
            stop_grace=0.5,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: "stubborn" in s and s["stubborn"].state == "running")
        pid = int(wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text()))
    assert not alive(pid)
    assert_no_leaks(ledger)


# ------------------------------------------------------- the context manager


@pytest.mark.parametrize("kind", ["command", "callable"])
def test_context_manager_leaves_nothing_behind_when_the_body_raises(
    tmp_path: Path, kind: str
) -> None:
    spawner = (
        CommandSpawner(["sleep", "1000"]) if kind == "command" else CallableSpawner(_sleep_forever)
    )
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session(n, tmp_path) for n in ("a", "b", "c")]),
            spawner=spawner,
            state_dir=tmp_path / "state",
            on_exit="stop",
            durable=False,
        )
    )
    pids: list[int] = []

    def body() -> None:
        with pool:
            pool.wait_until(lambda s: all(n in s and s[n].state == "running" for n in "abc"))
            pids.extend(pool.snapshot().pids().values())
            assert len(pids) == 3 and all(alive(p) for p in pids)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        body()
    assert not any(alive(p) for p in pids)
    assert_no_leaks(ledger, pool)
    assert not pool.snapshot().running


# ------------------------------------------------------- events, wait_until


def test_event_stream_sees_every_restart_and_ends_when_the_pool_stops(tmp_path: Path) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("flaky", tmp_path), Session("steady", tmp_path)]),
        spawner=FakeDaemon.per_session({"flaky": FakeDaemon(exit_after=0.05, exit_code=1)}),
        restart=FAST,
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool.events() as events:
        with pool:
            restarted = events.wait_for(
                lambda e: e.kind == "spawned" and e.session == "flaky" and e.data["restarts"] >= 1,
                count=2,
            )
            snap = pool.wait_until(lambda s: s["flaky"].restarts >= 2)
        rest = list(events)  # iteration ends after supervisor_stopped
    assert [e.data["restarts"] for e in restarted] == [1, 2]
    assert snap["steady"].restarts == 0
    kinds = [e.kind for e in events.seen]
    assert kinds[0] == "supervisor_started" and kinds[-1] == "supervisor_stopped"
    assert rest[-1].kind == "supervisor_stopped"
    assert "steady" in {e.session for e in events.seen if e.kind == "stopped"}
    first_spawn = next(e for e in events.seen if e.kind == "spawned")
    assert first_spawn.to_json()["event"] == "spawned"
    assert isinstance(first_spawn.data["start"], int)  # identity, not just a pid
    with pytest.raises(EOFError):
        events.get(timeout=0.1)


def test_event_stream_times_out_with_what_it_saw(tmp_path: Path) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("s", tmp_path)]),
        spawner=CommandSpawner(["sleep", "1000"]),
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool.events() as events, pool:
        with pytest.raises(TimeoutError, match=r"0 of 1 matching events.*spawned"):
            events.wait_for(lambda e: e.kind == "exited", timeout=0.5)
        with pytest.raises(TimeoutError, match="'s': \\('running'"):
            pool.wait_until(lambda s: False, timeout=0.1)
    with pytest.raises(RuntimeError, match="not running"):
        pool.wait_until(lambda s: False, timeout=5)


def test_unsubscribe_stops_the_callback(tmp_path: Path) -> None:
    seen: list[str] = []
    pool = SessionPool(
        StaticDiscovery([Session("s", tmp_path)]),
        spawner=CommandSpawner(["sleep", "1000"]),
        state_dir=tmp_path / "state",
        durable=False,
    )
    unsubscribe = pool.subscribe(lambda e: seen.append(e.kind))
    with pool:
        pool.wait_until(lambda s: "s" in s and s["s"].state == "running")
        unsubscribe()
        count = len(seen)
    assert "spawned" in seen[:count]
    assert len(seen) == count  # the stop's events went unseen


def test_backoff_waits_on_the_mock_clock_not_the_wall_clock(tmp_path: Path) -> None:
    clock = MockClock()
    pool = SessionPool(
        StaticDiscovery([Session("f", tmp_path)]),
        spawner=CommandSpawner(["false"]),
        restart=RestartPolicy(wait=tenacity.wait_fixed(30)),
        state_dir=tmp_path / "state",
        clock=clock,
        durable=False,
    )
    with pool.events() as events, pool:
        events.wait_for(lambda e: e.kind == "backoff")
        time.sleep(1.0)  # real time passes; virtual time does not
        assert [e.kind for e in events.seen].count("spawned") == 1
        clock.advance(31)
        events.wait_for(lambda e: e.kind == "spawned")


# -------------------------------------------------------- testing helpers


def test_fake_daemon_heartbeat_then_hang_is_restarted_by_the_health_check(
    tmp_path: Path,
) -> None:
    daemon = FakeDaemon(heartbeat="beat", heartbeat_interval=0.1, heartbeat_for=0.5)
    pool = SessionPool(
        StaticDiscovery([Session("h", tmp_path)]),
        spawner=daemon.spawner(),
        health=HeartbeatCheck("beat", max_age=1.0, interval=0.2),
        restart=FAST,
        stop_grace=1.0,
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool.events() as events, pool:
        hung = events.wait_for(lambda e: e.kind == "unhealthy" and e.session == "h")
        events.wait_for(lambda e: e.kind == "spawned" and e.data["restarts"] >= 1)
    assert "heartbeat" in hung[0].reason
    assert (tmp_path / "beat").exists()
    assert_no_leaks(pool)


def test_fake_daemon_writes_its_pidfile_as_json_when_asked(tmp_path: Path) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("p", tmp_path)]),
        spawner=FakeDaemon(pidfile="{home}/p.pid", pidfile_json=True).spawner(),
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool:
        snap = pool.wait_until(lambda s: "p" in s and s["p"].state == "running")
        text = wait_for(lambda: (tmp_path / "p.pid").exists() and (tmp_path / "p.pid").read_text())
    assert text == f'{{"pid": {snap["p"].pid}}}'


def test_one_child_assertion_catches_a_duplicate_from_the_process_table(tmp_path: Path) -> None:
    pool = SessionPool(
        StaticDiscovery([Session("x", tmp_path)]),
        spawner=CommandSpawner(["sleep", "1000"]),
        state_dir=tmp_path / "state",
        durable=False,
    )
    with pool:
        pool.wait_until(lambda s: "x" in s and s["x"].state == "running")
        child = assert_one_child_per_session(pool)["x"]
        assert child.pid == pool.snapshot()["x"].pid
        # A second process claiming the same session, as a buggy supervisor
        # would start it: the pool's own view still says one child.
        twin = subprocess.Popen(
            ["sleep", "1000"],
            env={**os.environ, "WIREPOOL_POOL": pool.pool_id, "WIREPOOL_SESSION": "x"},
            start_new_session=True,
        )
        try:
            # until it execs, /proc shows the environment of this process
            wait_exec(twin.pid)
            with pytest.raises(AssertionError, match=r"duplicates \{'x'"):
                assert_one_child_per_session(pool, timeout=0.5)
            assert [i.pid for i in live_children(pool)["x"]] == [child.pid, twin.pid]
        finally:
            twin.kill()
            twin.wait()


def test_leak_assertion_fails_and_cleans_up_children_left_running(tmp_path: Path) -> None:
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session("left", tmp_path)]),
            spawner=CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            on_exit="leave",
            durable=False,
        )
    )
    with pool:
        pid = pool.wait_until(lambda s: "left" in s and s["left"].state == "running")["left"].pid
    assert pid is not None and alive(pid)  # left for the next supervisor, as asked
    with pytest.raises(LeakError, match=rf"pid {pid} \(session 'left'\)"):
        assert_no_leaks(ledger, timeout=0.2)
    wait_for(lambda: not alive(pid))  # the failing assertion killed it


def test_fake_daemon_command_line_runs_without_importing_wirepool(tmp_path: Path) -> None:
    argv = FakeDaemon(exit_after=0, exit_code=7).argv()
    proc = subprocess.run(
        [*argv[:1], "-X", "importtime", *argv[1:]], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 7
    modules = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()]
    assert "site" in modules  # the import log is there...
    assert not [m for m in modules if m.split(".")[0] == "wirepool"]  # ...without wirepool
    assert sys.executable == argv[0]


# ------------------------------------------------------- temporary state dir


def test_a_state_dir_the_pool_made_is_removed_when_it_stops_its_children(tmp_path: Path) -> None:
    sessions = StaticDiscovery([Session("a", tmp_path)])
    with SessionPool(sessions, spawner=CommandSpawner(["sleep", "1000"])) as pool:
        state = pool.state_dir
        pid = pool.wait_until(lambda s: "a" in s.pids()).pids()["a"]
        assert (state / "logs").is_dir()
    assert not alive(pid)
    assert not state.exists()

    # Children left running keep it: their logs and records are in it
    leave = SessionPool(sessions, spawner=CommandSpawner(["sleep", "1000"]), on_exit="leave")
    with leave:
        pid = leave.wait_until(lambda s: "a" in s.pids()).pids()["a"]
    try:
        assert alive(pid) and (leave.state_dir / "sessions").is_dir()
    finally:
        os.killpg(pid, 9)
        shutil.rmtree(leave.state_dir)

    # A pool never started leaves nothing once dropped
    unused = SessionPool(sessions, spawner=CommandSpawner(["true"]))
    path = unused.state_dir
    assert path.is_dir()
    del unused
    gc.collect()
    assert not path.exists()
