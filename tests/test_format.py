"""The one duration formatter, as the status table and eligibility reasons show it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from wirepool._format import format_age
from wirepool._types import Session
from wirepool.cli import render_table
from wirepool.eligibility import ActiveWithin

DAY = 86400.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (59.6, "60s"),
        (119.4, "119s"),
        (120, "2m"),
        (3599, "60m"),
        (7199, "120m"),
        (7200, "2.0h"),
        (5.25 * 3600, "5.2h"),
        (2 * DAY - 1, "48.0h"),
        (2 * DAY, "2.0d"),
        (7 * DAY, "7.0d"),
        (400 * DAY, "400.0d"),
        (-3.0, "0s"),  # a clock that stepped back
        (math.inf, "never"),
        (-math.inf, "-"),
        (math.nan, "-"),
        (None, "-"),
        ("12", "-"),  # a hand-edited status file
        (True, "-"),
    ],
)
def test_format_age(seconds: object, text: str) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0.4s"),  # a countdown that ticks
        (9.96, "10.0s"),
        (10, "10s"),
        (59.9, "59s"),
        (125, "2m05s"),
        (3780, "1h03m"),
        (2 * DAY + 4 * 3600, "2d04h"),
        (-3.0, "0.0s"),
        (math.inf, "never"),
        (None, "-"),
        (True, "-"),
    ],
)
def test_format_age_fine_for_the_status_table(seconds: object, text: str) -> None:
    assert format_age(seconds, fine=True) == text


def test_eligibility_reasons_and_the_status_table_use_the_one_formatter() -> None:
    session = Session("s", Path("/nonexistent"))
    now = 1_000_000.0
    idle = ActiveWithin(7 * DAY, probe=lambda s: now - 9 * DAY).check(session, now)
    assert idle.reason == "idle for 9.0d (limit 7.0d)"
    active = ActiveWithin(7 * DAY, probe=lambda s: now - 300).check(session, now)
    assert active.reason == "active 5m ago"
    doc = {
        "plugin": "p",
        "supervisor": {"pid": None, "running": False},
        "sessions": [
            {
                "name": "s",
                "state": "backoff",
                "pid": None,
                "uptime": 9 * DAY,
                "next_start_in": 300.0,
                "reason": idle.reason,
            }
        ],
    }
    row = next(line for line in render_table(doc).splitlines() if line.startswith("s "))
    assert "9.0d" in row  # the reason, coarse
    assert "9d00h" in row and "5m00s" in row  # uptime and countdown, fine
