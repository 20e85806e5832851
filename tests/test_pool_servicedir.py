"""Integration tests: a real pool over real service directories.

Processes, signals, files and inotify are all real; only restart timing is
shortened (a fast, jitter-free tenacity wait) so a test sees several
backoff steps in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tenacity
from conftest import Services, Tracker, alive, status_sessions, wait_exec, wait_for
from wirepool_servicedir import servicedir_spec

from wirepool import (
    CommandSpawner,
    DirectoryScan,
    HeartbeatCheck,
    NoDownFile,
    PidfileCheck,
    RestartPolicy,
    Session,
    SessionPool,
    Snapshot,
    StaticDiscovery,
    Worker,
)
from wirepool._core import NET_CPU_SHARE
from wirepool._proc import identity_of
from wirepool.testing import MockClock

FAST = RestartPolicy(wait=tenacity.wait_exponential(multiplier=0.2, max=5), rapid_window=1.0)


def make_pool(services: Services, tracker: Tracker, **kw: object) -> SessionPool:
    spec = servicedir_spec(
        services.root,
        on_exit="stop",
        grace=float(kw.pop("grace", 1.0)),
        stop_grace=float(kw.pop("stop_grace", 3.0)),
    )
    spec.restart = kw.pop("restart", FAST)  # type: ignore[assignment]
    pool = spec.pool("servicedir", durable=False, **kw)
    return tracker.attach(pool)


def running(snap: Snapshot, *names: str) -> bool:
    return all(n in snap and snap[n].state == "running" for n in names)


def test_bring_up_many_sessions_each_in_its_dir_with_its_env(
    services: Services, tracker: Tracker
) -> None:
    names = [f"svc{i:02d}" for i in range(40)]
    for name in names:
        services.add(
            name,
            "#!/bin/sh\nenv > seen.env\nexec sleep 1000\n",
            env={"GREETING": f"hello {name}\n", "UNSET_ME": ""},
        )
    os.environ["UNSET_ME"] = "inherited"
    try:
        with make_pool(services, tracker) as pool:
            snap = pool.wait_until(lambda s: running(s, *names), timeout=60)
            pids = [snap[n].pid for n in names]
            assert len(set(pids)) == len(names)
            for name in names:
                pid = snap[name].pid
                assert pid is not None
                assert os.readlink(f"/proc/{pid}/cwd") == str(services.root / name)
                assert os.getpgid(pid) == pid  # its own process group
                wait_for(
                    lambda n=name: (
                        (services.root / n / "seen.env").exists()
                        and "WIREPOOL_SESSION" in (services.root / n / "seen.env").read_text()
                    )
                )
                env = dict(
                    line.split("=", 1)
                    for line in (services.root / name / "seen.env").read_text().splitlines()
                    if "=" in line
                )
                assert env["GREETING"] == f"hello {name}"
                assert "UNSET_ME" not in env  # empty env file unsets, s6-envdir style
                assert env["WIREPOOL_SESSION"] == name
        for pid in pids:
            assert pid is not None
            wait_for(lambda p=pid: not alive(p))
    finally:
        del os.environ["UNSET_ME"]


def test_crash_is_restarted_and_counted(services: Services, tracker: Tracker) -> None:
    services.add("web")
    with make_pool(services, tracker) as pool:
        first = pool.wait_until(lambda s: running(s, "web"))["web"].pid
        assert first is not None
        # live past the 1 s rapid window so the crash is "healthy then died"
        time.sleep(1.3)
        os.kill(first, signal.SIGKILL)
        snap = pool.wait_until(lambda s: running(s, "web") and s["web"].pid != first)
        web = snap["web"]
        assert web.restarts == 1
        assert web.last_exit is not None and web.last_exit.signal == signal.SIGKILL
        assert web.streak == 0  # lived longer than the window: no backoff
        assert not tracker.kinds("web", "backoff")


def test_rapid_failures_back_off_doubling_then_reset(services: Services, tracker: Tracker) -> None:
    d = services.add("flaky", "#!/bin/sh\nexit 3\n")
    with make_pool(services, tracker) as pool:
        pool.wait_until(lambda s: "flaky" in s and s["flaky"].streak >= 4, timeout=30)
        delays = [e.data["delay"] for e in tracker.kinds("flaky", "backoff")][:4]
        assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6])
        snap = pool.snapshot()
        assert snap["flaky"].last_exit is not None and snap["flaky"].last_exit.code == 3
        # fix the service: it now stays up past the rapid window, then dies
        (d / "run").write_text("#!/bin/sh\nsleep 1.5\nexit 4\n")
        pool.wait_until(
            lambda s: s["flaky"].last_exit is not None and s["flaky"].last_exit.code == 4,
            timeout=30,
        )
        after = [e for e in tracker.kinds("flaky", "exited") if e.data.get("code") == 4][0]
        assert after.data["lived"] >= 1.0
        # the healthy life reset the streak: restarted at once, no new backoff
        snap = pool.wait_until(lambda s: s["flaky"].state == "running", timeout=10)
        assert snap["flaky"].streak == 0


def test_new_directory_is_picked_up_and_removed_one_stopped_after_grace(
    services: Services, tracker: Tracker
) -> None:
    services.add("a")
    with make_pool(services, tracker, grace=3.0) as pool:
        pool.wait_until(lambda s: running(s, "a"))
        services.add("b")  # inotify: no rescan interval needed (it is 30 s)
        snap = pool.wait_until(lambda s: running(s, "a", "b"), timeout=30)
        bpid = snap["b"].pid
        assert bpid is not None
        # `sh` opens ./run after the spawn: removing the directory before it
        # has exec'd sleep makes b exit 2 ("cannot open ./run"), a real exit.
        wait_exec(bpid)
        shutil.rmtree(services.root / "b")
        # still up during the grace period...
        assert alive(bpid)
        # ...then stopped and forgotten
        pool.wait_until(lambda s: "b" not in s, timeout=30)
        wait_for(lambda: not alive(bpid))
        assert pool.snapshot()["a"].state == "running"
        stopped = tracker.kinds("b", "stopped")
        assert stopped and stopped[0].reason == "session gone"


def test_down_file_stops_and_removing_it_starts_again(services: Services, tracker: Tracker) -> None:
    d = services.add("svc")
    with make_pool(services, tracker) as pool:
        pid = pool.wait_until(lambda s: running(s, "svc"))["svc"].pid
        assert pid is not None
        (d / "down").touch()
        snap = pool.wait_until(lambda s: s["svc"].state == "ineligible", timeout=10)
        assert snap["svc"].reason == "down file present"
        assert not alive(pid)
        assert tracker.kinds("svc", "ineligible")
        (d / "down").unlink()
        pool.wait_until(lambda s: running(s, "svc"), timeout=10)


def test_the_first_passs_watches_come_after_its_starts_and_miss_nothing(
    services: Services, tracker: Tracker
) -> None:
    """At start-up the first children start before any directory is watched
    (a system call each, before the first child); a down file made while
    they start, unseen by any watch, is found by the pass that follows the
    watches."""
    dirs = {name: services.add(name) for name in ("a", "b", "c")}
    spec = servicedir_spec(services.root, on_exit="stop", grace=1.0, stop_grace=3.0)
    spec.restart = FAST
    spawner = spec.spawner
    watched_at_first_spawn: list[int] = []
    real_spawn = spawner.spawn

    def spawn(session: Session) -> Worker:
        if not watched_at_first_spawn:
            watcher = pool._watcher
            assert watcher is not None and watcher.available
            watched_at_first_spawn.append(len(watcher._wds))
            (dirs["c"] / "down").touch()  # c is in this plan already
        return real_spawn(session)

    spawner.spawn = spawn  # type: ignore[method-assign]
    pool = tracker.attach(spec.pool("servicedir", durable=False))
    with pool:
        snap = pool.wait_until(
            lambda s: running(s, "a", "b") and "c" in s and s["c"].state == "ineligible",
            timeout=20,
        )
        assert watched_at_first_spawn == [0]
        assert snap["c"].reason == "down file present" and snap["c"].pid is None
        # ...and the watches are there now: a down file made now is seen
        assert pool._watcher is not None and len(pool._watcher._wds) >= 4
        (dirs["a"] / "down").touch()
        pool.wait_until(lambda s: s["a"].state == "ineligible", timeout=10)


def test_bad_run_files_are_refused_with_reasons_and_others_keep_running(
    services: Services, tracker: Tracker
) -> None:
    services.add("good")
    (services.root / "norun").mkdir()
    services.add("noexec", mode=0o644)
    services.add("writable", mode=0o775)
    services.add("dirrun")
    (services.root / "dirrun" / "run").unlink()
    (services.root / "dirrun" / "run").mkdir()
    (services.root / ".hidden").mkdir()
    services.add("odd name; $(touch pwned) é")
    with make_pool(services, tracker) as pool:
        snap = pool.wait_until(lambda s: running(s, "good", "odd name; $(touch pwned) é"))
        assert "norun" not in snap  # no `run`: not a service at all (s6, runit)
        assert snap["noexec"].reason == "run is not executable"
        assert "writable by group or others" in snap["writable"].reason
        assert snap["dirrun"].reason == "run is not a regular file"
        assert ".hidden" not in snap
        assert not (services.root / "odd name; $(touch pwned) é" / "pwned").exists()
        # a fixed `run` is picked up without a restart of the pool
        (services.root / "noexec" / "run").chmod(0o755)
        pool.wait_until(lambda s: running(s, "noexec"), timeout=10)


def test_run_that_cannot_exec_is_a_failed_start_with_the_error(
    services: Services, tracker: Tracker
) -> None:
    services.add("badshebang", "#!/nonexistent/interpreter\n")
    with make_pool(services, tracker) as pool:
        snap = pool.wait_until(
            lambda s: "badshebang" in s and s["badshebang"].streak >= 2, timeout=20
        )
        assert snap["badshebang"].state == "backoff"
        assert "spawn failed" in snap["badshebang"].reason
        assert "No such file" in snap["badshebang"].reason


def test_stop_escalates_to_sigkill_for_a_child_ignoring_sigterm(
    services: Services, tracker: Tracker
) -> None:
    d = services.add(
        "stubborn", "#!/bin/sh\ntrap '' TERM\ntouch ready\nwhile :; do sleep 0.2; done\n"
    )
    pool = make_pool(services, tracker, stop_grace=1.0)
    pool.start()
    pid = pool.wait_until(lambda s: running(s, "stubborn"))["stubborn"].pid
    assert pid is not None
    wait_for((d / "ready").exists)  # the trap is set
    pool.stop()
    assert not alive(pid)
    exits = tracker.kinds("stubborn", "exited")
    assert exits and exits[-1].data["signal"] == signal.SIGKILL


def test_a_down_file_escalates_to_sigkill_while_the_pool_runs(
    services: Services, tracker: Tracker
) -> None:
    # The kill deadline of one session among others, kept as its state
    # changes (not found by a look through every session): it must fire.
    d = services.add(
        "stubborn", "#!/bin/sh\ntrap '' TERM\ntouch ready\nwhile :; do sleep 0.2; done\n"
    )
    services.add("calm")
    pool = make_pool(services, tracker, stop_grace=1.0)
    pool.start()
    try:
        snap = pool.wait_until(lambda s: running(s, "stubborn") and running(s, "calm"))
        pid, calm = snap["stubborn"].pid, snap["calm"].pid
        assert pid is not None
        wait_for((d / "ready").exists)  # the trap is set
        (d / "down").touch()
        wait_for(lambda: not alive(pid), timeout=30)
        # the event follows the reap, which can come a moment after the kill
        exits = wait_for(lambda: tracker.kinds("stubborn", "exited"), timeout=30)
        assert exits[-1].data["signal"] == signal.SIGKILL
        assert pool.snapshot()["calm"].pid == calm
    finally:
        pool.stop()


def test_discovery_failure_changes_nothing(tmp_path: Path, tracker: Tracker) -> None:
    ok = [Session("one", tmp_path)]
    calls = {"n": 0}

    def discover() -> list[Session]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("registry unreadable")
        return ok

    pool = tracker.attach(
        SessionPool(
            discover,
            spawner=CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            durable=False,
            grace=0.5,
        )
    )
    with pool:
        pid = pool.wait_until(lambda s: running(s, "one"))["one"].pid
        for n in range(2, 5):
            pool.rescan()  # rescans posted together coalesce; one at a time
            wait_for(lambda n=n: calls["n"] >= n)
        time.sleep(1.0)  # well past the grace period
        assert pool.snapshot()["one"].pid == pid
        assert pid is not None and alive(pid)


def test_eligibility_error_on_one_session_does_not_touch_the_others(
    tmp_path: Path, tracker: Tracker
) -> None:
    def check(session: Session, now: float) -> bool:
        if session.name == "bad":
            raise ValueError("corrupt marker file")
        return True

    sessions = [Session("good", tmp_path), Session("bad", tmp_path)]
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery(sessions),
            check,
            CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "good") and "bad" in s)
        assert snap["bad"].state == "ineligible"
        assert "eligibility check failed: corrupt marker file" in snap["bad"].reason


def test_hung_child_is_restarted_by_the_heartbeat_probe(tmp_path: Path, tracker: Tracker) -> None:
    home = tmp_path / "h"
    home.mkdir()
    health = HeartbeatCheck("beat", max_age=1.0, interval=0.3)
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("hung", home)]),
            None,
            CommandSpawner(["sleep", "1000"]),
            health,
            state_dir=tmp_path / "state",
            durable=False,
            stop_grace=1.0,
        )
    )
    with pool:
        first = pool.wait_until(lambda s: running(s, "hung"))["hung"].pid
        snap = pool.wait_until(lambda s: running(s, "hung") and s["hung"].pid != first, timeout=20)
        assert snap["hung"].restarts >= 1
        unhealthy = tracker.kinds("hung", "unhealthy")
        assert unhealthy and "hung" in unhealthy[0].reason


def test_regression_an_adopted_daemon_of_an_ineligible_session_says_it_is_not_ours_to_stop(
    tmp_path: Path, tracker: Tracker
) -> None:
    # The plan's "not ours to stop: <reason>" was dropped (planned states
    # reached only sessions without a worker): status kept "a live daemon
    # already serves it" for a session whose down file was there.
    home = tmp_path / "h"
    home.mkdir()
    by_hand = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    tracker.pids.add(by_hand.pid)
    (home / "daemon.pid").write_text(str(by_hand.pid))
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("s", home)]),
            NoDownFile(),
            CommandSpawner(["sleep", "1000"]),
            PidfileCheck("daemon.pid"),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    try:
        with pool:
            pool.wait_until(lambda s: "s" in s and s["s"].state == "adopted")
            (home / "down").touch()
            pool.rescan()
            snap = pool.wait_until(
                lambda s: s["s"].reason == "not ours to stop: down file present", timeout=20
            )
            assert snap["s"].state == "adopted" and snap["s"].pid == by_hand.pid
            assert by_hand.poll() is None  # watched, never signalled
            (home / "down").unlink()
            pool.rescan()
            snap = pool.wait_until(
                lambda s: not s["s"].reason.startswith("not ours to stop"), timeout=20
            )
            assert snap["s"].reason == "a live daemon already serves it"
    finally:
        by_hand.kill()
        by_hand.wait()


def test_existing_daemon_is_adopted_not_duplicated_and_taken_over_on_exit(
    tmp_path: Path, tracker: Tracker
) -> None:
    home = tmp_path / "h"
    home.mkdir()
    by_hand = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    tracker.pids.add(by_hand.pid)
    (home / "daemon.pid").write_text(str(by_hand.pid))
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("s", home)]),
            None,
            CommandSpawner(["sleep", "1000"]),
            PidfileCheck("daemon.pid"),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: "s" in s and s["s"].state == "adopted")
        assert snap["s"].pid == by_hand.pid and not snap["s"].owned
        assert not tracker.kinds("s", "spawned")
        by_hand.kill()
        by_hand.wait()
        snap = pool.wait_until(lambda s: running(s, "s"), timeout=10)
        assert snap["s"].pid != by_hand.pid
        assert snap["s"].streak == 0  # not our failure


def test_stale_pidfile_naming_a_reused_pid_does_not_block(tmp_path: Path, tracker: Tracker) -> None:
    home = tmp_path / "h"
    home.mkdir()
    stranger = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    tracker.pids.add(stranger.pid)
    # The record says the daemon started an hour before this process did:
    # the pid was reused by a stranger.
    (home / "daemon.pid").write_text(
        json.dumps({"pid": stranger.pid, "started_at": "2020-01-01T00:00:00Z"})
    )
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("s", home)]),
            None,
            CommandSpawner(["sleep", "1000"]),
            PidfileCheck("daemon.pid"),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: running(s, "s"))
        assert snap["s"].pid != stranger.pid
    assert stranger.poll() is None  # the stranger was left alone
    stranger.kill()
    stranger.wait()


def test_python_callable_worker_is_supervised(tmp_path: Path, tracker: Tracker) -> None:
    from wirepool import CallableSpawner

    home = tmp_path / "py"
    home.mkdir()

    def serve(session: Session) -> None:
        import time

        (session.home / f"started-{os.getpid()}").write_text(os.environ["WIREPOOL_SESSION"])
        print("python worker up", flush=True)
        time.sleep(1000)

    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("py", home)]),
            None,
            CallableSpawner(serve),
            restart=FAST,
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        pid = pool.wait_until(lambda s: running(s, "py"), timeout=30)["py"].pid
        assert pid is not None
        marker = home / f"started-{pid}"
        # written by the child as we look: wait for the whole of it
        wait_for(lambda: marker.exists() and marker.read_text() == "py")
        assert os.getsid(pid) == pid
        wait_for(lambda: "python worker up" in (tmp_path / "state/logs/py.log").read_text())
        os.kill(pid, signal.SIGKILL)
        snap = pool.wait_until(lambda s: running(s, "py") and s["py"].pid != pid, timeout=30)
        assert snap["py"].restarts == 1
    assert identity_of(pid) is None


def test_status_json_is_written_with_schema(services: Services, tracker: Tracker) -> None:
    services.add("a")
    with make_pool(services, tracker) as pool:
        pool.wait_until(lambda s: running(s, "a"))
        wait_for(lambda: status_sessions(services.state_dir).get("a", {}).get("state") == "running")
        doc = json.loads((services.state_dir / "status.json").read_text())
        assert doc["schema"] == "wirepool.status/1"
        assert doc["supervisor"]["pid"] == os.getpid()
        a = doc["sessions"][0]
        assert a["pid"] == pool.snapshot()["a"].pid
        assert a["process_start"] == identity_of(a["pid"]).start  # type: ignore[union-attr]


def test_backoff_waits_in_virtual_time_with_a_mock_clock(tmp_path: Path, tracker: Tracker) -> None:
    clock = MockClock()
    policy = RestartPolicy(wait=tenacity.wait_exponential(multiplier=100, max=10_000))
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("x", tmp_path)]),
            None,
            CommandSpawner(["false"]),
            restart=policy,
            clock=clock,
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: "x" in s and s["x"].streak == 1)
        assert snap["x"].state == "backoff"
        assert snap["x"].next_start_at == pytest.approx(clock.time() + 100)
        time.sleep(0.5)  # real time passes; virtual time does not: no respawn
        assert len(tracker.kinds("x", "spawned")) == 1
        clock.advance(99)
        time.sleep(0.3)
        assert len(tracker.kinds("x", "spawned")) == 1
        clock.advance(1)  # the deadline: the pool wakes at once and respawns
        snap = pool.wait_until(lambda s: s["x"].streak == 2)
        assert len(tracker.kinds("x", "spawned")) == 2
        assert snap["x"].next_start_at == pytest.approx(clock.time() + 200)


def counting_pool(
    services: Services, tracker: Tracker, spawner: CommandSpawner | None = None, **kwargs: Any
) -> tuple[SessionPool, type[DirectoryScan]]:
    """A pool over ``services`` whose discovery counts its full passes
    (``Counting.passes``) and records the names of its partial ones
    (``Counting.partial``)."""

    class Counting(DirectoryScan):
        passes = 0
        partial: ClassVar[list[set[str]]] = []

        def discover(self) -> list[Session]:  # type: ignore[override]
            Counting.passes += 1
            return list(super().discover())

        def rediscover(self, names: Collection[str]) -> list[Session]:  # type: ignore[override]
            Counting.partial.append(set(names))
            return list(super().rediscover(names))

    scan = Counting(services.root, marker="run", watch_names=("run", "down"))
    pool = tracker.attach(
        SessionPool(
            scan,
            NoDownFile(),
            spawner or CommandSpawner(["sleep", "1000"]),
            state_dir=services.state_dir,
            durable=False,
            **kwargs,
        )
    )
    return pool, Counting


def test_the_first_children_start_after_one_full_pass_and_a_second_follows(
    services: Services, tracker: Tracker
) -> None:
    """Every watch is new at start-up, so the pool looks once more (a
    change made before its watch existed raised no event) -- but after it
    has started what the first pass found: a second pass before the first
    spawn kept a core idle for its whole length."""
    for name in ("a", "b", "c"):
        services.add(name)
    passes_at_spawn: list[int] = []

    class Recording(CommandSpawner):
        def spawn(self, session: Session) -> Worker:
            passes_at_spawn.append(Counting.passes)
            return super().spawn(session)

    pool, Counting = counting_pool(services, tracker, Recording(["sleep", "1000"]))
    with pool:
        pool.wait_until(lambda s: running(s, "a", "b", "c"))
        wait_for(lambda: Counting.passes >= 2, timeout=20)
        assert passes_at_spawn == [1, 1, 1]
        # ...and the pass after them found nothing new to watch: the pool
        # settles (no third pass)
        time.sleep(0.5)
        assert Counting.passes == 2


def test_daemon_writes_in_its_own_directory_do_not_trigger_rescans(
    services: Services, tracker: Tracker
) -> None:
    d = services.add("busy")
    pool, Counting = counting_pool(services, tracker)
    with pool:
        pool.wait_until(lambda s: running(s, "busy"))
        time.sleep(0.3)  # the follow-up pass after adding watches
        before = Counting.passes
        partial = len(Counting.partial)
        for i in range(30):
            (d / f"noise-{i}").write_text("x")  # a pidfile, a socket, state...
            time.sleep(0.01)
        time.sleep(0.5)
        assert Counting.passes == before
        assert len(Counting.partial) == partial
        (d / "down").touch()  # this one matters: a look at this session alone
        pool.wait_until(lambda s: s["busy"].state == "ineligible", timeout=10)
        assert Counting.passes == before
        assert Counting.partial[partial:] and all(
            names == {"busy"} for names in Counting.partial[partial:]
        )


def test_timer_rescans_slow_down_while_every_directory_is_watched(
    services: Services, tracker: Tracker
) -> None:
    services.add("one")
    pool, Counting = counting_pool(
        services, tracker, rescan_interval=0.2, watched_rescan_interval=300.0
    )
    with pool:
        pool.wait_until(lambda s: running(s, "one"))
        time.sleep(0.5)  # the follow-up pass after adding watches
        before = Counting.passes
        time.sleep(1.0)  # five timer rescans without the watches
        assert Counting.passes == before
        services.add("two")  # an event still rescans at once
        pool.wait_until(lambda s: running(s, "two"), timeout=10)
        assert Counting.passes == before  # ...but only of "two"
        assert any("two" in names for names in Counting.partial)


@pytest.mark.parametrize("net", [True, False], ids=["a-net", "told-to-poll"])
def test_a_costly_pass_spreads_the_timer_s_rescans_to_its_share_of_a_core(
    services: Services, tracker: Tracker, net: bool
) -> None:
    # A pass that takes 20 ms of CPU (ten thousand services take ~1-2 s) is
    # a net under inotify's events: at most NET_CPU_SHARE of a core, so the
    # next one comes 50 s later, not after watched_rescan_interval.  Unless
    # told to rescan as often watched as not (a network file system, whose
    # changes raise no events): then every interval, whatever it costs.
    services.add("one")
    pool, Counting = counting_pool(
        services, tracker, rescan_interval=0.1 if net else 0.2, watched_rescan_interval=0.2
    )
    discover = Counting.discover

    def costly(self: DirectoryScan) -> list[Session]:
        until = time.thread_time() + 0.02
        while time.thread_time() < until:
            pass
        return discover(self)  # type: ignore[arg-type]

    Counting.discover = costly  # type: ignore[method-assign,assignment]
    assert 0.02 / NET_CPU_SHARE >= 30
    with pool:
        pool.wait_until(lambda s: running(s, "one"))
        time.sleep(0.5)  # the follow-up pass after adding watches
        before = Counting.passes
        time.sleep(2.0)  # ten rescans at watched_rescan_interval
        if not net:
            assert Counting.passes > before + 2
            return
        assert Counting.passes == before
        services.add("two")  # an event still rescans what it names at once
        pool.wait_until(lambda s: running(s, "two"), timeout=10)
        assert Counting.passes == before


def test_a_costly_sweep_spreads_itself_to_its_share_of_a_core(
    services: Services, tracker: Tracker
) -> None:
    # The sweep (a look at each live log, a net under lost exits) is spread
    # by what it costs, like the timer's rescans: 20 ms of CPU, 50 s apart.
    svc = services.add("one")
    calls: list[float] = []

    class Costly(CommandSpawner):
        def maintain(self, session: Session) -> None:
            calls.append(time.monotonic())
            until = time.thread_time() + 0.02
            while time.thread_time() < until:
                pass

    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("one", svc)]),
            spawner=Costly(["sleep", "1000"]),
            state_dir=services.state_dir,
            durable=False,
            sweep_interval=0.1,
        )
    )
    with pool:
        pool.wait_until(lambda s: running(s, "one"))
        wait_for(lambda: calls)
        time.sleep(0.3)  # a sweep that had begun ends
        seen = len(calls)
        time.sleep(2.0)  # twenty sweeps at sweep_interval
        assert len(calls) == seen


def test_a_change_is_looked_at_alone_and_touches_no_other_session(
    services: Services, tracker: Tracker
) -> None:
    """A new, a removed and a renamed directory in a pool of twenty: each
    is discovered alone (no full rescan), and no other child is touched."""
    names = [f"s{i:02d}" for i in range(20)]
    for name in names:
        services.add(name)
    pool, Counting = counting_pool(services, tracker, grace=0.0)
    with pool:
        snap = pool.wait_until(lambda s: running(s, *names), timeout=60)
        pids = {name: snap[name].pid for name in names}
        time.sleep(0.5)  # the follow-up pass after adding watches
        before, partial = Counting.passes, len(Counting.partial)

        services.add("new")  # the directory first, then its run file
        pool.wait_until(lambda s: running(s, "new"), timeout=30)
        shutil.rmtree(services.root / "s00")
        (services.root / "s01").rename(services.root / "s01-renamed")
        snap = pool.wait_until(
            lambda s: "s00" not in s and "s01" not in s and running(s, "s01-renamed"),
            timeout=30,
        )

        assert Counting.passes == before
        looked_at = set().union(*Counting.partial[partial:])
        assert looked_at == {"new", "s00", "s01", "s01-renamed"}
        for name in names[2:]:
            assert snap[name].pid == pids[name]
        assert not alive(pids["s00"]) and not alive(pids["s01"])


def test_a_discovery_that_cannot_rediscover_falls_back_to_a_full_rescan(
    services: Services, tracker: Tracker
) -> None:
    class Broken(DirectoryScan):
        full = 0

        def discover(self) -> list[Session]:  # type: ignore[override]
            Broken.full += 1
            return list(super().discover())

        def rediscover(self, names: Collection[str]) -> list[Session]:  # type: ignore[override]
            raise OSError("simulated: cannot look at one directory")

    services.add("one")
    pool = tracker.attach(
        SessionPool(
            Broken(services.root, marker="run"),
            NoDownFile(),
            CommandSpawner(["sleep", "1000"]),
            state_dir=services.state_dir,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: running(s, "one"))
        time.sleep(0.5)
        before = Broken.full
        services.add("two")
        pool.wait_until(lambda s: running(s, "one", "two"), timeout=30)
        assert Broken.full > before


def test_swapped_directories_are_not_mistaken_for_each_other(
    services: Services, tracker: Tracker
) -> None:
    """A watch follows its directory, not its name: after ``a`` and ``b``
    swap places, a change in ``b`` must be put down to ``b``."""
    a, b = services.add("a"), services.add("b")
    pool, Counting = counting_pool(services, tracker)
    with pool:
        snap = pool.wait_until(lambda s: running(s, "a", "b"))
        time.sleep(0.5)  # the follow-up pass after adding watches
        before = Counting.passes
        a.rename(services.root / ".swap")
        b.rename(a)
        (services.root / ".swap").rename(b)
        time.sleep(0.5)
        (b / "down").touch()
        snap = pool.wait_until(lambda s: s["b"].state == "ineligible", timeout=20)
        assert snap["a"].state == "running"
        assert Counting.passes == before


def test_a_session_symlinked_under_a_second_name_leaves_the_pool_idle(
    services: Services, tracker: Tracker
) -> None:
    """Two session names for one directory share one inotify watch; the
    pool must not take that for a new watch on every pass and look again
    for ever (a busy loop), and a change in it must reach both sessions."""
    a = services.add("a")
    (services.root / "b").symlink_to(a)
    pool, Counting = counting_pool(services, tracker)
    with pool:
        pool.wait_until(lambda s: running(s, "a", "b"))
        time.sleep(0.5)  # the follow-up pass after adding watches
        before, partial = Counting.passes, len(Counting.partial)
        time.sleep(1.0)
        assert (Counting.passes, len(Counting.partial)) == (before, partial)
        (a / "down").touch()
        snap = pool.wait_until(
            lambda s: s["a"].state == "ineligible" and s["b"].state == "ineligible", timeout=20
        )
        assert snap["a"].reason == snap["b"].reason == "down file present"
        assert Counting.passes == before


def test_a_symlinked_session_follows_its_target_appearing_and_changing(
    services: Services, tracker: Tracker
) -> None:
    """``b`` is a symlink.  Its target appearing, or the link being pointed
    elsewhere, raises no event on ``b`` itself; a partial pass must still
    look at ``b``, and watch what it points at now."""
    (services.root / "b").symlink_to("c")  # dangling: not a session yet
    services.add("a")
    pool, Counting = counting_pool(services, tracker)
    with pool:
        pool.wait_until(lambda s: running(s, "a"))
        time.sleep(0.5)  # the follow-up pass after adding watches
        before = Counting.passes
        services.add("c")
        pool.wait_until(lambda s: running(s, "a", "b", "c"), timeout=20)
        # point b at a instead (atomically, as `ln -sfn` does)
        (services.root / ".b.new").symlink_to("a")
        (services.root / ".b.new").rename(services.root / "b")
        time.sleep(0.5)
        (services.root / "a" / "down").touch()
        snap = pool.wait_until(
            lambda s: s["a"].state == "ineligible" and s["b"].state == "ineligible", timeout=20
        )
        assert snap["c"].state == "running"
        assert Counting.passes == before
