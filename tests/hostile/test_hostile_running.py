"""Garbage planted under a *running* supervisor (a real ``wirepool run``
subprocess): it keeps supervising the healthy sessions, untouched, and
marks each bad one with a reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from conftest import (
    WIREPOOL,
    Services,
    Supervisor,
    Tracker,
    status_sessions,
    wait_exec,
    wait_for,
)
from wirepool_wire import layout
from wirepool_wire.fake_wire import install_fake_wire
from wirepool_wire.fixtures import make_home

from wirepool._control import connect
from wirepool._proc import ProcessIdentity, is_alive, signal_group


def _kill_child(session: dict[str, Any]) -> None:
    """SIGKILL the child status.json names, by its recorded identity."""
    ident = ProcessIdentity(session["pid"], session["process_start"])
    assert signal_group(ident, signal.SIGKILL)


def _state(state_dir: Path, name: str) -> dict[str, Any]:
    return status_sessions(state_dir).get(name, {})


def _stop(args: list[str], sup: Supervisor) -> None:
    result = subprocess.run(
        [*WIREPOOL, "stop", *args, "--children"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sup.wait_exit() == 0


def test_garbage_planted_under_a_running_servicedir_supervisor(
    services: Services, tracker: Tracker
) -> None:
    for name in ("a", "b", "victim", "envbad"):
        services.add(name)
    sup = tracker.supervisor("servicedir", str(services.root), "--grace", "1")
    state = services.state_dir
    try:
        wait_for(
            lambda: all(
                _state(state, n).get("state") == "running" for n in ("a", "b", "victim", "envbad")
            ),
            timeout=30,
        )
        healthy = {n: _state(state, n)["pid"] for n in ("a", "b")}
        victim, envbad = _state(state, "victim"), _state(state, "envbad")
        # "running" is written once the child is spawned; its shell reads
        # ./run a moment later, and would read the garbage below and exit
        # (a CI run met it: the victim was gone before the SIGKILL)
        wait_exec(victim["pid"], envbad["pid"])

        # run replaced by binary garbage (still mode 0755, still ours)
        run = services.root / "victim" / "run"
        run.write_bytes(os.urandom(512).replace(b"#!", b"xx"))
        run.chmod(0o755)
        # env/ that is a file of garbage instead of a directory
        (services.root / "envbad" / "env").write_bytes(b"\xff\x00garbage")
        # new entries that are all wrong in their own way
        services.add("evil\x1b]0;owned\x07\n")
        (services.root / "fifo").mkdir()
        os.mkfifo(services.root / "fifo" / "run")
        (services.root / "loop").mkdir()
        (services.root / "loop" / "run").symlink_to("run")
        (services.root / "dangling").symlink_to(services.root / "nowhere")
        (services.root / "selfloop").symlink_to("selfloop")
        (services.root / "notadir").write_bytes(b"\x00" * 64)
        # and a garbage operator request on the control socket
        with connect(state) as sock:
            sock.sendall(b"\xff[[[[\n")
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request"
        _kill_child(victim)
        _kill_child(envbad)
        sup.proc.send_signal(signal.SIGHUP)

        def marked() -> bool:
            v, e, f = _state(state, "victim"), _state(state, "envbad"), _state(state, "fifo")
            return (
                "Exec format error" in v.get("reason", "")
                and "Not a directory" in e.get("reason", "")
                and f.get("reason") == "run is not a regular file"
                and _state(state, "evil\x1b]0;owned\x07\n").get("state") == "running"
            )

        wait_for(marked, timeout=30)
        assert _state(state, "victim")["state"] == "backoff"
        assert _state(state, "envbad")["state"] == "backoff"
        assert "loop" not in status_sessions(state)  # a `run` we cannot stat: no service
        # the healthy ones were never touched: same processes, still alive
        assert {n: _state(state, n)["pid"] for n in ("a", "b")} == healthy
        for name in ("a", "b"):
            s = _state(state, name)
            assert is_alive(ProcessIdentity(s["pid"], s["process_start"]))
            assert s["restarts"] == 0
        assert sup.proc.poll() is None
        status = subprocess.run(
            [*WIREPOOL, "status", "servicedir", str(services.root), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["supervisor"]["alive"] is True
    finally:
        _stop(["servicedir", str(services.root)], sup)


def test_garbage_wire_files_under_a_running_wire_supervisor(
    tracker: Tracker, tmp_path: Path
) -> None:
    root = tmp_path / "sessions"
    wire_bin = install_fake_wire(tmp_path / "bin", version="0.16.0")
    homes = {k: make_home(root, k) for k in ("good", "pidjunk", "cardjunk")}
    keys = {k: str(h.relative_to(root)) for k, h in homes.items()}
    sup = tracker.supervisor(
        "wire", "--sessions-root", str(root), "--wire-bin", str(wire_bin), "--grace", "1"
    )
    state = root / ".wirepool"
    try:
        wait_for(
            lambda: all(_state(state, keys[k]).get("state") == "running" for k in homes),
            timeout=60,
        )
        good_pid = _state(state, keys["good"])["pid"]
        pidjunk = _state(state, keys["pidjunk"])
        (root / "registry.json").write_bytes(b'{"by_cwd": [[[')
        layout.card_path(homes["cardjunk"]).write_bytes(b"\xff\xfe not json")
        pidfile = layout.daemon_pid_path(homes["pidjunk"])
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_bytes(b"[" * 50_000)
        (homes["good"] / "state" / "wire").mkdir(parents=True, exist_ok=True)
        (homes["good"] / "state" / "wire" / "last_sync.json").write_bytes(b"\x00\x01garbage")
        _kill_child(pidjunk)

        def marked() -> bool:
            p = _state(state, keys["pidjunk"])
            return (
                p.get("state") == "running"
                and p.get("pid") != pidjunk["pid"]
                and "ignored unusable state/wire/daemon.pid" in p.get("reason", "")
                and keys["cardjunk"] not in status_sessions(state)
            )

        wait_for(marked, timeout=60)
        assert "neither a JSON pid record" in _state(state, keys["pidjunk"])["reason"]
        assert _state(state, keys["good"])["pid"] == good_pid
        assert sup.proc.poll() is None
        status = subprocess.run(
            [*WIREPOOL, "status", "wire", "--sessions-root", str(root), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        doc = json.loads(status.stdout)
        assert str(homes["cardjunk"]) in doc["husks"]  # reported, never deleted
        assert homes["cardjunk"].is_dir()
    finally:
        _stop(["wire", "--sessions-root", str(root)], sup)
