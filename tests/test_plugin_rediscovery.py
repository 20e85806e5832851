"""Partial rediscovery in the bundled plugins' discoveries: a change placed
in the sessions it concerns must leave each discovery exactly where a full
scan would, sessions and watches alike.  Real directories, real inotify
(its events are queued by the time the system call that caused them
returns, so draining right after a change sees all of them)."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from wirepool_dirs import GlobDiscovery
from wirepool_wire import WireDiscovery

from wirepool import Discovery, Session
from wirepool._watch import Watcher

NAMES = ("a", "b", "p-1", ".git", "src", ".hidden")


def mutate(rng: random.Random, root: Path, outside: Path) -> None:
    """One random change to the tree under ``root``: a directory made,
    removed, renamed or moved in or out; a marker file made or removed."""
    dirs = [Path(d) for d, _, _ in os.walk(root)]
    here = rng.choice(dirs)
    action = rng.randrange(6)
    if action == 0:
        (here / rng.choice(NAMES) / rng.choice(NAMES)).mkdir(parents=True, exist_ok=True)
    elif action == 1:
        (here / rng.choice(NAMES)).mkdir(exist_ok=True)
    elif action == 2 and here != root:
        shutil.rmtree(here)
    elif action == 3 and here != root:
        target = rng.choice(dirs) / rng.choice(NAMES)
        if not target.exists() and here not in target.parents and target != here:
            here.rename(target)
    elif action == 4:
        marker = here / "READY"
        if marker.exists():
            marker.unlink()
        else:
            marker.write_text("")
    elif action == 5:
        if here != root and rng.random() < 0.5:
            here.rename(outside / f"out{rng.randrange(10**9)}")
        else:
            kept = sorted(outside.iterdir())
            if kept and not (here / "in").exists():
                rng.choice(kept).rename(here / "in")


def follow(discovery: Discovery, fresh: object, root: Path, outside: Path, seed: int) -> int:
    """Random changes, each followed as the pool follows it (drain, place,
    rediscover, watch, look once more when a watch was added); after each,
    the sessions and watches must equal a fresh full scan's.  Returns how
    many changes were followed partially."""
    rng = random.Random(seed)
    model: dict[str, Session] = {s.name: s for s in discovery.discover()}
    watcher = Watcher()
    partial = 0
    try:
        assert watcher.available
        watcher.update(discovery.watch_paths())
        for _ in range(150):
            mutate(rng, root, outside)
            changes = watcher.drain(discovery.relevant)
            if not changes:
                pass
            elif changes.everything or (names := discovery.affected(changes.paths)) is None:
                model = {s.name: s for s in discovery.discover()}
                watcher.update(discovery.watch_paths())
            else:
                partial += 1
                while True:
                    found = {s.name: s for s in discovery.rediscover(names)}
                    for name in names:
                        model.pop(name, None)
                    model.update(found)
                    if not watcher.update(discovery.watch_paths()):
                        break
            truth = fresh.discover()  # type: ignore[attr-defined]
            assert model == {s.name: s for s in truth}
            assert set(discovery.watch_paths()) == set(fresh.watch_paths())  # type: ignore[attr-defined]
    finally:
        watcher.close()
    return partial


@pytest.mark.parametrize("pattern", ["*", "*/*", "*/.git/..", "p-*/src", "*/src/.git/../.."])
def test_glob_discovery_follows_changes_as_a_full_scan_would(tmp_path: Path, pattern: str) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    for rel in ("a/.git", "b/src/.git", "p-1/src", ".hidden/x"):
        (root / rel).mkdir(parents=True)
    discovery = GlobDiscovery(root, pattern, marker="READY")
    fresh = GlobDiscovery(root, pattern, marker="READY")
    assert follow(discovery, fresh, root, outside, seed=len(pattern)) >= 5


@pytest.mark.parametrize("pattern", ["**/.git/..", "*/../*", "a*/.git/*/..", ".."])
def test_glob_patterns_it_cannot_place_cost_a_full_scan(tmp_path: Path, pattern: str) -> None:
    discovery = GlobDiscovery(tmp_path, pattern)
    assert discovery.affected({(tmp_path, "a")}) is None


def test_glob_change_names_the_session_it_is_in(tmp_path: Path) -> None:
    (tmp_path / "org" / "repo" / ".git").mkdir(parents=True)
    discovery = GlobDiscovery(tmp_path, "*/*/.git/..", marker="READY")
    assert [s.name for s in discovery.discover()] == ["org/repo"]
    repo = tmp_path / "org" / "repo"
    assert discovery.affected({(repo, ".git")}) == {"org/repo"}
    assert discovery.affected({(repo, "READY")}) == {"org/repo"}
    # a new organisation: itself (to watch it) and what lies below it now
    (tmp_path / "new" / "r1").mkdir(parents=True)
    assert discovery.affected({(tmp_path, "new")}) == {"new", "new/r1"}
    # the root itself moved or went: everything
    assert discovery.affected({(tmp_path.parent, tmp_path.name)}) is None


def make_home(root: Path, key: str, did: str | None = "did:wire:x-0123abcd") -> Path:
    home = root / key
    (home / "config" / "wire").mkdir(parents=True, exist_ok=True)
    card = {"did": did, "handle": key.rsplit("/", 1)[-1]} if did else {"handle": "husk"}
    (home / "config" / "wire" / "agent-card.json").write_text(json.dumps(card))
    return home


def test_wire_discovery_follows_changes_as_a_full_scan_would(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    outside = tmp_path / "outside"
    outside.mkdir()
    make_home(root, "by-key/0123456789abcdef")
    make_home(root, "legacy")
    make_home(root, "by-key/fedcba9876543210", did=None)  # a husk
    rng = random.Random(7)
    discovery = WireDiscovery(root)
    model = {s.name: s for s in discovery.discover()}
    watcher = Watcher()
    partial = 0
    try:
        watcher.update(discovery.watch_paths())
        for step in range(120):
            action = rng.randrange(5)
            key = rng.choice(
                [f"by-key/{rng.randrange(4):016x}", "by-key/not-hex", "legacy", "old2"]
            )
            if action == 0:
                # made elsewhere and renamed in, as a whole (the card is there
                # before the directory is)
                staged = make_home(outside, f"s{step}", did=rng.choice([None, "did:wire:y"]))
                if not (root / key).exists():
                    (root / key).parent.mkdir(parents=True, exist_ok=True)
                    staged.rename(root / key)
            elif action == 1 and (root / key).exists():
                shutil.rmtree(root / key)
            elif action == 2:
                bound = {"/work/x": "legacy"} if rng.random() < 0.5 else {}
                (root / "registry.json").write_text(json.dumps({"by_cwd": bound}))
            elif action == 3:
                (root / "supervisor.pid").write_text(str(step))
            elif action == 4 and (root / key).exists():
                (root / key).rename(outside / f"gone{step}")
            changes = watcher.drain(discovery.relevant)
            if not changes:
                pass
            elif changes.everything or (names := discovery.affected(changes.paths)) is None:
                model = {s.name: s for s in discovery.discover()}
            else:
                partial += 1
                found = {s.name: s for s in discovery.rediscover(names)}
                for name in names:
                    model.pop(name, None)
                model.update(found)
            watcher.update(discovery.watch_paths())
            fresh = WireDiscovery(root)
            assert model == {s.name: s for s in fresh.discover()}
            assert sorted(discovery.husks) == fresh.husks
    finally:
        watcher.close()
    assert partial > 20
