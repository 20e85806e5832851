#!/usr/bin/env python3
"""How much CPU a supervisor may spend per spawn and still bring N sessions
up within a given ratio of the raw loop.

The raw loop (``raw_supervisor.py``'s spawn: ``posix_spawn`` with
``setsid``) is run beside copies of itself that burn ``B`` ms of CPU after
each spawn -- what a real supervisor does per child besides ``fork``/
``exec``: its records, events, log lines, identity files.  Two shapes:

* ``serial``: spawn, then the work, then the next spawn (wirepool's loop
  today: one thread does both);
* ``thread``: a helper thread spawns (``posix_spawn`` drops the interpreter
  lock while the vfork'd child runs up to its ``exec``) while the main
  thread does the work for the children already started.

Each run is timed as ``bench_bringup.py`` times one: from the start of the
process until the last child's stamp (the same ``run`` script and tree).
Run alternately, ``--rounds`` times; the medians and every run go to
``benchmarks/results/spawn-budget-<N>-<UTC stamp>.json``.

Usage:  .venv/bin/python benchmarks/bench_spawn_budget.py --sessions 10000 \\
            --rounds 2 --burn 0.25,0.4,0.75 [--shapes serial,thread]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
HERE = SELF.parent
sys.path.insert(0, str(HERE))

import bench_bringup  # noqa: E402  (a sibling script, not a package)


def _burn(ms: float) -> None:
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass


def supervise(root: str, shape: str, burn_ms: float) -> int:
    """The budgeted raw loop: start every ``ROOT/*/run``, then wait for
    SIGTERM and stop them (TERM, then reap each)."""
    names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    env = dict(os.environ)
    pids: list[int] = []

    def spawn(name: str) -> int:
        run = os.path.join(root, name, "run")
        return os.posix_spawn(run, [run], env, setsid=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if shape == "serial":
        for name in names:
            pids.append(spawn(name))
            _burn(burn_ms)
    else:
        started: queue.SimpleQueue[int | None] = queue.SimpleQueue()

        def helper() -> None:
            for name in names:
                started.put(spawn(name))
            started.put(None)

        threading.Thread(target=helper, daemon=True).start()
        while (pid := started.get()) is not None:
            pids.append(pid)
            _burn(burn_ms)
    stop.wait()
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in pids:
        os.waitpid(pid, 0)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--supervise"]:
        return supervise(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--burn", default="0.25,0.4,0.75", help="ms of CPU per spawn, comma-separated")
    ap.add_argument("--shapes", default="serial,thread")
    ap.add_argument("--base", type=Path, default=Path("/dev/shm"))
    args = ap.parse_args()
    configs = [("serial", 0.0)] + [
        (shape, float(b)) for b in args.burn.split(",") for shape in args.shapes.split(",")
    ]
    work = args.base / f"wirepool-budget-{os.getpid()}"
    root = work / "root"
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            for shape, burn in configs:
                label = "raw" if burn == 0 else f"{shape} {burn:g} ms"
                argv = [sys.executable, str(SELF), "--supervise", str(root), shape, str(burn)]
                run = bench_bringup.one_run(label, argv, dict(os.environ), root, args.sessions)
                runs.append(run)
                print(json.dumps(run), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        label: statistics.median(r["bringup_s"] for r in runs if r["supervisor"] == label)
        for label in dict.fromkeys(r["supervisor"] for r in runs)
    }
    ratios = {label: round(m / medians["raw"], 2) for label, m in medians.items()}
    out = {"sessions": args.sessions, "rounds": args.rounds, "medians_s": medians}
    out |= {"ratio_to_raw": ratios, "runs": runs}
    bench_bringup.save(f"spawn-budget-{args.sessions}", out, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
