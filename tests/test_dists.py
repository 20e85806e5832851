"""wirepool._dists reads what importlib.metadata would say, or says nothing.

Both are asked the same questions about the same directories: this venv's own ``sys.path``,
and a made-up one with the cases whose order or spelling matters.
"""

from __future__ import annotations

import importlib.metadata
import sys
import zipfile
from pathlib import Path

import pytest

from wirepool import _dists


def _first_by_name(group: str) -> dict[str, str]:
    """What importlib.metadata gives for each name in ``group``: its first entry point."""
    first: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=group):
        first.setdefault(ep.name, ep.value)
    return first


def _agree(groups: set[str], names: set[str]) -> None:
    for group in groups:
        expected = _first_by_name(group)
        for name in [*expected, "no-such-entry-point"]:
            assert _dists.entry_point(group, name) == expected.get(name), (group, name)
    for name in names:
        try:
            expected_version: str | None = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            expected_version = None
        assert _dists.metadata_version(name) == expected_version, name


def test_it_agrees_with_importlib_metadata_on_this_interpreter() -> None:
    dists = list(importlib.metadata.distributions())
    groups = {ep.group for dist in dists for ep in dist.entry_points}
    names = {dist.metadata["Name"] for dist in dists}
    assert {"wirepool.plugins", "console_scripts"} <= groups
    assert "wirepool" in names
    _agree(groups, names | {"no-such-distribution"})
    assert _dists.entry_point("wirepool.plugins", "servicedir") == (
        "wirepool_servicedir:ServiceDirPlugin"
    )


@pytest.fixture(autouse=True)
def _reader_imported() -> None:
    """What importlib.metadata imports to read metadata (lazily, on 3.13),
    imported while the standard library is still on ``sys.path``."""
    assert importlib.metadata.distribution("pytest").metadata["Name"] == "pytest"


def _only(monkeypatch: pytest.MonkeyPatch, *path: Path) -> None:
    monkeypatch.setattr(sys, "path", [str(p) for p in path])


def _dist(where: Path, dirname: str, metadata: str | None, entry_points: str | None) -> None:
    dist = where / dirname
    dist.mkdir(parents=True)
    if metadata is not None:
        (dist / ("PKG-INFO" if dirname.endswith(".egg-info") else "METADATA")).write_text(metadata)
    if entry_points is not None:
        (dist / "entry_points.txt").write_text(entry_points)


def test_shadowing_spelling_and_sections_as_importlib_metadata_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(
        first,
        "Foo_Bar-1.0.dist-info",
        "Metadata-Version: 2.1\nName: Foo_Bar\nSummary: x\nVersion: 1.0\n\nVersion: 9\n",
        "# a comment\n\n[demo.group]\nalpha = one.mod:Alpha\n [other]\nbeta = one.mod:B\n",
    )
    _dist(
        second,
        "foo_bar-2.0.dist-info",  # shadowed by Foo_Bar from 3.12 on, listed too before
        "Name: foo_bar\nVersion: 2.0\n",
        "[demo.group]\nalpha = two.mod:Alpha\ndelta = two.mod:Delta\n",
    )
    _dist(second, "zeta-1.0.dist-info", "Name: zeta\nVersion: 1\n", "[demo.group]\nbeta=z:B [x]\n")
    _dist(second, "Foo_Bar-3.0.dist-info", "Name: Foo_Bar\nVersion: 3.0\n", "[demo.group]\n")
    _dist(second, "legacy.egg-info", "Name: legacy\nVersion: 0.5\n", "[demo.group]\ngamma=g:G\n")
    _dist(second, "bare-1.0.dist-info", None, None)
    (second / "single-1.0.egg-info").write_text("Name: single\nVersion: 1.0\n")
    _only(monkeypatch, first, tmp_path / "missing", second)
    _agree(
        {"demo.group", "other"},
        {"foo-bar", "Foo_Bar", "foo.bar", "zeta", "legacy", "bare", "single", "nothing"},
    )
    assert _dists.entry_point("demo.group", "alpha") == "one.mod:Alpha"
    assert _dists.entry_point("demo.group", "beta") == "z:B [x]"
    assert _dists.metadata_version("foo-bar") == "1.0"


def test_what_only_importlib_metadata_reads_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "plain"
    _dist(plain, "ok-1.0.dist-info", "Name: ok\nVersion: 1.0\n", "[demo.group]\nok = ok:Ok\n")
    archive = tmp_path / "dists.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
    _only(monkeypatch, archive, plain)
    assert _dists.entry_point("demo.group", "ok") is None
    assert _dists.metadata_version("ok") is None
    assert importlib.metadata.version("zipped") == "1.0"  # which is why
    _only(monkeypatch, plain)
    assert _dists.entry_point("demo.group", "ok") == "ok:Ok"
    (plain / "ok-1.0.dist-info" / "entry_points.txt").write_text("[demo.group]\nnot a pair\n")
    assert _dists.entry_point("demo.group", "ok") is None
    with pytest.raises((TypeError, ValueError)):  # it says how (its words vary by version)
        importlib.metadata.entry_points(group="demo.group")


def test_load_is_entry_point_load() -> None:
    for value in ("wirepool_servicedir:ServiceDirPlugin", "wirepool.plugin : Plugin", "json"):
        ep = importlib.metadata.EntryPoint(name="x", value=value, group="g")
        assert _dists.load(value) is ep.load()
    with pytest.raises(ValueError, match="not an entry point"):
        _dists.load("no spaces allowed:")
