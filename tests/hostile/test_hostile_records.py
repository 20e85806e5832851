"""The pool's own state records, damaged between two supervisors: each bad
record costs its session its history, never the supervisor its life."""

from __future__ import annotations

import json
import time
from pathlib import Path

import tenacity
from conftest import Tracker

from wirepool import CommandSpawner, RestartPolicy, Session, SessionPool, StaticDiscovery
from wirepool._store import RECORD_SCHEMA

FAST = RestartPolicy(wait=tenacity.wait_exponential(multiplier=0.5, max=5), rapid_window=1.0)


def _pool(tmp_path: Path, tracker: Tracker, names: list[str]) -> SessionPool:
    homes = []
    for name in names:
        (tmp_path / name).mkdir(exist_ok=True)
        homes.append(Session(name=name, home=tmp_path / name))
    pool = SessionPool(
        StaticDiscovery(homes),
        spawner=CommandSpawner(["sleep", "1000"]),
        restart=FAST,
        state_dir=tmp_path / "state",
        durable=False,
        stop_grace=2.0,
    )
    return tracker.attach(pool)


def _record(name: str, **fields: object) -> dict[str, object]:
    return {"schema": RECORD_SCHEMA, "session": {"name": name, "home": "/"}, **fields}


def test_regression_unparsable_records_do_not_stop_the_supervisor_starting(
    tmp_path: Path, tracker: Tracker
) -> None:
    records = tmp_path / "state" / "sessions"
    records.mkdir(parents=True)
    # int(Infinity) raised OverflowError and json.load of deep nesting
    # RecursionError: neither was caught, and the supervisor died at every
    # start until someone deleted the file.
    (records / "inf.json").write_text(json.dumps(_record("inf", restarts=float("inf"))))
    (records / "deep.json").write_text("[" * 200_000)
    (records / "nul.json").write_text(json.dumps(_record("nul\0x")))
    (records / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    (records / "huge.json").write_text(json.dumps(_record("huge", streak=10**30)))
    names = ["inf", "deep", "nul", "bin", "huge", "ok"]
    with _pool(tmp_path, tracker, names) as pool:
        snap = pool.wait_until(lambda s: all(n in s and s[n].state == "running" for n in names))
        assert all(snap[n].restarts == 0 for n in names)
    kept = sorted(p.name.split(".json")[0] for p in records.glob("*.corrupt-*"))
    assert kept == ["bin", "deep", "huge", "inf", "nul"]


def test_regression_resumed_backoff_is_capped_by_the_policy(
    tmp_path: Path, tracker: Tracker
) -> None:
    # The record says "next start in a day" -- the wall clock jumped back a
    # day between two supervisors, or the file lies.  The streak (1) owes
    # at most the policy's first wait, and that is all the session waits.
    records = tmp_path / "state" / "sessions"
    records.mkdir(parents=True)
    later = time.time() + 86_400
    (records / "a.json").write_text(json.dumps(_record("a", streak=1, next_start_at=later)))
    with _pool(tmp_path, tracker, ["a"]) as pool:
        pool.wait_until(lambda s: "a" in s and s["a"].state == "running", timeout=20)


def test_regression_bad_pidfile_reason_reaches_the_session(
    tmp_path: Path, tracker: Tracker
) -> None:
    # PidfileCheck kept why it could not use a pidfile, but nothing read it:
    # the operator saw a child start and no word about the garbage file.
    from wirepool import PidfileCheck

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "daemon.pid").write_bytes(b"\xffjunk")
    pool = _pool(tmp_path, tracker, ["a", "b"])
    pool.health = PidfileCheck("daemon.pid")
    with pool:
        snap = pool.wait_until(lambda s: all(n in s and s[n].state == "running" for n in "ab"))
        assert "daemon.pid: neither an integer nor JSON" in snap["a"].reason
        assert "daemon.pid" not in snap["b"].reason


def test_regression_unserializable_attrs_do_not_kill_the_loop(
    tmp_path: Path, tracker: Tracker
) -> None:
    # A dict with a tuple key in one session's attrs: json.dumps raised
    # TypeError in the status write, which ran outside every except.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    odd = Session(name="a", home=tmp_path / "a", attrs={"map": {(1, 2): "x"}, "ok": 1})
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([odd, Session(name="b", home=tmp_path / "b")]),
            spawner=CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            durable=False,
            stop_grace=2.0,
        )
    )
    with pool:
        pool.wait_until(lambda s: all(n in s and s[n].state == "running" for n in "ab"))
        doc = json.loads((tmp_path / "state" / "status.json").read_text())
        attrs = {s["name"]: s["attrs"] for s in doc["sessions"]}
        assert attrs["a"] == {"ok": 1}
