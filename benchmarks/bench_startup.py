#!/usr/bin/env python3
"""Start-up: from exec of ``wirepool run`` to its first child, and the import
of ``wirepool.cli``.

One servicedir session whose ``run`` writes ``$EPOCHREALTIME`` (a bash
builtin) and execs ``sleep``: the latency is from just before ``Popen`` to
that stamp, so it covers the interpreter, every import, the plugin, the state
directory, discovery and the spawn.  The import is ``python -X importtime -c
'import wirepool.cli'`` (its last line: the cumulative microseconds).  Both
are medians over ``--runs`` runs; compiled bytecode is used when it can be
written (``python -m compileall wirepool plugins`` first when
``PYTHONDONTWRITEBYTECODE`` is set).

Beside it, exec to exit of ``wirepool status`` with no supervisor running:
the start-up of every command but ``run`` (they import click); and the wall
time of importing what ``run`` imports before its first child
(``imports_of_run``: ``wirepool._main``, which reads an ordinary ``run`` line
without click, with the plugin; ``wirepool.cli`` before it existed).

The import is also taken apart (in runs of its own): how much of it is
creating wirepool's value types (``wirepool._value``; ``dataclass`` before
the eighth session), and of that, compiling their methods.

The floor, measured the same way with the checkout's interpreter: ``python -c pass``
from exec to exit, and from exec to the first child of a ``python -c`` that only starts
the same ``run`` (no wirepool, no click).

Usage:  .venv/bin/python benchmarks/bench_startup.py [--runs 15] [--checkout DIR ...]

With several ``--checkout``, their runs interleave (one of each in turn) and
each prints its own line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RUN = '#!/bin/bash\nprintf "%s" "$EPOCHREALTIME" > ../../stamp\nexec sleep 1000\n'
# Python alone: start the same child (in its process group, killed with it below)
BARE = (
    "import os, subprocess, sys\n"
    "subprocess.Popen(['./run'], cwd=os.path.join(sys.argv[1], 'a')).wait()\n"
)


def wirepool_argv(checkout: Path, root: Path) -> list[str]:
    wirepool = str(checkout / ".venv/bin/wirepool")
    return [wirepool, "-q", "run", "servicedir", str(root), "--on-exit", "stop"]


def bare_argv(checkout: Path, root: Path) -> list[str]:
    return [str(checkout / ".venv/bin/python"), "-c", BARE, str(root)]


def first_spawn(checkout: Path, argv_for: Callable[[Path, Path], list[str]]) -> float:
    with tempfile.TemporaryDirectory(prefix="wirepool-startup-") as tmp:
        root = Path(tmp) / "root"
        (root / "a").mkdir(parents=True)
        run = root / "a" / "run"
        run.write_text(RUN)
        run.chmod(0o755)
        stamp = Path(tmp) / "stamp"
        t0 = time.time()
        proc = subprocess.Popen(
            argv_for(checkout, root),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not (stamp.exists() and stamp.read_text()):
                if time.monotonic() > deadline:
                    raise TimeoutError("no child within 30 s")
                time.sleep(0.0005)
            return float(stamp.read_text()) - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()  # its session's children go with --on-exit stop
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the bare Python's child


def status_command(checkout: Path) -> float:
    """Exec to exit of ``wirepool status`` where no supervisor runs (it
    prints the table from disk and exits 3): the start-up of every command
    but ``run``."""
    with tempfile.TemporaryDirectory(prefix="wirepool-startup-") as tmp:
        (Path(tmp) / "root").mkdir()
        argv = [str(checkout / ".venv/bin/wirepool"), "status", "servicedir", f"{tmp}/root"]
        t0 = time.perf_counter()
        state = ["--state-dir", f"{tmp}/state"]
        done = subprocess.run([*argv, *state], check=False, stdout=subprocess.DEVNULL)
        took = time.perf_counter() - t0
    if done.returncode != 3:
        raise RuntimeError(f"wirepool status exited {done.returncode}, not 3")
    return took


def python_pass(checkout: Path) -> float:
    t0 = time.perf_counter()
    # no timeout: with one, the wait polls (0.5 ms doubling to 50 ms), adding up to 31 ms
    subprocess.run([str(checkout / ".venv/bin/python"), "-c", "pass"], check=True)
    return time.perf_counter() - t0


def import_us(checkout: Path) -> int:
    done = subprocess.run(
        [str(checkout / ".venv/bin/python"), "-X", "importtime", "-c", "import wirepool.cli"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=checkout,  # `-c` puts the working directory first on the path
    )
    return int(done.stderr.strip().splitlines()[-1].split("|")[1])


# What ``wirepool run`` imports before its first child: since the eighth
# session the click-free entry point and the plugin (``wirepool._main``);
# before it, ``wirepool.cli``.
RUN_IMPORTS = """\
import importlib.util, sys, time
t = time.perf_counter()
if importlib.util.find_spec("wirepool._main") is not None:
    import wirepool._main, wirepool._cli_run, wirepool_servicedir
