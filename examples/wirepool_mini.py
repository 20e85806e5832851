"""The smallest complete plugin: one web server per ROOT/<dir>/port file."""

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wirepool import plugin as wp


def read_port(directory: Path) -> dict[str, int]:  # discovery: a session's settings
    text = (directory / "port").read_text().strip()
    if not text.isdigit():
        raise wp.ConfigError(f"port file says {text!r}, not a number")
    return {"port": int(text)}


def allowed(session: wp.Session, now: float) -> wp.Verdict:  # eligibility, with a reason
    port = session.attrs["port"]
    return wp.Verdict(port >= 1024, f"port {port}" if port >= 1024 else f"port {port} < 1024")


def server(session: wp.Session) -> list[str]:  # spawn: an argv list, never a shell
    return [sys.executable, "-m", "http.server", str(session.attrs["port"])]


class MiniPlugin(wp.Plugin):
    name = "mini"

    def options(self) -> Sequence[wp.Option | wp.Argument]:
        return [wp.Argument("root", kind=Path), *wp.timing_options()]

    def build(self, options: Mapping[str, Any]) -> wp.PoolSpec:
        root = Path(options["root"]).absolute()
        scan = wp.DirectoryScan(root, marker="port", attrs=read_port)
        tail = wp.spec_tail(root, **wp.timing_from(options))
        return wp.PoolSpec(scan, wp.CommandSpawner(server), eligibility=allowed, **tail)
