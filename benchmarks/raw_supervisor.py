#!/usr/bin/env python3
"""The "raw" floor of ``compare.py``: spawn every ``ROOT/<name>/run`` and
respawn it the moment it exits.  No backoff, no discovery, no records, no
health: the cheapest loop that keeps the same scripts running, so every
supervisor's numbers can be read as a ratio against it.

``posix_spawn`` (vfork-like, the fastest start Python has) with ``setsid``;
one blocking ``waitpid(-1)`` per exit.  SIGTERM or SIGINT: TERM every child,
reap them all, exit 0.

Usage: raw_supervisor.py ROOT
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def main(root: str) -> int:
    names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    children: dict[int, str] = {}
    stopping = False

    def spawn(name: str) -> None:
        run = os.path.join(root, name, "run")
        pid = os.posix_spawn(run, [run], os.environ, setsid=True)
        children[pid] = name
        if stopping:  # SIGTERM arrived between the check and the spawn
            os.kill(pid, signal.SIGTERM)

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    for name in names:
        spawn(name)
    while children:
        try:
            pid, _status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        name = children.pop(pid, None)
        if name is not None and not stopping:
            spawn(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
