"""Two facts from the installed distributions' metadata, read without :mod:`importlib.metadata`.

``wirepool run`` needs, before its first child, the plugin's entry point and wirepool's own
version (``supervisor.json`` carries it). Importing :mod:`importlib.metadata` costs about 10 ms
(email, zipfile, csv, importlib.resources) and its lookups a few more; a third of an interpreter
start. The metadata directories are found the way ``importlib.metadata`` finds them (its
``MetadataPathFinder``: each ``sys.path`` directory in order, a name's first directory wins),
and anything only it can read (a zip or ``.egg`` on ``sys.path``, another finder of
distributions, a spelling it normalizes otherwise) gives ``None``: the callers then ask it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from importlib.machinery import PathFinder

__all__ = ["entry_point", "load", "metadata_version"]

_SUFFIXES = (".dist-info", ".egg-info")


class _Unusual(Exception):
    """Something only importlib.metadata reads."""


def _normalize(name: str) -> str:
    # importlib.metadata's Prepared.normalize (PEP 503, then "-" as "_")
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _directories(path: list[str]) -> Iterator[tuple[str, str]]:
    """(normalized name, metadata directory) of every distribution, first of each name."""
    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        raise _Unusual
    seen: set[str] = set()
    for entry in path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except OSError:
            if os.path.exists(root):
                raise _Unusual from None  # a zip file
            continue
        if os.path.basename(root).lower().endswith(".egg"):
            raise _Unusual
        # importlib.metadata groups a directory's entries by normalized name, in the order
        # each name first appears, and drops a later entry whose name repeats an earlier one:
        # the name before the first "-" as spelled (3.11), normalized (3.12 on).
        groups: dict[str, list[str]] = {}
        for child in children:
            low = child.lower()
            if not low.endswith(_SUFFIXES):
                continue
            if not child.endswith(_SUFFIXES):
                raise _Unusual  # its name would come from the metadata itself
            name = _normalize(low.rpartition(".")[0].partition("-")[0])
            groups.setdefault(name, []).append(child)
        for name, group in groups.items():
            for child in group:
                stem = os.path.splitext(child)[0].partition("-")[0]
                key = _normalize(stem) if sys.version_info >= (3, 12) else stem
                if key not in seen:
                    seen.add(key)
                    yield name, os.path.join(root, child)


def _read(directory: str, name: str) -> str | None:
    try:
        # "": an .egg-info that is a file, PKG-INFO itself
        with open(os.path.join(directory, name) if name else directory, encoding="utf-8") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def metadata_version(distribution: str, path: list[str] | None = None) -> str | None:
    """``importlib.metadata.version(distribution)``, or None: not found, or ask it."""
    wanted = _normalize(distribution)
    try:
        for name, directory in _directories(sys.path if path is None else path):
            if name != wanted:
                continue
            text = (
                _read(directory, "METADATA") or _read(directory, "PKG-INFO") or _read(directory, "")
            )
            for line in (text or "").splitlines():
                if not line.strip():
                    break  # the headers end at the first blank line
                key, sep, value = line.partition(":")
                if sep and key.strip().lower() == "version" and not line[0].isspace():
                    return value.strip() or None
            return None
    except _Unusual:
        return None
    return None


_EP = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def entry_point(group: str, name: str, path: list[str] | None = None) -> str | None:
    """The value of the first entry point called ``name`` in ``group`` (the one
    ``importlib.metadata.entry_points(group=group)`` lists first), or None: none, or ask it."""
    try:
        for _, directory in _directories(sys.path if path is None else path):
            section = None
            for raw in (_read(directory, "entry_points.txt") or "").splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = line.strip("[]")
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise _Unusual  # importlib.metadata raises on it: let it say how
                if section == group and key.strip() == name:
                    if _EP.match(value.strip()) is None:
                        raise _Unusual
                    return value.strip()
    except _Unusual:
        return None
    return None


def load(value: str) -> object:
    """What ``importlib.metadata.EntryPoint(..., value, ...).load()`` returns."""
    match = _EP.match(value)
    if match is None:
        raise ValueError(f"not an entry point: {value!r}")
    obj: object = importlib.import_module(match.group("module"))
    for attr in (match.group("attr") or "").split("."):
        if attr:
            obj = getattr(obj, attr)
    return obj
