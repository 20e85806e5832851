"""wirepool's version: the installed distribution's, or the checkout's own.

Installed (a wheel, or ``pip install -e``), the package metadata says it. A plain checkout on
``PYTHONPATH`` has no metadata; then the ``pyproject.toml`` beside the package does, and
``0+unknown`` (a valid PEP 440 version that sorts before every release) when neither is there,
as when the package directory was copied somewhere on its own. Read once, when first asked
(``supervisor.json`` and the status document carry it): :data:`VERSION` is looked up lazily, so
that importing wirepool does not import :mod:`importlib.metadata` (see :mod:`wirepool._dists`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Final

from wirepool._dists import metadata_version

__all__ = ["UNKNOWN", "VERSION", "read_version", "version"]

UNKNOWN: Final = "0+unknown"
_DISTRIBUTION: Final = "wirepool"
_PYPROJECT: Final = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _from_pyproject(path: Path) -> str | None:
    import tomllib  # only a plain checkout gets here

    try:
        with path.open("rb") as handle:
            project = tomllib.load(handle).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    # A pyproject.toml that happens to sit there but is another project's says nothing.
    if not isinstance(project, dict) or project.get("name") != _DISTRIBUTION:
        return None
    version = project.get("version")
    return version if isinstance(version, str) and version else None


def read_version(pyproject: Path = _PYPROJECT) -> str:
    """The installed distribution's version, else ``pyproject``'s, else :data:`UNKNOWN`."""
    found = metadata_version(_DISTRIBUTION)
    if found is not None:
        return found
    import importlib.metadata  # what wirepool._dists leaves to it

    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return _from_pyproject(pyproject) or UNKNOWN


if TYPE_CHECKING:
    VERSION: str


@functools.cache
def version() -> str:
    """:func:`read_version`, once."""
    return read_version()


def __getattr__(name: str) -> str:
    if name == "VERSION":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
