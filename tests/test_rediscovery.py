"""Partial rediscovery: a watch event names the sessions it concerns, and
only those are looked at again.  Real directories and real inotify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest
from conftest import drop_dac_override, wait_for

from wirepool import DirectoryScan, Session
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


def test_a_subclass_that_filters_discover_gets_full_rescans(tmp_path: Path) -> None:
    class OnlyEven(DirectoryScan):
        def discover(self) -> list[Session]:  # type: ignore[override]
            return [s for s in super().discover() if s.name[-1] in "02468"]

    class Both(OnlyEven):
        def rediscover(self, names: Collection[str]) -> list[Session]:  # type: ignore[override]
            return [s for s in super().rediscover(names) if s.name[-1] in "02468"]

    changes = {(tmp_path, "svc-1")}
    assert OnlyEven(tmp_path).affected(changes) is None
    assert Both(tmp_path).affected(changes) == {"svc-1"}


_SAME_VERDICT = """
import json, sys
from wirepool import DirectoryScan
scan = DirectoryScan(sys.argv[1], marker="run")
full = sorted(s.name for s in scan.discover()), dict(scan.unreadable())
partial = sorted(s.name for s in scan.rediscover(["svc-a"])), dict(scan.unreadable())
print(json.dumps([full, partial]))
"""


def assert_unreadable_in_both_scans(root: Path, locked: Path, mode: int) -> None:
    """With ``locked`` at ``mode`` and root's power to ignore modes dropped,
    ``svc-a`` under ``root`` is "unreadable" to a full scan and a partial
    one alike: never "gone", which would stop its child."""
    locked.chmod(mode)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _SAME_VERDICT, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            preexec_fn=drop_dac_override,
        ).stdout
    finally:
        locked.chmod(0o755)
    full, partial = json.loads(out)
    assert full[0] == partial[0] == []
    assert "svc-a" in full[1]
    assert partial[1] == full[1]


def test_an_unsearchable_root_is_cannot_tell_in_both_scans(tmp_path: Path) -> None:
    """Root readable but not searchable: the listing names ``svc-a``, its
    marker cannot be looked at.  A partial look must say "unreadable" as the
    full scan does, not "gone" (which would stop its child)."""
    root = tmp_path / "root"
    root.mkdir()
    add(root, "svc-a")
    assert_unreadable_in_both_scans(root, root, 0o644)  # readable, not searchable


def test_two_paths_to_one_directory_share_a_watch_and_both_hear_of_it(tmp_path: Path) -> None:
    """A session directory symlinked under a second name: one inode, one
    watch.  A change in it concerns both sessions, and watching both must
    be stable (re-adding one on every pass would make every pass look
    once more, for ever)."""
    scan = scan_of(tmp_path)
    a = add(tmp_path, "svc-a")
    b = tmp_path / "svc-b"
    b.symlink_to(a)
    scan.discover()
    watcher = Watcher()
    try:
        assert watcher.update(scan.watch_paths()) == 3
        assert watcher.update(scan.watch_paths()) == 0
        (a / "down").touch()
        seen = drain_until(watcher, scan, {(a, "down"), (b, "down")})
        assert scan.affected(seen.paths) == {"svc-a", "svc-b"}
        # unwatching one name leaves the other's watch in place
        assert watcher.update([tmp_path, a]) == 0
        (a / "down").unlink()
        drain_until(watcher, scan, {(a, "down")})
    finally:
        watcher.close()


def test_a_symlink_into_an_unsearchable_directory_is_cannot_tell_in_both_scans(
    tmp_path: Path,
) -> None:
    """The listing says "symlink"; following it fails with EACCES.  Both
    scans must call that unreadable: a full scan that called it gone would
    stop the child a partial one kept."""
    root = tmp_path / "root"
    root.mkdir()
    locked = tmp_path / "locked"
    target = add(locked.parent, "locked") / "target"
    target.mkdir()
    (root / "svc-a").symlink_to(target)
    assert_unreadable_in_both_scans(root, locked, 0)


def test_a_full_update_rewatches_a_directory_replaced_behind_its_watch(tmp_path: Path) -> None:
    """The IN_IGNORED of a replaced directory can be lost (a queue overflow
    drops events); the watch then names a dead inode.  A full update checks
    every watch again and moves it to the directory there now."""
    scan = scan_of(tmp_path)
    d = add(tmp_path, "svc-a")
    scan.discover()
    watcher = Watcher()
    try:
        assert watcher.update(scan.watch_paths()) == 2
        (d / "run").unlink()
        d.rmdir()
        d.mkdir()  # not drained: as if the events had overflowed
        assert watcher.update(scan.watch_paths(), refresh=[tmp_path]) == 0  # not rechecked
        assert watcher.update(scan.watch_paths()) == 1  # rechecked: a new inode
        assert watcher.update(scan.watch_paths()) == 0  # and stable
        (d / "run").write_text("#!/bin/sh\n")
        drain_until(watcher, scan, {(d, "run")})
    finally:
        watcher.close()
