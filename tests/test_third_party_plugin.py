"""A third-party plugin, end to end: ``examples/wirepool-sites`` is built
and installed by pip as a real distribution (into a directory of its own,
so the test environment is left as it was), then found through its entry
point by ``wirepool plugins``, driven by ``wirepool run``, tested by its own
suite through wirepool's pytest plugin, and type-checked by mypy strict --
which must also reject a plugin that gets the strategy API wrong."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import WIREPOOL, Tracker, alive, status_sessions, wait_for

import wirepool

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "wirepool-sites"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the example distribution into its own directory."""
    base = tmp_path_factory.mktemp("third-party")
    src = base / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = base / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert list(target.glob("wirepool_sites-0.1.0.dist-info"))
    return target


def env_with(site: Path) -> dict[str, str]:
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_wirepool_plugins_lists_the_installed_distribution(installed: Path) -> None:
    out = subprocess.run(
        [*WIREPOOL, "plugins", "--json"], env=env_with(installed),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert {"dirs", "servicedir", "wire", "sites"} <= set(plugins)
    sites = plugins["sites"]
    assert sites["distribution"] == "wirepool-sites"
    assert sites["version"] == "0.1.0"
    assert sites["error"] is None
    assert Path(sites["origin"]).is_relative_to(installed)  # the installed copy, not the source
    # ...and without the install, it is simply not there
    out = subprocess.run([*WIREPOOL, "plugins", "--json"], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert "sites" not in {p["name"] for p in json.loads(out.stdout)}


def test_wirepool_run_drives_the_third_party_plugin(
    installed: Path, tmp_path: Path, tracker: Tracker
) -> None:
    root = tmp_path / "www"
    port = free_port()
    (root / "blog").mkdir(parents=True)
    (root / "blog" / "site.json").write_text(json.dumps({"port": port}))
    (root / "blog" / "index.html").write_text("the blog")
    (root / "typo").mkdir()
    (root / "typo" / "site.json").write_text("{port: 80")
    sup = tracker.supervisor("sites", str(root), env={"PYTHONPATH": str(installed)})
    wait_for(lambda: sup.of("spawned"), timeout=60)
    assert b"the blog" in get(port)
    first = sup.of("spawned")[0]["pid"]
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(sup.of("spawned")) >= 2, timeout=60)
    assert b"the blog" in get(port)
    status = status_sessions(root / ".wirepool")
    assert status["blog"]["state"] == "running" and status["blog"]["restarts"] == 1
    assert status["typo"]["state"] == "ineligible"
    assert "site.json is not JSON" in status["typo"]["reason"]
    # a typo in a running site's file keeps its server, and says so
    (root / "blog" / "site.json").write_text('{"port": ')
    wait_for(lambda: "not JSON" in status_sessions(root / ".wirepool")["blog"]["reason"])
    assert status_sessions(root / ".wirepool")["blog"]["state"] == "running"
    assert b"the blog" in get(port)
    stop = subprocess.run(
        [*WIREPOOL, "stop", "sites", str(root), "--children"], env=env_with(installed),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stop.returncode == 0, stop.stderr
    assert sup.wait_exit() == 0
    wait_for(lambda: not any(alive(e["pid"]) for e in sup.of("spawned")))


def test_the_plugins_own_suite_passes_with_wirepools_pytest_plugin(installed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env=env_with(installed), cwd=EXAMPLE, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def mypy(files: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict as a plugin author runs it.  An editable wirepool is
    found through an import hook mypy cannot follow, so point it at the
    source tree then; an installed one is found in site-packages."""
    env = dict(os.environ)
    source_root = Path(wirepool.__file__).resolve().parent.parent
    if "site-packages" not in source_root.parts:
        env["MYPYPATH"] = str(source_root)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(cwd / ".mypy_cache"), *map(str, files)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


WRONG_PLUGIN = textwrap.dedent("""
    from collections.abc import Mapping
    from typing import Any

    from wirepool import (CommandSpawner, Eligibility, HealthCheck, Plugin,
                          ProcessIdentity, RestartPolicy, Session, SessionPool)

    class Check(Eligibility):
        def check(self, session: Session) -> bool:  # forgot `now`, returns bool
            return True

    class Probe(HealthCheck):
        def probe(self, session: Session, identity: ProcessIdentity, now: float) -> bool:
            return True

    class Bad(Plugin):
        name = "bad"

        def build(self, options: Mapping[str, Any]) -> dict[str, Any]:
            return {}

    RestartPolicy(wait=5)
    SessionPool(42, spawner=CommandSpawner(["x"]))
""")


def test_mypy_strict_accepts_a_correct_plugin_and_rejects_a_wrong_one(tmp_path: Path) -> None:
    good = tmp_path / "wirepool_sites"
    shutil.copytree(EXAMPLE / "wirepool_sites", good)
    result = mypy([good], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "Success: no issues found" in result.stdout

    bad = tmp_path / "bad_plugin.py"
    bad.write_text(WRONG_PLUGIN)
    result = mypy([bad], tmp_path)
    assert result.returncode == 1
    out = result.stdout
    assert 'Signature of "check" incompatible with supertype' in out
    assert 'Return type "bool" of "probe" incompatible with return type "Verdict"' in out
    assert 'Return type "dict[str, Any]" of "build" incompatible with return type "PoolSpec"' in out
    assert 'Argument "wait" to "RestartPolicy" has incompatible type "int"' in out
    assert 'Argument 1 to "SessionPool" has incompatible type "int"' in out
    assert "Found 5 errors in 1 file" in out
