"""The version comes from the package metadata, or from the checkout when there is none.

The plain-checkout case is run for real: a child interpreter gets wirepool's dependencies but
not wirepool's own distribution metadata, exactly what ``PYTHONPATH=<checkout>`` gives on a
machine where the dependencies were installed some other way.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest

import wirepool
from wirepool import _version

CHECKOUT = Path(__file__).resolve().parent.parent


def _pyproject_version() -> str:
    with (CHECKOUT / "pyproject.toml").open("rb") as handle:
        version = tomllib.load(handle)["project"]["version"]
    assert isinstance(version, str)
    return version


def test_installed_version_is_the_metadatas() -> None:
    assert wirepool.__version__ == importlib.metadata.version("wirepool")
    assert wirepool.__version__ == _pyproject_version()  # the two never drift apart


def _without_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    monkeypatch.setattr(_version, "metadata_version", lambda name: None)  # its fast path


def test_without_metadata_the_pyproject_beside_the_package_says_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_metadata(monkeypatch)
    assert _version.read_version() == _pyproject_version()
    ours = tmp_path / "pyproject.toml"
    ours.write_text('[project]\nname = "wirepool"\nversion = "2.5.0rc1"\n')
    assert _version.read_version(ours) == "2.5.0rc1"


@pytest.mark.parametrize(
    "text",
    [
        None,  # the package was copied somewhere on its own
        '[project]\nname = "someone-else"\nversion = "9.9"\n',
        '[project]\nname = "wirepool"\n',  # a dynamic version
        '[project]\nname = "wirepool"\nversion = 3\n',
        "[project\n",  # not TOML
    ],
)
def test_without_metadata_or_a_pyproject_of_ours_it_is_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None
) -> None:
    _without_metadata(monkeypatch)
    path = tmp_path / "pyproject.toml"
    if text is not None:
        path.write_text(text)
    assert _version.read_version(path) == _version.UNKNOWN == "0+unknown"


def _dependencies_only(site: Path) -> None:
    """Link every installed distribution into ``site`` except wirepool itself (its package,
    its metadata and the editable-install hooks that would find the checkout anyway)."""
    site.mkdir()
    seen: set[str] = set()
    for key in ("purelib", "platlib"):
        for entry in Path(sysconfig.get_paths()[key]).iterdir():
            name = entry.name.lower()
            skip = name.startswith(("wirepool", "__editable__", "_wirepool")) or name.endswith(
                ".pth"
            )
            if skip or entry.name in seen:
                continue
            seen.add(entry.name)
            (site / entry.name).symlink_to(entry)


def test_star_import_and_version_from_a_plain_checkout(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dependencies_only(site)
    # A copy of the sources: the checkout itself may hold a build's
    # wirepool.egg-info, whose metadata would be found beside the package.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copytree(CHECKOUT / "wirepool", checkout / "wirepool")
    shutil.copy(CHECKOUT / "pyproject.toml", checkout / "pyproject.toml")
    script = textwrap.dedent("""
        import importlib.metadata
        try:
            importlib.metadata.version("wirepool")
        except importlib.metadata.PackageNotFoundError:
            pass
        else:
            raise SystemExit("wirepool's metadata is visible: not a plain checkout")
        from wirepool import *
        import wirepool
        missing = [name for name in wirepool.__all__ if name not in globals()]
        assert not missing, missing
        print(wirepool.__version__, wirepool.__file__)
    """)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # -S: no site-packages but the dependencies linked above; the cwd is not the checkout
        return subprocess.run(
            [sys.executable, "-S", *args],
            cwd=tmp_path,
            env={"PYTHONPATH": f"{site}:{checkout}", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = run("-c", script)
    assert done.returncode == 0, done.stdout + done.stderr
    version, origin = done.stdout.split()
    assert version == _pyproject_version()
    assert Path(origin) == checkout / "wirepool" / "__init__.py"
    cli = run("-m", "wirepool", "--version")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"wirepool, version {version}"
