"""The plugin's own tests, written the way a plugin author writes them:
wirepool's pytest plugin supplies ``pool_factory`` and ``session_root``
(no conftest needed), and ``pool_factory`` fails the test if any server
outlives it."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

from wirepool_sites import SitesPlugin

from wirepool.testing import PoolFactory, assert_one_child_per_session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_site(root: Path, name: str, config: object) -> Path:
    site = root / name
    site.mkdir()
    (site / "site.json").write_text(json.dumps(config))
    (site / "index.html").write_text(f"hello from {name}")
    return site


def test_serves_each_site_and_explains_the_bad_one(
    pool_factory: PoolFactory, session_root: Path
) -> None:
    port = free_port()
    add_site(session_root, "blog", {"port": port})
    add_site(session_root, "broken", {"port": "eighty"})
    spec = SitesPlugin().build({"root": session_root})  # the options' defaults for the rest
    pool = pool_factory(spec.discovery, spec.spawner, eligibility=spec.eligibility,
                        health=spec.health, restart=spec.restart)  # fmt: skip
    snap = pool.wait_until(lambda s: "blog" in s and s["blog"].state == "running" and "broken" in s)
    assert "needs a port" in snap["broken"].reason
    assert snap["broken"].state == "ineligible"
    assert_one_child_per_session(pool, ["blog"])

    assert get(port, "/index.html") == b"hello from blog"


def get(port: int, path: str, timeout: float = 30.0) -> bytes:
    """GET a page, retrying while the server is still binding its port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
