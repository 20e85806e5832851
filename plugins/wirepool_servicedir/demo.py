"""``make demo``: a pool supervising real daemons from ``examples/services``.

What it shows, in about 20 seconds: every service starts (``maintenance``
stays down because of its ``down`` file), ``flaky`` crashes and backs off
1 s, 2 s, 4 s, the demo SIGKILLs ``worker`` and the pool brings it back at
once, a service directory created while the pool runs is picked up within a
fraction of a second, ``wirepool restart`` and ``wirepool logs`` are run
against the pool as an operator would, and the status table tells it all.  It then stops
every child it started and checks that none is left.  Ctrl-C ends it early,
with the same clean-up.

The example is copied to a temporary directory first: the state dir lives
beside the services, and a checkout made with a permissive umask would have
group-writable ``run`` files, which the plugin rightly refuses.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger

from wirepool import RestartPolicy, SessionPool, Snapshot
from wirepool.cli import read_status, render_table
from wirepool_servicedir import servicedir_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "services"


def _find_example() -> Path:
    env = os.environ.get("WIREPOOL_DEMO_SERVICES")
    for candidate in (Path(env) if env else None, EXAMPLE, Path.cwd() / "examples" / "services"):
        if candidate is not None and candidate.is_dir():
            return candidate
    raise SystemExit("cannot find examples/services; run the demo from the repository root")


def _say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _table(pool: SessionPool, spec_root: Path) -> None:
    # What `wirepool status` prints: the running pool's own picture, asked
    # over its control socket, so the table is never behind.
    spec = servicedir_spec(spec_root, state_dir=pool.state_dir)
    print(render_table(read_status(spec, "servicedir")), flush=True)


def _wirepool(*args: str) -> None:
    """Run a real `wirepool` verb against the demo's pool, as an operator
    would from another terminal, and show what it prints."""
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"  $ wirepool {shown}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "wirepool", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in (done.stdout + done.stderr).splitlines():
        print(f"  {line}", flush=True)


def _running(snap: Snapshot, name: str) -> bool:
    return name in snap and snap[name].state == "running"


def main() -> int:
    logger.remove()
    logger.add(sys.stderr, level="INFO", format="  {time:HH:mm:ss.SSS} | {message}")
    logger.enable("wirepool")
    workdir = Path(tempfile.mkdtemp(prefix="wirepool-demo-"))
    root = workdir / "services"
    shutil.copytree(_find_example(), root)
    # A checkout made under umask 002 is group-writable, and the pool
    # refuses a service directory, `run` or `env/` others may write.
    for path in (root, *root.rglob("*")):
        path.chmod(path.stat().st_mode & 0o755)
    for run in root.glob("*/run"):
        run.chmod(0o755)
    spec = servicedir_spec(root, on_exit="stop", grace=2.0, stop_grace=3.0)
    # A 3 s rapid-failure window instead of 10 s, so that the demo's SIGKILLed
    # worker (up for ~5 s) counts as healthy and comes back at once.
    spec.restart = RestartPolicy(rapid_window=3.0)
    pool = spec.pool("servicedir")
    started: set[int] = set()
    pool.subscribe(lambda e: started.add(e.pid) if e.kind == "spawned" and e.pid else None)
    try:
        _say(f"starting a pool over {root}")
        pool.start()
        snap = pool.wait_until(
            lambda s: all(_running(s, n) for n in ("web", "worker", "clock")), timeout=20
        )
        _table(pool, root)

        _say("waiting for 'flaky' to crash a few times (watch its backoff grow)")
        pool.wait_until(lambda s: "flaky" in s and s["flaky"].streak >= 2, timeout=30)

        victim = snap["worker"].pid
        assert victim is not None
        _say(f"SIGKILL to 'worker' (pid {victim}): it lived long enough to be restarted at once")
        os.kill(victim, signal.SIGKILL)
        snap = pool.wait_until(
            lambda s: _running(s, "worker") and s["worker"].pid != victim, timeout=20
        )
        print(f"  'worker' is back as pid {snap['worker'].pid}", flush=True)

        _say("creating a new service directory 'late' while the pool runs")
        late = root / "late"
        late.mkdir(mode=0o755)  # never group-writable, whatever the umask
        (late / "run").write_text('#!/bin/sh\necho "late: hello"\nexec sleep 3600\n')
        (late / "run").chmod(0o755)
        t0 = time.monotonic()
        pool.wait_until(lambda s: _running(s, "late"), timeout=20)
        print(f"  picked up and running after {(time.monotonic() - t0) * 1000:.0f} ms", flush=True)

        _say("restarting 'web' from the command line (SIGTERM, then a new child at once)")
        _wirepool("restart", "servicedir", str(root), "web")

        _say("the last lines of 'flaky's log, with the pool's own start and exit lines")
        _wirepool("logs", "servicedir", str(root), "flaky", "-n", "6")

        _say("status")
        _table(pool, root)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the children", flush=True)
    finally:
        pool.stop()
        leftovers = [pid for pid in started if _alive(pid)]
        shutil.rmtree(workdir, ignore_errors=True)
    if leftovers:
        print(f"\nleft behind: {sorted(leftovers)}", flush=True)
        return 1
    print(f"\nstopped; all {len(started)} processes the pool started are gone.", flush=True)
    return 0


def _alive(pid: int) -> bool:
    from wirepool._proc import identity_of

    return identity_of(pid) is not None


if __name__ == "__main__":
    sys.exit(main())
