"""The README's embedding example runs as written."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import alive

README = Path(__file__).resolve().parent.parent / "README.md"


def embedding_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- embedding-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "the README lost its embedding example"
    return match.group(1)


def test_readme_embedding_example_is_ten_lines_and_runs_as_written(tmp_path: Path) -> None:
    code = embedding_example()
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 10
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("running: ")
    pids = ast.literal_eval(line.removeprefix("running: "))
    assert set(pids) == {"alpha", "beta"}
    assert all(isinstance(p, int) for p in pids.values())
    assert not any(alive(p) for p in pids.values())  # the with-block stopped them
    assert list(tmp.iterdir()) == []  # and left no temporary directory behind
