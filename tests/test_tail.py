"""Reading logs from their end (``wirepool._tail``) and the supervisor's own
lines in them (``wirepool._logs.write_mark``): real files, real rotations
(``rotate_open_log``, and a real :class:`LogKeeper` behind a real child),
real inotify."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from wirepool import _logs
from wirepool._logs import (
    LogKeeper,
    exit_mark,
    format_mark,
    log_file_id,
    mark_pattern,
    open_child_log,
    open_log,
    open_log_dir,
    open_session_log,
    rotate_open_log,
    write_mark,
)
from wirepool._tail import Follower, follow, last_lines, last_output
from wirepool._types import ExitStatus

WALL = 1_796_203_332.25  # 2026-12-02T09:22:12.250Z


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir(mode=0o700)
    return path


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _mark(text: str, wall: float = WALL) -> str:
    return format_mark(text, wall).decode().rstrip("\n")


def _rotate(path: Path, max_bytes: int, backups: int = 2) -> bool:
    """What LogKeeper does to a live log, once, now."""
    dir_fd = open_log_dir(path.parent, create=False)
    try:
        fd = open_log(dir_fd, path.name, create=False, append=False)
        try:
            return rotate_open_log(dir_fd, path.name, fd, max_bytes, backups)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def _planted(logs: Path, tmp_path: Path) -> Path:
    """``logs/a.log`` planted as a link to a file outside; returns that file."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (logs / "a.log").symlink_to(victim)
    return victim


def _take(it: Iterator[str], n: int) -> list[str]:
    return [next(it) for _ in range(n)]


