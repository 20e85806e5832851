"""Recovery of children that rewrote their process title, as redis does.

redis (``setproctitle`` in its source, as postgres, nginx workers and
Python's setproctitle do) overwrites the memory its argv and environment
were passed in with the new title and zeroes: ``/proc/PID/environ`` then
reads as nothing, and the ``WIREPOOL_*`` markers with it.  ``RETITLE``
below does exactly that from Python (ctypes ``memset`` over the ranges
``/proc/self/stat`` gives as arg_start..arg_end and env_start..env_end),
checks that it worked, and then sleeps: a real process, with a real
supervisor SIGKILLed and its state files deleted.  redis itself is not
installed here; this is the same write to the same memory."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from conftest import Services, Tracker, alive, cli, status_sessions, wait_for

RETITLE = r"""
import ctypes, os, sys, time
with open("/proc/self/stat", "rb") as fh:
    raw = fh.read()
fields = raw[raw.rfind(b")") + 2 :].split()
arg_start, arg_end, env_start, env_end = (int(x) for x in fields[45:49])
title = b"redis-server *:6379\0"
ctypes.memset(arg_start, 0, arg_end - arg_start)
ctypes.memmove(arg_start, title, min(len(title), arg_end - arg_start))
ctypes.memset(env_start, 0, env_end - env_start)
if "--close-fds" in sys.argv:
    os.closerange(3, 65536)
with open("/proc/self/environ", "rb") as fh:
    assert b"WIREPOOL_" not in fh.read(), "the environment was not wiped"
open("retitled", "w").close()
while True:
    time.sleep(1000)
"""


def retitling_service(services: Services, name: str, *args: str) -> Path:
    program = services.root.parent / "retitle.py"
    program.write_text(RETITLE)
    extra = " ".join(args)
    return services.add(name, f"#!/bin/sh\nexec {sys.executable} {program} {extra}\n")


def environ_of(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return fh.read()


def test_a_retitled_daemon_is_adopted_not_doubled_even_with_every_state_file_lost(
    services: Services, tracker: Tracker
) -> None:
    home = retitling_service(services, "redis")
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: first.of("spawned"))
    pid = first.of("spawned")[0]["pid"]
    wait_for((home / "retitled").exists)
    assert b"WIREPOOL_" not in environ_of(pid)  # the markers are gone for good

    # 1. The record is there, the markers are not: still ours to signal.
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: second.of("adopted"))
    assert [(e["pid"], e["owned"]) for e in second.of("adopted")] == [(pid, True)]

    # 2. Every record and identity file deleted as well: found by the
    # identity file it holds open, the one thing it cannot erase by accident.
    second.proc.send_signal(signal.SIGKILL)
    second.wait_exit()
    state = services.state_dir
    for path in [*(state / "sessions").iterdir(), *(state / "markers").iterdir()]:
        path.unlink()
    third = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: third.of("adopted"))
    assert [(e["pid"], e["owned"]) for e in third.of("adopted")] == [(pid, True)]
    assert third.of("spawned") == [] and first.of("spawned")[1:] == []
    wait_for(lambda: status_sessions(state).get("redis", {}).get("state") == "adopted")

    # ...and truly ours: a stop reaches it
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert third.wait_exit() == 0
    wait_for(lambda: not alive(pid))


def test_a_daemon_that_sheds_every_mark_is_watched_and_status_says_why(
    services: Services, tracker: Tracker
) -> None:
    # Its environment wiped *and* every inherited descriptor closed, its
    # record lost: nothing proves it is ours, so it is not signalled -- but
    # nor is a second one started beside it, silently.
    home = retitling_service(services, "redis", "--close-fds")
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: first.of("spawned"))
    pid = first.of("spawned")[0]["pid"]
    wait_for((home / "retitled").exists)
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    for path in (services.state_dir / "sessions").iterdir():
        path.unlink()

    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: second.of("adopted"))
    adopted = second.of("adopted")[0]
    assert (adopted["pid"], adopted["owned"]) == (pid, False)
    assert second.of("spawned") == []
    wait_for(lambda: status_sessions(services.state_dir).get("redis", {}).get("state"))
    doc = json.loads(cli("status", "servicedir", str(services.root), "--json").stdout)
    session = next(s for s in doc["sessions"] if s["name"] == "redis")
    assert session["state"] == "adopted" and session["pid"] == pid
    assert "watched, never signalled" in session["reason"]
    assert "not to start a second one" in session["reason"]

    # When it ends, the pool takes over at once.
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: second.of("spawned"))
    new = second.of("spawned")[0]["pid"]
    assert new != pid
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert second.wait_exit() == 0
    wait_for(lambda: not alive(new))
