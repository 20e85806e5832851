"""The control socket against bad clients: malformed, oversized and fuzzed
requests, a subscriber that stops reading, a client that pipelines without
reading, idle connections, and a second user.  The pool answers each with
an error or drops it, and goes on supervising; nothing stalls its loop."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AS_NOBODY, Tracker, alive, needs_second_user, reachable_dir, wait_for
from hypothesis import given
from hypothesis import strategies as st

from wirepool import Client, CommandSpawner, Session, SessionPool, StaticDiscovery
from wirepool._control import MAX_REQUEST, connect, decode_line, socket_path


@pytest.fixture
def pool(tracker: Tracker, tmp_path: Path) -> Iterator[SessionPool]:
    pool = tracker.attach(
        SessionPool(
            StaticDiscovery([Session("a", tmp_path), Session("b", tmp_path)]),
            spawner=CommandSpawner(["sleep", "1000"]),
            state_dir=tmp_path / "state",
            stop_grace=2.0,
            durable=False,
        )
    )
    with pool:
        pool.wait_until(lambda s: all(s[n].state == "running" for n in ("a", "b")))
        yield pool


def _replies(sock: socket.socket, lines: list[bytes]) -> list[dict[str, object]]:
    sock.sendall(b"".join(line + b"\n" for line in lines))
    reader = sock.makefile("rb")
    return [json.loads(reader.readline()) for _ in lines]


def _still_serving(pool: SessionPool) -> None:
    """The pool answers a verb and restarts a child: its loop is not stalled."""
    old = pool.snapshot()["b"].pid
    with Client(pool.state_dir, timeout=30) as client:
        new = client.restart("b", wait=True)["sessions"][0]["pid"]
    assert new != old and not alive(old)  # type: ignore[arg-type]


def test_malformed_requests_get_errors_and_the_connection_goes_on(pool: SessionPool) -> None:
    bad = {
        b"not json": "bad-request",
        b"[1, 2]": "bad-request",
        b'"a string"': "bad-request",
        b"\xff\xfe": "bad-request",
        b'{"v": 1, "op": "hello", "x": NaN}': "bad-request",
        b"[" * 3000 + b"]" * 3000: "bad-request",
        b'{"v": 1}': "bad-request",
        b'{"op": "hello"}': "bad-version",
        b'{"v": 2, "op": "hello"}': "bad-version",
        b'{"v": 1, "op": "explode"}': "unknown-op",
        b'{"v": 1, "op": "restart"}': "bad-request",
        b'{"v": 1, "op": "restart", "sessions": []}': "bad-request",
        b'{"v": 1, "op": "restart", "sessions": [1]}': "bad-request",
        b'{"v": 1, "op": "signal", "sessions": ["a"], "signal": "BOGUS"}': "bad-signal",
        b'{"v": 1, "op": "signal", "sessions": ["a"], "signal": 99999}': "bad-signal",
        b'{"v": 1, "op": "down", "sessions": ["zzz"]}': "unknown-session",
    }
    with connect(pool.state_dir) as sock:
        replies = _replies(sock, [*bad, b'{"v": 1, "id": "x", "op": "hello"}'])
    for (line, code), reply in zip(bad.items(), replies, strict=False):
        assert reply["ok"] is False, line
        assert reply["error"]["code"] == code, (line, reply)  # type: ignore[index]
    assert replies[-1]["ok"] is True and replies[-1]["id"] == "x"
    assert all(s.state == "running" for s in pool.snapshot().sessions.values())
    _still_serving(pool)


def test_an_oversized_request_is_refused_and_its_connection_closed(pool: SessionPool) -> None:
    with connect(pool.state_dir) as sock:
        sock.sendall(b'{"v": 1, "op": "hello", "pad": "' + b"x" * (MAX_REQUEST + 10))
        reader = sock.makefile("rb")
        reply = json.loads(reader.readline())
        assert reply["error"]["code"] == "too-large"
        assert reader.readline() == b""  # closed by the supervisor
    _still_serving(pool)


def test_a_subscriber_that_stops_reading_is_dropped(pool: SessionPool) -> None:
    assert pool._control is not None
    pool._control.max_backlog = 4096  # what 1 MiB is in production, made small
    lazy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    dir_fd = os.open(socket_path(pool.state_dir).parent, os.O_PATH)
    try:
        lazy.connect(f"/proc/self/fd/{dir_fd}/sock")
    finally:
        os.close(dir_fd)
    with lazy:
        lazy.sendall(b'{"v": 1, "op": "subscribe"}\n')
        wait_for(lambda: pool._control is not None and pool._control.subscribers == 1)
        # events it never reads: a few restarts' worth fill every buffer
        deadline = time.monotonic() + 120
        while pool._control.subscribers and time.monotonic() < deadline:
            pool.restart("a")
            pool.wait_until(lambda s: s["a"].state == "running", timeout=30)
        assert pool._control.subscribers == 0
        _still_serving(pool)


def test_a_client_that_pipelines_without_reading_does_not_stall_the_pool(
    pool: SessionPool,
) -> None:
    idle = [connect(pool.state_dir) for _ in range(20)]  # connect, never speak
    hog = connect(pool.state_dir, timeout=None)
    hog.setblocking(False)
    sent = 0
    request = b'{"v": 1, "op": "status"}\n' * 200
    try:
        for _ in range(200):  # until the kernel and the supervisor stop taking more
            try:
                sent += hog.send(request)
            except BlockingIOError:
                break
        assert sent > 0
        _still_serving(pool)
    finally:
        hog.close()
        for sock in idle:
            sock.close()
    _still_serving(pool)


def test_fuzzed_lines_never_break_the_server(pool: SessionPool) -> None:
    rng = random.Random(20261202)
    pieces = [b"{", b"}", b"[", b"]", b'"v"', b":", b"1", b",", b'"op"', b'"status"', b"\xff"]
    with connect(pool.state_dir) as sock:
        reader = sock.makefile("rb")
        for _ in range(300):
            if rng.random() < 0.5:
                line = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
            else:
                line = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30)))
            line = line.replace(b"\n", b" ")
            if not line.strip():
                continue
            sock.sendall(line + b"\n")
            reply = json.loads(reader.readline())
            assert set(reply) >= {"v", "ok"}
    _still_serving(pool)


@given(st.binary(max_size=200))
def test_decode_line_raises_only_value_error(raw: bytes) -> None:
    try:
        obj = decode_line(raw)
    except ValueError:
        return
    assert isinstance(obj, dict)


@needs_second_user
def test_a_second_user_is_refused(tracker: Tracker) -> None:
    probe = (
        "import json, os, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except OSError as e:\n"
        "    print(json.dumps({'errno': e.errno})); sys.exit()\n"
        "try:\n"  # refused at once: the reply (and the close) may come first
        '    s.sendall(b\'{"v": 1, "op": "down", "sessions": ["a"]}\\n\')\n'
        "except OSError:\n"
        "    pass\n"
        "print(s.makefile('rb').readline().decode())\n"
    )
    with reachable_dir("wirepool-ctl-") as top:
        home = top / "home"
        home.mkdir()
        pool = tracker.attach(
            SessionPool(
                StaticDiscovery([Session("a", home)]),
                spawner=CommandSpawner(["sleep", "1000"]),
                state_dir=top / "state",
                stop_grace=2.0,
                durable=False,
            )
        )
        with pool:
            pool.wait_until(lambda s: s["a"].state == "running")
            path = str(socket_path(pool.state_dir))

            def as_nobody() -> dict[str, object]:
                out = subprocess.run(
                    [*AS_NOBODY, sys.executable, "-c", probe, path],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert out.returncode == 0, out.stderr
                result: dict[str, object] = json.loads(out.stdout)
                return result

            # as made: the 0700 state and control directories keep nobody out
            assert as_nobody() == {"errno": 13}
            # a socket opened up by mistake: the kernel's word on the peer
            # (SO_PEERCRED) still refuses anyone but us and root
            os.chmod(pool.state_dir, 0o711)
            os.chmod(socket_path(pool.state_dir).parent, 0o711)
            os.chmod(path, 0o666)
            reply = as_nobody()
            assert reply["ok"] is False
            assert reply["error"]["code"] == "permission-denied"  # type: ignore[index]
            assert pool.snapshot()["a"].state == "running"  # nothing was done
