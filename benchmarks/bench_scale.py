#!/usr/bin/env python3
"""Scale: N service directories discovered, M of them running.

Runs the real ``wirepool run servicedir`` as a separate process over a root
of N service directories, M of which may run (``exec sleep``) while the rest
carry a ``down`` file (discovered, checked, ineligible: the pool's per-pass
work covers all N).  Once all M run, it measures:

1. ``wirepool status servicedir ROOT --json`` wall time (a fresh process
   each time, so Python start-up is included) and the size of its output;
2. loop responsiveness: SIGKILL a running child until its replacement is in
   status.json; and ``touch down`` on a running service until it is stopped;
3. the supervisor's CPU per full rescan (SIGHUP), and while idle;
4. the supervisor's RSS after bring-up, and again after churn (restarts,
   rescans, down toggles) -- bounded means it does not grow with churn.

Usage:  .venv/bin/python benchmarks/bench_scale.py [--sessions 5000] [--running 1000]
Results: a table on stdout and benchmarks/results/scale-<N>-<M>.json.
Every process it starts is stopped at the end (``wirepool stop --children``,
then by recorded identity).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
WIREPOOL = [sys.executable, "-m", "wirepool"]
RESULTS = Path(__file__).resolve().parent / "results"
DOWN = ("ineligible", "stopped")  # a `down` file makes a session ineligible
sys.path.insert(0, str(REPO))

from wirepool._proc import ProcessIdentity, is_alive, signal_group  # noqa: E402


def sessions(state: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((state / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return {s["name"]: s for s in doc.get("sessions", [])}


def wait(pred: Any, timeout: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - start


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--running", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--churn-rounds", type=int, default=5)
    args = ap.parse_args()
    n, m = args.sessions, args.running
    tmp = Path(tempfile.mkdtemp(prefix="wirepool-scale-"))
    root = tmp / "services"
    root.mkdir()
    state = root / ".wirepool"
    for i in range(n):
        d = root / f"s{i:05d}"
        d.mkdir()
        run = d / "run"
        run.write_text("#!/bin/sh\nexec sleep 100000\n")
        run.chmod(0o755)
        if i >= m:
            (d / "down").touch()
    names = [f"s{i:05d}" for i in range(m)]
    out: dict[str, Any] = {
        "sessions": n,
        "running": m,
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    t0 = time.monotonic()
    sup = subprocess.Popen(
        [*WIREPOOL, "-q", "run", "servicedir", str(root), "--on-exit", "stop", "--grace", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    proc = psutil.Process(sup.pid)
    seen: dict[str, ProcessIdentity] = {}
    try:

        def all_up() -> bool:
            ss = sessions(state)
            up = [s for s in ss.values() if s.get("state") == "running"]
            return len(ss) == n and len(up) == m

        wait(all_up, 600, 0.5)
        out["bring_up_s"] = round(time.monotonic() - t0, 2)
        for name, s in sessions(state).items():
            if s.get("pid"):
                seen[name] = ProcessIdentity(s["pid"], s["process_start"])
        time.sleep(3)
        out["rss_after_bring_up_mib"] = round(proc.memory_info().rss / 2**20, 1)
        out["status_json_bytes"] = (state / "status.json").stat().st_size

        # 1. status queries
        lat = []
        for _ in range(args.queries):
            t = time.monotonic()
            r = subprocess.run(
                [*WIREPOOL, "status", "servicedir", str(root), "--json"],
                capture_output=True,
                timeout=120,
                check=False,
            )
            lat.append(time.monotonic() - t)
            assert r.returncode == 0, r.stderr[-500:]
            assert len(json.loads(r.stdout)["sessions"]) == n
        out["status_cli_s"] = {
            "median": round(statistics.median(lat), 3),
            "max": round(max(lat), 3),
        }
        t = time.monotonic()
        for _ in range(20):
            json.loads((state / "status.json").read_text())
        out["status_json_parse_s"] = round((time.monotonic() - t) / 20, 4)

        # 3. idle CPU
        c0, w0 = cpu(proc), time.monotonic()
        time.sleep(10)
        out["idle_cpu_pct"] = round(100 * (cpu(proc) - c0) / (time.monotonic() - w0), 2)

        # 2a. kill -> replacement visible in status.json
        respawn = []
        for name in names[: args.kills]:
            old = sessions(state)[name]
            signal_group(ProcessIdentity(old["pid"], old["process_start"]), signal.SIGKILL)
            t = time.monotonic()
            wait(
                lambda name=name, old=old: (
                    (s := sessions(state).get(name, {})).get("state") == "running"
                    and s.get("pid") not in (None, old["pid"])
                ),
                60,
                0.01,
            )
            respawn.append(time.monotonic() - t)
            s = sessions(state)[name]
            seen[name] = ProcessIdentity(s["pid"], s["process_start"])
        out["kill_to_running_in_status_s"] = {
            "median": round(statistics.median(respawn), 3),
            "p90": round(pct(respawn, 0.9), 3),
            "max": round(max(respawn), 3),
        }
        # 2b. down file -> stopped
        stops = []
        for name in names[args.kills : args.kills + 10]:
            (root / name / "down").touch()
            t = time.monotonic()
            wait(lambda name=name: sessions(state)[name].get("state") in DOWN, 60, 0.01)
            stops.append(time.monotonic() - t)
        out["down_to_ineligible_in_status_s"] = {
            "median": round(statistics.median(stops), 3),
            "max": round(max(stops), 3),
        }
        for name in names[args.kills : args.kills + 10]:
            (root / name / "down").unlink()

        # 3b. full rescans
        c0 = cpu(proc)
        for _ in range(5):
            sup.send_signal(signal.SIGHUP)
            time.sleep(2)
        out["cpu_per_rescan_s"] = round((cpu(proc) - c0) / 5, 3)

        # 4. churn, then RSS again
        rss = [proc.memory_info().rss]
        for _ in range(args.churn_rounds):
            batch = names[200:300]
            for name in batch:
                (root / name / "down").touch()
            wait(lambda b=batch: all(sessions(state)[x]["state"] in DOWN for x in b), 120)
            for name in batch:
                (root / name / "down").unlink()
            wait(lambda b=batch: all(sessions(state)[x]["state"] == "running" for x in b), 120)
            for name in batch:
                s = sessions(state)[name]
                seen[name] = ProcessIdentity(s["pid"], s["process_start"])
            sup.send_signal(signal.SIGHUP)
            time.sleep(1)
            rss.append(proc.memory_info().rss)
        out["rss_during_churn_mib"] = [round(r / 2**20, 1) for r in rss]
        out["churn"] = f"{args.churn_rounds} rounds of 100 stops + 100 starts + a rescan"
    finally:
        subprocess.run(
            [*WIREPOOL, "stop", "servicedir", str(root), "--children", "--timeout", "120"],
            capture_output=True,
            timeout=180,
            check=False,
        )
        if sup.poll() is None:
            sup.kill()
        sup.wait()
        for name, s in sessions(state).items():
            if s.get("pid") and s.get("process_start"):
                seen.setdefault(name, ProcessIdentity(s["pid"], s["process_start"]))
        leaked = [i for i in seen.values() if is_alive(i)]
        for ident in leaked:
            signal_group(ident, signal.SIGKILL)
        out["leaked_children"] = len(leaked)
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"scale-{n}-{m}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    for key, value in out.items():
        print(f"{key:32} {value}")
    print(f"written to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
