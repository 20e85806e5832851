#!/usr/bin/env python3
"""The control socket at N sessions: ``restart`` and ``status``.

Runs the real ``wirepool run servicedir`` over N service directories (each
``exec sleep``), then measures, from a client process:

1. **restart request to new child**: ``Client.restart(name)`` sent until
   the ``spawned`` event of the new child arrives on an event subscription
   (SIGTERM to the old child, its exit, the new spawn), for R sessions;
2. **status over the socket** against reading ``status.json``: the whole
   document (socket: request, the supervisor building it from memory,
   transfer and parse; file: open, read and parse), and one session;
3. the same through the ``wirepool status`` command (a fresh process, so
   Python start-up is included): the table of all, and one session.

Usage:  .venv/bin/python benchmarks/bench_control.py [--sessions 1000] [--restarts 50]
Results: a table on stdout and benchmarks/results/control-<N>.json.
Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).resolve().parent / "results"
WIREPOOL = [sys.executable, "-m", "wirepool"]

from bench_servicedir import raise_fd_limit  # noqa: E402

from wirepool import Client  # noqa: E402
from wirepool._store import StateDir  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 2),
        "p95_ms": round(pct(values, 0.95) * 1000, 2),
        "n": len(values),
    }


def wait(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s")
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--restarts", type=int, default=50)
    ap.add_argument("--reads", type=int, default=30)
    args = ap.parse_args()
    raise_fd_limit()
    n = args.sessions
    work = Path(tempfile.mkdtemp(prefix="wirepool-bench-control-"))
    root = work / "services"
    root.mkdir()
    for i in range(n):
        d = root / f"s{i:05d}"
        d.mkdir()
        (d / "run").write_text("#!/bin/sh\nexec sleep 100000\n")
        (d / "run").chmod(0o755)
    state = root / ".wirepool"
    sup = subprocess.Popen(
        [*WIREPOOL, "-q", "run", "servicedir", str(root), "--stop-grace", "5"],
        stdout=subprocess.DEVNULL,
    )
    results: dict[str, Any] = {
        "sessions": n,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    try:
        wait(lambda: (state / "control" / "sock").exists() or sup.poll() is not None, 120)
        if sup.poll() is not None:
            raise SystemExit(f"the supervisor exited with {sup.returncode}")
        client = Client(state, timeout=120)
        wait(
            lambda: sum(s["state"] == "running" for s in client.status()["sessions"]) == n,
            300,
        )
        # 1. restart request -> new child's `spawned` event
        lat: list[float] = []
        with client.events() as events:
            for i in range(args.restarts):
                name = f"s{(i * 7919) % n:05d}"
                t0 = time.perf_counter()
                client.restart(name)
                for event in events.iter(until=time.monotonic() + 60):
                    if event.get("event") == "spawned" and event.get("session") == name:
                        lat.append(time.perf_counter() - t0)
                        break
        results["restart_to_new_child"] = summary(lat)
        # 2. status: socket vs status.json, whole document and one session
        time.sleep(0.5)  # let status.json catch up with the restarts
        sock_all, file_all, sock_one, file_one = [], [], [], []
        size = (state / "status.json").stat().st_size
        for _ in range(args.reads):
            t0 = time.perf_counter()
            doc = client.status()
            sock_all.append(time.perf_counter() - t0)
            assert len(doc["sessions"]) == n
            t0 = time.perf_counter()
            doc = StateDir(state).read_status() or {}
            file_all.append(time.perf_counter() - t0)
            assert len(doc["sessions"]) == n
            t0 = time.perf_counter()
            one = client.status("s00042")
            sock_one.append(time.perf_counter() - t0)
            assert one["sessions"][0]["name"] == "s00042"
            t0 = time.perf_counter()
            doc = StateDir(state).read_status() or {}
            [s for s in doc["sessions"] if s["name"] == "s00042"]
            file_one.append(time.perf_counter() - t0)
        results["status_all_socket"] = summary(sock_all)
        results["status_all_file"] = summary(file_all)
        results["status_one_socket"] = summary(sock_one)
        results["status_one_file"] = summary(file_one)
        results["status_json_bytes"] = size
        # 3. the command, start-up included
        cmd_all, cmd_one = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run(
                [*WIREPOOL, "status", "servicedir", str(root)], capture_output=True, check=True
            )
            cmd_all.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(
                [*WIREPOOL, "status", "servicedir", str(root), "s00042"],
                capture_output=True,
                check=True,
            )
            cmd_one.append(time.perf_counter() - t0)
        results["status_command_table"] = summary(cmd_all)
        results["status_command_one"] = summary(cmd_one)
        client.close()
    finally:
        subprocess.run(
            [*WIREPOOL, "stop", "servicedir", str(root), "--children"],
            capture_output=True,
            check=False,
            timeout=300,
        )
        if sup.poll() is None:
            sup.kill()
        sup.wait()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"control-{n}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{n} sessions ({results['machine']})")
    for key, value in results.items():
        if isinstance(value, dict) and "median_ms" in value:
            print(f"  {key:<24} median {value['median_ms']:>8} ms  p95 {value['p95_ms']:>8} ms")
    print(f"  status.json: {results.get('status_json_bytes', 0) / 1e6:.2f} MB; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
