"""The wire plugin: ``wirepool run wire`` replaces ``wire daemon --all-sessions``.

One ``wire daemon`` per real wire session, and only for real ones.  Each rule
below is the Rust supervisor's (``daemon_supervisor.rs``), unless it says
where and why it deliberately differs.

* Sessions are homes, keyed by their path relative to the sessions root
  (``by-key/<hash>`` or a legacy ``<name>``): two homes with one handle never
  collide, as they did in the Rust supervisor's handle-keyed child map.
* A home without a DID is a husk: reported in status, never supervised, never
  deleted (the 147-homes box of wire #212 is why the idle filter exists).
* Eligible = has a DID and (bound to a cwd | has ``private.key`` | active
  within ``WIRE_ALL_SESSIONS_MAX_IDLE_DAYS``).  "Bound" is computed correctly:
  wire looks the registry up with the by-key hash as a name, so nothing is
  ever bound there.
* The child is ``wire daemon --interval N`` -- never ``--session`` (the #174
  fork storm) -- with every ``WIRE_*`` variable removed and ``WIRE_HOME``
  pinned (plus ``WIRE_HOME_FORCE=1`` for a home that is not by-key shaped, so
  an ambient ``CLAUDE_CODE_SESSION_ID`` cannot redirect it).  Its output goes
  to a per-session log, not into the supervisor's.
* A live daemon named by ``state/wire/daemon.pid`` is adopted and watched,
  not duplicated -- but only after checking it really is ``wire ... daemon``
  and started no later than the record says.  A record naming a live pid that
  is *not* that daemon is moved aside before spawning: wire's own daemon
  trusts any live pid there and would skip forever.
* A daemon whose ``last_sync.json`` stops advancing is hung and is restarted;
  the Rust supervisor could not see that at all.
* ``<sessions root>/supervisor.pid`` is honoured both ways, so the Rust
  supervisor and wirepool never run together.
* On exit the daemons are left running (they keep syncing) and the next
  supervisor adopts them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wirepool import (
    ActiveWithin,
    Always,
    Bound,
    CommandSpawner,
    Discovery,
    Eligibility,
    Environment,
    Guard,
    HasMarker,
    HealthCheck,
    HeartbeatCheck,
    Plugin,
    PoolSpec,
    ProcessIdentity,
    Session,
    SpawnError,
    Verdict,
    Worker,
)
from wirepool._log import logger
from wirepool._proc import cmdline, create_time, identity_of
from wirepool.eligibility import TrustedDirectory
from wirepool.plugin import Option, spec_tail, timing_from, timing_options
from wirepool_wire import layout

if TYPE_CHECKING:
    from wirepool.service import ServiceManager

__all__ = [
    "SupervisorPidGuard",
    "WireDaemonHealth",
    "WireDiscovery",
    "WirePlugin",
    "wire_eligibility",
    "wire_spec",
]

ACTIVITY_FILES = (
    "state/wire/last_sync.json",
    "state/wire/notify.cursor",
    "state/wire/reactor.cursor",
)
DAEMON_PID = "state/wire/daemon.pid"


class WireDiscovery(Discovery):
    """Every wire session home under the sessions root.

    A change is placed in the home it names (an entry of the root or of
    ``by-key/``); a new ``registry.json`` in the homes whose binding it
    changed.  Only ``by-key/`` itself appearing or going costs a full scan."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.husks: list[Path] = []
        self._registry: dict[str, str] = {}
        self._registry_error: str | None = None
        #: what the registry binds: a directory name -> its cwd
        self._bindings: dict[str, str] = {}
        #: the homes of the last scan, by key (for what a registry change binds)
        self._homes: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"WireDiscovery({str(self.root)!r})"

    def registry(self) -> dict[str, str]:
        """The cwd -> name registry; a corrupt one keeps the last good copy,
        so a half-written ``registry.json`` cannot unbind (and stop) a
        session."""
        try:
            self._registry = layout.read_registry(self.root)
            self._registry_error = None
        except (layout.RegistryError, OSError) as exc:
            if self._registry_error != str(exc):
                logger.warning("registry.json unusable ({}); keeping the last good copy", exc)
            self._registry_error = str(exc)
        self._bindings = layout.binding_index(self._registry)
        return self._registry

    def discover(self) -> list[Session]:
        if not self.root.exists():
            # wire's list_sessions: no root, no sessions.  (A root that exists
            # but cannot be read raises below: "no change", not "all gone".)
            self.husks = []
            self._homes = {}
            return []
        homes, husks = layout.scan_homes(self.root)
        self.husks = husks
        self.registry()
        self._homes = {home.key: home.path for home in homes}
        return [self._session(home) for home in homes]

    def _session(self, home: layout.WireHome) -> Session:
        cwd = self._bindings.get(home.path.name)
        return Session(
            name=home.key,
            home=home.path,
            cwd=Path(cwd) if cwd is not None else None,
            attrs={
                "display_name": home.handle,
                "handle": home.handle,
                "did": home.did,
                "legacy": home.legacy,
                "has_private_key": home.has_private_key,
            },
        )

    def affected(self, changes: Collection[tuple[Path, str]]) -> Collection[str] | None:
        by_key = self.root / layout.BY_KEY_DIR
        names: set[str] = set()
        for directory, name in changes:
            if directory == by_key and name:
                names.add(f"{layout.BY_KEY_DIR}/{name}")
            elif directory != self.root or not name or name == layout.BY_KEY_DIR:
                return None  # the root or by-key/ itself: look at it all
            elif name == "registry.json":
                before = self._bindings
                self.registry()
                names.update(
                    key
                    for key, path in self._homes.items()
                    if before.get(path.name) != self._bindings.get(path.name)
                )
            else:
                names.add(name)
        return names

    def rediscover(self, names: Collection[str]) -> list[Session]:
        if not self.root.exists():
            raise FileNotFoundError(f"sessions root {self.root} is gone")
        sessions = []
        husks = set(self.husks)
        for name in names:
            found = layout.examine_key(self.root, name)
            husks.discard(self.root / name)
            self._homes.pop(name, None)
            if isinstance(found, layout.WireHome):
                self._homes[name] = found.path
                sessions.append(self._session(found))
            elif found is not None:
                husks.add(found)
        self.husks = sorted(husks)
        return sessions

    def watch_paths(self) -> Sequence[Path]:
        return [p for p in (self.root, self.root / layout.BY_KEY_DIR) if p.is_dir()]


