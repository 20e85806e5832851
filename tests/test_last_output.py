"""A failing session explains itself: the supervisor's start and exit lines
in its log, and the last lines a run wrote before it exited in its status
entry and its record -- with real supervisors, real ``run`` scripts and
real exits."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import tenacity
from conftest import WIREPOOL, Services, Tracker, alive, status_sessions, wait_for

from wirepool import (
    CallableSpawner,
    CommandSpawner,
    RestartPolicy,
    Session,
    SessionPool,
    Snapshot,
    StaticDiscovery,
    Worker,
)
from wirepool._tail import last_lines
from wirepool.errors import SpawnError

SENTENCE = "can't run as root without the -u switch"
MEMCACHED = f"#!/bin/sh\necho 'starting up'\necho \"{SENTENCE}\" >&2\nexit 64\n"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z wirepool: "
FAST = RestartPolicy(wait=tenacity.wait_fixed(0.2))


def _offline_status(root: Path) -> dict[str, object]:
    done = subprocess.run(
        [*WIREPOOL, "status", "servicedir", str(root), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr  # no supervisor running
    (entry,) = json.loads(done.stdout)["sessions"]
    assert isinstance(entry, dict)
    return entry


def test_a_failing_run_s_last_words_are_in_its_status_and_survive_the_supervisor(
    services: Services, tracker: Tracker
) -> None:
    services.add("memcached", MEMCACHED)
    sup = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    entry = wait_for(
        lambda: (
            status_sessions(services.state_dir).get("memcached", {}).get("last_exit")
            and status_sessions(services.state_dir)["memcached"]
        )
    )
    assert entry["last_exit"]["code"] == 64
    assert entry["last_output"] == ["starting up", SENTENCE]
    log = services.state_dir / "logs" / "memcached.log"
    assert entry["log"] == str(log)
    exits = wait_for(lambda: sup.of("exited"))
    assert exits[0]["last_output"] == ["starting up", SENTENCE]
    # the log shows the run between the supervisor's lines, in order
    first = log.read_text().splitlines()[:4]
    assert re.fullmatch(STAMP + "starting", first[0])
    assert first[1:3] == ["starting up", SENTENCE]
    assert re.fullmatch(STAMP + rf"pid {exits[0]['pid']} exited, code 64", first[3])
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    # no supervisor: `wirepool status` still shows them
    offline = _offline_status(services.root)
    assert offline["last_output"] == ["starting up", SENTENCE]
    assert offline["log"] == str(log)
    # a later supervisor that never runs it shows them from the record
    (services.root / "memcached" / "down").touch()
    later = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    record = json.loads((services.state_dir / "sessions" / "memcached.json").read_text())
    assert record["last_output"] == ["starting up", SENTENCE]
    assert record["log"] == str(log)
    shown = wait_for(
        lambda: (
            status_sessions(services.state_dir).get("memcached", {}).get("state") == "ineligible"
            and status_sessions(services.state_dir)["memcached"]
        )
    )
    assert shown["last_output"] == ["starting up", SENTENCE]
    assert shown["log"] == str(log)
    later.proc.send_signal(signal.SIGTERM)
    assert later.wait_exit() == 0


def test_an_adopted_child_s_exit_is_marked_and_its_output_kept(
    tmp_path: Path, tracker: Tracker
) -> None:
    spawner = CommandSpawner(["sh", "-c", "echo 'serving'; exec sleep 1000"])
    sessions = [Session("a", tmp_path)]

    def pool(on_exit: str) -> SessionPool:
        return tracker.attach(
            SessionPool(
                StaticDiscovery(sessions),
                spawner=spawner,
                state_dir=tmp_path / "state",
                on_exit=on_exit,  # type: ignore[arg-type]
                restart=FAST,
                durable=False,
            )
        )

    log = tmp_path / "state" / "logs" / "a.log"
    with pool("leave") as first:
        pid = first.wait_until(lambda s: "a" in s and s["a"].state == "running")["a"].pid
        wait_for(lambda: "serving" in log.read_text())
    assert pid is not None and alive(pid)
    with pool("stop") as second:
        second.wait_until(lambda s: "a" in s and s["a"].state == "adopted" and s["a"].pid == pid)
        os.kill(pid, signal.SIGKILL)
        snap = second.wait_until(lambda s: s["a"].last_exit is not None and s["a"].pid != pid)
        assert snap["a"].last_output == ("serving",)  # from before the adoption line
        assert snap["a"].log_path == str(log)
    lines = log.read_text().splitlines()
    adopted = lines.index(next(x for x in lines if f"wirepool: adopted pid {pid} (" in x))
    assert lines[adopted - 1] == "serving"
    assert re.fullmatch(
        STAMP + f"pid {pid} exited, status unknown \\(not our child\\)", lines[adopted + 1]
    )


def _fail_loudly(session: Session) -> None:
    print("python worker: config missing", flush=True)
    sys.exit(3)


def test_a_python_worker_s_last_output_is_kept(tmp_path: Path, tracker: Tracker) -> None:
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("py", tmp_path)]),
            spawner=CallableSpawner(_fail_loudly, log_format=None),
            state_dir=tmp_path / "state",
            restart=FAST,
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: "py" in s and s["py"].last_exit is not None, timeout=60)
    assert snap["py"].last_exit is not None and snap["py"].last_exit.code == 3
    assert snap["py"].last_output == ("python worker: config missing",)


def _restarts(snap: Snapshot) -> bool:
    return "a" in snap and snap["a"].restarts >= 3


def test_a_log_that_cannot_be_written_changes_nothing_else(
    tmp_path: Path, tracker: Tracker
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    spawner = CommandSpawner(["sh", "-c", "echo lost; exit 5"], log_dir=not_a_dir / "logs")
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("a", tmp_path)]),
            spawner=spawner,
            state_dir=tmp_path / "state",
            restart=FAST,
            durable=False,
        )
    )
    with pool:
        snap = pool.wait_until(_restarts, timeout=30)  # still restarted, again and again
    assert snap["a"].last_exit is not None and snap["a"].last_exit.code == 5
    assert snap["a"].log_path is None and snap["a"].last_output == ()
    assert not_a_dir.read_text() == ""


def test_marks_of_a_spawn_that_failed(services: Services, tracker: Tracker) -> None:
    svc = services.add("svc", "#!/bin/sh\nexec sleep 1000\n")
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("svc", svc)]),
            spawner=CommandSpawner(["./no-such-program"], cwd="{home}"),
            state_dir=services.state_dir,
            restart=FAST,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: "svc" in s and s["svc"].restarts + s["svc"].streak >= 2)
    lines = last_lines(services.state_dir / "logs" / "svc.log", 2)
    assert re.fullmatch(STAMP + "starting", lines[0])
    assert re.fullmatch(STAMP + "spawn failed: No such file or directory.*", lines[1])


class _RefusingSpawner(CommandSpawner):
    """A plugin's spawn that refuses before it opens any log."""

    def spawn(self, session: Session) -> Worker:
        raise SpawnError("not today")


def _fds_to(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                found.append(fd)
    return found


def test_a_spawn_that_takes_no_log_leaves_no_descriptor_of_it(
    services: Services, tracker: Tracker
) -> None:
    # The start line's opening is kept for the spawn to take; one that does
    # not take it (it failed first, or opens logs its own way) must not
    # leave the descriptor behind, spawn after spawn.
    svc = services.add("svc", "#!/bin/sh\nexec sleep 1000\n")
    log = services.state_dir / "logs" / "svc.log"
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("svc", svc)]),
            spawner=_RefusingSpawner(["./run"]),
            state_dir=services.state_dir,
            restart=FAST,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: "svc" in s and s["svc"].restarts + s["svc"].streak >= 3)
    assert _fds_to(log) == []
    lines = log.read_text().splitlines()
    assert len(lines) >= 6
    for start, failed in zip(lines[0::2], lines[1::2], strict=True):
        assert re.fullmatch(STAMP + "starting", start)
        assert re.fullmatch(STAMP + "spawn failed: not today", failed)
