#!/usr/bin/env python3
"""Pickup of a new session in a big pool of the dirs and wire plugins.

The pool (built by the plugin, run in this process) watches N sessions
that are discovered and checked but ineligible, so no child runs; then, K
times, one new eligible session appears (made outside the root and renamed
in, whole) and we time until its child runs, with this process's CPU time
(the pool's loop thread is most of it) over the same span.  A change that
costs a full rescan pays for all N; a partial one for the new session.

Usage:  .venv/bin/python benchmarks/bench_rediscovery.py [--sessions 2000] [--samples 10]
Run it with another checkout's interpreter to measure that checkout (the
script imports whichever wirepool the interpreter has).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wirepool import SessionPool


def pickups(pool: SessionPool, add: Callable[[int], str], samples: int) -> dict[str, Any]:
    lat, cpu = [], []
    for i in range(samples):
        time.sleep(0.3)  # quiet: the pool is idle before each change
        c0, t0 = time.process_time(), time.monotonic()
        name = add(i)
        pool.wait_until(lambda s, n=name: n in s and s[n].state == "running", timeout=60)
        lat.append(time.monotonic() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "pickup_median_ms": round(statistics.median(lat) * 1000, 1),
        "pickup_max_ms": round(max(lat) * 1000, 1),
        "cpu_median_ms": round(statistics.median(cpu) * 1000, 1),
    }


def bench_dirs(tmp: Path, n: int, samples: int) -> dict[str, Any]:
    from wirepool_dirs import dirs_spec

    root = tmp / "dirs"
    root.mkdir()
    for i in range(n):
        (root / f"d{i:05d}" / ".git").mkdir(parents=True)  # no READY: ineligible
    spec = dirs_spec(root, "*/.git/..", "sleep 1000", marker="READY", on_exit="stop")
    pool = spec.pool("dirs", durable=False)
    staging = tmp / "dirs-staging"
    staging.mkdir()

    def add(i: int) -> str:
        new = staging / f"new{i:03d}"
        (new / ".git").mkdir(parents=True)
        (new / "READY").touch()
        os.rename(new, root / new.name)
        return new.name

    with pool:
        pool.wait_until(lambda s: len(s) == n, timeout=120)
        return pickups(pool, add, samples)


def bench_wire(tmp: Path, n: int, samples: int) -> dict[str, Any]:
    from wirepool_wire import wire_spec
    from wirepool_wire.fake_wire import install_fake_wire
    from wirepool_wire.fixtures import make_home

    root = tmp / "wire"
    root.mkdir()
    for i in range(n):  # no private.key, never active: ineligible
        make_home(root, f"idle{i:05d}", identity=False)
    wire = install_fake_wire(tmp / "bin")
    spec = wire_spec(root, wire_bin=str(wire), max_idle_days=7, state_dir=tmp / "wire-state")
    spec.on_exit = "stop"
    pool = spec.pool("wire", durable=False)
    staging = tmp / "wire-staging"

    def add(i: int) -> str:
        home = make_home(staging, f"real{i:03d}")  # with private.key: eligible
        (root / "by-key").mkdir(exist_ok=True)
        os.rename(home, root / "by-key" / home.name)
        return f"by-key/{home.name}"

    with pool:
        pool.wait_until(lambda s: len(s) == n, timeout=120)
        return pickups(pool, add, samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--plugins", default="dirs,wire")
    args = ap.parse_args()
    out: dict[str, Any] = {"sessions": args.sessions, "samples": args.samples}
    tmp = Path(tempfile.mkdtemp(prefix="wirepool-rediscovery-"))
    try:
        for plugin in args.plugins.split(","):
            bench = {"dirs": bench_dirs, "wire": bench_wire}[plugin]
            out[plugin] = bench(tmp, args.sessions, args.samples)
            print(plugin, out[plugin], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