def _rchar() -> int:
    """Bytes this process has read through read(2) and friends so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# ------------------------------------------------------------- last_lines


def test_last_lines_are_the_last_n_with_an_unended_last_line(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100)) + b"no newline yet")
    assert last_lines(log, 3) == ["line 98", "line 99", "no newline yet"]
    assert last_lines(log, 1) == ["no newline yet"]
    log.write_bytes(b"one\r\ntwo\n\nthree\n")
    assert last_lines(log, 10) == ["one", "two", "", "three"]
    assert last_lines(log, 0) == []
    log.write_bytes(b"")
    assert last_lines(log, 5) == []


def test_last_lines_decode_bad_utf8_as_replacement(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"caf\xe9 \xff\xfe ok\n\xe2\x82\xac\n")
    assert last_lines(log, 2) == ["caf\ufffd \ufffd\ufffd ok", "€"]


def test_last_lines_keep_to_max_bytes(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"".join(b"line %03d\n" % i for i in range(100)))  # 9 bytes a line
    # 40 bytes hold four whole lines and the end of a fifth: the cut one goes
    assert last_lines(log, 10, max_bytes=40) == [f"line {i:03d}" for i in range(96, 100)]
    # one line longer than the bound: its end, marked as cut
    log.write_bytes(b"a" * 5000 + b"the end\n")
    assert last_lines(log, 3, max_bytes=100) == ["…" + "a" * 92 + "the end"]


def test_last_lines_read_only_the_end_of_a_huge_log(logs: Path) -> None:
    log = logs / "huge.log"
    with open(log, "wb") as fh:  # 4 GiB, sparse: nothing on disk but the end
        fh.truncate(4 << 30)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\nsecond to last\nthe last line\n")
    before = _rchar()
    assert last_lines(log, 2) == ["second to last", "the last line"]
    assert last_lines(log, 5, max_bytes=4096)[-1] == "the last line"
    assert _rchar() - before < 2 << 20  # a tail was read, not the log


def test_last_lines_refuse_a_symlink_and_a_fifo_and_name_a_missing_file(
    logs: Path, tmp_path: Path
) -> None:
    _planted(logs, tmp_path)
    with pytest.raises(OSError, match="symbolic link; not followed") as info:
        last_lines(logs / "a.log", 5)
    assert info.value.errno == errno.ELOOP
    os.mkfifo(logs / "fifo.log")
    with pytest.raises(OSError, match="not a regular file"):  # and no hang
        last_lines(logs / "fifo.log", 5)
    with pytest.raises(FileNotFoundError) as missing:
        last_lines(logs / "none.log", 5)
    assert missing.value.filename == str(logs / "none.log")


# ------------------------------------------------------------ marker lines


def test_write_mark_appends_one_stamped_line_that_starts_a_line(logs: Path) -> None:
    log = logs / "a.log"
    write_mark(log, "starting", WALL)
    assert log.read_text() == "2026-12-02T09:22:12.250Z wirepool: starting\n"
    assert log.stat().st_mode & 0o777 == 0o600
    _append(log, b"a child dying in mid-")
    write_mark(log, exit_mark(42, ExitStatus(code=64)), WALL + 1)
    write_mark(log, exit_mark(43, ExitStatus(signal=9)), WALL + 2)
    write_mark(log, "spawn failed: two\nlines", WALL + 3)
    assert log.read_text().splitlines()[1:] == [
        "a child dying in mid-",
        "2026-12-02T09:22:13.250Z wirepool: pid 42 exited, code 64",
        "2026-12-02T09:22:14.250Z wirepool: pid 43 exited, signal SIGKILL",
        "2026-12-02T09:22:15.250Z wirepool: spawn failed: two\\nlines",
    ]
    assert all(
        mark_pattern().match(line.encode())
        for line in log.read_text().splitlines()
        if "wirepool" in line
    )
    assert exit_mark(1, ExitStatus()) == "pid 1 exited, status unknown (not our child)"


def test_write_mark_follows_no_link_and_refuses_a_shared_directory(
    logs: Path, tmp_path: Path
) -> None:
    victim = _planted(logs, tmp_path)
    with pytest.raises(OSError, match="symbolic link"):
        write_mark(logs / "a.log", "starting", WALL)
    assert victim.read_text() == "keep\n"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        write_mark(shared / "a.log", "starting", WALL)
    assert list(shared.iterdir()) == []


def test_open_child_log_writes_the_start_line_and_hands_back_the_child_s_descriptor(
    logs: Path,
) -> None:
    import fcntl

    log = logs / "a.log"
    fd, file = open_child_log(log, format_mark("starting", WALL))
    try:
        # the child's own: write-only, appending, blocking, and the file's ids
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == os.O_WRONLY
        assert flags & os.O_APPEND and not flags & os.O_NONBLOCK
        assert file == (log.stat().st_dev, log.stat().st_ino) == log_file_id_of(log)
        os.write(fd, b"a child dying in mid-")
    finally:
        os.close(fd)
    assert log.stat().st_mode & 0o777 == 0o600
    fd, _ = open_child_log(log, format_mark("starting", WALL + 1))
    os.write(fd, b"the next run\n")
    os.close(fd)
    assert log.read_text().splitlines() == [
        "2026-12-02T09:22:12.250Z wirepool: starting",
        "a child dying in mid-",  # ended before the next start line
        "2026-12-02T09:22:13.250Z wirepool: starting",
        "the next run",
    ]


def test_open_child_log_follows_no_link_refuses_a_shared_directory_and_leaves_nothing_open(
    logs: Path, tmp_path: Path
) -> None:
    before = set(os.listdir("/proc/self/fd"))
    victim = _planted(logs, tmp_path)
    with pytest.raises(OSError, match="symbolic link"):
        open_child_log(logs / "a.log", format_mark("starting", WALL))
    assert victim.read_text() == "keep\n"
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        open_child_log(shared / "a.log", format_mark("starting", WALL))
    assert list(shared.iterdir()) == []
    assert set(os.listdir("/proc/self/fd")) <= before


def log_file_id_of(path: Path) -> tuple[int, int]:
    dir_fd = open_log_dir(path.parent, create=False)
    try:
        return log_file_id(dir_fd, path.name)
    finally:
        os.close(dir_fd)


# ------------------------------------------------------------- last_output


def test_last_output_is_the_last_run_s_last_lines_without_marks(logs: Path) -> None:
    log = logs / "a.log"
    write_mark(log, "starting", WALL)
    _append(log, b"an earlier run's words\n")
    write_mark(log, exit_mark(10, ExitStatus(code=1)), WALL)
    write_mark(log, "starting", WALL)
    _append(log, b"one\n\n   \ntwo\n")
    write_mark(log, "adopted pid 11 (left running by the previous supervisor)", WALL)
    _append(log, b"three\nfour\nfive\nsix\nseven")  # dead before its newline
    # an adoption is no new run: what came before it is this run's too
    assert last_output(log) == ["three", "four", "five", "six", "seven"]
    assert last_output(log, lines=10) == ["one", "two", "three", "four", "five", "six", "seven"]
    write_mark(log, exit_mark(11, ExitStatus(code=0)), WALL)
    write_mark(log, "starting", WALL)
    # this run said nothing: the earlier run's words are not its own
    assert last_output(log) == []


def test_last_output_is_bounded_to_a_kibibyte(logs: Path) -> None:
    log = logs / "a.log"
    write_mark(log, "starting", WALL)
    _append(log, b"x" * 700 + b"\n" + b"y" * 700 + b"\n")
    assert last_output(log) == ["y" * 700]  # the cut x line is dropped
    _append(log, b"z" * 5000 + b"\n")
    (only,) = last_output(log)
    assert only.startswith("…z") and len(only.encode()) <= 1024 + len("…".encode())


def test_last_output_is_read_by_the_log_rules(logs: Path, tmp_path: Path) -> None:
    _planted(logs, tmp_path)
    with pytest.raises(OSError, match="symbolic link"):
        last_output(logs / "a.log")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.log").write_text("planted\n")
    shared.chmod(0o777)
    with pytest.raises(PermissionError):
        last_output(shared / "a.log")


# ------------------------------------------------------------------ follow


def test_follow_yields_the_last_lines_then_new_ones_whole(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"".join(b"old %d\n" % i for i in range(20)) + b"hel")
    with follow(log, lines=3, timeout=30) as f:
        assert _take(f, 3) == ["old 17", "old 18", "old 19"]
        _append(log, b"lo\nworld\n")  # the line begun before we started, whole
        assert _take(f, 2) == ["hello", "world"]
        _append(log, b"not yet")
        _append(log, b" complete\n")
        assert next(f) == "not yet complete"


def test_follow_ends_on_its_stop_event_and_its_timeout(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"only\n")
    stop = threading.Event()
    got: list[str] = []

    def reader() -> None:
        got.extend(follow(log, lines=5, stop=stop, poll=0.05))

    thread = threading.Thread(target=reader)
    thread.start()
    wait_for(lambda: got == ["only"])
    stop.set()
    thread.join(20)
    assert not thread.is_alive()
    _append(log, b"unfinished")  # never ended: not a line yet when it stops
    assert list(follow(log, lines=1, timeout=0.2, stop=lambda: False)) == ["only"]


def test_follow_is_woken_by_a_write_not_by_its_poll(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"")
    with follow(log, lines=0, poll=60, timeout=45) as f:
        threading.Timer(0.3, _append, (log, b"news\n")).start()
        started = time.monotonic()
        assert next(f) == "news"
        assert time.monotonic() - started < 30  # the poll alone would take 60 s


def test_follow_across_a_truncate_that_grew_past_its_place(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"first\nsecond\n")
    with follow(log, lines=2, timeout=30) as f:
        assert _take(f, 2) == ["first", "second"]
        # truncated (no copy) and longer than before by the time we look:
        # a size check alone would read on from the old offset mid-line
        with open(log, "r+b") as fh:
            fh.truncate(0)
        _append(log, b"after the truncate, a longer line\nnext\n")
        assert _take(f, 2) == ["after the truncate, a longer line", "next"]


def test_follow_takes_what_it_missed_from_the_rotated_copy(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"a1\na2\n")
    with follow(log, lines=5, timeout=30) as f:
        assert _take(f, 2) == ["a1", "a2"]
        _append(log, b"b1\nb2 unre")  # written, not read yet, when the keeper
        assert _rotate(log, max_bytes=10)  # copies the log out and truncates it
        _append(log, b"ad\nc1\n")
        assert _take(f, 4) == ["b1", "b2 unre", "ad", "c1"]
        # the copy is not read twice: the next rotation's lines come once
        _append(log, b"c2\n")
        assert next(f) == "c2"
        assert _rotate(log, max_bytes=4)
        _append(log, b"d1\n")
        assert next(f) == "d1"
    assert (logs / "a.log.2").read_bytes() == b"a1\na2\nb1\nb2 unre"


def test_follow_a_log_rotated_before_it_read_any_of_it(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"")
    with follow(log, lines=10, timeout=30) as f:
        _append(log, b"x1\nx2\n")
        assert _rotate(log, max_bytes=4)
        _append(log, b"y1\n")
        assert _take(f, 3) == ["x1", "x2", "y1"]


def test_follow_a_log_replaced_by_a_new_file(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"one\n")
    with follow(log, lines=1, timeout=30) as f:
        assert next(f) == "one"
        # renamed away (rename-style rotation) with a last line in it
        _append(log, b"two\n")
        log.rename(logs / "a.log.1")
        _append(logs / "a.log.1", b"three\n")
        _append(log, b"four\n")  # a new file under the name
        assert _take(f, 3) == ["two", "three", "four"]
        log.unlink()  # deleted, and created again a moment later
        time.sleep(0.2)
        _append(log, b"five\n")
        assert next(f) == "five"


def test_follow_cuts_a_line_longer_than_max_line(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"")
    with follow(log, lines=0, timeout=30, max_line=10) as f:
        _append(log, b"0123456789abcdefghij" + b"xyz")
        assert _take(f, 2) == ["0123456789", "abcdefghij"]
        _append(log, b"\n")
        assert next(f) == "xyz"


BURSTS = r"""
import os, sys
n = 0
for request in sys.stdin:
    count = int(request)
    os.write(1, b"".join(b"child line %06d %s\n" % (n + i, b"x" * 60) for i in range(count)))
    n += count
    os.write(2, b"written\n")
