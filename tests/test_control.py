"""The operator's verbs through the Python API and :class:`wirepool.Client`
(the control socket), on real processes: restart (an adopted child too),
down and up, signal, reset, live status, the event stream, and names."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import tenacity
from conftest import Tracker, alive, wait_for

from wirepool import (
    Client,
    CommandSpawner,
    ControlError,
    NoSupervisorError,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
)
from wirepool._control import socket_path
from wirepool._names import Named, NameProblem, resolve, resolve_all

FAST = RestartPolicy(wait=tenacity.wait_fixed(0.2))


def _pool(tracker: Tracker, tmp_path: Path, *sessions: Session, **kw: object) -> SessionPool:
    return tracker.attach(
        SessionPool(
            StaticDiscovery(list(sessions)),
            spawner=CommandSpawner(["sleep", "1000"]),
            restart=FAST,
            state_dir=tmp_path / "state",
            stop_grace=2.0,
            durable=False,
            **kw,  # type: ignore[arg-type]
        )
    )


def _running(pool: SessionPool, name: str, not_pid: int | None = None) -> int | None:
    snap = pool.snapshot()
    if name in snap and snap[name].state == "running" and snap[name].pid != not_pid:
        return snap[name].pid
    return None


def test_restart_gives_a_new_child_at_once_not_counted_as_a_failure(
    tracker: Tracker, tmp_path: Path
) -> None:
    with _pool(tracker, tmp_path, Session("a", tmp_path)) as pool:
        old = wait_for(lambda: _running(pool, "a"))
        result = pool.restart("a")
        assert result["sessions"] == [{"name": "a", "key": "a", "outcome": f"restarting pid {old}"}]
        new = wait_for(lambda: _running(pool, "a", not_pid=old))
        assert not alive(old)
        snap = pool.snapshot()["a"]
        assert snap.streak == 0  # not a failure: no backoff, no rapid-failure count
        assert [e.pid for e in tracker.kinds("a", "spawned")] == [old, new]
        assert not tracker.kinds("a", "backoff")


def test_restart_of_a_child_adopted_from_an_earlier_supervisor(
    tracker: Tracker, tmp_path: Path
) -> None:
    first = _pool(tracker, tmp_path, Session("a", tmp_path), on_exit="leave")
    with first:
        old = wait_for(lambda: _running(first, "a"))
    assert alive(old)  # left for the next supervisor
    second = _pool(tracker, tmp_path, Session("a", tmp_path))
    with second:
        wait_for(lambda: tracker.kinds("a", "adopted"))
        with Client(second.state_dir) as client:
            result = client.restart("a", wait=True)
        new = result["sessions"][0]["pid"]
        assert new not in (None, old)
        wait_for(lambda: not alive(old))
        wait_for(lambda: _running(second, "a") == new)


def test_down_stops_the_child_until_up_and_is_kept_in_the_record(
    tracker: Tracker, tmp_path: Path
) -> None:
    with _pool(tracker, tmp_path, Session("a", tmp_path), Session("b", tmp_path)) as pool:
        old = wait_for(lambda: _running(pool, "a"))
        other = wait_for(lambda: _running(pool, "b"))
        assert pool.down("a")["sessions"][0]["outcome"] == f"down; stopping pid {old}"
        snap = pool.wait_until(lambda s: s["a"].state == "down")
        assert snap["a"].reason.startswith("down by operator since ")
        assert not alive(old)
        record = json.loads((pool.state_dir / "sessions" / "a.json").read_text())
        assert record["down"] is True and isinstance(record["down_since"], float)
        assert pool.down("a")["sessions"][0]["outcome"] == "already down"
        with pytest.raises(ControlError) as refused:
            pool.restart("a")
        assert refused.value.code == "down"
        assert _running(pool, "b") == other  # the other session is untouched
        assert pool.up("a")["sessions"][0]["outcome"] == "up"
        wait_for(lambda: _running(pool, "a", not_pid=old))
        record = json.loads((pool.state_dir / "sessions" / "a.json").read_text())
        assert record["down"] is False


def test_signal_reaches_the_child(tracker: Tracker, tmp_path: Path) -> None:
    got = tmp_path / "got"
    script = tmp_path / "trap.sh"
    ready = tmp_path / "ready"
    # Until sh has run the trap line a SIGHUP ends it (its default action):
    # the signal goes only once it says the trap is set.
    script.write_text(
        f"trap 'echo hup >> {got}' HUP\n: > {ready}\nwhile true; do sleep 0.05; done\n"
    )
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("t", tmp_path)]),
            spawner=CommandSpawner(["sh", str(script)]),
            state_dir=tmp_path / "state",
            stop_grace=2.0,
            durable=False,
        )
    )
    with pool:
        pid = wait_for(lambda: _running(pool, "t"))
        wait_for(ready.exists)
        with Client(pool.state_dir) as client:
            out = client.signal("t", "HUP")
        assert out["sessions"][0]["outcome"] == f"sent SIGHUP to pid {pid}"
        wait_for(lambda: got.exists() and got.read_text() == "hup\n")
        assert _running(pool, "t") == pid  # a reload, not a restart


def test_live_status_has_no_file_lag(tracker: Tracker, tmp_path: Path) -> None:
    # status.json is written at most every 0.25 s; the socket answers from
    # memory, so a child spawned a moment ago is already there.
    pool = _pool(tracker, tmp_path, Session("a", tmp_path))
    pool.status_interval = 3600.0  # the file would lag an hour
    with pool, Client(pool.state_dir) as client:
        first = wait_for(lambda: _running(pool, "a"))
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: _running(pool, "a", not_pid=first))
        doc = client.status()
        assert doc["live"] is True and doc["supervisor"]["pid"] == os.getpid()
        [entry] = doc["sessions"]
        assert (entry["name"], entry["state"], entry["pid"]) == ("a", "running", second)
        assert client.status("a")["sessions"][0]["pid"] == second
        assert doc["last_minute"] == {"spawned": 2, "exited": 1}
        hello = client.hello()
        assert hello["protocol"] == 1 and hello["sessions"] == 1


def test_reset_and_rescan(tracker: Tracker, tmp_path: Path) -> None:
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("f", tmp_path)]),
            spawner=CommandSpawner(["false"]),
            restart=RestartPolicy(tenacity.wait_fixed(3600), tenacity.stop_after_attempt(2)),
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool, Client(pool.state_dir) as client:
        pool.wait_until(lambda s: s["f"].state in ("failed", "backoff"))
        spawned = len(tracker.kinds("f", "spawned"))
        assert client.reset("f")["sessions"][0]["outcome"].startswith("reset (was ")
        wait_for(lambda: len(tracker.kinds("f", "spawned")) > spawned)  # tried again now
        client.rescan()


def test_event_stream_delivers_what_run_json_prints(tracker: Tracker, tmp_path: Path) -> None:
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("c", tmp_path)]),
            spawner=CommandSpawner(["sh", "-c", "exit 3"]),
            restart=FAST,
            state_dir=tmp_path / "state",
            durable=False,
        )
    )
    with pool:
        with Client(pool.state_dir).events() as events:
            seen = []
            for event in events.iter(until=time.monotonic() + 60):
                seen.append(event)
                if sum(e["event"] == "exited" for e in seen) >= 3:
                    break
        exits = [e for e in seen if e["event"] == "exited"]
        assert len(exits) >= 3
        assert all(e["session"] == "c" and e["key"] == "c" and e["code"] == 3 for e in exits)
        # the very objects `run --json` prints for the same events
        printed = [e.to_json() for e in list(tracker.events) if e.kind == "exited"]
        assert all(e in printed for e in exits)


def test_names_display_name_key_and_home_ambiguity_and_close_matches(
    tracker: Tracker, tmp_path: Path
) -> None:
    homes = [tmp_path / "h1", tmp_path / "h2", tmp_path / "h3"]
    for h in homes:
        h.mkdir()
    sessions = [
        Session("by-key/1111", homes[0], attrs={"display_name": "real-0"}),
        Session("by-key/2222", homes[1], attrs={"display_name": "twin"}),
        Session("by-key/3333", homes[2], attrs={"display_name": "twin"}),
    ]
    with _pool(tracker, tmp_path, *sessions) as pool:
        pool.wait_until(lambda s: all(s[k].state == "running" for k in s.sessions))
        with Client(pool.state_dir) as client:
            doc = client.status()
            assert {(s["name"], s["key"]) for s in doc["sessions"]} == {
                ("real-0", "by-key/1111"),
                ("twin", "by-key/2222"),
                ("twin", "by-key/3333"),
            }
            assert client.status("real-0")["sessions"][0]["key"] == "by-key/1111"
            assert client.status("by-key/2222")["sessions"][0]["name"] == "twin"
            assert client.status(str(homes[2]))["sessions"][0]["key"] == "by-key/3333"
            with pytest.raises(ControlError) as ambiguous:
                client.restart("twin")
            assert ambiguous.value.code == "ambiguous-session"
            assert ambiguous.value.candidates == ["by-key/2222", "by-key/3333"]
            with pytest.raises(ControlError) as unknown:
                client.down("real-O", "real-0")
            assert unknown.value.code == "unknown-session"
            assert "did you mean real-0?" in str(unknown.value)
        # nothing was acted on: all or nothing
        assert all(s.state == "running" for s in pool.snapshot().sessions.values())
        assert tracker.kinds("real-0", "spawned")  # events name the display name
        assert all(e.key == "by-key/1111" for e in tracker.kinds("real-0", "spawned"))


def test_no_supervisor(tmp_path: Path) -> None:
    with pytest.raises(NoSupervisorError):
        Client(tmp_path / "never").status()
    (tmp_path / "state").mkdir(mode=0o700)
    with pytest.raises(NoSupervisorError, match="no supervisor is running"):
        Client(tmp_path / "state").restart("a")


def test_api_refuses_when_the_pool_is_not_running(tracker: Tracker, tmp_path: Path) -> None:
    pool = _pool(tracker, tmp_path, Session("a", tmp_path))
    with pytest.raises(RuntimeError, match="not running"):
        pool.restart("a")
    with pool:
        wait_for(lambda: _running(pool, "a"))
    assert not socket_path(pool.state_dir).exists()  # removed at the stop


def test_a_pool_without_control_opens_no_socket(tracker: Tracker, tmp_path: Path) -> None:
    with _pool(tracker, tmp_path, Session("a", tmp_path), control=False) as pool:
        wait_for(lambda: _running(pool, "a"))
        assert not socket_path(pool.state_dir).exists()
        assert pool.down("a")["sessions"][0]["outcome"].startswith("down; stopping")


# ---------------------------------------------------------------- pure logic


def test_resolve_prefers_key_then_name_then_home() -> None:
    named = {
        "a": Named("a", "b", "/h/a"),
        "b": Named("b", "x", "/h/b"),
        "c": Named("c", "c", "/h/c"),
    }
    assert resolve("b", named) == "b"  # a key wins over another's display name
    assert resolve("x", named) == "b"
    assert resolve("/h/c", named) == "c"
    assert resolve_all(["x", "b", "c"], named) == ["b", "c"]
    with pytest.raises(NameProblem) as exc:
        resolve("zz", named)
    assert exc.value.code == "unknown-session" and exc.value.candidates == []
