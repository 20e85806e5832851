"""``find_children``: which processes on this host are a pool's children,
found without any state record -- real processes, real ``/proc``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from wirepool._proc import identity_of
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


def _our_descriptors_on(path: Path) -> list[int]:
    """This process's descriptors open on ``path``'s inode."""
    want = (path.stat().st_dev, path.stat().st_ino)
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            st = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == want:
            found.append(int(fd))
    return found


def test_an_identity_file_is_finished_in_place_with_no_descriptor_kept_meanwhile(
    tmp_path: Path, leaders: list[subprocess.Popen[bytes]]
) -> None:
    """Between the spawn and the commit (a whole batch of spawns, in a
    burst) the supervisor holds no descriptor of the file; the commit then
    writes the same inode the child holds, so what the child's descriptor
    reads is the finished file named ``<pid>.held``."""
    markers = tmp_path / "markers"
    held = _HeldFile.create(markers, {POOL_MARKER: OURS, SESSION_MARKER: "redis", "HOME": "/"})
    assert held is not None
    try:
        assert _our_descriptors_on(held.tmp) == [held.child_fd]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("WIREPOOL_")}
        pid = start_leader(leaders, clean, held)
        held.spawned()
        assert _our_descriptors_on(held.tmp) == []
        ident = identity_of(pid)
        assert ident is not None
        held.commit(ident)
        final = markers / f"{pid}.held"
        assert not held.tmp.exists()
        assert _our_descriptors_on(final) == []
        data = json.loads(final.read_text())
        assert data["start"] == ident.start and data["boot"]
        assert {k: data[k] for k in (POOL_MARKER, SESSION_MARKER)} == {
            POOL_MARKER: OURS,
            SESSION_MARKER: "redis",
        }
        assert "HOME" not in data  # only the markers are kept
        # the child's own descriptor is on the finished file
        [child_fd] = [
            fd
            for fd in os.listdir(f"/proc/{pid}/fd")
            if os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(final)
        ]
        assert json.loads(Path(f"/proc/{pid}/fd/{child_fd}").read_text()) == data
    finally:
        held.discard()
