#!/usr/bin/env python3
"""Bring-up of N servicedir sessions, and what each spawn cost the supervisor.

For raw (``raw_supervisor.py``) and for each ``--checkout DIR`` (its code put
first on ``PYTHONPATH``, run by this interpreter, so two commits compare with
the same packages), alternately, ``--rounds`` times:

* bring-up: from ``Popen`` of the supervisor until the last child's stamp
  (its ``$EPOCHREALTIME``, written by the ``run`` script before it execs
  ``sleep``), and when the first child stamped;
* the supervisor's CPU at that moment (``utime + stime``), per session: on a
  machine whose cores are all busy with the children's execs, this is what
  the supervisor adds to the bring-up;
* the children's own CPU (``/proc/PID/schedstat``), per child: fork, exec and
  the ``run`` script, the same work whoever supervises.

The tree and the state directory live under ``--base`` (default
``/dev/shm``: on tmpfs, a disk's journal is not what is measured).  The
result, medians per supervisor and every run, goes to
``benchmarks/results/bringup-<N>-<UTC stamp>.json``.  Every supervisor is
stopped (SIGTERM, its children with it: ``--on-exit stop``), and any child
still alive is then killed by the pid it stamped.

Usage:  .venv/bin/python benchmarks/bench_bringup.py --sessions 2000 --rounds 3 \\
            [--checkout DIR ...] [--quiet-log]
(with ``PYTHONDONTWRITEBYTECODE`` set, ``python -m compileall`` each checkout's
``wirepool`` and ``plugins`` first, or each start compiles them again)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
RUN = """#!/bin/bash
cd "${0%/*}" || exit 1
printf '%s %s\\n' "$$" "$EPOCHREALTIME" > pid
exec sleep 1000000
"""
# the `wirepool` command's entry point: wirepool._main since the eighth
# session (an ordinary `run` line read without click), wirepool.cli before
WIREPOOL_MAIN = """\
import sys
sys.argv[0] = "wirepool"
try:
    from wirepool._main import entry
except ImportError:
    from wirepool.cli import main as entry
entry()
"""


def make_tree(root: Path, n: int) -> list[str]:
    names = [f"s{i:05d}" for i in range(n)]
    for name in names:
        d = root / name
        if not (d / "run").exists():
            d.mkdir(parents=True, exist_ok=True)
            (d / "run").write_text(RUN)
            (d / "run").chmod(0o755)
        with contextlib.suppress(FileNotFoundError):
            (d / "pid").unlink()
    return names


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stamps(root: Path, names: list[str]) -> dict[str, tuple[int, float]]:
    found = {}
    for name in names:
        try:
            text = (root / name / "pid").read_text()
        except FileNotFoundError:
            continue
        if text.endswith("\n"):
            pid, stamp = text.split()
            found[name] = (int(pid), float(stamp))
    return found


def one_run(label: str, argv: list[str], env: dict[str, str], root: Path, n: int) -> dict[str, Any]:
    names = make_tree(root, n)
    t0 = time.time()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # `python -c` puts its working directory first on the path: run from
        # a checkout, every --checkout would import that one's wirepool
        cwd=root.parent,
    )
    try:
        deadline = time.monotonic() + 600
        seen: dict[str, tuple[int, float]] = {}
        while len(seen) < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{label}: {len(seen)} of {n} children up")
            time.sleep(0.05)
            seen = stamps(root, names)
        supervisor_cpu = cpu_of(proc.pid)
        children_cpu = 0.0
        for pid, _ in seen.values():
            with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/schedstat") as fh:
                children_cpu += int(fh.read().split()[0]) / 1e9
        first = min(s for _, s in seen.values()) - t0
        last = max(s for _, s in seen.values()) - t0
        return {
            "supervisor": label,
            "bringup_s": round(last, 3),
            "first_child_s": round(first, 3),
            "supervisor_cpu_per_session_ms": round(supervisor_cpu / n * 1000, 3),
            "children_cpu_per_child_ms": round(children_cpu / n * 1000, 3),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid, _ in stamps(root, names).values():
            # ours only: a child of this tree (its working directory)
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd").startswith(str(root)):
                    os.kill(pid, signal.SIGKILL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkout", type=Path, action="append", default=[])
    ap.add_argument("--base", type=Path, default=Path("/dev/shm"))
    ap.add_argument("--no-raw", action="store_true")
    ap.add_argument("--quiet-log", action="store_true", help="run wirepool with -q")
    args = ap.parse_args()
    checkouts = [c.resolve() for c in args.checkout] or [HERE.parent]
    work = args.base / f"wirepool-bringup-{os.getpid()}"
    root, state = work / "root", work / "state"
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.rounds):
            if not args.no_raw:
                argv = [sys.executable, str(HERE / "raw_supervisor.py"), str(root)]
                runs.append(one_run("raw", argv, dict(os.environ), root, args.sessions))
                print(json.dumps(runs[-1]), flush=True)
            for checkout in checkouts:
                shutil.rmtree(state, ignore_errors=True)
                env = dict(os.environ, PYTHONPATH=f"{checkout}:{checkout}/plugins")
                argv = [sys.executable, "-c", WIREPOOL_MAIN]
                argv += ["-q"] if args.quiet_log else []
                argv += ["run", "servicedir", str(root), "--on-exit", "stop"]
                argv += ["--state-dir", str(state)]
                runs.append(one_run(str(checkout), argv, env, root, args.sessions))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians: dict[str, dict[str, float]] = {}
    for label in dict.fromkeys(r["supervisor"] for r in runs):
        mine = [r for r in runs if r["supervisor"] == label]
        medians[label] = {
            key: statistics.median(r[key] for r in mine) for key in mine[0] if key != "supervisor"
        }
    out = {"sessions": args.sessions, "rounds": args.rounds, "medians": medians, "runs": runs}
    save(f"bringup-{args.sessions}", out, medians)
    return 0


def save(kind: str, out: dict[str, Any], summary: Any) -> Path:
    """Write ``out`` to ``results/<kind>-<UTC stamp>.json``; print ``summary``
    and where it went."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"-> {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
