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
import contextlib
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

from bench_servicedir import raise_fd_limit  # noqa: E402

from wirepool._proc import ProcessIdentity, identity_of, is_alive, signal_group  # noqa: E402
from wirepool._store import StateDir  # noqa: E402

#: the child writes its pid and start time with bash builtins, then becomes sleep
RUN = """#!/bin/bash
cd "${0%/*}" || exit 1
printf '%s %s\\n' "$$" "$EPOCHREALTIME" > pid
exec sleep 100000
"""


def sessions(state: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = StateDir(state).read_status() or {}
    except (OSError, ValueError):
        return {}
    return {s["name"]: s for s in doc.get("sessions", [])}


def stamp(d: Path) -> tuple[int, float] | None:
    """The pid and start time the child in ``d`` wrote (see RUN)."""
    try:
        pid, at = (d / "pid").read_text().split()
        return int(pid), float(at)
    except (OSError, ValueError):
        return None


def pss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def live_children(root: Path) -> dict[int, Path]:
    """Every process whose working directory is under ``root``: the children."""
    found = {}
    prefix = f"{root}/"
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry.name}/cwd")
            except OSError:
                continue
            if cwd.startswith(prefix):
                found[int(entry.name)] = Path(cwd)
    return found


def make_service(d: Path, down: bool = False) -> None:
    d.mkdir()
    run = d / "run"
    run.write_text(RUN)
    run.chmod(0o755)
    if down:
        (d / "down").touch()


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


