#!/usr/bin/env python3
"""What each step of one command spawn costs the supervisor's thread, and
the start itself through libc's ``posix_spawn`` against ``subprocess.Popen``.

The steps a pool takes for each child of a servicedir-like session, in its
order, each timed with ``time.thread_time`` (the loop thread's CPU, not the
wall clock, which on two cores busy with the children's execs measures the
scheduler): the "starting" line in the log (the log opened and kept for the
child), the fingerprint (environment, the ``run`` file read, the digest),
the identity file made, the start, the descriptors closed; after the burst,
the identity read from ``/proc`` and the identity file finished.  Each
round starts ``--sessions`` children whose ``run`` exits at once, by each
way in turn (``posix_spawn``, then ``Popen``: interleaved, as this
machine's speed drifts by 2x within minutes), and reaps them.

Usage:  .venv/bin/python benchmarks/bench_spawn_steps.py [--sessions 500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench_bringup import save

from wirepool import _exec
from wirepool._logs import format_mark
from wirepool._proc import ProcessIdentity, identity_of
from wirepool._types import Session
from wirepool.spawn import POOL_MARKER, CommandSpawner, _HeldFile, _popen


def one_round(base: Path, n: int, way: str) -> dict[str, float]:
    shutil.rmtree(base, ignore_errors=True)
    spawner = CommandSpawner(["./run"])
    spawner.attach(base / "state", {POOL_MARKER: "e" * 16})
    sessions = []
    for i in range(n):
        home = base / f"s{i:05d}"
        home.mkdir(parents=True)
        (home / "run").write_text("#!/bin/sh\nexit 0\n")
        (home / "run").chmod(0o755)
        sessions.append(Session(f"s{i:05d}", home))
    spent: dict[str, float] = {}

    def tick(step: str, since: float) -> float:
        now = time.thread_time()
        spent[step] = spent.get(step, 0.0) + now - since
        return now

    started = []
    for session in sessions:
        t = time.thread_time()
        log = spawner.log_path(session)
        assert log is not None
        spawner._open_log_with_mark(session, log, format_mark("starting", time.time()))
        t = tick("start line", t)
        spawner.fingerprint(session)
        memo = spawner._env_for_spawn
        assert memo is not None
        env = memo[1]
        argv = spawner.command(session)
        _, log_fd = spawner._open_child_log(session)
        t = tick("fingerprint", t)
        held = _HeldFile.create(spawner.marker_dir, env)
        assert held is not None
        assert log_fd is not None
        t = tick("identity file", t)
        if way == "posix_spawn":
            pid = _exec.spawn(argv, env, str(session.home), log_fd, held.child_fd)
        else:
            pid = _popen(argv, env, str(session.home), log_fd, held)
        t = tick("start", t)
        os.close(log_fd)
        held.spawned()
        tick("close", t)
        started.append((pid, held))
    t = time.thread_time()
    for pid, held in started:
        # the child has exited by now: the zombie's start time
        held.commit(identity_of(pid) or ProcessIdentity(pid, 1))
    tick("identity, after", t)
    for pid, _ in started:
        os.waitpid(pid, 0)
    us = {step: round(s / n * 1e6, 1) for step, s in spent.items()}
    us["total"] = round(sum(spent.values()) / n * 1e6, 1)
    return us


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--base", type=Path, default=Path("/dev/shm"))
    args = ap.parse_args()
    if not _exec.AVAILABLE:
        print("libc has no posix_spawn with chdir and closefrom here", file=sys.stderr)
        return 1
    base = args.base / f"wirepool-spawn-steps-{os.getpid()}"
    runs: dict[str, list[dict[str, float]]] = {"posix_spawn": [], "popen": []}
    try:
        for _ in range(args.rounds):
            for way, mine in runs.items():
                mine.append(one_round(base, args.sessions, way))
                print(way, mine[-1], flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    medians = {
        way: {step: statistics.median(r[step] for r in mine) for step in mine[0]}
        for way, mine in runs.items()
    }
    out = {"sessions": args.sessions, "rounds": args.rounds, "medians_us": medians, "runs": runs}
    save(f"spawn-steps-{args.sessions}", out, medians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
