"""The programmable fake daemon behind :class:`wirepool.testing.FakeDaemon`.

Run as a script by path (``python .../_fakedaemon.py --exit-after 2``), never
as ``-m wirepool._fakedaemon``: that would import the whole package first,
and a fake daemon should start as fast as a small real one.  Standard library
only, for the same reason.  Relative paths are relative to the working
directory, which the pool sets to the session's home.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run(config: dict[str, Any]) -> int:
    """Behave as ``config`` says; return the exit code.  Shared by the
    command form and the in-process (callable worker) form."""
    pid = os.getpid()
    start = time.monotonic()
    # Its SIGTERM behaviour first: the files below say "ready", and a test
    # that signals it once one appears must meet the behaviour it asked for.
    if config.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        # Exit with status 0 as a well-behaved daemon does, rather than die
        # by the signal: the pool must count that as a stop, not a crash.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if config.get("starts_file"):
        with open(config["starts_file"], "a") as fh:
            fh.write(f"{pid}\n")
    if config.get("pidfile"):
        body = json.dumps({"pid": pid}) if config.get("pidfile_json") else f"{pid}\n"
        _write(Path(config["pidfile"]), body)
    exit_after = config.get("exit_after")
    beat = config.get("heartbeat")
    interval = float(config.get("heartbeat_interval") or 0.5)
    beat_for = config.get("heartbeat_for")
    while True:
        elapsed = time.monotonic() - start
        if exit_after is not None and elapsed >= exit_after:
            return int(config.get("exit_code") or 0)
        if beat and (beat_for is None or elapsed < beat_for):
            _write(Path(beat), f"{time.time():.3f}\n")
        wait = interval if beat else 3600.0
        if exit_after is not None:
            wait = min(wait, max(0.0, exit_after - elapsed))
        time.sleep(wait)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-daemon")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--heartbeat")
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--heartbeat-for", type=float)
    parser.add_argument("--pidfile")
    parser.add_argument("--pidfile-json", action="store_true")
    parser.add_argument("--starts-file")
    args = parser.parse_args(argv)
    return run(vars(args))


if __name__ == "__main__":
    sys.exit(main())