def big_churn(
    root: Path, staging: Path, state: Path, sup: int, names: list[str], k: int
) -> dict[str, Any]:
    """Add ``k`` directories, remove ``k`` (with their running children),
    SIGKILL ``k`` children; after each, the supervisor's PSS.  Then every
    directory must have exactly one live child, and nothing else may live."""
    out: dict[str, Any] = {"pss_mib": {"before": pss_mib(sup)}}
    added = [f"c{i:05d}" for i in range(k)]
    for name in added:
        make_service(staging / name)
    t = time.monotonic()
    for name in added:
        os.rename(staging / name, root / name)
    wait(lambda: all(stamp(root / x) is not None for x in added), 600, 0.2)
    out["add_s"] = round(time.monotonic() - t, 2)
    out["pss_mib"]["after_add"] = pss_mib(sup)
    removed = names[-k:]
    doomed = {x: stamp(root / x) for x in removed}
    t = time.monotonic()
    for name in removed:
        shutil.rmtree(root / name)
    idents = [identity_of(s[0]) for s in doomed.values() if s]
    wait(lambda: not any(i is not None and is_alive(i) for i in idents), 600, 0.2)
    out["remove_s"] = round(time.monotonic() - t, 2)  # includes the 1 s grace
    out["pss_mib"]["after_remove"] = pss_mib(sup)
    victims = names[:k]
    old = {x: stamp(root / x) for x in victims}
    t = time.monotonic()
    for got in old.values():
        if got:
            with contextlib.suppress(ProcessLookupError):
                os.kill(got[0], signal.SIGKILL)

    def replaced() -> bool:
        return all((s := stamp(root / x)) is not None and s != old[x] for x in victims)

    wait(replaced, 600, 0.2)
    out["kill_s"] = round(time.monotonic() - t, 2)
    time.sleep(3)
    out["pss_mib"]["after_kill"] = pss_mib(sup)
    # no child lost, none leaked: one live child per directory that may run
    present = sorted(d.name for d in root.iterdir() if not d.name.startswith("."))
    runnable = [x for x in present if not (root / x / "down").exists()]
    children = live_children(root)
    per_dir: dict[str, list[int]] = {}
    for pid, cwd in children.items():
        per_dir.setdefault(cwd.name, []).append(pid)
    out["directories_that_may_run"] = len(runnable)
    out["live_children"] = len(children)
    out["lost"] = sorted(x for x in runnable if len(per_dir.get(x, [])) == 0)[:20]
    out["doubled"] = sorted(x for x in runnable if len(per_dir.get(x, [])) > 1)[:20]
    out["leaked"] = sorted(x for x in per_dir if x not in runnable)[:20]
    status = sessions(state)
    out["status_sessions"] = len(status)
    out["status_running"] = sum(1 for v in status.values() if v.get("state") == "running")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--running", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--churn-rounds", type=int, default=5)
    ap.add_argument("--pickups", type=int, default=10)
    ap.add_argument("--downs", type=int, default=10)
    ap.add_argument(
        "--churn-dirs",
        type=int,
        default=0,
        help="then add this many directories, remove as many, and kill as many children",
    )
    args = ap.parse_args()

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # the finally stops every child

    signal.signal(signal.SIGTERM, on_term)
    raise_fd_limit()
    n, m = args.sessions, args.running
    tmp = Path(tempfile.mkdtemp(prefix="wirepool-scale-"))
    root = tmp / "services"
    root.mkdir()
    state = root / ".wirepool"
    for i in range(n):
        make_service(root / f"s{i:05d}", down=i >= m)
    staging = tmp / "staging"
    staging.mkdir()
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

        try:
            wait(all_up, 240, 0.5)
            out["bring_up_s"] = round(time.monotonic() - t0, 2)
        except TimeoutError:
            # say which did not come up, and why, and measure the rest
            ss = sessions(state)
            late = {k: (v.get("state"), v.get("reason")) for k, v in ss.items()}
            late = {k: v for k, v in late.items() if k in names and v[0] != "running"}
            late.update({k: ("not in status", "") for k in names if k not in ss})
            out["not_up_after_240s"] = {"count": len(late), "some": dict(list(late.items())[:20])}
            print("not up:", out["not_up_after_240s"], flush=True)
            names = [x for x in names if x not in late]
        for name, s in sessions(state).items():
            if s.get("pid"):
                seen[name] = ProcessIdentity(s["pid"], s["process_start"])
        time.sleep(3)
        out["rss_after_bring_up_mib"] = round(proc.memory_info().rss / 2**20, 1)
        out["pss_after_bring_up_mib"] = pss_mib(sup.pid)
        out["status_json_bytes"] = (state / "status.json").stat().st_size
        parts = state / "status.d"
        if parts.is_dir():
            sizes = [p.stat().st_size for p in parts.iterdir()]
            out["status_parts"] = {"files": len(sizes), "largest_bytes": max(sizes)}

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
            StateDir(state).read_status()
        out["status_read_s"] = round((time.monotonic() - t) / 20, 4)

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
        # 2b. down file -> stopped (in status, and the child itself gone)
        stops, gone = [], []
        for name in names[args.kills : args.kills + args.downs]:
            child = stamp(root / name)
            ident = identity_of(child[0]) if child else None
            (root / name / "down").touch()
            t = time.monotonic()
            if ident is not None:
                wait(lambda ident=ident: not is_alive(ident), 60, 0.001)
                gone.append(time.monotonic() - t)
            wait(lambda name=name: sessions(state)[name].get("state") in DOWN, 60, 0.01)
            stops.append(time.monotonic() - t)
        out["down_to_child_gone_s"] = {
            "median": round(statistics.median(gone), 4),
            "max": round(max(gone), 4),
        }
        out["down_to_ineligible_in_status_s"] = {
            "median": round(statistics.median(stops), 3),
            "max": round(max(stops), 3),
        }
        for name in names[args.kills : args.kills + args.downs]:
            (root / name / "down").unlink()

        # 2c. pickup: a whole new service renamed in, until its child runs
        pickups = []
        for i in range(args.pickups):
            d = staging / f"p{i:04d}"
            make_service(d)
            t = time.time()
            os.rename(d, root / d.name)
            wait(lambda d=root / d.name: stamp(d) is not None, 60, 0.0005)
            got = stamp(root / d.name)
            assert got is not None
            pickups.append(got[1] - t)
            time.sleep(0.05)
        out["pickup_s"] = {
            "median": round(statistics.median(pickups), 4),
            "max": round(max(pickups), 4),
        }

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
        if args.churn_dirs:
            out["big_churn"] = big_churn(root, staging, state, sup.pid, names, args.churn_dirs)
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
