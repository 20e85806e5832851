"""Smoke test of the comparison harness (benchmarks/compare.py --quick).

It checks the harness, not the numbers: the JSON, markdown (and chart, if
matplotlib is there) come out with every expected row and metric, peers that
are not run get a "not available" row, and no process is left behind.  Only
raw and wirepool run, so it needs nothing installed and no network."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPARE = REPO / "benchmarks" / "compare.py"
OTHERS = ("supervisord", "circus", "runit", "s6")


def leftovers(directory: Path) -> list[int]:
    """Live processes whose cwd is inside ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").readlink()
        except OSError:
            continue
        if str(cwd).startswith(str(directory)):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness reads /proc")
def test_quick_comparison_writes_every_row_and_leaks_nothing(tmp_path: Path) -> None:
    out, work = tmp_path / "results", tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(COMPARE),
            "--quick",
            "--skip",
            ",".join(OTHERS),
            "--out",
            str(out),
            "--tmp",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [js] = out.glob("compare-quick-2*.json")
    result = json.loads(js.read_text())
    assert result["quick"] is True
    assert result["sizes"] == [20]
    assert len(result["load_before"]) == 3
    assert len(result["load_after"]) == 3
    for peer in OTHERS:
        assert "unavailable" in result["results"][peer]
    for peer in ("raw", "wirepool"):
        r = result["results"][peer]["sizes"]["20"]
        assert "error" not in r, r
        assert r["bringup_children"] == 20
        for key in ("bringup_s", "idle_cpu_pct", "memory_pss_mb", "memory_rss_mb", "stop_s"):
            assert isinstance(r[key], float | int), (peer, key)
        assert r["restart"]["n"] == 3
        assert {"median_ms", "p95_ms"} <= set(r["restart"])
        assert r["leaked_processes"] == 0
        crash = result["results"][peer]["crash_loop"]
        assert {"spawns", "spawns_per_s", "cpu_pct"} <= set(crash)
        assert crash["leaked_processes"] == 0
    pickup = result["results"]["wirepool"]["sizes"]["20"]["pickup"]
    assert pickup["n"] == 2
    assert pickup["command"] is None
    assert "not_measured" in result["results"]["raw"]["sizes"]["20"]["pickup"]
    wire = result["wire"]
    assert wire["daemons"] == wire["seed_daemons"] == 3
    assert wire["spawns_in_non_real_homes"] == 0
    assert wire["leaked_processes"] == 0
    assert {t["target"].split(" (")[0] for t in result["targets"]} >= {
        "restart median ≤ 1.5x raw",
        "automatic pickup median ≤ 50 ms",
        "bring-up ≤ 1.3x raw",
        "idle CPU ≤ 0.1 %",
        "crash loop ≤ 10 spawns/s",
    }

    md = js.with_suffix(".md").read_text()
    for row in (
        "bring-up (s)",
        "restart median (ms)",
        "restart p95 (ms)",
        "pickup median (ms)",
        "pickup needs",
        "idle CPU (% of a core)",
        "memory PSS (MB)",
        "stop (s)",
        "spawns/s",
        "supervisor CPU (%)",
        "wire box",
    ):
        assert row in md, row
    assert "| metric | raw | wirepool | supervisord | circus | runit | s6 |" in md
    assert md.count("not available") >= len(OTHERS)
    assert (out / "compare-quick-latest.json").exists()
    if importlib.util.find_spec("matplotlib") is not None:
        assert js.with_suffix(".png").stat().st_size > 0
    assert leftovers(work) == []
