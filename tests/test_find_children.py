"""``find_children``: which processes on this host are a pool's children,
found without any state record -- real processes, real ``/proc``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from wirepool.spawn import POOL_MARKER, SESSION_MARKER, _HeldFile, find_children

OURS = "a" * 16
THEIRS = "b" * 16


@pytest.fixture
def leaders() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def start_leader(
    started: list[subprocess.Popen[bytes]], env: Mapping[str, str], held: _HeldFile
) -> int:
    """A session leader (as every child of a pool is) holding ``held``'s
    read-only descriptor, returned once ``/proc`` shows its own environment:
    Popen returns during the exec, before the kernel has set the new
    environment up (until then ``/proc/PID/environ`` reads the parent's, or
    nothing), and a leader read then looks unmarked."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={**env, "LEADER_READY": "1"},
        start_new_session=True,
        pass_fds=(held.child_fd,),
        stdin=subprocess.DEVNULL,
    )
    started.append(proc)
    deadline = time.monotonic() + 30
    while b"LEADER_READY=1" not in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
        assert time.monotonic() < deadline, "the leader never showed its environment"
        time.sleep(0.005)
    return proc.pid


def test_an_identity_file_claims_an_unmarked_leader_not_one_marked_for_another_pool(
    tmp_path: Path, leaders: list[subprocess.Popen[bytes]]
) -> None:
    markers = tmp_path / "markers"
    held = _HeldFile.create(markers, {POOL_MARKER: OURS, SESSION_MARKER: "redis"})
    assert held is not None
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WIREPOOL_")}
        # Its variables read as nothing (a rewritten title): the file it
        # holds says whose it is.
        unmarked = start_leader(leaders, clean, held)
        # Another pool's child: its own marker says whose it is, whatever
        # it holds open.
        other = {**clean, POOL_MARKER: THEIRS, SESSION_MARKER: "redis"}
        theirs = start_leader(leaders, other, held)

        found = [ident.pid for ident in find_children(OURS, markers).get("redis", [])]
        assert unmarked in found
        assert theirs not in found
        # ...and the other pool finds it by its variables
        assert [i.pid for i in find_children(THEIRS, None)["redis"]] == [theirs]
    finally:
        held.discard()
