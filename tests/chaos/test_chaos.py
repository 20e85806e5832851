"""The short chaos round of the normal suite (the long one: ``make chaos``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaos_driver import Chaos, Config


@pytest.mark.slow
@pytest.mark.timeout(600)  # a failure waits out the convergence bound; a pass takes ~1 min
def test_short_chaos_round_keeps_every_invariant(tmp_path: Path) -> None:
    lines: list[str] = []
    chaos = Chaos(
        Config(duration=40.0, burst=20.0, sessions=100, workdir=tmp_path, log=lines.append)
    )
    report = chaos.run()
    summary = json.dumps(report, indent=1)
    print("\n".join(lines))
    print(summary)
    # seeds differ per run; a failure prints the one to replay with
    # `python -m tests.chaos --seed N --duration 40 --burst 20`
    assert report["violations"] == [], f"seed {report['seed']}: {summary}"
    assert report["faults_total"] >= 20, summary
    assert report["checks"]["process-table samples"] >= 20, summary