class _TrustedHomeSpawner(CommandSpawner):
    def spawn(self, session: Session) -> Worker:
        # Judged again right before the exec: a restart after a backoff
        # reuses the verdict of the last pass, and whoever can rename
        # entries of the sessions root could have swapped the home since.
        verdict = TRUSTED_HOME.check(session, time.time())
        if not verdict.eligible:
            raise SpawnError(verdict.reason)
        return super().spawn(session)


#: A home must be trusted before a daemon runs in it.  wire's daemon runs
#: no program named in its home, but it runs as the supervisor's user with
#: the home as its working directory and ``WIRE_HOME``: it takes its
#: identity, relay and peers from ``config/wire/``, and writes its pidfile,
#: cursors and logs under ``state/wire/`` by name, following any symlink
#: planted there.  Whoever can write a home (or plant a symlink to one) can
#: so make the supervisor's user write any file it may write -- for a root
#: supervisor, a way to code execution -- so a home owned by another user,
#: or writable by group or others, is refused with the reason, as a service
#: directory is.  The directories inside a trusted home could only have
#: been made by its trusted owner, so they are not stat'ed on every pass.
TRUSTED_HOME = TrustedDirectory("home")


def wire_eligibility(max_idle: float | None) -> Eligibility:
    """Bound, or has ``private.key``, or active within ``max_idle`` seconds
    (None: no filter).  Built from the stock strategies, so status shows the
    reason each one gave."""
    if max_idle is None:
        return Always()
    return Bound() | HasMarker("config/wire/private.key") | ActiveWithin(max_idle, ACTIVITY_FILES)


