"""wirepool's version: the installed distribution's, or the checkout's own.

Installed (a wheel, or ``pip install -e``), the package metadata says it. A plain checkout on
``PYTHONPATH`` has no metadata; then the ``pyproject.toml`` beside the package does, and
``0+unknown`` (a valid PEP 440 version that sorts before every release) when neither is there,
as when the package directory was copied somewhere on its own. Read once, at import: the status
document carries it on every write.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Final

__all__ = ["UNKNOWN", "VERSION", "read_version"]

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
    try:
        return importlib.metadata.version(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return _from_pyproject(pyproject) or UNKNOWN


VERSION: Final = read_version()
