"""A batch of starts is shared by two threads taking turns under one lock,
each giving it up only while libc waits for its child's exec
(``wirepool._exec.hand_off``): with real children, every session starts
exactly once, and its log and identity file are its own.  (The spawn-rate
limit over such a batch: ``tests/test_spawn_limit.py``.)"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wirepool import (
    CommandSpawner,
    Event,
    EventKind,
    Session,
    SessionPool,
    StaticDiscovery,
    Worker,
    _exec,
    _shell,
)
from wirepool.spawn import HELD_SUFFIX
from wirepool.testing import ProcessLedger, assert_no_leaks

needs_posix_spawn = pytest.mark.skipif(
    not _exec.AVAILABLE, reason="libc has no posix_spawn with chdir and closefrom"
)

# Each child says who it is where only it writes, and on its output (the log).
RUN = 'echo "$$" >> started; echo "child $$ up"; exec sleep 1000'
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z wirepool: "


class _Recording(CommandSpawner):
    """A plugin's spawner as the bundled ones are written: its own checks,
    then ``super().spawn``.  Records which thread made each spawn."""

    def __init__(self) -> None:
        super().__init__(["sh", "-c", RUN])
        self.threads: list[threading.Thread] = []

    def spawn(self, session: Session) -> Worker:
        self.threads.append(threading.current_thread())
        return super().spawn(session)


def _pool_in_homes(
    tmp_path: Path, count: int, spawner: CommandSpawner
) -> tuple[list[Path], SessionPool, ProcessLedger]:
    """A pool (not started) of ``count`` sessions, each in its own new
    directory ``s00``, ``s01``, ... with its state under ``tmp_path``."""
    homes = [tmp_path / f"s{i:02d}" for i in range(count)]
    for home in homes:
        home.mkdir()
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session(home.name, home) for home in homes]),
            spawner=spawner,
            state_dir=tmp_path / "state",
        )
    )
    return homes, pool, ledger


@needs_posix_spawn
def test_a_batch_of_starts_is_shared_by_two_threads_and_each_session_starts_once(
    tmp_path: Path,
) -> None:
    count = 24
    assert count >= _shell._THREADED_FROM
    spawner = _Recording()
    homes, pool, ledger = _pool_in_homes(tmp_path, count, spawner)
    try:
        pool.start()
        pool.wait_until(lambda s: len(s.in_state("running")) == count, timeout=60)
        pids = pool.snapshot().pids()
        for home in homes:  # each child has written its line by now or soon
            started = home / "started"
            deadline = time.monotonic() + 30
            while not started.exists() or not started.read_text().endswith("\n"):
                assert time.monotonic() < deadline, home
                time.sleep(0.02)
        time.sleep(0.3)  # a second child, had one been started, would have written too
        for home in homes:
            # one child per session, the one the pool says it has
            assert (home / "started").read_text().split() == [str(pids[home.name])]
            # the session's log: the pool's start line, then its own child's output
            log = spawner.log_path(Session(home.name, home))
            assert log is not None
            lines = log.read_text().splitlines()
            assert len(lines) == 2, lines
            assert re.fullmatch(STAMP + "starting", lines[0])
            assert lines[1] == f"child {pids[home.name]} up"
        # both threads made spawns: had the lock not been given up while a
        # child execs, the first thread to take it would have made them all
        assert len(spawner.threads) == count
        assert {t.name for t in spawner.threads} == {"wirepool-spawn"}
        assert len(set(spawner.threads)) == _shell._SPAWN_THREADS == 2
        # every identity file was finished for its own child, none left half made
        made = sorted(os.listdir(pool.state.markers_dir))
        assert made == sorted(f"{pid}{HELD_SUFFIX}" for pid in pids.values())
        for pid in pids.values():
            held = os.readlink(f"/proc/{pid}/fd/3")
            assert held.startswith(str(pool.state.markers_dir))
    finally:
        pool.stop()
    assert_no_leaks(ledger)


@pytest.fixture
def batch_of_32(monkeypatch: pytest.MonkeyPatch) -> int:
    """Spawn batches of 32, so that a plan of 40 has "spawned" steps taken
    on a spawn thread, between two of its spawns, as a plan bigger than
    ``_SPAWN_BATCH`` (256) has in a real pool."""
    monkeypatch.setattr(_shell, "_SPAWN_BATCH", 32)
    return 32


def _pool_of(tmp_path: Path, count: int) -> tuple[SessionPool, _Recording, ProcessLedger]:
    """A pool (not started) of ``count`` sessions ``s00``, ``s01``, ..."""
    spawner = _Recording()
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery([Session(f"s{i:02d}", tmp_path) for i in range(count)]),
            spawner=spawner,
            durable=False,
        )
    )
    return pool, spawner, ledger


def _threads_that_started(tmp_path: Path, count: int) -> list[threading.Thread]:
    """Bring ``count`` sessions up in a real pool; the thread of each spawn."""
    pool, spawner, ledger = _pool_of(tmp_path, count)
    try:
        pool.start()
        pool.wait_until(lambda s: len(s.in_state("running")) == count, timeout=60)
        assert len(spawner.threads) == count
    finally:
        pool.stop()
    assert_no_leaks(ledger)
    return spawner.threads


@needs_posix_spawn
def test_a_few_starts_stay_on_the_loop_thread(tmp_path: Path) -> None:
    threads = _threads_that_started(tmp_path, _shell._THREADED_FROM - 1)
    assert all(t.name != "wirepool-spawn" for t in threads)


class _ThreadsRunOut:
    """``threading`` as ``wirepool._shell`` sees it, where only ``allowed``
    more threads can be started (as under a pids limit full of children)."""

    Lock = threading.Lock
    get_ident = staticmethod(threading.get_ident)

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        outer = self

        class Thread(threading.Thread):
            def start(self) -> None:
                if outer.allowed <= 0:
                    raise RuntimeError("can't start new thread")
                outer.allowed -= 1
                super().start()

        self.Thread = Thread


@needs_posix_spawn
@pytest.mark.parametrize("allowed", [0, 1])
def test_with_no_thread_to_be_had_the_batch_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: int
) -> None:
    monkeypatch.setattr(_shell, "threading", _ThreadsRunOut(allowed))
    threads = _threads_that_started(tmp_path, 2 * _shell._THREADED_FROM)
    # one thread did them all: the spawn thread that started, or the loop's
    assert len(set(threads)) == 1
    assert (threads[0].name == "wirepool-spawn") is (allowed == 1)


@needs_posix_spawn
def test_a_callback_on_a_spawn_thread_acts_at_once(tmp_path: Path, batch_of_32: int) -> None:
    """A callback called on a spawn thread holds the down it asks for at
    once: posted, it would have waited for a loop that waits for it."""
    count = 40
    assert count > batch_of_32
    pool, _, ledger = _pool_of(tmp_path, count)
    asked: list[tuple[str, int | None, dict[str, Any]]] = []

    def on_event(event: Event) -> None:
        if event.kind == EventKind.SPAWNED and event.session == "s00":
            thread = threading.current_thread().name
            asked.append((thread, event.pid, pool.down("s00", timeout=5)))

    pool.subscribe(on_event)
    try:
        pool.start()
        snap = pool.wait_until(
            lambda s: len(s.in_state("running")) == count - 1 and s.sessions["s00"].state == "down",
            timeout=60,
        )
        assert "s00" not in snap.pids()
        [(thread, pid, result)] = asked
        assert thread == "wirepool-spawn"
        assert [s["outcome"] for s in result["sessions"]] == [f"down; stopping pid {pid}"]
    finally:
        pool.stop()
    assert_no_leaks(ledger)


@needs_posix_spawn
def test_a_callback_on_a_spawn_thread_can_stop_the_pool(tmp_path: Path, batch_of_32: int) -> None:
    """``stop()`` from such a callback does not wait for the loop (which
    waits for the callback's thread): the pool stops, children and all."""
    assert batch_of_32 < 40
    pool, _, ledger = _pool_of(tmp_path, 40)
    stopped_from: list[str] = []

    def on_event(event: Event) -> None:
        if event.kind == EventKind.SPAWNED and event.session == "s00":
            pool.stop(children=True)
            stopped_from.append(threading.current_thread().name)

    pool.subscribe(on_event)
    try:
        pool.start()
        assert pool._thread is not None
        pool._thread.join(60)
        assert not pool._thread.is_alive()
        assert stopped_from == ["wirepool-spawn"]
    finally:
        pool.stop()
    assert_no_leaks(ledger)


@needs_posix_spawn
def test_a_verb_from_a_callback_meets_the_batch_as_it_stands(
    tmp_path: Path, batch_of_32: int
) -> None:
    """On s00's "spawned", in a plan of 40 (batches of 32): a restart of
    s05 (started, not yet stepped "spawned") restarts its child, and a down
    of s39 (not started yet) keeps it from being started at all."""
    assert batch_of_32 < 40
    pool, _, ledger = _pool_of(tmp_path, 40)
    spawned: dict[str, list[int | None]] = {}
    asked: list[dict[str, Any]] = []

    def on_event(event: Event) -> None:
        if event.kind == EventKind.SPAWNED and event.session is not None:
            spawned.setdefault(event.session, []).append(event.pid)
            if event.session == "s00":
                asked.append(pool.restart("s05", timeout=5))
                asked.append(pool.down("s39", timeout=5))

    pool.subscribe(on_event)
    try:
        pool.start()
        snap = pool.wait_until(
            lambda s: (
                len(s.in_state("running")) == 39
                and s.sessions["s05"].restarts == 1
                and s.sessions["s05"].state == "running"
            ),
            timeout=60,
        )
        first, second = spawned["s05"]
        assert first != second and snap.pids()["s05"] == second
        assert [s["outcome"] for s in asked[0]["sessions"]] == [f"restarting pid {first}"]
        assert [s["outcome"] for s in asked[1]["sessions"]] == ["down"]
        assert snap.sessions["s39"].state == "down"
        assert "s39" not in spawned
    finally:
        pool.stop()
    assert_no_leaks(ledger)


@needs_posix_spawn
def test_a_plan_within_one_batch_spawns_every_child_before_any_is_stepped(
    tmp_path: Path,
) -> None:
    """Up to ``_SPAWN_BATCH`` starts: every child is spawned before the
    first "spawned" step (its identity read, its event), which the loop
    thread takes once the spawn threads are done: the children get the
    cores first."""
    count = 40
    assert _shell._THREADED_FROM <= count <= _shell._SPAWN_BATCH
    pool, spawner, ledger = _pool_of(tmp_path, count)
    seen: list[tuple[str, int]] = []

    def on_event(event: Event) -> None:
        if event.kind == EventKind.SPAWNED and event.session == "s00":
            seen.append((threading.current_thread().name, len(spawner.threads)))

    pool.subscribe(on_event)
    try:
        pool.start()
        pool.wait_until(lambda s: len(s.in_state("running")) == count, timeout=60)
        assert seen == [("wirepool", count)]
        assert {t.name for t in spawner.threads} == {"wirepool-spawn"}
    finally:
        pool.stop()
    assert_no_leaks(ledger)


@needs_posix_spawn
def test_the_logs_of_a_burst_are_kept_to_size_from_their_spawned_step(tmp_path: Path) -> None:
    """Each child of a burst has its log handed to the keeper at its
    "spawned" step, after the spawns: one that floods its log at once is
    still rotated, and its live log comes back within the bound."""
    count, bound = 12, 64 * 1024
    assert _shell._THREADED_FROM <= count <= _shell._SPAWN_BATCH
    flood = "head -c 400000 /dev/zero | tr '\\0' x; echo; exec sleep 1000"
    spawner = CommandSpawner(["sh", "-c", flood], log_max_bytes=bound, log_backups=1)
    homes, pool, ledger = _pool_in_homes(tmp_path, count, spawner)
    try:
        pool.start()
        pool.wait_until(lambda s: len(s.in_state("running")) == count, timeout=60)
        # (the pool gives its spawner the log directory as it starts)
        logs = [spawner.log_path(Session(home.name, home)) for home in homes]
        assert None not in logs

        def all_rotated() -> bool:
            return all(
                log is not None
                and log.with_name(log.name + ".1").exists()
                and log.stat().st_size <= bound
                for log in logs
            )

        deadline = time.monotonic() + 60
        while not all_rotated():
            assert time.monotonic() < deadline, [
                (log.name, log.stat().st_size) for log in logs if log is not None
            ]
            time.sleep(0.05)
    finally:
        pool.stop()
    assert_no_leaks(ledger)
