"""docs/plugins.md is tested code: its minimal plugin is a file of at most
40 lines that type-checks with ``mypy --strict`` and serves real sites, and
every other Python block is an excerpt of the example plugin's tested
source, line by line."""

from __future__ import annotations

import importlib.util
import re
import urllib.request
from pathlib import Path
from types import ModuleType

from conftest import alive, wait_for
from test_third_party_plugin import free_port, mypy

from wirepool.testing import PoolFactory

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
BLOCK = re.compile(r"(?:<!-- (\S+): (\S+) -->\n)?```(\w*)\n(.*?)```", re.S)


def blocks() -> list[tuple[str | None, str | None, str, str]]:
    """Every fenced block of the guide: (marker, path, language, text)."""
    return [m.groups() for m in BLOCK.finditer(GUIDE.read_text())]  # type: ignore[misc]


def code_lines(text: str) -> list[str]:
    """Lines as compared: stripped, a trailing ``  # comment`` dropped,
    elisions (``...``) and blank lines left out."""
    out = []
    for line in text.splitlines():
        code = line.split("  #")[0].strip()
        if code and code != "...":
            out.append(code)
    return out


def test_every_python_block_is_the_minimal_plugin_or_an_excerpt_of_tested_code() -> None:
    found = [b for b in blocks() if b[2] in ("python", "toml")]
    assert len(found) >= 10
    for marker, path, language, text in found:
        assert marker in ("minimal-plugin", "excerpt"), f"an unmarked {language} block:\n{text}"
        assert path is not None
        source = set(code_lines((ROOT / path).read_text()))
        missing = [line for line in code_lines(text) if line not in source]
        assert not missing, f"not in {path}: {missing}"


def minimal_plugin() -> tuple[Path, str]:
    [(path, text)] = [(p, t) for m, p, _, t in blocks() if m == "minimal-plugin"]
    return ROOT / str(path), text


def test_the_minimal_plugin_is_the_file_and_at_most_40_lines(tmp_path: Path) -> None:
    path, text = minimal_plugin()
    assert text == path.read_text()  # the guide shows the file whole
    assert len(path.read_text().splitlines()) <= 40  # wc -l
    result = mypy([path], tmp_path)
    assert result.returncode == 0, result.stdout


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("wirepool_mini", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_minimal_plugin_serves_sites_and_explains_the_others(
    pool_factory: PoolFactory, session_root: Path
) -> None:
    plugin = load(minimal_plugin()[0]).MiniPlugin()
    port = free_port()
    for name, text in (("web", str(port)), ("low", "80"), ("typo", "eighty")):
        (session_root / name).mkdir()
        (session_root / name / "port").write_text(text)
    (session_root / "web" / "index.html").write_text("mini")
    spec = plugin.build({"root": str(session_root)})  # a plain mapping is enough
    assert spec.root == session_root and spec.root_problem() is None
    pool = pool_factory(spec.discovery, spec.spawner, eligibility=spec.eligibility)
    snap = pool.wait_until(
        lambda s: {"web", "low", "typo"} <= set(s.sessions) and s["web"].state == "running"
    )
    assert (snap["low"].state, snap["low"].reason) == ("ineligible", "port 80 < 1024")
    assert snap["typo"].state == "ineligible"
    assert "port file says 'eighty', not a number" in snap["typo"].reason

    def served() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as r:
                return bytes(r.read())
        except OSError:
            return None

    assert wait_for(served) == b"mini"
    pid = snap["web"].pid
    assert pid is not None and alive(pid)
