#!/usr/bin/env python3
"""How a child's output reaches its log, measured two ways (issue 11, item 5).

* **file** (what wirepool does): the child writes straight to its log file
  (``O_APPEND``); :class:`wirepool._logs.LogKeeper`, one thread woken by
  inotify, copy-truncates the log's tail when it passes the limit.
* **pipe** (s6-log's design): the child writes into a pipe; a log-writer
  thread in the supervisor reads it and writes the file, rotating by rename
  exactly at the limit.  ``pipe-splice`` is the same with ``splice(2)`` (no
  copy through user space): the best a pipe can do.

Part 1, each design alone (no pool): a child writes as fast as it can for
``--seconds`` -- 64 KiB writes, and 100-byte lines with one ``write`` each --
and a slow child writes 100 lines a second.  Reported: the child's
throughput (bytes it wrote / its own time), the supervisor side's CPU (the
keeper's or writer's thread, from ``/proc/self/task/<tid>/schedstat``, in ns)
per MB and as % of a core, its wake-ups (voluntary context switches), and the
live log's peak size as sampled every ~1 ms (overshoot = peak - limit).

Part 2, a real :class:`SessionPool` with one flooding session and five
sleeping ones: each sleeper is SIGKILLed in turn (``--kills`` times, 200 ms
apart) and the time until the pool's ``spawned`` event for it is taken.  The
restart policy has ``rapid_window=0``, so no backoff hides the supervisor's
own latency.  Conditions: no flood; a flood under the file design (the pool
as shipped); under the pipe design (a spawner that hands the child a pipe and
runs a writer thread); and, with ``--designs ...,loop-copy``, the code before
this change (copy-truncate of the whole log from the pool's sweep, on the
loop thread; sweep every second so it happens within the window).

Part 3: the keeper's cost in an idle pool of 50 sessions whose children
write nothing, over ``--idle-seconds``.

Everything runs in this process (the pool's threads are the supervisor);
every child is killed by pid at the end and the temporary directory removed.

Usage:  .venv/bin/python benchmarks/bench_logs.py [--seconds 5] [--max-mb 10]
        [--kills 20] [--designs file,pipe,pipe-splice] [--idle-seconds 10]
        [--tmp DIR] [--no-save]
Results: a table on stdout and benchmarks/results/logs-<UTC stamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wirepool import (
    CommandSpawner,
    Event,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
    Worker,
)
from wirepool._logs import LogKeeper, open_log, open_log_dir, open_session_log
from wirepool._proc import ProcessIdentity, identity_of, is_alive, signal_group

RESULTS = Path(__file__).resolve().parent / "results"
MB = 1_000_000

# The writing child: `size`-byte writes (one syscall each) for `seconds`
# (forever when 0), at most `rate` writes a second (0: as fast as it can);
# the bytes it wrote and its own elapsed time go to `report`.
WRITER = r"""
import os, signal, sys, time
size, seconds, rate, report = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the pool's stop: report, then go
buf = b"x" * (size - 1) + b"\n"
start = time.monotonic()
end = start + seconds if seconds > 0 else float("inf")
n = writes = 0
batch = 1 if rate else 64
try:
    while time.monotonic() < end:
        for _ in range(batch):
            n += os.write(1, buf)
        writes += batch
        if rate:
            time.sleep(max(0.0, start + writes / rate - time.monotonic()))
finally:
    with open(report, "w") as fh:
        fh.write(f"{n} {time.monotonic() - start}")
"""

KINDS = {
    # name: (write size, writes per second or 0 for flat out)
    "64k": (65536, 0),
    "lines": (100, 0),
    "trickle": (100, 100),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------ measurements


def thread_cpu_ns(tid: int | None) -> int:
    """CPU time of one thread of this process, in ns (0 if gone)."""
    if tid is None:
        return 0
    try:
        return int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def thread_wakeups(tid: int | None) -> int:
    if tid is None:
        return 0
    try:
        for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def process_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Peak:
    """The largest size a file reached, sampled about every millisecond."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-peak", daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, self.path.stat().st_size)
            time.sleep(0.001)


