"""Partial rediscovery: a watch event names the sessions it concerns, and
only those are looked at again.  Real directories and real inotify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import wait_for

from wirepool import DirectoryScan
from wirepool._watch import Changes, Watcher


def scan_of(root: Path) -> DirectoryScan:
    return DirectoryScan(root, "svc-*", marker="run", watch_names=("run", "down"))


def add(root: Path, name: str, marker: bool = True) -> Path:
    d = root / name
    d.mkdir()
    if marker:
        (d / "run").write_text("#!/bin/sh\n")
    return d


def test_affected_names_the_entry_or_the_session_directory(tmp_path: Path) -> None:
    scan = scan_of(tmp_path)
    changes = {(tmp_path, "svc-a"), (tmp_path / "svc-b", "run")}
    assert scan.affected(changes) == {"svc-a", "svc-b"}
    # the root itself moved or went (named as an entry of its parent): all
    assert scan.affected({(tmp_path.parent, tmp_path.name)}) is None
    assert scan.affected({(tmp_path / "svc-b" / "deeper", "x")}) is None


def test_rediscover_agrees_with_a_full_discover(tmp_path: Path) -> None:
    scan = scan_of(tmp_path)
    add(tmp_path, "svc-a")
    add(tmp_path, "svc-empty", marker=False)
    add(tmp_path, "other")  # does not match the pattern
    add(tmp_path, ".svc-hidden")
    (tmp_path / "svc-file").write_text("not a directory")
    full = {s.name: s for s in scan.discover()}
    asked = ["svc-a", "svc-empty", "other", ".svc-hidden", "svc-file", "svc-missing", "..", "a/b"]
    partial = {s.name: s for s in scan.rediscover(asked)}
    assert partial == full == {"svc-a": full["svc-a"]}
    # the watch list follows: a candidate without its marker is watched
    watched = set(scan.watch_paths())
    assert watched == {tmp_path, tmp_path / "svc-a", tmp_path / "svc-empty"}
    # a candidate that goes is no longer watched; a new one is
    (tmp_path / "svc-empty").rmdir()
    add(tmp_path, "svc-new")
    assert [s.name for s in scan.rediscover(["svc-empty", "svc-new"])] == ["svc-new"]
    assert set(scan.watch_paths()) == {tmp_path, tmp_path / "svc-a", tmp_path / "svc-new"}


def test_rediscover_of_an_unreadable_root_raises(tmp_path: Path) -> None:
    scan = scan_of(tmp_path / "gone")
    # raising means "cannot tell", never "no sessions"
    with pytest.raises(FileNotFoundError, match="gone"):
        scan.rediscover(["svc-a"])


def drain_until(watcher: Watcher, scan: DirectoryScan, want: set[tuple[Path, str]]) -> Changes:
    seen = Changes()

    def got() -> bool:
        changes = watcher.drain(scan.relevant)
        seen.everything |= changes.everything
        seen.paths |= changes.paths
        return want <= seen.paths

    wait_for(got, timeout=10)
    return seen


def test_watcher_names_changed_entries_and_a_removed_directory(tmp_path: Path) -> None:
    scan = scan_of(tmp_path)
    d = add(tmp_path, "svc-a")
    scan.discover()
    watcher = Watcher()
    try:
        assert watcher.available
        watcher.update(scan.watch_paths())
        (d / "pidfile").write_text("123")  # not relevant: filtered out
        (d / "down").touch()
        seen = drain_until(watcher, scan, {(d, "down")})
        assert (d, "pidfile") not in seen.paths
        assert not seen.everything
        for entry in d.iterdir():
            entry.unlink()
        d.rmdir()
        seen = drain_until(watcher, scan, {(tmp_path, "svc-a")})
        assert scan.affected(seen.paths) == {"svc-a"}
        # a directory made again at the same path is watched afresh
        assert watcher.update([tmp_path]) == 0
        os.mkdir(d)
        assert watcher.update([tmp_path, d]) == 1
    finally:
        watcher.close()
