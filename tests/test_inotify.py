"""wirepool's own inotify binding, against the kernel."""

from __future__ import annotations

import os
import select
import struct
from pathlib import Path

import pytest

from wirepool import _inotify
from wirepool._inotify import INotify, flags, parse_events

pytestmark = pytest.mark.skipif(not _inotify.AVAILABLE, reason="inotify is Linux's")


def wait_readable(ino: INotify) -> None:
    ready, _, _ = select.select([ino.fileno()], [], [], 10)
    assert ready, "no event within 10 s"


def test_events_name_the_entry_and_what_happened(tmp_path: Path) -> None:
    ino = INotify()
    try:
        wd = ino.add_watch(tmp_path, flags.CREATE | flags.DELETE | flags.MOVED_TO)
        assert ino.read() == []  # nothing yet, and no wait
        (tmp_path / "a").write_text("")
        odd = os.fsdecode(b"caf\xe9 \x1b[31m")  # not UTF-8, and an escape
        (tmp_path / "a").rename(tmp_path / odd)
        (tmp_path / odd).unlink()
        wait_readable(ino)
        events = ino.read()
        seen = [(e.wd, e.mask, e.name) for e in events]
        assert seen == [
            (wd, flags.CREATE, "a"),
            (wd, flags.MOVED_TO, odd),
            (wd, flags.DELETE, odd),
        ]
        assert ino.read() == []  # drained
    finally:
        ino.close()


def test_one_inode_is_one_watch_and_removing_it_says_ignored(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "link").symlink_to("d")
    ino = INotify()
    try:
        wd = ino.add_watch(tmp_path / "d", flags.CREATE)
        assert ino.add_watch(str(tmp_path / "link"), flags.CREATE) == wd
        ino.rm_watch(wd)
        wait_readable(ino)
        assert [(e.wd, e.mask) for e in ino.read()] == [(wd, flags.IGNORED)]
        with pytest.raises(OSError) as raised:
            ino.rm_watch(wd)
        assert raised.value.errno == 22  # EINVAL: no such watch any more
    finally:
        ino.close()


def test_a_missing_path_is_an_oserror_with_its_errno(tmp_path: Path) -> None:
    ino = INotify()
    try:
        with pytest.raises(FileNotFoundError):
            ino.add_watch(tmp_path / "absent", flags.CREATE)
    finally:
        ino.close()


def test_a_closed_instance_refuses_and_closes_once_only(tmp_path: Path) -> None:
    ino = INotify()
    ino.close()
    ino.close()
    with pytest.raises(ValueError):
        ino.add_watch(tmp_path, flags.CREATE)


def test_its_descriptor_is_close_on_exec_and_non_blocking() -> None:
    ino = INotify()
    try:
        assert not os.get_inheritable(ino.fileno())
        assert not os.get_blocking(ino.fileno())
        with pytest.raises(ValueError):
            ino.read(timeout=100)  # waiting is the caller's select
    finally:
        ino.close()


def test_many_events_are_read_whole_past_one_buffer(tmp_path: Path) -> None:
    ino = INotify()
    try:
        ino.add_watch(tmp_path, flags.CREATE)
        names = [f"{i:04d}-{'x' * 200}" for i in range(600)]  # ~140 KB of events
        for name in names:
            (tmp_path / name).touch()
        wait_readable(ino)
        assert [e.name for e in ino.read()] == names
    finally:
        ino.close()


def test_parse_events_takes_records_as_the_kernel_pads_them() -> None:
    def record(wd: int, mask: int, cookie: int, name: bytes, pad: int) -> bytes:
        raw = name + b"\0" * pad if name or pad else b""
        return struct.pack("iIII", wd, mask, cookie, len(raw)) + raw

    data = record(1, flags.CREATE, 0, b"run", 13) + record(2, flags.IGNORED, 0, b"", 0)
    data += record(1, flags.MOVED_FROM, 7, b"\xff", 15)
    assert parse_events(data) == [
        _inotify.Event(1, flags.CREATE, 0, "run"),
        _inotify.Event(2, flags.IGNORED, 0, ""),
        _inotify.Event(1, flags.MOVED_FROM, 7, os.fsdecode(b"\xff")),
    ]


def test_an_instance_dropped_unclosed_gives_its_descriptor_back() -> None:
    ino = INotify()
    fd = ino.fileno()
    assert os.path.exists(f"/proc/self/fd/{fd}")
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    del ino  # no cycle: reference counting drops it here
    # the number is free again (or reused by something else entirely)
    assert not os.path.exists(f"/proc/self/fd/{fd}") or (
        os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify"
    )
