"""A session's configuration changes while its child runs: status says the
child runs from an older configuration; ``restart_on_change`` restarts it;
a configuration that no longer parses keeps the running child (and says
why) instead of stopping it.  Real children, real files, real supervisors."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conftest import Services, Tracker, alive, cli, status_sessions, wait_for
from wirepool_servicedir import servicedir_spec

from wirepool import (
    CommandSpawner,
    ConfigError,
    DirectoryScan,
    Session,
    SessionPool,
    Snapshot,
)


def up(snap: Snapshot, name: str, not_pid: int | None = None) -> bool:
    s = snap.sessions.get(name)
    return s is not None and s.state == "running" and s.pid not in (None, not_pid)


def test_an_edited_env_file_is_shown_and_restarts_only_when_asked(
    services: Services, tracker: Tracker
) -> None:
    home = services.add("web", env={"PORT": "8001"})
    spec = servicedir_spec(services.root, on_exit="stop", rescan_interval=0.5)
    pool = tracker.attach(spec.pool("servicedir", durable=False))
    with pool:
        pid = pool.wait_until(lambda s: up(s, "web"))["web"].pid
        assert not pool.snapshot()["web"].outdated
        (home / "env" / "PORT").write_text("8002")
        snap = pool.wait_until(lambda s: s["web"].outdated)
        assert snap["web"].pid == pid  # shown, not acted on
        assert "started from an older configuration" in snap["web"].reason
        (home / "env" / "PORT").write_text("8001")  # edited back: current again
        pool.wait_until(lambda s: not s["web"].outdated)

    pool = tracker.attach(spec.pool("servicedir", durable=False, restart_on_change=True))
    with pool:
        pid = pool.wait_until(lambda s: up(s, "web"))["web"].pid
        (home / "run").write_text("#!/bin/sh\n# a comment is a change too\nexec sleep 1000\n")
        snap = pool.wait_until(lambda s: up(s, "web", not_pid=pid), timeout=30)
        web = snap["web"]
        assert web.restarts == 1 and web.streak == 0 and not web.outdated  # not a failure
        stopped = [e for e in tracker.kinds("web", "exited") if e.pid == pid]
        assert stopped and stopped[0].reason == "configuration changed; restarting"
        assert not alive(pid)


def test_an_env_directory_made_later_is_watched_with_no_timer(
    services: Services, tracker: Tracker
) -> None:
    # servicedir keeps which services have an env/ as it looks at each one,
    # not by a look at every service's env/ on every change: one made after
    # the start is watched once its service's change is looked at.
    home = services.add("web")
    spec = servicedir_spec(services.root, on_exit="stop", rescan_interval=300.0)
    pool = tracker.attach(spec.pool("servicedir", durable=False))
    with pool:
        pool.wait_until(lambda s: up(s, "web"))
        (home / "env").mkdir()

        def edited() -> bool:
            # written again until the watch on env/ (added when the mkdir's
            # event was looked at) reports it
            (home / "env" / "PORT").write_text("8002")
            return pool.snapshot()["web"].outdated

        wait_for(edited, timeout=20, interval=0.2)


def read_conf(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads((path / "conf.json").read_text())
    except ValueError as exc:
        raise ConfigError(f"conf.json is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("port"), int):
        raise ConfigError("conf.json needs an integer port")
    return {"port": data["port"]}


def test_a_config_that_no_longer_parses_keeps_the_running_child(
    tmp_path: Path, tracker: Tracker
) -> None:
    root = tmp_path / "root"
    for name in ("kv", "typo"):
        (root / name).mkdir(parents=True)
    (root / "kv" / "conf.json").write_text('{"port": 7001}')
    (root / "typo" / "conf.json").write_text("{port: 7002")
    spawner = CommandSpawner(lambda s: ["sleep", f"{1000 + s.attrs['port']}"])
    pool = tracker.attach(
        SessionPool(
            DirectoryScan(root, marker="conf.json", attrs=read_conf),
            None,
            spawner,
            state_dir=tmp_path / "state",
            durable=False,
            rescan_interval=0.5,
            restart_on_change=True,
        )
    )
    with pool:
        snap = pool.wait_until(lambda s: up(s, "kv") and "typo" in s)
        pid = snap["kv"].pid
        assert snap["typo"].state == "ineligible"  # never started on a broken file
        assert "conf.json is not JSON" in snap["typo"].reason

        (root / "kv" / "conf.json").write_text('{"port": 70')  # a typo mid-edit
        snap = pool.wait_until(lambda s: "conf.json is not JSON" in s["kv"].reason)
        assert snap["kv"].state == "running" and snap["kv"].pid == pid
        assert "keeping its last state" in snap["kv"].reason

        (root / "kv" / "conf.json").write_text('{"port": 7003}')  # fixed, and changed
        snap = pool.wait_until(lambda s: up(s, "kv", not_pid=pid), timeout=30)
        assert snap["kv"].streak == 0 and "not JSON" not in snap["kv"].reason
        assert not alive(pid)


def test_a_change_made_while_no_supervisor_ran_restarts_the_adopted_child(
    services: Services, tracker: Tracker
) -> None:
    home = services.add("web")
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: first.of("spawned"))
    pid = first.of("spawned")[0]["pid"]
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    (home / "run").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import time; time.sleep(1000)'\n"
    )
    (home / "run").chmod(0o755)

    # Without the flag: adopted, and marked as running an older configuration.
    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: second.of("adopted"))
    # status.json may still be the one written before its first pass
    wait_for(lambda: status_sessions(services.state_dir).get("web", {}).get("outdated"))
    assert alive(pid) and second.of("spawned") == []
    second.proc.send_signal(signal.SIGKILL)
    second.wait_exit()

    third = tracker.supervisor("servicedir", str(services.root), "--restart-on-change")
    wait_for(lambda: third.of("spawned"))
    wait_for(lambda: not alive(pid))
    assert [e["pid"] for e in third.of("adopted")] == [pid]
    wait_for(lambda: status_sessions(services.state_dir).get("web", {}).get("outdated") is False)
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert third.wait_exit() == 0
    new = third.of("spawned")[0]["pid"]
    wait_for(lambda: not alive(new))
    assert os.path.exists(home / "run")


def test_a_spawn_after_a_fingerprint_starts_what_the_fingerprint_described(
    tmp_path: Path,
) -> None:
    # The pool fingerprints a session right before spawning it: the child
    # gets the environment that fingerprint was taken of, built once.
    calls: list[int] = []

    def env_for(session: Session) -> dict[str, str]:
        calls.append(1)
        return {"GENERATION": str(len(calls))}

    spawner = CommandSpawner(
        ["sh", "-c", 'printf "%s" "$GENERATION" > out'],
        env_for=env_for,
        log_dir=tmp_path / "logs",
    )
    home = tmp_path / "home"
    home.mkdir()
    session = Session(name="s", home=home)
    first = spawner.fingerprint(session)
    worker = spawner.spawn(session)
    status = wait_for(worker.poll)
    worker.close()
    assert status.code == 0
    assert (home / "out").read_text() == "1" and len(calls) == 1
    assert spawner.fingerprint(session) != first  # GENERATION 2 now
    other = spawner.spawn(Session(name="t", home=home))  # no fingerprint of its own
    assert wait_for(other.poll).code == 0
    other.close()
    assert (home / "out").read_text() == "3"