else:
    import wirepool.cli, wirepool_servicedir
print(time.perf_counter() - t)
"""


def python_c(checkout: Path, code: str) -> str:
    """What the checkout's interpreter prints running ``code`` (in the
    checkout: ``-c`` puts the working directory first on the path)."""
    done = subprocess.run(
        [str(checkout / ".venv/bin/python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=checkout,
    )
    return done.stdout


def run_imports(checkout: Path) -> float:
    return float(python_c(checkout, RUN_IMPORTS))


# Times the creation of wirepool's value types inside the import: since the
# eighth session ``wirepool._value._make`` (its compiled methods:
# ``_compile``), loaded alone before the package so that it can be wrapped;
# before it, dataclass's ``_process_class`` (compiling each generated method
# from source: ``_create_fn``, one compile per method on 3.11 and 3.12).
DATACLASS_SHARE = """\
import importlib.util, json, sys, time
spent = {"classes": [0.0, 0], "methods": [0.0, 0]}
def timed(orig, key):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            spent[key][0] += time.perf_counter() - t
            spent[key][1] += 1
    return wrapper
# a top-level package is found without being imported
where = importlib.util.find_spec("wirepool").submodule_search_locations[0]
spec = importlib.util.spec_from_file_location("wirepool._value", where + "/_value.py")
value = importlib.util.module_from_spec(spec)
spec.loader.exec_module(value)
if hasattr(value, "_make"):
    sys.modules["wirepool._value"] = value
    value._make = timed(value._make, "classes")
    value._compile = timed(value._compile, "methods")
else:
    import dataclasses
    dataclasses._process_class = timed(dataclasses._process_class, "classes")
    if hasattr(dataclasses, "_create_fn"):
        dataclasses._create_fn = timed(dataclasses._create_fn, "methods")
t = time.perf_counter()
import wirepool.cli
total = time.perf_counter() - t
print(json.dumps({"import": total, **spent}))
"""


def dataclass_share(checkout: Path) -> dict[str, float]:
    """Seconds of ``import wirepool.cli`` (dataclasses or wirepool._value
    imported before the clock starts), of it in creating value types, and of
    that in compiling their methods; and how many of each."""
    got = json.loads(python_c(checkout, DATACLASS_SHARE))
    return {
        "import": got["import"],
        "classes": got["classes"][0],
        "methods": got["methods"][0],
        "n_classes": got["classes"][1],
        "n_methods": got["methods"][1],
    }


def measure(checkouts: list[Path], runs: int) -> list[dict[str, object]]:
    """Every measure of every checkout, ``runs`` times; with more than one
    checkout, one run of each in turn (in an order that alternates), so that
    a machine whose speed drifts over minutes drifts for all of them alike."""
    samples: dict[Path, dict[str, list[float]]] = {
        c: {"spawn": [], "import": [], "run_imports": [], "bare": [], "pass": [], "status": []}
        for c in checkouts
    }
    shares: dict[Path, list[dict[str, float]]] = {c: [] for c in checkouts}
    for i in range(runs):
        for checkout in checkouts if i % 2 == 0 else checkouts[::-1]:
            mine = samples[checkout]
            mine["spawn"].append(first_spawn(checkout, wirepool_argv))
            mine["import"].append(import_us(checkout) / 1e6)
            mine["run_imports"].append(run_imports(checkout))
            mine["bare"].append(first_spawn(checkout, bare_argv))
            mine["pass"].append(python_pass(checkout))
            mine["status"].append(status_command(checkout))
            shares[checkout].append(dataclass_share(checkout))

    def ms(seconds: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(seconds) * 1000, 1),
            "min": round(min(seconds) * 1000, 1),
        }

    return [
        {
            "checkout": str(checkout),
            "runs": runs,
            "exec_to_first_spawn_ms": ms(mine["spawn"]),
            "import_wirepool_cli_ms": ms(mine["import"]),
            "imports_of_run_ms": ms(mine["run_imports"]),
            "status_command_exec_to_exit_ms": ms(mine["status"]),
            "floor_python_exec_to_first_spawn_ms": ms(mine["bare"]),
            "floor_python_c_pass_ms": ms(mine["pass"]),
            # timed apart, in runs of their own (the timers add a little)
            "import_with_timers_ms": ms([x["import"] for x in shares[checkout]]),
            "of_it_creating_value_types_ms": ms([x["classes"] for x in shares[checkout]]),
            "of_that_compiling_their_methods_ms": ms([x["methods"] for x in shares[checkout]]),
            "value_types_created": shares[checkout][-1]["n_classes"],
            "methods_compiled": shares[checkout][-1]["n_methods"],
        }
        for checkout, mine in samples.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument(
        "--checkout",
        type=Path,
        action="append",
        help="a checkout with its own .venv (repeat to compare: runs interleave)",
    )
    args = ap.parse_args()
    checkouts = args.checkout or [Path(__file__).resolve().parent.parent]
    results = measure(checkouts, args.runs)
    for out in results:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