"""


def test_follow_through_real_keeper_rotations_loses_and_repeats_nothing(
    logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child writes bursts larger than the limit into its log; the
    # supervisor's lines go in between; a LogKeeper rotates after each
    # burst.  The child pauses during each rotation, so the keeper loses
    # nothing, and the follower must yield every line exactly once.
    monkeypatch.setattr(_logs, "COPY_EVERY", 0.0)  # every rotation copies
    log = logs / "s.log"
    fd = open_session_log(log)
    child = subprocess.Popen(
        [sys.executable, "-c", BURSTS],
        stdin=subprocess.PIPE,
        stdout=fd,
        stderr=subprocess.PIPE,
    )
    os.close(fd)
    keeper = LogKeeper(max_bytes=4096, backups=2)
    dir_fd = open_log_dir(logs, create=False)
    keeper.watch("s", child.pid, dir_fd, log.name, log_file_id(dir_fd, log.name))
    stop = threading.Event()
    got: list[str] = []
    lines = follow(log, lines=0, stop=stop, poll=0.2)  # here: before the first line
    reader = threading.Thread(target=lambda: got.extend(lines))
    reader.start()
    expected: list[str] = []
    n = 0
    try:
        assert child.stdin is not None and child.stderr is not None
        for burst in range(6):
            wall = time.time()
            write_mark(log, f"starting (burst {burst})", wall)
            expected.append(_mark(f"starting (burst {burst})", wall))
            rotations = keeper.rotations
            count = 60 if burst < 5 else 3  # the last stays under the limit
            child.stdin.write(f"{count}\n".encode())
            child.stdin.flush()
            assert child.stderr.readline() == b"written\n"
            expected += [f"child line {n + i:06d} {'x' * 60}" for i in range(count)]
            n += count
            if burst < 5:
                wait_for(lambda r=rotations: keeper.rotations > r)  # type: ignore[misc]
        wall = time.time()
        write_mark(log, "the end", wall)
        expected.append(_mark("the end", wall))
        wait_for(lambda: len(got) >= len(expected))
    finally:
        stop.set()
        reader.join(20)
        keeper.close()
        child.kill()
        child.wait()
    assert keeper.rotations >= 5
    assert got == expected


def test_follower_is_a_context_manager_that_closes_its_file(logs: Path) -> None:
    log = logs / "a.log"
    log.write_bytes(b"x\n")
    before = set(os.listdir("/proc/self/fd"))
    with Follower(log, lines=1) as f:
        assert next(f) == "x"
    assert set(os.listdir("/proc/self/fd")) <= before


def test_follow_stops_with_an_error_at_a_link_put_in_the_log_s_place(
    logs: Path, tmp_path: Path
) -> None:
    log = logs / "a.log"
    log.write_bytes(b"one\n")
    with follow(log, lines=1, timeout=30) as f:
        assert next(f) == "one"
        log.rename(logs / "a.log.1")
        (tmp_path / "victim").write_text("secret\n")
        log.symlink_to(tmp_path / "victim")
        with pytest.raises(OSError, match="symbolic link; not followed"):
            next(f)
