#!/usr/bin/env python3
"""Benchmark the servicedir supervisor (``wirepool run servicedir``) at scale.

Not a pytest test: it runs the real supervisor as a separate process (so its
CPU time and RSS are its own), with N service directories whose ``run`` is a
tiny bash script that writes a wall-clock stamp and then ``exec``s ``sleep``.
It reports, per size:

1. bring-up: from starting the supervisor process until every child runs;
2. restart latency: SIGKILL a child that has been up > 10 s (so it is not a
   "rapid failure") until its replacement runs -- median / p90 / max;
3. new-directory pickup: ``rename()`` a complete service directory into the
   root until its child runs -- median / p90 (and, as an extra, the
   non-atomic way: ``mkdir`` first, ``run`` a few ms later);
4. supervisor CPU while idle, as % of one core;
5. supervisor RSS with every session up;
plus extras: supervisor CPU per restart and per inotify-triggered rescan,
shutdown time, and leftover children (must be 0).

"Running" is measured from the child's side: the new child's first action
is ``printf "$EPOCHREALTIME" > STAMPS/<service>.<pid>`` (a bash builtin, no
fork), compared with ``time.time()`` here -- both CLOCK_REALTIME.  The pool's
own ``spawned`` event time (from ``--json``; rounded to 1 ms) is reported
beside it.

Usage:  .venv/bin/python benchmarks/bench_servicedir.py [--sizes 200,1000]
        [--idle-seconds 30] [--restarts 50] [--pickups 20]
Results: a table on stdout and benchmarks/results/servicedir-<size>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
WIREPOOL = REPO / ".venv" / "bin" / "wirepool"
RESULTS = Path(__file__).resolve().parent / "results"

# From the issue: at 1 000 sessions.
TARGETS = {
    "restart_median_ms": 20.0,
    "pickup_median_ms": 100.0,
    "idle_cpu_pct": 0.5,
    "rss_mb": 80.0,
}
RAPID_WINDOW = 10.0  # restart.RestartPolicy default: younger children get backoff
RESTART_GAP = 0.10  # pause between measured restarts/pickups: one at a time
RESCAN_TOUCHES = 20
NAIVE_PICKUPS = 10
NAIVE_TIMEOUT = 1.5

RUN_SCRIPT = """#!/bin/bash
# wirepool benchmark child: stamp the moment it runs (bash builtin, no fork),
# then become a cheap long sleep (same pid).
printf '%s\\n' "$EPOCHREALTIME" > '{stamps}/{name}.'$$
exec sleep 1000000
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ helpers


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: identifies the process beyond its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        tail = raw[raw.rfind(b")") + 2 :].split()
        if tail[0] in (b"Z", b"X"):
            return None
        return int(tail[19])
    except (OSError, IndexError, ValueError):
        return None


