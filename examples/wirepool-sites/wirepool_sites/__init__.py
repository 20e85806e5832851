"""wirepool-sites: one static web server per site directory.

The worked example of ``docs/plugins.md``.  ``wirepool run sites ROOT``
serves every ``ROOT/<site>/`` that holds a ``site.json`` such as
``{"port": 8001}`` with ``python -m http.server``, and restarts a server
that dies or stops answering HTTP.  Each of wirepool's four strategy
families appears once, so the file reads as a template:

* discovery   -- :class:`SiteDiscovery` (a :class:`wirepool.DirectoryScan`
  that also reads each ``site.json``);
* eligibility -- :class:`ValidSite`, combined with wirepool's own rules by
  ``&`` and ``~``;
* spawn       -- :func:`static_server` (a :class:`wirepool.CommandSpawner`
  whose argv is a function of the session);
* health      -- :class:`HttpCheck` (an HTTP probe every few seconds);

and restart timing is a tenacity wait (and, optionally, stop) strategy.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tenacity

from wirepool.plugin import (
    Argument,
    CommandSpawner,
    ConfigError,
    DirectoryScan,
    Eligibility,
    HasMarker,
    HealthCheck,
    NoDownFile,
    Option,
    Plugin,
    PoolSpec,
    ProcessIdentity,
    RestartPolicy,
    Session,
    Verdict,
    spec_tail,
    timing_from,
    timing_options,
    wait_jitter,
)

if TYPE_CHECKING:
    from wirepool.service import ServiceManager

__all__ = ["HttpCheck", "SiteDiscovery", "SitesPlugin", "ValidSite", "read_site", "static_server"]

CONFIG = "site.json"


def read_site(directory: Path) -> dict[str, Any]:
    """The site's settings.  A ``site.json`` that does not parse raises
    :class:`wirepool.ConfigError`: a server already running keeps running
    with its old settings (a typo mid-edit must not take a site down), and
    ``wirepool status`` shows why.  An ``OSError`` needs no catching:
    :class:`wirepool.DirectoryScan` does the same with it."""
    try:
        data = json.loads((directory / CONFIG).read_text())
    except ValueError as exc:
        raise ConfigError(f"{CONFIG} is not JSON: {exc}") from None
    port = data.get("port") if isinstance(data, dict) else None
    if not isinstance(port, int) or isinstance(port, bool):
        raise ConfigError(f"{CONFIG} needs a port (an integer), not {port!r}")
    return {"port": port}


class SiteDiscovery(DirectoryScan):
    """Every ``ROOT/<site>/`` with a ``site.json``; the parsed settings ride
    along in ``session.attrs``, so the other strategies never re-read it.
    Only changes to ``site.json`` and ``down`` wake the pool: the server's
    own writes in the directory do not."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, marker=CONFIG, attrs=read_site, watch_names=(CONFIG, "down"))


class ValidSite(Eligibility):
    """Eligible when the port ``site.json`` names is one a user may serve."""

    def check(self, session: Session, now: float) -> Verdict:
        port = session.attrs["port"]
        if not 1024 <= port <= 65535:
            return Verdict(False, f"port {port} is not between 1024 and 65535")
        return Verdict(True, f"port {port}")


def static_server(bind: str) -> CommandSpawner:
    """``python -m http.server PORT`` in the site's directory.  The argv is
    a function of the session -- a list, so a site's name or path never
    meets a shell -- and the fingerprint of what it returns tells the pool
    when a running server was started from an older ``site.json``."""

    def argv(session: Session) -> list[str]:
        port = str(session.attrs["port"])
        return [sys.executable, "-m", "http.server", port, "--bind", bind]

    return CommandSpawner(argv, cwd="{home}")


class HttpCheck(HealthCheck):
    """Restart a server that is alive but no longer answers ``HEAD /``."""

    def __init__(self, host: str, interval: float = 5.0, failures: int = 3) -> None:
        self.host = host
        self.interval = interval
        self.failures_before_restart = failures

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        conn = http.client.HTTPConnection(self.host, int(session.attrs["port"]), timeout=2)
        try:
            conn.request("HEAD", "/")
            status = conn.getresponse().status
        except OSError as exc:
            return Verdict(False, f"HEAD / failed: {exc}")
        finally:
            conn.close()
        return Verdict(status < 500, f"HEAD / answered {status}")


class SitesPlugin(Plugin):
    """Serve every ROOT/<site>/ that has a site.json."""

    name = "sites"
    description = "one static web server per ROOT/<site>/site.json (the plugin guide's example)"

    def options(self) -> Sequence[Option | Argument]:
        return [
            Argument("root", kind=Path, file_okay=False),
            Option("--bind", default="127.0.0.1", show_default=True),
            Option(
                "--max-failures",
                kind=int,
                min=0,
                default=0,
                help="Mark a site failed after this many rapid crashes in a row (0: never).",
            ),
            *timing_options(what="site"),
        ]

    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        # .get with the options' defaults: a test may pass a plain mapping
        root = Path(options["root"]).absolute()
        bind = str(options.get("bind", "127.0.0.1"))
        max_failures = int(options.get("max_failures", 0))
        return PoolSpec(
            discovery=SiteDiscovery(root),
            # wirepool's own rules combine with ours: `down` stops a site, and
            # so does a `maintenance` marker.
            eligibility=ValidSite() & NoDownFile() & ~HasMarker("maintenance"),
            spawner=static_server(bind),
            health=HttpCheck(bind),
            restart=RestartPolicy(
                # 0.5 s doubling to 30 s, each wait shortened by up to 20 % so
                # that sites crashing together do not restart in lockstep.
                wait=wait_jitter(tenacity.wait_exponential(multiplier=0.5, max=30)),
                stop=tenacity.stop_after_attempt(max_failures) if max_failures else None,
            ),
            **spec_tail(root, **timing_from(options)),
        )

    def service_advice(self, manager: ServiceManager) -> Sequence[str]:
        unit = {"systemd": "old-sites.service", "launchd": "org.example.old-sites"}[manager.kind]
        return [
            f"the old sites server is installed ({path}); remove it: "
            + manager.removal_command(unit, path)
            for path in manager.installed_files(unit)
        ]
