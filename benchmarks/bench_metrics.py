"""What metrics cost an idle pool: `wirepool run servicedir` with N sleeping
sessions, metrics off, served over HTTP and scraped every 15 s as
Prometheus would, and written to a node_exporter textfile.

    .venv/bin/python benchmarks/bench_metrics.py            # N = 200, 60 s a mode (~4 min)
    .venv/bin/python benchmarks/bench_metrics.py --sessions 1000 --window 60

For each mode a fresh supervisor brings up the sessions, settles, and is
then measured over the window: its own CPU (utime + stime from
/proc/PID/stat, not its children's), its RSS and PSS at the end
(/proc/PID/smaps_rollup), and in the HTTP mode each scrape's wall time
and size.  Results: benchmarks/results/metrics-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_servicedir import machine_info  # noqa: E402
from compare import cpu_seconds, memory_kb  # noqa: E402

RESULTS = HERE / "results"
SLEEPER = "#!/bin/sh\nexec sleep 1000000\n"
MODES = ("off", "http", "textfile")


def wait_until(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not within {timeout}s")


def running(state_dir: Path) -> int:
    try:
        doc = json.loads((state_dir / "status.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(1 for s in doc.get("sessions", []) if s.get("state") == "running" and s.get("pid"))


# What Prometheus 2.x sends: it takes OpenMetrics, gzipped.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
    "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def scrape(address: str, query: str = "") -> tuple[float, int]:
    host, _, port = address.rpartition(":")
    began = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/metrics" + query, headers=SCRAPE_HEADERS)
        body = conn.getresponse().read()
    finally:
        conn.close()
    return time.perf_counter() - began, len(body)


def run_mode(
    mode: str,
    n: int,
    window: float,
    interval: float,
    work: Path,
    settle: float = 5.0,
    burst: int = 100,
) -> dict[str, Any]:
    root = work / mode / "services"
    for i in range(n):
        d = root / f"s{i:04d}"
        d.mkdir(parents=True)
        (d / "run").write_text(SLEEPER)
        (d / "run").chmod(0o755)
    argv = [sys.executable, "-m", "wirepool", "run", "servicedir", str(root), "--on-exit", "stop"]
    textfile = work / mode / "wirepool.prom"
    if mode == "http":
        argv += ["--metrics", "127.0.0.1:0"]
    elif mode == "textfile":
        argv += ["--metrics-textfile", str(textfile)]
    log = work / mode / "supervisor.log"
    with log.open("w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until(lambda: running(root / ".wirepool") == n, 120, "bring-up")
        address = ""
        if mode == "http":
            found = wait_until(
                lambda: re.search(r"http://([\d.]+:\d+)/metrics", log.read_text()), 30, "address"
            )
            address = found.group(1)
        time.sleep(settle)  # the first status writes and log checks are over
        scrapes: list[tuple[float, int]] = []
        writes_before = textfile.stat().st_mtime if textfile.exists() else None
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        next_scrape = t0
        while (now := time.monotonic()) < t0 + window:
            if mode == "http" and now >= next_scrape:
                scrapes.append(scrape(address))
                next_scrape += interval
            time.sleep(min(0.5, max(0.0, t0 + window - time.monotonic())))
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        pss, rss = memory_kb(proc.pid)
        per_scrape = per_render = None
        if mode == "http":
            # The window's few scrapes are near the clock tick's resolution
            # (10 ms): measure one scrape's CPU over a burst as well -- of
            # the answer kept while nothing changed, and of a fresh render
            # (two queries in turn: the endpoint keeps one answer).
            b0 = cpu_seconds(proc.pid)
            for _ in range(burst):
                scrape(address)
            b1 = cpu_seconds(proc.pid)
            for i in range(burst):
                scrape(address, f"?burst={i % 2}")
            per_scrape = (b1 - b0) / burst
            per_render = (cpu_seconds(proc.pid) - b1) / burst
        result: dict[str, Any] = {
            "mode": mode,
            "sessions": n,
            "window_s": round(t1 - t0, 2),
            "cpu_s": round(c1 - c0, 4),
            "cpu_pct_one_core": round(100.0 * (c1 - c0) / (t1 - t0), 4),
            "rss_mb": round(rss / 1024, 2),
            "pss_mb": round(pss / 1024, 2),
            "threads": len(os.listdir(f"/proc/{proc.pid}/task")),
        }
        if per_scrape is not None and per_render is not None:
            result["cpu_ms_per_kept_scrape"] = round(per_scrape * 1000, 3)
            result["cpu_ms_per_rendered_scrape"] = round(per_render * 1000, 3)
            # a pool where something changes between every two scrapes
            result["cpu_pct_all_rendered"] = round(100.0 * per_render / interval, 4)
        if scrapes:
            result["scrapes"] = len(scrapes)
            result["scrape_ms"] = [round(s * 1000, 2) for s, _ in scrapes]
            result["scrape_bytes"] = scrapes[-1][1]
        if mode == "textfile":
            result["textfile_bytes"] = textfile.stat().st_size
            result["textfile_rewritten_in_window"] = textfile.stat().st_mtime != writes_before
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def table(results: list[dict[str, Any]]) -> str:
    off = next(r for r in results if r["mode"] == "off")
    lines = [
        "| mode | idle CPU (% of a core) | vs off | RSS (MB) | PSS (MB) | vs off (PSS) | threads "
        "| scrapes (wall ms) | CPU per scrape: kept, rendered (ms) | every scrape rendered (%) "
        "| exposition (bytes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        scrape_ms = ", ".join(f"{s:.1f}" for s in r.get("scrape_ms", [])) or "-"
        size = r.get("scrape_bytes") or r.get("textfile_bytes") or "-"
        cpu_scrape = "-"
        if "cpu_ms_per_kept_scrape" in r:
            cpu_scrape = f"{r['cpu_ms_per_kept_scrape']}, {r['cpu_ms_per_rendered_scrape']}"
        lines.append(
            f"| {r['mode']} | {r['cpu_pct_one_core']:.3f} "
            f"| {r['cpu_pct_one_core'] - off['cpu_pct_one_core']:+.3f} "
            f"| {r['rss_mb']:.1f} | {r['pss_mb']:.1f} | {r['pss_mb'] - off['pss_mb']:+.1f} "
            f"| {r['threads']} | {scrape_ms} | {cpu_scrape} "
            f"| {r.get('cpu_pct_all_rendered', '-')} | {size} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--window", type=float, default=60.0, help="seconds measured per mode")
    ap.add_argument("--scrape-interval", type=float, default=15.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before the window")
    ap.add_argument("--burst", type=int, default=100, help="scrapes to measure one's CPU")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--tmp", type=Path, default=None, help="where the session trees go")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wirepool-bench-metrics-", dir=args.tmp))
    results = []
    try:
        for mode in args.modes.split(","):
            print(f"{mode}: {args.sessions} sessions, {args.window:.0f} s window", flush=True)
            results.append(
                run_mode(
                    mode,
                    args.sessions,
                    args.window,
                    args.scrape_interval,
                    work,
                    args.settle,
                    args.burst,
                )
            )
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"results": results, "machine": machine_info(), "argv": sys.argv[1:], "at": stamp}
    (args.out / f"metrics-{stamp}.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = table(results) if any(r["mode"] == "off" for r in results) else ""
    (args.out / f"metrics-{stamp}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
