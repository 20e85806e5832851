"""Durations written for people, one way everywhere: the status table's UPTIME and NEXT
columns and the reasons eligibility gives ("active 5m ago", "idle for 9.0d (limit 7.0d)").

One unit, at most one decimal: short enough for a table cell, and a reason that changes only
when its rounded value does (a record is rewritten whenever a session's verdict changes).
"""

from __future__ import annotations

import math

__all__ = ["format_age"]


def format_age(seconds: object) -> str:
    """``seconds`` as ``45s``, ``12m``, ``3.5h`` or ``9.0d``: whole seconds below 2 minutes,
    whole minutes below 2 hours, tenths of hours below 2 days, tenths of days beyond.

    Whatever is not a duration (None, a string or a bool from a hand-edited status file, NaN)
    is ``-``; +infinity is ``never`` (a restart that will not come); a negative duration (a
    clock that stepped back) is ``0s``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    if math.isnan(seconds) or seconds == -math.inf:
        return "-"
    if seconds == math.inf:
        return "never"
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
