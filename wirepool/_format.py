"""Durations written for people, by one function in two precisions.

* ``fine`` -- the status table's UPTIME and NEXT columns, where a countdown
  ticks: ``1.1s``, ``45s``, ``2m05s``, ``1h03m``, ``2d04h``.
* coarse (the default) -- the reasons eligibility gives ("active 5m ago",
  "idle for 9.0d (limit 7.0d)"): one unit, at most one decimal, so a reason
  changes only when its rounded value does (a record is rewritten whenever
  a session's verdict changes).
"""

from __future__ import annotations

import math
import time

__all__ = ["format_age", "format_wall"]


def format_age(seconds: object, *, fine: bool = False) -> str:
    """``seconds`` for people.  Coarse: whole seconds below 2 minutes, whole
    minutes below 2 hours, tenths of hours below 2 days, tenths of days
    beyond.  Fine: tenths of seconds below 10 s, then two units.

    Whatever is not a duration (None, a string or a bool from a hand-edited
    status file, NaN) is ``-``; +infinity is ``never`` (a restart that will
    not come); a negative duration (a clock that stepped back) is ``0s``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    if math.isnan(seconds) or seconds == -math.inf:
        return "-"
    if seconds == math.inf:
        return "never"
    seconds = max(0.0, float(seconds))
    if fine:
        return _fine(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _fine(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_wall(when: float) -> str:
    """A wall time for people, in the host's local zone with its offset
    (``2026-12-02 09:30:01 +0000``), as ``systemctl status`` prints one."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(when))
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
