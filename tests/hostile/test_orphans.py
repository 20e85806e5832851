"""A child that leaves its process group (``setsid sleep &``) used to leak
one process per restart, and ``stop --children`` left them all.  The
supervisor is now their subreaper: they are stopped with their session,
reaped, and stopped with the pool."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Services, Tracker, cli, wait_for

from wirepool._proc import ProcessIdentity, identity_of, is_alive, parent_pid

# Each start leaves one process outside its group, then the child exits
# (a rapid failure: restarted after 1 s, then 2 s).  The orphan writes its
# pid where the test can find it.
LEAKY = """#!/bin/sh
setsid sh -c 'echo $$ >> orphans; exec sleep 1000' &
sleep 0.3
exit 1
"""


class Orphans:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.idents: dict[int, ProcessIdentity] = {}

    def pids(self) -> list[int]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        pids = [int(p) for p in text.split() if p.isdigit()]
        for pid in pids:
            ident = identity_of(pid)
            if ident is not None:
                self.idents.setdefault(pid, ident)
        return pids

    def alive(self) -> list[int]:
        return [p for p in self.pids() if p in self.idents and is_alive(self.idents[p])]


@pytest.fixture
def orphans(services: Services) -> Iterator[Orphans]:
    found = Orphans(services.add("leaky", LEAKY) / "orphans")
    try:
        yield found
    finally:
        found.pids()
        for ident in found.idents.values():
            if is_alive(ident):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ident.pid, signal.SIGKILL)


def test_orphans_are_stopped_with_their_session_reaped_and_stopped_with_the_pool(
    services: Services, tracker: Tracker, orphans: Orphans
) -> None:
    sup = tracker.supervisor("servicedir", str(services.root), stderr=subprocess.DEVNULL)
    supervisor_pid = sup.proc.pid
    # Three starts: each earlier orphan must be gone by the time of the next
    wait_for(lambda: len(orphans.pids()) >= 3, timeout=60)
    earlier = orphans.pids()[:-1]
    for pid in earlier:
        assert pid in orphans.idents, "an orphan exited on its own: the test proves nothing"
    wait_for(lambda: not (set(orphans.alive()) & set(earlier)), timeout=30)
    # ...and reaped: no zombie is left under the supervisor
    wait_for(lambda: all(parent_pid(p) != supervisor_pid for p in earlier), timeout=30)

    # `stop --children` takes the last one with it
    latest = orphans.pids()[-1]
    done = cli("stop", "servicedir", str(services.root), "--children")
    assert done.returncode == 0, done.stderr
    assert sup.wait_exit() == 0
    wait_for(lambda: latest not in orphans.alive(), timeout=30)
    assert orphans.alive() == []


def test_a_daemon_in_its_own_session_that_stays_is_not_touched_by_a_restart_of_another(
    services: Services, tracker: Tracker, orphans: Orphans
) -> None:
    # Orphans are matched by their session's marker: another session's
    # restarts leave a service that runs fine alone.
    services.add("steady")
    sup = tracker.supervisor("servicedir", str(services.root), stderr=subprocess.DEVNULL)
    steady = wait_for(lambda: [e for e in sup.of("spawned") if e.get("session") == "steady"])
    pid = steady[0]["pid"]
    wait_for(lambda: len(orphans.pids()) >= 2, timeout=60)
    assert [e for e in sup.of("spawned") if e.get("session") == "steady"] == steady
    assert identity_of(pid) is not None
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