def pct(data: list[float], q: float) -> float:
    """Percentile with linear interpolation (q in 0..100)."""
    s = sorted(data)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(data_s: list[float]) -> dict[str, Any]:
    """Latencies given in seconds -> ms summary."""
    ms = [x * 1000.0 for x in data_s]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(pct(ms, 90), 2),
        "max_ms": round(max(ms), 2),
        "min_ms": round(min(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def write_service(directory: Path, name: str, stamps: Path) -> None:
    directory.mkdir()
    run = directory / "run"
    run.write_text(RUN_SCRIPT.format(stamps=stamps, name=name))
    run.chmod(0o755)  # not group/other-writable: RunScriptCheck refuses those


def read_stamp(stamps: Path, name: str, pid: int, timeout: float = 5.0) -> float | None:
    path = stamps / f"{name}.{pid}"
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            text = path.read_text().strip().replace(",", ".")
            if text:
                return float(text)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.0005)


def preexec(nofile: int | None) -> Callable[[], None]:
    def run_in_child() -> None:
        # Safety net: if this benchmark dies without its finally (SIGKILL),
        # the supervisor gets SIGTERM and, with --on-exit stop, stops its
        # children.
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if nofile is not None:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    return run_in_child


# ------------------------------------------------------------- supervisor


class Supervisor:
    """``wirepool run servicedir ROOT --json --on-exit stop`` and a reader
    thread that timestamps every event it prints."""

    def __init__(self, root: Path, workdir: Path, args: argparse.Namespace, size: int) -> None:
        self.root = root
        self.size = size
        self.stderr_path = workdir / "supervisor.stderr"
        self.args = args
        self.cond = threading.Condition()
        self.events: list[dict[str, Any]] = []
        self.spawned: dict[str, list[dict[str, Any]]] = {}
        self.exited: dict[str, list[dict[str, Any]]] = {}
        self.all_pids: dict[int, int | None] = {}  # pid -> start ticks
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: psutil.Process | None = None
        self.t_start = 0.0
        self.eof = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        prefix = [str(WIREPOOL)]
        if self.args.profile:
            # cProfile writes its file when run_forever returns (SIGTERM).
            out = Path(self.args.profile) / f"servicedir-{self.size}.prof"
            prefix = [str(WIREPOOL.with_name("python")), "-m", "cProfile", "-o", str(out)]
            prefix += ["-m", "wirepool"]
        argv = [
            *prefix,
            "run",
            "servicedir",
            str(self.root),
            "--json",
            "--on-exit",
            "stop",
            "--rescan-interval",
            str(self.args.rescan_interval),
        ]
        err = open(self.stderr_path, "wb")  # noqa: SIM115 -- handed to the child
        try:
            self.t_start = time.time()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # our finally stops it, not a stray ^C
                preexec_fn=preexec(self.args.nofile),  # noqa: PLW1509
            )
        finally:
            err.close()
        self.ps = psutil.Process(self.proc.pid)
        self._thread = threading.Thread(target=self._read, name="events", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            recv = time.time()
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            ev["_recv"] = recv
            kind, name, pid = ev.get("event"), ev.get("session"), ev.get("pid")
            if kind in ("spawned", "adopted") and isinstance(pid, int):
                ev["_start"] = start_ticks(pid)
            with self.cond:
                self.events.append(ev)
                if kind in ("spawned", "adopted") and isinstance(pid, int):
                    self.all_pids[pid] = ev["_start"]
                    self.spawned.setdefault(name, []).append(ev)
                elif kind == "exited":
                    self.exited.setdefault(name, []).append(ev)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return predicate()
                self.cond.wait(min(left, 0.5))
            return True

    def wait_spawns(self, name: str, more_than: int, timeout: float) -> bool:
        """Until ``name`` has had more than ``more_than`` spawned events."""
        return self.wait(lambda: len(self.spawned.get(name, ())) > more_than, timeout)

    def current_pid(self, name: str) -> tuple[int, float] | None:
        with self.cond:
            evs = self.spawned.get(name)
            if not evs:
                return None
            return evs[-1]["pid"], float(evs[-1]["ts"])

    def cpu(self) -> float:
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    def memory(self) -> dict[str, Any]:
        assert self.ps is not None
        info = self.ps.memory_full_info()
        return {
            "rss_mb": round(info.rss / 2**20, 1),
            "uss_mb": round(info.uss / 2**20, 1),
            "fds": self.ps.num_fds(),
            "threads": self.ps.num_threads(),
        }

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> float | None:
        """SIGTERM and wait; SIGKILL after ``timeout``.  Returns seconds taken
        by a clean stop, None if it had to be killed (or was not running)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return None
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            took: float | None = time.monotonic() - t0
        except subprocess.TimeoutExpired:
            log(f"supervisor pid {self.proc.pid} ignored SIGTERM for {timeout:.0f}s; SIGKILL")
            self.proc.kill()
            self.proc.wait()
            took = None
        if self._thread is not None:
            self._thread.join(5)
        return took

    def leftovers(self, settle: float = 5.0) -> list[int]:
        """Every pid ever reported that is still the same live process."""
        deadline = time.monotonic() + settle
        while True:
            with self.cond:
                pids = dict(self.all_pids)
            left = [p for p, st in pids.items() if st is not None and start_ticks(p) == st]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)


# ------------------------------------------------------------------ phases


def calibrate(workdir: Path, stamps: Path, n: int = 20) -> dict[str, Any]:
    """The floor under every child-side number: fork+exec of the run script
    from a small Python process until its stamp, with no supervisor."""
    lat = []
    d = workdir / "calib"
    write_service(d, "calib", stamps)
    for _ in range(n):
        t0 = time.time()
        p = subprocess.Popen(["./run"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        s = read_stamp(stamps, "calib", p.pid)
        p.kill()
        p.wait()
        if s is not None:
            lat.append(s - t0)
    return summary(lat)


def phase_bringup(sup: Supervisor, names: list[str], stamps: Path) -> dict[str, Any]:
    n = len(names)
    ok = sup.wait(lambda: sum(1 for x in names if x in sup.spawned) >= n, timeout=120)
    if not ok:
        missing = [x for x in names if x not in sup.spawned]
        raise RuntimeError(
            f"bring-up incomplete: {len(missing)} of {n} sessions never spawned "
            f"(see {sup.stderr_path})"
        )
    child_up = []
    for x in names:
        pid, _ = sup.current_pid(x) or (0, 0.0)
        s = read_stamp(stamps, x, pid)
        if s is None:
            raise RuntimeError(f"child of {x} (pid {pid}) never wrote its stamp")
        child_up.append(s)
    with sup.cond:
        started = next(
            (float(e["ts"]) for e in sup.events if e.get("event") == "supervisor_started"), None
        )
        spawn_ts = sorted(float(sup.spawned[x][0]["ts"]) for x in names)
        doubles = sum(1 for x in names if len(sup.spawned[x]) > 1)
        backoffs = sum(1 for e in sup.events if e.get("event") == "backoff")
    t0 = sup.t_start
    # The rate limit's own lower bound on the spawn phase.
    bound = max(0.0, (n - 200) / 200.0)
    return {
        "sessions": n,
        "all_children_running_s": round(max(child_up) - t0, 3),
        "supervisor_started_s": round(started - t0, 3) if started else None,
        "first_spawn_s": round(spawn_ts[0] - t0, 3),
        "last_spawn_s": round(spawn_ts[-1] - t0, 3),
        "spawn_phase_s": round(spawn_ts[-1] - spawn_ts[0], 3),
        "rate_limit_floor_s": round(bound, 3),
        "spawns_per_s": round((n - 1) / max(1e-9, spawn_ts[-1] - spawn_ts[0]), 1),
        "sessions_spawned_twice": doubles,
        "backoff_events": backoffs,
    }


def phase_idle(sup: Supervisor, seconds: float) -> dict[str, Any]:
    assert sup.ps is not None
    with sup.cond:
        n_events = len(sup.events)
    ctx0 = sup.ps.num_ctx_switches()
    c0, t0 = sup.cpu(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = sup.cpu(), time.monotonic()
    ctx1 = sup.ps.num_ctx_switches()
    with sup.cond:
        during = [e.get("event") for e in sup.events[n_events:]]
    wall = t1 - t0
    return {
        "seconds": round(wall, 2),
        "cpu_s": round(c1 - c0, 4),
        "cpu_pct_one_core": round(100.0 * (c1 - c0) / wall, 3),
        "wakeups_per_s": round((ctx1.voluntary - ctx0.voluntary) / wall, 2),
        "events_during_window": len(during),
    }


def phase_restarts(
    sup: Supervisor, names: list[str], stamps: Path, count: int, rng: random.Random
) -> dict[str, Any]:
    # Wait until enough children have lived past the rapid-failure window.
    def old_enough() -> list[str]:
        now = time.time()
        out = []
        for x in names:
            cur = sup.current_pid(x)
            if cur is not None and now - cur[1] > RAPID_WINDOW + 0.5:
                out.append(x)
        return out

    deadline = time.monotonic() + RAPID_WINDOW + 5
    candidates = old_enough()
    while len(candidates) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        candidates = old_enough()
    victims = rng.sample(candidates, min(count, len(candidates)))
    exit_seen, spawn_ev, child_up, recv_lat = [], [], [], []
    failures = []
    c0, w0 = sup.cpu(), time.monotonic()
    for x in victims:
        cur = sup.current_pid(x)
        assert cur is not None
        pid = cur[0]
        with sup.cond:
            n_before = len(sup.spawned[x])
            e_before = len(sup.exited.get(x, []))
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        if not sup.wait_spawns(x, n_before, timeout=10):
            failures.append(f"{x}: no replacement within 10 s")
            continue
        with sup.cond:
            ev = sup.spawned[x][n_before]
            ex = sup.exited.get(x, [])[e_before:]
        stamp = read_stamp(stamps, x, ev["pid"])
        if stamp is None:
            failures.append(f"{x}: replacement pid {ev['pid']} wrote no stamp")
            continue
        child_up.append(stamp - t_kill)
        spawn_ev.append(float(ev["ts"]) - t_kill)
        recv_lat.append(ev["_recv"] - t_kill)
        if ex:
            exit_seen.append(float(ex[0]["ts"]) - t_kill)
        time.sleep(RESTART_GAP)
    cpu = sup.cpu() - c0
    wall = time.monotonic() - w0
    with sup.cond:
        backoffs = sum(
            1 for e in sup.events if e.get("event") == "backoff" and e.get("session") in victims
        )
    return {
        "restarts": len(child_up),
        "child_running": summary(child_up),
        "pool_spawned_event": summary(spawn_ev),
        "pool_exited_event": summary(exit_seen),
        "event_received_here": summary(recv_lat),
        "supervisor_cpu_ms_per_restart": round(1000.0 * cpu / max(1, len(victims)), 2),
        "phase_wall_s": round(wall, 2),
        "backoff_events": backoffs,
        "failures": failures,
        "_victims": victims,
    }


def phase_pickups(
    sup: Supervisor,
    root: Path,
    staging: Path,
    stamps: Path,
    count: int,
    prefix: str,
) -> dict[str, Any]:
    """Atomic creation, as s6/runit recommend: build the directory elsewhere
    on the same filesystem, then rename() it into the root (one event)."""
    child_up, spawn_ev, failures = [], [], []
    c0 = sup.cpu()
    for i in range(count):
        name = f"{prefix}{i:03d}"
        write_service(staging / name, name, stamps)
        t0 = time.time()
        os.rename(staging / name, root / name)
        if not sup.wait_spawns(name, 0, timeout=10):
            failures.append(f"{name}: not picked up within 10 s")
            continue
        ev = sup.spawned[name][0]
        stamp = read_stamp(stamps, name, ev["pid"])
        if stamp is None:
            failures.append(f"{name}: child wrote no stamp")
            continue
        child_up.append(stamp - t0)
        spawn_ev.append(float(ev["ts"]) - t0)
        time.sleep(RESTART_GAP)
    return {
        "pickups": len(child_up),
        "method": "build outside the root, rename() into it",
        "child_running": summary(child_up),
        "pool_spawned_event": summary(spawn_ev),
        "supervisor_cpu_ms_per_pickup": round(1000.0 * (sup.cpu() - c0) / max(1, count), 2),
        "failures": failures,
    }


def phase_naive_pickups(
    sup: Supervisor, root: Path, stamps: Path, count: int, prefix: str
) -> dict[str, Any]:
    """The way people actually do it: mkdir, then write ``run`` a few ms later
    (an editor, a ``cp``, a config tool).  A pickup that does not happen within
    NAIVE_TIMEOUT is "missed": it waits for some later rescan."""
    child_up: list[float] = []
    missed: list[dict[str, Any]] = []
    t_made: dict[str, float] = {}
    for i in range(count):
        name = f"{prefix}{i:03d}"
        delay = (i % 5) * 0.005  # 0, 5, 10, 15, 20 ms between mkdir and run
        d = root / name
        t0 = time.time()
        d.mkdir()
        time.sleep(delay)
        run = d / "run"
        tmp = d / ".run.tmp"
        tmp.write_text(RUN_SCRIPT.format(stamps=stamps, name=name))
        tmp.chmod(0o755)
        os.rename(tmp, run)
        t_made[name] = t0
        if not sup.wait_spawns(name, 0, timeout=NAIVE_TIMEOUT):
            missed.append({"session": name, "run_after_ms": round(delay * 1000)})
            continue
        ev = sup.spawned[name][0]
        stamp = read_stamp(stamps, name, ev["pid"])
        if stamp is not None:
            child_up.append(stamp - t0)
        time.sleep(RESTART_GAP)
    # A missed one is picked up by the next rescan anything triggers; note when.
    time.sleep(0.5)
    with sup.cond:
        for m in missed:
            evs = sup.spawned.get(m["session"])
            m["picked_up_after_s"] = (
                round(float(evs[0]["ts"]) - t_made[m["session"]], 2) if evs else None
            )
    return {
        "pickups": count,
        "method": "mkdir in the root, then run written 0-20 ms later",
        "child_running_when_picked_up": summary(child_up),
        "missed_within_timeout": len(missed),
        "timeout_s": NAIVE_TIMEOUT,
        "missed": missed,
    }


def phase_rescan_cost(sup: Supervisor, root: Path, names: list[str]) -> dict[str, Any]:
    """A file written in a service directory (a pidfile, a socket, a log in
    the daemon's cwd) triggers a full rescan: what does one cost?"""
    c0 = sup.cpu()
    for i in range(RESCAN_TOUCHES):
        (root / names[(i * 37) % len(names)] / f"touched-{i}").write_text("x")
        time.sleep(0.25)
    per = (sup.cpu() - c0) / RESCAN_TOUCHES
    return {"touches": RESCAN_TOUCHES, "supervisor_cpu_ms_per_rescan": round(per * 1000, 2)}


def phase_noise(
    sup: Supervisor,
    root: Path,
    names: list[str],
    stamps: Path,
    victims: list[str],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    """Children that write files in their own directory (their cwd: a
    pidfile, a socket, a state file) at ``rate`` writes/s pool-wide, e.g. 1 000
    daemons each touching a file every 50 s = 20/s.  Each write is an inotify
    event on a watched service directory.  Measures the supervisor's CPU and
    the restart latency while that goes on."""
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        rng = random.Random(7)
        nxt = time.monotonic()
        while not stop.is_set():
            (root / rng.choice(names) / "daemon.state").write_text(str(time.time()))
            written[0] += 1
            nxt += 1.0 / rate
            stop.wait(max(0.0, nxt - time.monotonic()))

    th = threading.Thread(target=writer, name="noise", daemon=True)
    th.start()
    try:
        time.sleep(0.5)
        c0, t0 = sup.cpu(), time.monotonic()
        time.sleep(seconds)
        cpu_pct = 100.0 * (sup.cpu() - c0) / (time.monotonic() - t0)
        lat = []
        for x in victims:
            cur = sup.current_pid(x)
            if cur is None:
                continue
            with sup.cond:
                n_before = len(sup.spawned[x])
            t_kill = time.time()
            os.kill(cur[0], signal.SIGKILL)
            if not sup.wait_spawns(x, n_before, timeout=10):
                continue
            stamp = read_stamp(stamps, x, sup.spawned[x][n_before]["pid"])
            if stamp is not None:
                lat.append(stamp - t_kill)
            time.sleep(RESTART_GAP)
    finally:
        stop.set()
        th.join()
    return {
        "writes_per_s": rate,
        "writes": written[0],
        "cpu_pct_one_core": round(cpu_pct, 1),
        "restart_child_running": summary(lat),
    }


def phase_burst(
    sup: Supervisor, stamps: Path, victims: list[str], settle: float = 0.5
) -> dict[str, Any]:
    """A small mass failure: SIGKILL ``victims`` (all up > 10 s) at once.
    How long until the last replacement runs?"""
    before: dict[str, int] = {}
    pids: dict[str, int] = {}
    with sup.cond:
        for x in victims:
            before[x] = len(sup.spawned[x])
            pids[x] = sup.spawned[x][-1]["pid"]
    c0 = sup.cpu()
    t_kill = time.time()
    for x in victims:
        os.kill(pids[x], signal.SIGKILL)
    ok = sup.wait(lambda: all(len(sup.spawned[x]) > before[x] for x in victims), timeout=20)
    lat = []
    for x in victims:
        if len(sup.spawned[x]) > before[x]:
            stamp = read_stamp(stamps, x, sup.spawned[x][before[x]]["pid"])
            if stamp is not None:
                lat.append(stamp - t_kill)
    time.sleep(settle)
    return {
        "killed": len(victims),
        "all_replaced": ok,
        "child_running": summary(lat),
        "supervisor_cpu_ms": round(1000.0 * (sup.cpu() - c0), 1),
    }


# -------------------------------------------------------------------- driver


def ensure_nofile(needed: int) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info: dict[str, Any] = {"soft": soft, "hard": hard, "needed_estimate": needed, "raised": False}
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = hard  # as far as we may go; children inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        info["raised"] = True
        info["soft"] = new
        log(f"raised soft RLIMIT_NOFILE {soft} -> {new} (the supervisor holds a pidfd per child)")
    return info


def scan_stderr(path: Path) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln]


def run_size(n: int, args: argparse.Namespace, machine: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(n)
    workdir = Path(tempfile.mkdtemp(prefix=f"wirepool-bench-{n}-", dir=args.tmp))
    root, stamps, staging = workdir / "services", workdir / "stamps", workdir / "staging"
    for d in (root, stamps, staging):
        d.mkdir()
    names = [f"svc{i:04d}" for i in range(n)]
    for x in names:
        write_service(root / x, x, stamps)
    result: dict[str, Any] = {"size": n, "machine": machine}
    # Other work on the machine skews latency: say how busy it was.
    result["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    result["child_start_floor"] = calibrate(workdir, stamps)
    result["nofile"] = ensure_nofile(n + args.pickups + NAIVE_PICKUPS + 128)
    if args.nofile is not None:
        result["nofile"]["supervisor_soft_forced"] = args.nofile
    sup = Supervisor(root, workdir, args, n)
    try:
        log(f"{n} sessions: starting the supervisor")
        sup.start()
        result["bringup"] = phase_bringup(sup, names, stamps)
        log(f"{n}: all children running after {result['bringup']['all_children_running_s']} s")
        time.sleep(1.0)
        result["memory_after_bringup"] = sup.memory()
        log(f"{n}: idle for {args.idle_seconds} s")
        result["idle"] = phase_idle(sup, args.idle_seconds)
        result["memory_idle"] = sup.memory()
        log(f"{n}: {args.restarts} restarts")
        result["restart"] = phase_restarts(sup, names, stamps, args.restarts, rng)
        used = set(result["restart"].pop("_victims"))
        spare = [x for x in names if x not in used]
        rng.shuffle(spare)
        log(f"{n}: burst of {args.burst} kills at once")
        result["burst"] = phase_burst(sup, stamps, spare[: args.burst])
        spare = spare[args.burst : args.burst + args.noise_restarts]
        log(f"{n}: noisy service dirs ({args.noise_rate:g} writes/s)")
        result["noise"] = phase_noise(
            sup, root, names, stamps, spare, args.noise_rate, args.noise_seconds
        )
        log(f"{n}: {args.pickups} pickups")
        result["pickup"] = phase_pickups(sup, root, staging, stamps, args.pickups, "new")
        log(f"{n}: rescan cost")
        result["rescan"] = phase_rescan_cost(sup, root, names)
        log(f"{n}: {NAIVE_PICKUPS} non-atomic pickups")
        result["pickup_nonatomic"] = phase_naive_pickups(sup, root, stamps, NAIVE_PICKUPS, "mkd")
        result["memory_end"] = sup.memory()
        result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        with sup.cond:
            result["children_seen"] = len(sup.all_pids)
        log(f"{n}: stopping the supervisor")
        took = sup.stop()
        result["shutdown_s"] = round(took, 2) if took is not None else None
        result["supervisor_exit_code"] = sup.proc.returncode if sup.proc else None
    finally:
        if sup.alive():
            sup.stop(timeout=30)
        left = sup.leftovers()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if left:
            log(f"{len(left)} children outlived the supervisor; killed by pid: {left[:10]}")
        result["leftover_children"] = len(left)
        result["supervisor_warnings"] = scan_stderr(sup.stderr_path)[:50]
        if args.keep_tmp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def verdicts(r: dict[str, Any]) -> dict[str, Any]:
    got = {
        "restart_median_ms": r["restart"]["child_running"].get("median_ms"),
        "pickup_median_ms": r["pickup"]["child_running"].get("median_ms"),
        "idle_cpu_pct": r["idle"]["cpu_pct_one_core"],
        "rss_mb": max(
            r["memory_after_bringup"]["rss_mb"],
            r["memory_idle"]["rss_mb"],
            r["memory_end"]["rss_mb"],
        ),
    }
    return {
        k: {"value": v, "target": TARGETS[k], "met": v is not None and v < TARGETS[k]}
        for k, v in got.items()
    }


# (label, dotted path into a result) -- one row of the printed table.
TABLE: list[tuple[str, str]] = [
    ("bring-up: all children running (s)", "bringup.all_children_running_s"),
    ("  supervisor_started event (s)", "bringup.supervisor_started_s"),
    ("  spawn phase, first..last (s)", "bringup.spawn_phase_s"),
    ("  rate-limit floor (s)", "bringup.rate_limit_floor_s"),
    ("restart median (ms) [target <20]", "restart.child_running.median_ms"),
    ("restart p90 (ms)", "restart.child_running.p90_ms"),
    ("restart max (ms)", "restart.child_running.max_ms"),
    ("  restarts measured", "restart.restarts"),
    ("  exited event, median (ms)", "restart.pool_exited_event.median_ms"),
    ("  spawned event, median (ms)", "restart.pool_spawned_event.median_ms"),
    ("  supervisor CPU per restart (ms)", "restart.supervisor_cpu_ms_per_restart"),
    ("burst of kills: last replacement (ms)", "burst.child_running.max_ms"),
    ("  median replacement (ms)", "burst.child_running.median_ms"),
    ("  supervisor CPU for the burst (ms)", "burst.supervisor_cpu_ms"),
    ("pickup median (ms) [target <100]", "pickup.child_running.median_ms"),
    ("pickup p90 (ms)", "pickup.child_running.p90_ms"),
    ("pickup max (ms)", "pickup.child_running.max_ms"),
    ("  pickups measured", "pickup.pickups"),
    ("  non-atomic pickups missed", "pickup_nonatomic.missed_within_timeout"),
    ("  supervisor CPU per rescan (ms)", "rescan.supervisor_cpu_ms_per_rescan"),
    ("CPU, writes in service dirs (%)", "noise.cpu_pct_one_core"),
    ("  restart median meanwhile (ms)", "noise.restart_child_running.median_ms"),
    ("  restart p90 meanwhile (ms)", "noise.restart_child_running.p90_ms"),
    ("idle CPU (% of one core) [target <0.5]", "idle.cpu_pct_one_core"),
    ("  idle window (s)", "idle.seconds"),
    ("  idle wakeups per s", "idle.wakeups_per_s"),
    ("RSS, all up (MB) [target <80]", "verdicts.rss_mb.value"),
    ("  USS (MB)", "memory_end.uss_mb"),
    ("  open fds", "memory_end.fds"),
    ("child start floor, median (ms)", "child_start_floor.median_ms"),
    ("shutdown, SIGTERM..exit (s)", "shutdown_s"),
    ("leftover children", "leftover_children"),
]


def dig(r: dict[str, Any], path: str) -> Any:
    cur: Any = r
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def print_table(results: list[dict[str, Any]]) -> None:
    head = ["metric", *(f"{r['size']} sessions" for r in results)]
    body = []
    for label, path in TABLE:
        cells = [dig(r, path) for r in results]
        body.append([label, *("-" if c is None else str(c) for c in cells)])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    for row in [head, ["-" * w for w in widths], *body]:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    for r in results:
        missed = [k for k, v in r["verdicts"].items() if not v["met"]]
        status = "all targets met" if not missed else "MISSED: " + ", ".join(missed)
        print(f"{r['size']} sessions: {status}")


#: descriptors every supervisor under test may have (inherited from the
#: bench): wirepool holds two per child (its pidfd and its log's), so 10 000
#: children need more than the 20 000 this machine's hard limit allows; as
#: root we raise it for every supervisor alike
FD_LIMIT = 65536


def raise_fd_limit() -> None:
    with contextlib.suppress(OSError, ValueError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < FD_LIMIT and os.geteuid() == 0:
            resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def machine_info() -> dict[str, Any]:
    commit, dirty = None, None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        # Read-only: were the engine's files edited since that commit?
        dirty = bool(
            subprocess.run(
                [*git, "status", "--porcelain", "--untracked-files=no", "wirepool", "plugins"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    cpu_model = None
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu_model = ln.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "commit": commit,
        "engine_edited_since_commit": dirty,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,1000", help="comma-separated session counts")
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--restarts", type=int, default=50)
    ap.add_argument("--pickups", type=int, default=20)
    ap.add_argument("--burst", type=int, default=25, help="children killed at once")
    ap.add_argument("--noise-rate", type=float, default=20.0, help="writes/s in service dirs")
    ap.add_argument("--noise-seconds", type=float, default=4.0)
    ap.add_argument("--noise-restarts", type=int, default=10)
    ap.add_argument("--rescan-interval", type=float, default=30.0, help="passed to the plugin")
    ap.add_argument(
        "--nofile",
        type=int,
        default=None,
        help="force the supervisor's soft RLIMIT_NOFILE (to reproduce fd exhaustion)",
    )
    ap.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="run the supervisor under cProfile, writing DIR/servicedir-<size>.prof "
        "(numbers are then inflated: nothing is saved to results/)",
    )
    ap.add_argument("--tmp", default=None, help="where the service trees go (default: $TMPDIR)")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--no-save", action="store_true", help="do not write results/*.json")
    args = ap.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    if not WIREPOOL.exists():
        print(f"{WIREPOOL} not found: run `make` first", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # Even when started in the background with SIGINT ignored: ^C must clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    machine = machine_info()
    results = []
    try:
        for n in sizes:
            r = run_size(n, args, machine)
            r["args"] = {k: v for k, v in vars(args).items() if k != "tmp"}
            r["verdicts"] = verdicts(r)
            results.append(r)
            if not args.no_save and not args.profile:
                RESULTS.mkdir(exist_ok=True)
                out = RESULTS / f"servicedir-{n}.json"
                tmp = out.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(r, indent=2) + "\n")
                os.replace(tmp, out)
                log(f"wrote {out.relative_to(REPO)}")
    except KeyboardInterrupt:
        log("interrupted; supervisor stopped and children checked")
        return 130
    finally:
        if results:
            print()
            print(
                f"wirepool servicedir benchmark -- {machine['date']}, {machine['cpus']} cores, "
                f"Python {machine['python']}, Linux {machine['kernel']}, commit {machine['commit']}"
            )
            print_table(results)
            for r in results:
                for w in r["supervisor_warnings"][:5]:
                    print(f"{r['size']}: supervisor said: {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
