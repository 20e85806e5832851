"""Restart latency of healthy sessions while other sessions' health probes hang.

One pool (embedded, as a test suite or an application runs it) of
``--healthy`` sessions whose probes answer at once and ``--hanging``
sessions whose probes block -- for good (the default), or for
``--hang-seconds`` each call, as an HTTP probe with that timeout does
against a daemon that accepted the connection and went silent.  The
hanging sessions' probes have a deadline beyond the run and a failure
limit they never reach, so nothing is restarted for them: they only hold
threads (or, before probes ran off the loop, the loop).

Three scenarios, one after the other, each in a fresh pool:

* ``no-health``: no health check at all, the floor;
* ``probes-answer``: every session probed every ``--interval`` s, all answer;
* ``probes-hang``: the same, but ``--hanging`` of them never answer.

In each, after every child has run for ``--settle`` s, ``--restarts``
healthy children are SIGKILLed one at a time, ``--gap`` s apart; the
latency is from just before ``kill()`` to the replacement's own stamp (its
first action is ``printf "$EPOCHREALTIME"``, a bash builtin: no fork) --
median, p90 and max.  A restart that takes longer than ``--limit`` s is
counted as missed.

Usage:  .venv/bin/python benchmarks/bench_probes.py [--hanging 50] [--healthy 50]
        [--restarts 30] [--hang-seconds 2] [--out FILE]
Results: a table on stdout and benchmarks/results/probes-<stamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wirepool import (
    CommandSpawner,
    Environment,
    HealthCheck,
    ProcessIdentity,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
    Verdict,
)

RUN = 'printf %s "$EPOCHREALTIME" > "$STAMPS/$WIREPOOL_SESSION.$$"; exec sleep 100000'


class Probe(HealthCheck):
    def __init__(self, interval: float, hang_seconds: float | None) -> None:
        self.interval = interval
        self.timeout = 3600.0  # a hung probe is never judged within the run
        self.failures_before_restart = 1_000_000
        self.hang_seconds = hang_seconds
        self.release = threading.Event()
        self.calls = 0

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        self.calls += 1
        if session.name.startswith("hang"):
            self.release.wait(self.hang_seconds)
        return Verdict(True, "answered")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stamp_of(stamps: Path, name: str, pid: int, timeout: float) -> float | None:
    path = stamps / f"{name}.{pid}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
            if text:
                return float(text.replace(",", "."))
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    return None


def scenario(name: str, args: argparse.Namespace, base: Path) -> dict[str, Any]:
    work = base / name
    stamps = work / "stamps"
    stamps.mkdir(parents=True)
    names = [f"web{i}" for i in range(args.healthy)]
    if name == "probes-hang":
        names += [f"hang{i}" for i in range(args.hanging)]
    sessions = []
    for n in names:
        (work / n).mkdir()
        sessions.append(Session(n, work / n))
    health = None if name == "no-health" else Probe(args.interval, args.hang_seconds)
    pool = SessionPool(
        StaticDiscovery(sessions),
        None,
        CommandSpawner(["bash", "-c", RUN], env=Environment(set={"STAMPS": str(stamps)})),
        health,
        RestartPolicy(rapid_window=1.0),
        state_dir=work / "state",
        durable=False,
        stop_grace=2.0,
    )
    spawned: dict[str, list[int]] = {}
    cond = threading.Condition()

    def on_event(event: Any) -> None:
        if event.kind == "spawned" and event.session and event.pid:
            with cond:
                spawned.setdefault(event.session, []).append(event.pid)
                cond.notify_all()

    pool.subscribe(on_event)
    latencies: list[float] = []
    missed = 0
    try:
        with pool:
            pool.wait_until(lambda s: len(s.in_state("running")) == len(names), timeout=120)
            time.sleep(args.settle)
            for i in range(args.restarts):
                victim = names[i % args.healthy]
                with cond:
                    before = len(spawned[victim])
                    pid = spawned[victim][-1]
                t_kill = time.time()
                os.kill(pid, signal.SIGKILL)
                with cond:
                    ok = cond.wait_for(lambda v=victim, b=before: len(spawned[v]) > b, args.limit)
                    new = spawned[victim][-1] if ok else None
                stamp = stamp_of(stamps, victim, new, args.limit) if new else None
                if stamp is None:
                    missed += 1
                else:
                    latencies.append(stamp - t_kill)
                time.sleep(args.gap)
            calls = health.calls if isinstance(health, Probe) else 0
    finally:
        if isinstance(health, Probe):
            health.release.set()
    ms = [x * 1000 for x in latencies]
    return {
        "scenario": name,
        "sessions": len(names),
        "hanging": args.hanging if name == "probes-hang" else 0,
        "restarts": len(latencies),
        "missed": missed,
        "median_ms": round(statistics.median(ms), 1) if ms else None,
        "p90_ms": round(percentile(ms, 0.9), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "probe_calls": calls,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--healthy", type=int, default=50)
    ap.add_argument("--hanging", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=30)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between probes")
    ap.add_argument(
        "--hang-seconds",
        type=float,
        default=None,
        help="each hanging probe call blocks this long (default: for the whole run)",
    )
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--gap", type=float, default=0.1)
    ap.add_argument("--limit", type=float, default=30.0, help="a restart slower is missed")
    ap.add_argument("--scenarios", default="no-health,probes-answer,probes-hang")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="wirepool-bench-probes-"))
    rows = []
    try:
        for name in args.scenarios.split(","):
            rows.append(scenario(name, args, base))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    cols = [
        "scenario",
        "sessions",
        "hanging",
        "restarts",
        "missed",
        "median_ms",
        "p90_ms",
        "max_ms",
    ]
    print("  ".join(f"{c:>9}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>9}" for c in cols))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(__file__).parent / "results" / f"probes-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "argv": sys.argv[1:],
                "settings": {k: v for k, v in vars(args).items() if k != "out"},
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg(),
                },
                "rows": rows,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
