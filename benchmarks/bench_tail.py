#!/usr/bin/env python3
"""What a child's exit costs the pool's loop thread for its log, and what
an idle follower costs.

Part 1: at each exit the shell reads the run's last output
(:func:`wirepool._tail.last_output`) and appends its exit line
(:func:`wirepool._logs.write_mark`); at each start it appends a start line.
Both are timed, alone and together (one exit), ``--rounds`` times each, on a
log of 1 KiB and on one of ``--gib`` GiB -- written for real (``--sparse``:
a sparse file, which the code cannot tell apart), the page cache warm, and
cold: the log's pages dropped (``posix_fadvise(DONTNEED)``, this file only)
before each round.

Part 2: a :class:`wirepool._tail.Follower` of an idle log for
``--idle-seconds``: its thread's CPU time (``/proc/self/task/<tid>/schedstat``)
and wake-ups (voluntary context switches), with the default 1 s poll.

Usage:  .venv/bin/python benchmarks/bench_tail.py [--gib 1] [--rounds 2000]
        [--idle-seconds 10] [--sparse] [--tmp DIR] [--no-save]
Results: a table on stdout and benchmarks/results/tail-<UTC stamp>.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_logs import log, new_results, save_results, thread_cpu_ns, thread_wakeups

from wirepool._logs import exit_mark, write_mark
from wirepool._tail import follow, last_output
from wirepool._types import ExitStatus

TAIL = b"".join(b"the child's line %d before it failed\n" % i for i in range(40))


def make_log(path: Path, size: int, sparse: bool) -> None:
    with open(path, "wb") as fh:
        if sparse:
            fh.truncate(size - len(TAIL))
            fh.seek(0, os.SEEK_END)
        else:
            block = (b"x" * 99 + b"\n") * 10486  # ~1 MiB of 100-byte lines
            left = size - len(TAIL)
            while left > 0:
                left -= fh.write(block[: min(len(block), left)])
        fh.write(TAIL)
    path.chmod(0o600)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages are not dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(
    rounds: int, what: Callable[[], object], before: Callable[[], None] | None
) -> dict[str, float]:
    took = []
    for _ in range(rounds):
        if before is not None:
            before()
        start = time.perf_counter_ns()
        what()
        took.append(time.perf_counter_ns() - start)
    took.sort()
    return {
        "median_us": statistics.median(took) / 1000,
        "p99_us": took[int(len(took) * 0.99) - 1] / 1000,
        "max_us": took[-1] / 1000,
    }


def mark_exit(path: Path) -> None:
    write_mark(path, exit_mark(12345, ExitStatus(code=64)), time.time())


def one_exit(path: Path) -> None:
    last_output(path)
    mark_exit(path)


def part_exit(work: Path, gib: float, rounds: int, sparse: bool) -> list[dict[str, Any]]:
    rows = []
    for label, size in (("1 KiB", 1024 + len(TAIL)), (f"{gib:g} GiB", int(gib * (1 << 30)))):
        path = work / "logs" / f"s-{size}.log"
        log(f"making the {label} log ...")
        make_log(path, size, sparse)
        assert last_output(path)[-1] == "the child's line 39 before it failed"
        ops: dict[str, Callable[[], object]] = {
            "last_output": functools.partial(last_output, path),
            "write_mark": functools.partial(mark_exit, path),
            "exit (both)": functools.partial(one_exit, path),
        }
        for cache in ("warm", "cold"):
            before = None if cache == "warm" else functools.partial(drop_cache, path)
            n = rounds if cache == "warm" else max(1, rounds // 10)
            for op, fn in ops.items():
                if cache == "warm":
                    fn()  # the page cache holds the tail now
                row = {"log": label, "cache": cache, "op": op, "rounds": n, **timed(n, fn, before)}
                rows.append(row)
                log(
                    f"  {label:>8} {cache:4} {op:12} median {row['median_us']:8.1f} us  "
                    f"p99 {row['p99_us']:8.1f} us"
                )
        path.unlink()
    return rows


def part_idle(work: Path, seconds: float) -> dict[str, Any]:
    path = work / "logs" / "idle.log"
    path.write_bytes(TAIL)
    path.chmod(0o600)
    stop = threading.Event()
    tids: list[int] = []
    got: list[str] = []

    def reader() -> None:
        tids.append(threading.get_native_id())
        got.extend(follow(path, lines=10, stop=stop))

    thread = threading.Thread(target=reader)
    thread.start()
    while len(got) < 10:
        time.sleep(0.01)
    tid = tids[0]
    cpu0, wake0 = thread_cpu_ns(tid), thread_wakeups(tid)
    time.sleep(seconds)
    cpu1, wake1 = thread_cpu_ns(tid), thread_wakeups(tid)
    stop.set()
    thread.join()
    row = {
        "seconds": seconds,
        "cpu_ms": (cpu1 - cpu0) / 1e6,
        "cpu_percent": (cpu1 - cpu0) / 1e9 / seconds * 100,
        "wakeups": wake1 - wake0,
    }
    log(
        f"idle follower: {row['cpu_ms']:.2f} ms CPU over {seconds:g} s "
        f"({row['cpu_percent']:.4f} % of a core), {row['wakeups']} wake-ups"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--sparse", action="store_true")
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wirepool-bench-tail-", dir=args.tmp))
    (work / "logs").mkdir(mode=0o700)
    results = new_results(args)
    try:
        results["exit"] = part_exit(work, args.gib, args.rounds, args.sparse)
        results["idle"] = part_idle(work, args.idle_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| log | cache | op | rounds | median µs | p99 µs | max µs |")
    print("|---|---|---|---|---|---|---|")
    for row in results["exit"]:
        print(
            f"| {row['log']} | {row['cache']} | {row['op']} | {row['rounds']} | "
            f"{row['median_us']:.1f} | {row['p99_us']:.1f} | {row['max_us']:.1f} |"
        )
    idle = results["idle"]
    print(
        f"\nidle follower, {idle['seconds']:g} s: {idle['cpu_ms']:.2f} ms CPU "
        f"({idle['cpu_percent']:.4f} %), {idle['wakeups']} wake-ups"
    )
    if not args.no_save:
        save_results(results, "tail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