class WireDaemonHealth(HealthCheck):
    """Finds a live ``wire daemon`` through ``daemon.pid``; sees a hung one.

    Args:
        hung_after: seconds without a ``last_sync.json`` advance before a
            running daemon counts as hung.
        start_tolerance: slack between the pidfile's ``started_at`` and the
            kernel's start time of the process.
    """

    failures_before_restart = 1

    def __init__(self, hung_after: float, *, start_tolerance: float = 2.0) -> None:
        self.hung_after = float(hung_after)
        self.interval = max(5.0, self.hung_after / 4)
        self.start_tolerance = start_tolerance
        self._problems: dict[str, str] = {}
        # The timestamp inside last_sync.json (its mtime if unreadable).
        self._last_sync = HeartbeatCheck(
            "state/wire/last_sync.json", self.hung_after, beat=_last_sync_ts, name="last sync"
        )

    def __repr__(self) -> str:
        return f"WireDaemonHealth(hung_after={self.hung_after})"

    def verify(self, record: layout.DaemonPidRecord) -> tuple[ProcessIdentity | None, str]:
        """The daemon's identity, or None and why it is not that daemon."""
        ident = identity_of(record.pid)
        if ident is None:
            return None, "dead"
        argv = cmdline(record.pid)
        # argv None: we may not read it (hidepid, another user).  That is
        # "cannot tell", and a second daemon is worse than a skipped spawn.
        if argv is not None and not layout.is_wire_daemon_cmdline(argv):
            return None, "alive but not a wire daemon (pid reused)"
        if argv is not None and layout.is_wire_supervisor_cmdline(argv):
            return None, "alive but it is a supervisor, not a daemon"
        if record.started_at is not None:
            actual = create_time(record.pid)
            if actual is None or actual > record.started_at.timestamp() + self.start_tolerance:
                return None, "alive but started after the record was written (pid reused)"
        return (ident, "") if identity_of(record.pid) == ident else (None, "dead")

    def existing(self, session: Session) -> ProcessIdentity | None:
        path = session.home / DAEMON_PID
        record = layout.read_daemon_pid(path)
        self._problems.pop(session.name, None)
        if record is None:
            why = layout.daemon_pid_problem(path)
            if why is not None:
                self._problems[session.name] = f"ignored unusable {DAEMON_PID}: {why}"
            return None
        ident, why = self.verify(record)
        if ident is None and why != "dead":
            self._problems[session.name] = f"{DAEMON_PID} named pid {record.pid}, {why}"
            # wire's daemon would see this live pid and skip forever: move the
            # record aside (kept for inspection) so the daemon we start can run.
            target = path.with_name(f"daemon.pid.stale-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(path, target)
                logger.warning(
                    "session {!r}: daemon.pid names pid {}, {}; moved it to {}",
                    session.display_name,
                    record.pid,
                    why,
                    target.name,
                )
        return ident

    def probe(self, session: Session, identity: ProcessIdentity, now: float) -> Verdict:
        return self._last_sync.probe(session, identity, now)

    def problem(self, session: Session) -> str | None:
        return self._problems.get(session.name)


def _last_sync_ts(session: Session) -> float | None:
    synced = layout.read_last_sync(session.home)
    return synced.timestamp() if synced is not None else None


class SupervisorPidGuard(Guard):
    """``<sessions root>/supervisor.pid``: a bare pid, as the Rust supervisor
    writes it.  While we hold it the Rust supervisor exits 0 ("skipped"); while
    a live Rust supervisor (or another wirepool) holds it, we do the same."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / "supervisor.pid"

    def holder(self) -> int | None:
        pid = layout.read_supervisor_pid(self.root)
        if pid is None or pid == os.getpid() or identity_of(pid) is None:
            return None
        argv = cmdline(pid) or []
        if layout.is_wire_supervisor_cmdline(argv) or any("wirepool" in a for a in argv):
            return pid
        return None  # a reused pid: the file is stale

    def describe(self, holder: int) -> str:
        argv = cmdline(holder) or []
        who = (
            "wire's own supervisor"
            if layout.is_wire_supervisor_cmdline(argv)
            else ("another supervisor")
        )
        return f"{who} is already running on {self.root} (pid {holder})"

    def acquire(self) -> int | None:
        holder = self.holder()
        if holder is not None:
            return holder
        self.claim()
        return None

    def claim(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # mkstemp, not a predictable name: a symlink planted at
        # ".supervisor.pid.<pid>.tmp" was followed, and the write clobbered
        # whatever it pointed at (any file, for a root supervisor).
        fd, tmp = tempfile.mkstemp(prefix=".supervisor.pid.", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            os.chmod(tmp, 0o644)  # wire's own readers may run as anyone
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def release(self) -> None:
        if layout.read_supervisor_pid(self.root) == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()


def _installed_version(wire_bin: str | None) -> str | None:
    if not wire_bin:
        return None
    try:
        out = subprocess.run(
            [wire_bin, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+(?:\.\d+)+\S*)", out)
    return match.group(1) if match else None


def _wire_daemon_pids() -> list[int]:
    pids = []
    import psutil  # only here: the supervisor itself never needs it on Linux

    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info.get("cmdline") or []
        if layout.is_wire_daemon_cmdline(argv) and identity_of(proc.info["pid"]) is not None:
            pids.append(int(proc.info["pid"]))
    return pids


def annotate_status(
    doc: dict[str, Any], root: Path, wire_bin: str | None, discovery: WireDiscovery
) -> None:
    """Add what ``wire supervisor --json`` reports to a status document."""
    guard = SupervisorPidGuard(root)
    sup_pid = layout.read_supervisor_pid(root)
    doc["sessions_root"] = str(root)
    doc["supervisor_pid"] = sup_pid
    doc["supervisor_alive"] = sup_pid is not None and (
        sup_pid == os.getpid() or guard.holder() == sup_pid
    )
    installed = _installed_version(wire_bin)
    doc["installed_version"] = installed
    session_pids: set[int] = set()
    stale: list[str] = []
    stale_unmanaged: list[str] = []
    now = time.time()
    for sess in doc.get("sessions", []):
        home = Path(sess.get("home", ""))
        sess["home_dir"] = str(home)
        record = layout.read_daemon_pid(home / DAEMON_PID)
        daemon_pid = record.pid if record else None
        daemon_alive = daemon_pid is not None and identity_of(daemon_pid) is not None
        sess["daemon_pid"] = daemon_pid
        sess["daemon_alive"] = daemon_alive
        synced = layout.read_last_sync(home)
        sess["last_sync_age_seconds"] = (
            max(0, int(now - synced.timestamp())) if synced is not None else None
        )
        if record is not None and record.version is not None:
            sess["daemon_version"] = record.version
        if daemon_alive and daemon_pid is not None:
            session_pids.add(daemon_pid)
        if isinstance(sess.get("pid"), int) and sess.get("alive"):
            session_pids.add(sess["pid"])
        name = str(sess.get("display_name") or sess.get("name"))
        if (
            daemon_alive
            and installed
            and record is not None
            and record.version
            and layout.version_is_older(record.version, installed)
        ):
            stale.append(name)
            if sess.get("state") == "ineligible":
                stale_unmanaged.append(name)
    excluded = session_pids | ({sup_pid} if sup_pid else set())
    doc["unmanaged_pids"] = sorted(p for p in _wire_daemon_pids() if p not in excluded)
    doc["stale_binary_sessions"] = stale
    doc["stale_unmanaged_sessions"] = stale_unmanaged
    if not discovery.husks:
        with contextlib.suppress(OSError):
            discovery.husks = layout.scan_homes(root)[1]
    doc["husks"] = [str(p) for p in discovery.husks]
    notes = doc.setdefault("notes", [])
    if doc["unmanaged_pids"]:
        notes.append(
            f"unmanaged: {len(doc['unmanaged_pids'])} `wire daemon` pid(s) no session "
            f"accounts for: {', '.join(map(str, doc['unmanaged_pids']))}"
        )
    if stale:
        notes.append(f"stale binary: {', '.join(stale)} run daemons older than wire {installed}")
    if discovery.husks:
        notes.append(
            f"husks: {len(discovery.husks)} home(s) without a DID (not supervised, never deleted)"
        )


def wire_spec(
    sessions_root: Path | None = None,
    *,
    wire_bin: str | None = None,
    interval: int = 5,
    max_idle_days: float | None = None,
    env: Mapping[str, str] | None = None,
    hung_after: float | None = None,
    state_dir: Path | None = None,
    grace: float = 10.0,
    stop_grace: float = 10.0,
    rescan_interval: float = 10.0,
) -> PoolSpec:
    """The pool that replaces ``wire daemon --all-sessions``."""
    env = os.environ if env is None else env
    root = (
        Path(sessions_root)
        if sessions_root is not None
        else layout.resolve_sessions_root(env, sys.platform, Path.home())
    ).absolute()
    if max_idle_days is not None:
        max_idle = None if max_idle_days == 0 else max_idle_days * layout.SECONDS_PER_DAY
    else:
        max_idle = layout.parse_max_idle_days(env.get("WIRE_ALL_SESSIONS_MAX_IDLE_DAYS"))
    binary = wire_bin or shutil.which("wire")
    interval = max(1, int(interval))

    def argv(session: Session) -> list[str]:
        if not binary:
            raise SpawnError("no `wire` binary on PATH (pass --wire-bin)")
        # Never --session: #174 fork-stormed 127 of 133 homes with it.
        return [binary, "daemon", "--interval", str(interval)]

    def extra_env(session: Session) -> dict[str, str]:
        # A home that is not by-key shaped loses to an ambient session key
        # (CLAUDE_CODE_SESSION_ID, ...) unless forced.
        if layout.is_by_key_name(session.home.name) and session.home.parent.name == "by-key":
            return {}
        return {"WIRE_HOME_FORCE": "1"}

    discovery = WireDiscovery(root)
    spec = PoolSpec(
        discovery=discovery,
        eligibility=TRUSTED_HOME & wire_eligibility(max_idle),
        spawner=_TrustedHomeSpawner(
            argv,
            cwd="{home}",
            env=Environment(strip_prefixes=("WIRE_",), set={"WIRE_HOME": "{home}"}),
            env_for=extra_env,
        ),
        health=WireDaemonHealth(
            hung_after if hung_after is not None else max(60.0, 10.0 * interval)
        ),
        **spec_tail(
            root,
            state_dir=state_dir,
            grace=grace,
            stop_grace=stop_grace,
            rescan_interval=rescan_interval,
            # wire's list_sessions: no sessions root yet is no sessions yet
            missing_root_ok=True,
        ),
        guard=SupervisorPidGuard(root),
        extra={"sessions_root": root, "wire_bin": binary, "max_idle": max_idle},
    )
    spec.annotate = lambda doc: annotate_status(doc, root, binary, discovery)
    return spec


class WirePlugin(Plugin):
    """Supervise ``wire daemon`` for every wire session (replaces --all-sessions)."""

    name = "wire"
    description = "one `wire daemon` per wire session home (replaces `wire daemon --all-sessions`)"

    def options(self) -> Sequence[Option]:
        return [
            Option(
                "--sessions-root",
                kind=Path,
                file_okay=False,
                default=None,
                help="wire's sessions root (default: as wire resolves it).",
            ),
            Option(
                "--wire-bin",
                default=None,
                run_only=True,
                help="The wire binary (default: on PATH).",
            ),
            Option(
                "--interval",
                kind=int,
                min=1,
                default=5,
                show_default=True,
                run_only=True,
                help="Sync interval passed to each `wire daemon`.",
            ),
            Option(
                "--max-idle-days",
                kind=float,
                min=0,
                default=None,
                help="Idle cutoff for unbound sessions without private.key "
                "(default: $WIRE_ALL_SESSIONS_MAX_IDLE_DAYS, else 7; 0 = no filter).",
            ),
            Option(
                "--hung-after",
                kind=float,
                min=1,
                default=None,
                run_only=True,
                help="Seconds without a last_sync.json advance before a daemon is "
                "restarted as hung (default: 10 intervals, at least 60).",
            ),
            *timing_options(rescan_interval=10.0, what="home"),
        ]

    def service_advice(self, manager: ServiceManager) -> Sequence[str]:
        """wire's own supervisor units (``wire service install``), which
        serve the same sessions, and how to remove them."""
        # imported here: only the service commands need it, never `wirepool run`
        from wirepool_wire.service import service_advice

        return service_advice(manager)

    def build(self, options: Mapping[str, Any]) -> PoolSpec:
        return wire_spec(
            options.get("sessions_root"),
            wire_bin=options.get("wire_bin"),
            interval=int(options.get("interval") or 5),
            max_idle_days=options.get("max_idle_days"),
            hung_after=options.get("hung_after"),
            **timing_from(options, rescan_interval=10.0),
        )
