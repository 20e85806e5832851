"""A big pool's status in parts: one session's change rewrites the part
that holds it, not the whole document, and ``StateDir.read_status`` still
returns the whole document.  Real processes, a real state directory."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import tenacity
from conftest import wait_for

import wirepool._publish
from wirepool import CommandSpawner, RestartPolicy, Session, SessionPool, StaticDiscovery
from wirepool._store import STATUS_PARTS, StateDir
from wirepool.testing import ProcessLedger, assert_no_leaks

FAST = RestartPolicy(wait=tenacity.wait_fixed(0.1))


def inodes(parts: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in parts.iterdir()}


def test_one_change_rewrites_one_part_and_the_reader_sees_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wirepool._publish, "STATUS_PARTS_ABOVE", 5)
    homes = []
    for i in range(12):
        home = tmp_path / f"s{i:02d}"
        home.mkdir()
        homes.append(Session(f"s{i:02d}", home))
    state = StateDir(tmp_path / "state")
    ledger = ProcessLedger()
    pool = ledger.watch(
        SessionPool(
            StaticDiscovery(homes),
            spawner=CommandSpawner(["sleep", "1000"]),
            restart=FAST,
            state_dir=state.root,
        )
    )
    try:
        pool.start()

        def everyone_running() -> dict[str, dict[str, object]] | None:
            doc = state.read_status()
            sessions = {s["name"]: s for s in (doc or {}).get("sessions", [])}
            ok = len(sessions) == 12 and all(s["state"] == "running" for s in sessions.values())
            return sessions if ok else None

        before = wait_for(everyone_running)
        # status.json itself is small: the sessions are in the parts
        head = json.loads(state.status_path.read_text())
        assert head["sessions"] == []
        assert head["session_parts"] == STATUS_PARTS
        assert len(list(state.status_parts_dir.iterdir())) == STATUS_PARTS
        assert list(before) == sorted(before)  # by name
        snap = pool.snapshot()
        assert {n: s["pid"] for n, s in before.items()} == snap.pids()

        old = inodes(state.status_parts_dir)
        victim = before["s07"]["pid"]
        assert isinstance(victim, int)
        os.kill(victim, signal.SIGKILL)

        def restarted() -> dict[str, dict[str, object]] | None:
            now = everyone_running()
            return now if now and now["s07"]["pid"] != victim else None

        after = wait_for(restarted)
        assert {n: s for n, s in after.items() if n != "s07"} == {
            n: s for n, s in before.items() if n != "s07"
        }
        new = inodes(state.status_parts_dir)
        rewritten = {name for name in old if old[name] != new[name]}
        part = wirepool._publish._part_of("s07")
        # the restart's part, not the whole status (12 sessions in 64 parts:
        # at most 12 parts hold any session, and only s07's changed)
        assert f"{part:02d}.json" in rewritten
        assert len(rewritten) < 12
    finally:
        pool.stop()
    assert_no_leaks(ledger)


def test_read_status_refuses_a_missing_part_and_ignores_a_bogus_count(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.status_parts_dir.mkdir()
    doc = {"schema": "wirepool.status/1", "sessions": [], "session_parts": 2}
    state.status_path.write_text(json.dumps(doc))
    state.status_part_path(0).write_text(json.dumps({"sessions": [{"name": "b"}, {"name": "a"}]}))
    with pytest.raises(FileNotFoundError):
        state.read_status()
    state.status_part_path(1).write_text(json.dumps({"sessions": [{"name": "c"}]}))
    got = state.read_status()
    assert got is not None
    assert [s["name"] for s in got["sessions"]] == ["a", "b", "c"]
    assert "session_parts" not in got
    state.status_part_path(1).write_text(json.dumps({"sessions": "nope"}))
    with pytest.raises(ValueError, match="no list of sessions"):
        state.read_status()
    for bogus in (0, -1, True, "2", 10**9):
        state.status_path.write_text(json.dumps({**doc, "session_parts": bogus}))
        assert state.read_status() == {k: v for k, v in doc.items() if k != "session_parts"}
