"""A storm of signals must not wedge the supervisor.

Its signal handlers used to post through the wake pipe under a lock: a
handler run inside another (CPython runs a pending handler at the next
bytecode, also inside a handler) waited forever for the lock its own thread
held.  A burst of SIGCHLD -- every child stopping at once -- did that now
and then, and ``wirepool stop`` then timed out.  Here the burst is forced:
20 000 signals, then a stop that must end at once."""

from __future__ import annotations

import os
import signal
import subprocess

from conftest import Services, Tracker, cli, wait_for


def test_a_signal_storm_leaves_the_supervisor_able_to_stop(
    services: Services, tracker: Tracker
) -> None:
    for name in ("a", "b", "c"):
        services.add(name)
    sup = tracker.supervisor("servicedir", str(services.root), stderr=subprocess.DEVNULL)
    wait_for(lambda: len(sup.of("spawned")) == 3, timeout=60)
    for n in range(20_000):
        os.kill(sup.proc.pid, signal.SIGHUP if n % 2 else signal.SIGCHLD)
    done = cli("stop", "servicedir", str(services.root), "--children", "--timeout", "30")
    assert done.returncode == 0, done.stderr
    assert sup.wait_exit() == 0
    assert len(sup.of("stopped")) == 3