# ------------------------------------------------- the pipe design's writer


class PipeWriter(threading.Thread):
    """s6-log's design in miniature: read the child's pipe, append to the
    log, rotate by rename before a chunk would pass the limit (so the live
    log never does), and end at EOF."""

    def __init__(
        self, rfd: int, directory: Path, name: str, max_bytes: int, backups: int, splice: bool
    ) -> None:
        super().__init__(name=f"pipe-writer:{name}", daemon=True)
        self.rfd = rfd
        self.directory = directory
        self.name_ = name
        self.max_bytes = max_bytes
        self.backups = backups
        self.splice = splice
        self.cpu_ns = 0
        self.wakeups = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        dir_fd = open_log_dir(self.directory, create=True)
        out = self._open(dir_fd)
        size = os.fstat(out).st_size
        try:
            while True:
                room = self.max_bytes - size
                if room <= 0:
                    os.close(out)
                    self._rotate(dir_fd)
                    out, size, room = self._open(dir_fd), 0, self.max_bytes
                if self.splice:
                    n = os.splice(self.rfd, out, min(room, 1 << 20))
                else:
                    data = os.read(self.rfd, 65536)
                    n = len(data)
                    if n > room and size > 0:  # the chunk goes to a fresh file
                        os.close(out)
                        self._rotate(dir_fd)
                        out, size = self._open(dir_fd), 0
                    view = memoryview(data)
                    while view:
                        view = view[os.write(out, view) :]
                if n == 0:
                    break
                size += n
        except BaseException as exc:
            self.error = exc
        finally:
            self.cpu_ns = time.thread_time_ns()
            self.wakeups = thread_wakeups(threading.get_native_id())
            os.close(out)
            os.close(dir_fd)
            os.close(self.rfd)

    def _open(self, dir_fd: int) -> int:
        # no O_APPEND: splice(2) refuses an append-mode target, and this
        # thread is the file's only writer
        fd = os.open(
            self.name_,
            os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
        os.lseek(fd, 0, os.SEEK_END)
        return fd

    def _rotate(self, dir_fd: int) -> None:
        for n in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(
                    f"{self.name_}.{n}",
                    f"{self.name_}.{n + 1}",
                    src_dir_fd=dir_fd,
                    dst_dir_fd=dir_fd,
                )
        os.replace(self.name_, f"{self.name_}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


# --------------------------------------------------------- part 1: alone


def writer_argv(kind: str, seconds: float, report: Path, rate: float | None = None) -> list[str]:
    size, kind_rate = KINDS[kind]
    rate = kind_rate if rate is None else rate
    return [sys.executable, "-c", WRITER, str(size), str(seconds), str(rate), str(report)]


def run_alone(
    design: str, kind: str, work: Path, seconds: float, max_bytes: int, backups: int
) -> dict[str, Any]:
    directory = work / f"{design}-{kind}"
    directory.mkdir(mode=0o700)
    log_path = directory / "child.log"
    report = work / f"{design}-{kind}.report"
    argv = writer_argv(kind, seconds, report)
    keeper: LogKeeper | None = None
    writer: PipeWriter | None = None
    if design == "file":
        keeper = LogKeeper(max_bytes, backups)
        out = open_session_log(log_path)
        dir_fd = open_log_dir(directory, create=False)
        keeper.watch(
            "child",
            0,
            dir_fd,
            "child.log",
            open_log(dir_fd, "child.log", create=False, append=False),
        )
        while keeper.native_id is None:
            time.sleep(0.001)
        tid = keeper.native_id
    else:
        rfd, out = os.pipe2(os.O_CLOEXEC)
        writer = PipeWriter(
            rfd, directory, "child.log", max_bytes, backups, design == "pipe-splice"
        )
        writer.start()
        tid = writer.native_id
    time.sleep(0.05)
    cpu0, wake0, proc0 = thread_cpu_ns(tid), thread_wakeups(tid), process_cpu()
    with Peak(log_path) as peak:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        os.close(out)
        child.wait()
        if writer is not None:
            writer.join(30)
        time.sleep(0.05)  # the keeper's last look
    cpu_ns = (writer.cpu_ns if writer is not None else thread_cpu_ns(tid)) - cpu0
    wakeups = writer.wakeups - wake0 if writer is not None else thread_wakeups(tid) - wake0
    proc = process_cpu() - proc0
    rotations = keeper.rotations if keeper is not None else None
    if keeper is not None:
        keeper.close()
    if writer is not None and writer.error is not None:
        raise writer.error
    written, elapsed = report.read_text().split()
    nbytes, secs = int(written), float(elapsed)
    mb = nbytes / MB
    return {
        "design": design,
        "writer": kind,
        "bytes": nbytes,
        "seconds": round(secs, 3),
        "throughput_mb_s": round(mb / secs, 1),
        "supervisor_cpu_ms": round(cpu_ns / 1e6, 1),
        "supervisor_cpu_pct": round(100 * cpu_ns / 1e9 / secs, 2),
        "cpu_us_per_mb": round(cpu_ns / 1e3 / mb, 1) if mb >= 1 else None,
        "wakeups_per_s": round(wakeups / secs),
        "process_cpu_ms": round(proc * 1e3, 1),
        "wakeups": wakeups,
        "rotations": rotations,
        "peak_mb": round(peak.peak / MB, 2),
        "overshoot_mb": round(max(0, peak.peak - max_bytes) / MB, 2),
    }


# ---------------------------------------------- part 2: restart latency


class PipeSpawner(CommandSpawner):
    """The pipe design inside a pool: the child's stdout is a pipe, and a
    writer thread per child writes the session log with exact rotation."""

    def __init__(self, *args: Any, splice: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.splice = splice
        self.writers: list[PipeWriter] = []

    def _open_child_log(self, session: Session) -> tuple[Path | None, int | None]:
        path = self.log_path(session)
        if path is None:
            return None, None
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        writer = PipeWriter(
            rfd, path.parent, path.name, self.log_max_bytes, self.log_backups, self.splice
        )
        writer.start()
        self.writers.append(writer)
        return path, wfd

    def observe(self, session: Session, worker: Worker) -> None:
        pass  # the writer bounds the log exactly


def _old_rotate_log(path: Path, max_bytes: int, backups: int) -> None:
    """wirepool's copy-truncate before this change, verbatim in effect: the
    whole log copied, on whatever thread calls it (the pool's loop)."""
    try:
        if path.stat().st_size <= max_bytes:
            return
        for n in range(backups - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        os.truncate(path, 0)
    except OSError:
        pass


class LoopCopySpawner(CommandSpawner):
    """The code before this change: no keeper; the sweep's ``maintain``
    copy-truncates on the loop thread."""

    def observe(self, session: Session, worker: Worker) -> None:
        pass

    def maintain(self, session: Session) -> None:
        path = self.log_path(session)
        if path is not None:
            _old_rotate_log(path, self.log_max_bytes, self.log_backups)


def run_pool(
    condition: str, work: Path, kills: int, max_bytes: int, backups: int, flood_mb_s: float
) -> dict[str, Any]:
    root = work / f"pool-{condition}"
    sleepers = [f"s{n}" for n in range(5)]
    names = ["flood", *sleepers]
    for name in names:
        (root / name).mkdir(parents=True)
    writes_per_s = flood_mb_s * MB / KINDS["64k"][0]
    report = work / f"pool-{condition}.report"
    flood_argv = writer_argv("64k", 0, report, writes_per_s)

    def argv(session: Session) -> list[str]:
        if session.name == "flood" and condition != "no flood":
            return flood_argv
        return ["sleep", "100000"]

    options: dict[str, Any] = {"log_max_bytes": max_bytes, "log_backups": backups}
    spawner: CommandSpawner
    if condition.startswith("pipe"):
        spawner = PipeSpawner(argv, splice=condition == "pipe-splice", **options)
    elif condition == "loop-copy":
        spawner = LoopCopySpawner(argv, **options)
    else:
        spawner = CommandSpawner(argv, **options)
    pool = SessionPool(
        StaticDiscovery([Session(name=n, home=root / n) for n in names]),
        spawner=spawner,
        state_dir=root / ".wirepool",
        restart=RestartPolicy(rapid_window=0.0),
        durable=False,
        stop_grace=2.0,
        on_exit="stop",
        sweep_interval=1.0 if condition == "loop-copy" else 30.0,
    )
    spawned: dict[str, list[float]] = {n: [] for n in names}
    idents: dict[int, ProcessIdentity] = {}

    def on_event(event: Event) -> None:
        if event.kind == "spawned" and event.session is not None:
            spawned[event.session].append(time.monotonic())
            if event.pid:
                ident = identity_of(event.pid)
                if ident is not None:
                    idents[event.pid] = ident

    pool.subscribe(on_event)
    latencies: list[float] = []
    log_path = root / ".wirepool" / "logs" / "flood.log"
    try:
        with pool:
            snap = pool.wait_until(lambda s: all(n in s and s[n].pid for n in names))
            time.sleep(1.0)  # the flood under way
            proc0 = process_cpu()
            loop_tid = next(t.native_id for t in threading.enumerate() if t.name == "wirepool")
            loop0 = thread_cpu_ns(loop_tid)
            started = time.monotonic()
            with Peak(log_path) as peak:
                for n in range(kills):
                    name = sleepers[n % len(sleepers)]
                    pid = pool.snapshot()[name].pid
                    before = len(spawned[name])
                    t0 = time.monotonic()
                    os.kill(pid, signal.SIGKILL)  # type: ignore[arg-type]
                    deadline = t0 + 60
                    while len(spawned[name]) == before and time.monotonic() < deadline:
                        time.sleep(0.0005)
                    if len(spawned[name]) > before:
                        latencies.append(spawned[name][before] - t0)
                    time.sleep(0.2)
            window = time.monotonic() - started
            proc = process_cpu() - proc0
            loop_cpu = thread_cpu_ns(loop_tid) - loop0
            del snap
    finally:
        for ident in idents.values():
            if is_alive(ident):
                signal_group(ident, signal.SIGKILL)
        if isinstance(spawner, PipeSpawner):
            for writer in spawner.writers:
                writer.join(10)
    lat_ms = sorted(x * 1e3 for x in latencies)
    flooded = "-"
    with contextlib.suppress(OSError, ValueError):
        written, elapsed = report.read_text().split()
        flooded = str(round(int(written) / MB / float(elapsed)))
    return {
        "condition": condition,
        "flood_mb_s": flood_mb_s or "flat out",
        "flood_measured_mb_s": flooded,
        "kills": kills,
        "replaced": len(latencies),
        "restart_median_ms": round(statistics.median(lat_ms), 1) if lat_ms else None,
        "restart_p90_ms": round(lat_ms[int(0.9 * (len(lat_ms) - 1))], 1) if lat_ms else None,
        "restart_max_ms": round(lat_ms[-1], 1) if lat_ms else None,
        "process_cpu_pct": round(100 * proc / window, 1),
        "loop_thread_cpu_pct": round(100 * loop_cpu / 1e9 / window, 1),
        "flood_log_peak_mb": round(peak.peak / MB, 1),
    }


# ------------------------------------------------------ part 3: idle pool


def run_idle(work: Path, seconds: float) -> dict[str, Any]:
    root = work / "idle"
    names = [f"i{n}" for n in range(50)]
    for name in names:
        (root / name).mkdir(parents=True)
    pool = SessionPool(
        StaticDiscovery([Session(name=n, home=root / n) for n in names]),
        spawner=CommandSpawner(["sleep", "100000"]),
        state_dir=root / ".wirepool",
        durable=False,
        stop_grace=2.0,
        on_exit="stop",
    )
    idents: list[ProcessIdentity] = []
    try:
        with pool:
            snap = pool.wait_until(lambda s: all(n in s and s[n].pid for n in names))
            idents = [i for i in (identity_of(snap[n].pid or 0) for n in names) if i]
            time.sleep(1.0)
            keeper = pool.spawner._log_keeper
            tid = keeper.native_id if keeper is not None else None
            cpu0, wake0 = thread_cpu_ns(tid), thread_wakeups(tid)
            time.sleep(seconds)
            cpu, wakeups = thread_cpu_ns(tid) - cpu0, thread_wakeups(tid) - wake0
    finally:
        for ident in idents:
            if is_alive(ident):
                signal_group(ident, signal.SIGKILL)
    return {
        "sessions": len(names),
        "seconds": seconds,
        "keeper_running": tid is not None,
        "keeper_cpu_ms": round(cpu / 1e6, 3),
        "keeper_wakeups": wakeups,
    }


# ------------------------------------------------------------------ main


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per part-1 run")
    parser.add_argument("--max-mb", type=float, default=10.0, help="log_max_bytes, in MiB")
    parser.add_argument("--backups", type=int, default=3)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--designs", default="file,pipe,pipe-splice")
    parser.add_argument("--writers", default="64k,lines,trickle")
    parser.add_argument(
        "--pool-flood-mb-s", type=float, default=0.0, help="cap the pool's flood (0: flat out)"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--skip", default="", help="parts to skip: alone,pool,idle")
    parser.add_argument("--tmp", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    max_bytes = int(args.max_mb * 1024 * 1024)
    designs = [d for d in args.designs.split(",") if d]
    skip = set(args.skip.split(","))
    work = Path(tempfile.mkdtemp(prefix="wirepool-bench-logs-", dir=args.tmp))
    results = new_results(args)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if "alone" not in skip:
            alone = []
            for kind in args.writers.split(","):
                for design in (d for d in designs if d != "loop-copy"):
                    log(f"alone: {design} / {kind} ...")
                    alone.append(
                        run_alone(design, kind, work, args.seconds, max_bytes, args.backups)
                    )
            results["alone"] = alone
            print(
                table(
                    alone,
                    [
                        "design",
                        "writer",
                        "throughput_mb_s",
                        "supervisor_cpu_pct",
                        "cpu_us_per_mb",
                        "wakeups_per_s",
                        "peak_mb",
                        "overshoot_mb",
                    ],
                )
            )
        if "pool" not in skip:
            pool_rows = []
            for condition in ["no flood", *designs]:
                log(f"pool: {condition} ...")
                pool_rows.append(
                    run_pool(
                        condition, work, args.kills, max_bytes, args.backups, args.pool_flood_mb_s
                    )
                )
            results["pool"] = pool_rows
            print()
            print(
                table(
                    pool_rows,
                    [
                        "condition",
                        "flood_mb_s",
                        "flood_measured_mb_s",
                        "replaced",
                        "restart_median_ms",
                        "restart_p90_ms",
                        "restart_max_ms",
                        "loop_thread_cpu_pct",
                        "process_cpu_pct",
                        "flood_log_peak_mb",
                    ],
                )
            )
        if "idle" not in skip:
            log("idle pool ...")
            results["idle"] = run_idle(work, args.idle_seconds)
            print()
            print(json.dumps(results["idle"]))
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_save:
        save_results(results, "logs")
    return 0


def new_results(args: argparse.Namespace) -> dict[str, Any]:
    """A results document: when, on what, with which arguments."""
    return {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_before": os.getloadavg(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }


def save_results(results: dict[str, Any], kind: str) -> Path:
    """``results/<kind>-<UTC stamp>.json``, with the load after the run."""
    results["machine"]["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"{kind}-{stamp}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    log(f"saved {out}")
    return out


if __name__ == "__main__":
    sys.exit(main())
