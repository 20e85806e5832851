"""The chaos driver: two real pools of ~100 sessions, faults at random, and
the invariants checked from the process table throughout.

Two supervisors run as real ``wirepool run`` subprocesses: ``servicedir``
over a service root and ``wire`` over a sessions root served by the fake
``wire`` binary.  For a bounded time a seeded RNG injects faults (children
killed, supervisors killed and replaced, a second supervisor started,
sessions added/removed/toggled ``down``, daemons started by hand, pidfiles
and state records corrupted or pointed at decoy processes).  A sampler
thread reads ``/proc`` the whole time; nothing it asserts comes from
wirepool's own status.

Who counts as a session's child: a process carrying the pool's marker
variables (``WIREPOOL_POOL`` = the pool id, ``WIREPOOL_SESSION``) that leads
its own session (every child is spawned with ``setsid``) and has no marked
ancestor (its own helpers inherit the markers but not the leadership).
That is the process table's truth, independent of any file wirepool writes.

Daemons started by hand carry no markers, as an operator's would not.  The
servicedir plugin has no way to see them (there is no pidfile convention):
they are strangers, and like the decoys they must never be signalled.  The
wire plugin adopts a hand-started daemon named by ``daemon.pid`` (watching,
never signalling it) instead of spawning; wire's own singleton makes a hand
daemon started while the pool's daemon holds ``daemon.pid`` exit at once.
Either way the rule checked is the same: the test alone may signal a
process it started, so a hand daemon or decoy that dies of a signal the
test did not send is a violation.  When the faults stop, the test retires
its hand daemons, so convergence is judged on the pool's own children.

Runnable as ``python -m tests.chaos --duration 900 --seed 7 --sessions 100``
(or ``make chaos DURATION=900``); ``test_chaos.py`` runs a short round.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parent.parent
if str(_TESTS) not in sys.path:  # run as a script or `python -m tests.chaos`
    sys.path.insert(0, str(_TESTS))

from conftest import WIREPOOL, Supervisor, Tracker, wait_for  # noqa: E402
from wirepool_wire.fake_wire import install_fake_wire  # noqa: E402
from wirepool_wire.fixtures import make_home  # noqa: E402

from wirepool._proc import (  # noqa: E402
    ProcessIdentity,
    identity_of,
    is_alive,
    parent_pid,
    pids_with_environ,
    signal_group,
)

LONG = "100000"
SCRIPTS = {
    "plain": f"#!/bin/sh\nexec sleep {LONG}\n",
    # ignores SIGTERM (an ignored signal stays ignored across exec): every
    # stop of it needs the SIGKILL escalation
    "stubborn": f"#!/bin/sh\ntrap '' TERM\nexec sleep {LONG}\n",
    "env": '#!/bin/sh\nexec sleep "$NAP"\n',
    # a helper in the child's process group: killing only the leader
    # leaves it behind unless the supervisor cleans up the group
    "forking": f"#!/bin/sh\nsleep {LONG} &\nexec sleep {LONG}\n",
}
KIND_WEIGHTS = {"plain": 50, "stubborn": 20, "env": 15, "forking": 15}

DECOY = """\
import signal, sys, time
log = sys.argv[1]
def note(signum, frame):
    with open(log, "a") as fh:
        fh.write(f"{signum}\\n")
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
            signal.SIGUSR2, signal.SIGQUIT, signal.SIGALRM, signal.SIGCONT):
    signal.signal(sig, note)
open(log, "a").close()
while True:
    time.sleep(3600)
"""

FAULT_WEIGHTS = {
    "child_sigkill": 20,
    "child_sigterm": 14,
    "child_crashloop": 2,
    "supervisor_sigkill": 5,
    "supervisor_sigterm": 2,
    "second_supervisor": 4,
    "session_add": 7,
    "session_remove": 5,
    "toggle_down": 10,
    "hand_daemon": 8,
    "hand_retire": 3,
    "hand_first": 3,
    "pidfile_corrupt": 5,
    "pidfile_decoy": 5,
    "record_truncate_live": 3,
    "status_truncate": 2,
    "supervisor_json_decoy": 2,
}


def pool_id(state_dir: Path) -> str:
    """The pool id the engine derives from its state dir (its marker value)."""
    return hashlib.sha256(os.fsencode(os.path.realpath(state_dir))).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Marked:
    """A live process carrying a pool's markers, as /proc shows it."""

    pid: int
    start: int
    ppid: int
    sid: int
    pool: str
    session: str

    @property
    def ident(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start)


def scan_marked(pools: set[str]) -> list[Marked]:
    """Every live, non-zombie process carrying one of ``pools``' marker."""
    found = []
    for pool in pools:
        for pid, env in pids_with_environ([("WIREPOOL_POOL", pool)]).items():
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    stat = fh.read()
                tail = stat[stat.rfind(b")") + 2 :].split()
                state, ppid, sid, start = tail[0], int(tail[1]), int(tail[3]), int(tail[19])
            except (OSError, IndexError, ValueError):
                continue
            if state not in (b"Z", b"X", b"x"):
                found.append(Marked(pid, start, ppid, sid, pool, env.get("WIREPOOL_SESSION", "")))
    return found


def children_of(marked: list[Marked]) -> dict[tuple[str, str], list[Marked]]:
    """(pool, session) -> the children: session leaders without a marked
    ancestor."""
    by_pid = {m.pid: m for m in marked}
    out: dict[tuple[str, str], list[Marked]] = {}
    for m in marked:
        if m.sid != m.pid:
            continue
        parent, hops, descendant = m.ppid, 0, False
        while parent > 1 and hops < 64:
            if parent in by_pid:
                descendant = True
                break
            parent = parent_pid(parent) or 0
            hops += 1
        if not descendant:
            out.setdefault((m.pool, m.session), []).append(m)
    return out


@dataclass
class Owned:
    """A process the test started (decoy or hand daemon): only the test may
    signal it, so dying of a signal the test did not send is a violation."""

    proc: subprocess.Popen[bytes]
    what: str
    session: str = ""
    signal_log: Path | None = None
    retired: bool = False
    ident: ProcessIdentity | None = None

    def verdict(self) -> str | None:
        rc = self.proc.poll()
        if rc is not None and rc < 0 and not self.retired:
            return f"{self.what} pid {self.proc.pid} died of signal {-rc}"
        if self.signal_log is not None:
            with contextlib.suppress(OSError):
                got = self.signal_log.read_text().split()
                if got:
                    return f"{self.what} pid {self.proc.pid} received signal(s) {got}"
        return None

    def retire(self) -> None:
        if self.proc.poll() is None:
            self.retired = True  # an exit before this one stays its own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@dataclass
class PoolRun:
    """One pool under test: its plugin arguments, state dir and supervisor."""

    plugin: str
    args: list[str]
    state_dir: Path
    id: str = ""
    sup: Supervisor | None = None
    generation: int = 0
    stderr_paths: list[Path] = field(default_factory=list)


@dataclass
class Config:
    duration: float = 30.0
    seed: int | None = None
    sessions: int = 100
    wire_share: float = 0.4
    rate: float = 2.0  # faults per second, on average
    bound: float = 120.0  # convergence bound after the last fault
    workdir: Path | None = None
    burst: float | None = None  # seconds of faults between quiet periods (None: one burst)
    sample_every: float = 0.2
    decoys: int = 3
    log: Callable[[str], None] = field(default=lambda msg: print(msg, flush=True))


class Violation(AssertionError):
    pass


class Chaos:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**32)
        self.rng = random.Random(self.seed)
        self.work = cfg.workdir or Path(tempfile.mkdtemp(prefix="wirepool-chaos-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.tracker = Tracker()
        self.faults: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.violations: list[str] = []
        self.notes: Counter[str] = Counter()
        self.decoys: list[Owned] = []
        self.hands: list[Owned] = []
        # refused second supervisors, by identity: their pids are soon reused
        self.refused: set[ProcessIdentity] = set()
        self.services: dict[str, str] = {}  # name -> kind
        self.homes: dict[str, Path] = {}  # session name -> home
        self.seen = set[ProcessIdentity]()  # every child identity ever sampled
        self.last_fault = time.monotonic()
        self.convergence: list[float] = []
        self._lock = threading.Lock()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._n = 0
        self._tried = 0
        self.max_load = 0.0
        self.adopted_hands: set[int] = set()
        self.svc_root = self.work / "services"
        self.wire_root = self.work / "wire" / "sessions"
        self.wire_bin = Path()
        self.pools: dict[str, PoolRun] = {}

    # ------------------------------------------------------------ helpers

    def say(self, msg: str) -> None:
        self.cfg.log(f"[chaos {time.strftime('%H:%M:%S')}] {msg}")

    def violate(self, msg: str) -> None:
        with self._lock:
            self.violations.append(msg)
        self.say(f"VIOLATION: {msg}")

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n:04d}"

    # -------------------------------------------------------------- setup

    def setup(self) -> None:
        self.say(f"seed {self.seed}; workdir {self.work}")
        self.svc_root.mkdir(parents=True)
        self.wire_root.mkdir(parents=True)
        self.wire_bin = install_fake_wire(self.work / "bin")
        n_wire = round(self.cfg.sessions * self.cfg.wire_share)
        for _ in range(self.cfg.sessions - n_wire):
            self.add_service()
        for _ in range(n_wire):
            self.add_home()
        decoy_py = self.work / "decoy.py"
        decoy_py.write_text(DECOY)
        for i in range(self.cfg.decoys):
            log = self.work / f"decoy-{i}.signals"
            proc = subprocess.Popen(
                [sys.executable, str(decoy_py), str(log)],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
            self.decoys.append(Owned(proc, f"decoy {i}", signal_log=log))
        for d in self.decoys:
            path = d.signal_log
            assert path is not None
            wait_for(path.exists, 30)
            d.ident = identity_of(d.proc.pid)
        timing = ["--grace", "2", "--stop-grace", "3", "--rescan-interval", "5"]
        svc_state = self.svc_root / ".wirepool"
        wire_state = self.wire_root / ".wirepool"
        self.pools = {
            "servicedir": PoolRun(
                "servicedir", ["servicedir", str(self.svc_root), *timing], svc_state
            ),
            "wire": PoolRun(
                "wire",
                [
                    "wire",
                    "--sessions-root",
                    str(self.wire_root),
                    "--wire-bin",
                    str(self.wire_bin),
                    "--interval",
                    "5",
                    "--max-idle-days",
                    "0",
                    *timing,
                ],
                wire_state,
            ),
        }
        for run in self.pools.values():
            run.state_dir.mkdir(parents=True, exist_ok=True)
            run.id = pool_id(run.state_dir)
            self.start_supervisor(run)
        self._sampler = threading.Thread(target=self._sample_loop, name="sampler", daemon=True)
        self._sampler.start()
        t0 = time.monotonic()
        self.wait_converged(self.cfg.bound, "initial start")
        self.say(f"all {self.cfg.sessions} sessions up in {time.monotonic() - t0:.1f}s")

    def add_service(self) -> str:
        name = self._name("svc")
        kind = self.rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0]
        d = self.svc_root / name
        d.mkdir()
        if kind == "env":
            (d / "env").mkdir()
            (d / "env" / "NAP").write_text(LONG + "\n")
        tmp = d / ".run.tmp"
        tmp.write_text(SCRIPTS[kind])
        tmp.chmod(0o755)
        tmp.rename(d / "run")  # `run` appears complete: no half-written script
        self.services[name] = kind
        return name

    def add_home(self) -> str:
        key = self._name("w")
        home = make_home(self.wire_root, key)
        name = str(home.relative_to(self.wire_root))
        self.homes[name] = home
        return name

    def start_supervisor(self, run: PoolRun) -> Supervisor:
        run.generation += 1
        err_path = self.work / "logs" / f"{run.plugin}-{run.generation}.stderr"
        err_path.parent.mkdir(exist_ok=True)
        run.stderr_paths.append(err_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRE_", "WIREPOOL_"))}
        with open(err_path, "w") as err:
            sup = self.tracker.supervisor(*run.args, env=env, stderr=err)
        # Wait until it holds the lock: a second supervisor started meanwhile
        # could otherwise win it, and the bookkeeping here would be wrong.
        wait_for(lambda: sup.of("supervisor_started") or sup.proc.poll() is not None, 60)
        if sup.proc.poll() is not None:
            raise Violation(
                f"{run.plugin} supervisor exited at start (rc {sup.proc.returncode}): "
                f"{err_path.read_text()[-2000:]}"
            )
        run.sup = sup
        return sup

    # ------------------------------------------------------------ sampling

    def _sample_loop(self) -> None:
        self._sampling.set()
        while self._sampling.is_set():
            try:
                self.sample()
            except Exception as exc:  # the sampler must not die quietly
                self.violate(f"sampler crashed: {type(exc).__name__}: {exc}")
                return
            time.sleep(self.cfg.sample_every)

    def sample(self) -> dict[tuple[str, str], list[Marked]]:
        ids = {run.id: name for name, run in self.pools.items()}
        marked = scan_marked(set(ids))
        kids = children_of(marked)
        self.checks["process-table samples"] += 1
        self.max_load = max(self.max_load, os.getloadavg()[0])
        self.checks["per-session child counts"] += len(kids)
        for m in marked:
            if self.refused and identity_of(m.ppid) in self.refused:
                self.violate(
                    f"refused second supervisor {m.ppid} started pid {m.pid} for {m.session}"
                )
        for key, group in kids.items():
            for m in group:
                self.seen.add(m.ident)
                self.tracker.pids.add(m.pid)
            if len(group) > 1:
                # /proc is read one process at a time: a child that died and
                # its replacement can both appear in one scan.  Both still
                # alive *after* the scan means both lived at the same time.
                live = [m for m in group if is_alive(m.ident)]
                if len(live) > 1:
                    self.violate(
                        f"{ids[key[0]]} session {key[1]!r} has {len(live)} live children: "
                        f"{[m.pid for m in live]}"
                    )
        wire = self.pools.get("wire")
        sup = wire.sup if wire is not None else None
        if wire is not None and sup is not None:
            self._check_adopted_hands(wire, sup, kids)
        if sup is not None and sup.proc.poll() is None:
            # wire's own singleton (the Rust supervisor honours it): it must
            # name the supervisor that holds the lock, or a Rust supervisor
            # would start beside it
            self.checks["supervisor.pid checks"] += 1
            with contextlib.suppress(OSError, ValueError):
                named = int((self.wire_root / "supervisor.pid").read_text().strip() or 0)
                if named != sup.proc.pid and sup.proc.poll() is None:
                    msg = f"wire supervisor.pid names {named}, not the supervisor {sup.proc.pid}"
                    if msg not in self.violations:
                        self.violate(msg)
        for owned in [*self.decoys, *self.hands]:
            self.checks["stranger checks"] += 1
            problem = owned.verdict()
            if problem is not None and problem not in self.violations:
                self.violate(problem)
        return kids

    def _check_adopted_hands(
        self, wire: PoolRun, sup: Supervisor, kids: dict[tuple[str, str], list[Marked]]
    ) -> None:
        """A hand-started daemon the wire supervisor says it adopted serves
        its session: the pool must not run a child of its own beside it.
        (The claim is the supervisor's event; both lives are checked here.)"""
        claimed: dict[str, int] = {}
        for event in list(sup.events):
            kind, session, pid = (
                event.get("event"),
                event.get("key", event.get("session")),
                event.get("pid"),
            )
            if kind == "adopted" and event.get("owned") is False and session:
                claimed[session] = pid
            elif kind in ("exited", "released") and claimed.get(session) == pid:
                del claimed[session]
        hands = {h.proc.pid: h for h in self.hands if h.proc.poll() is None}
        for session, pid in claimed.items():
            hand = hands.get(pid)
            if hand is None:
                continue
            self.adopted_hands.add(pid)
            self.checks["adopted hand-daemon checks"] += 1
            own = [m for m in kids.get((wire.id, session), []) if is_alive(m.ident)]
            if own and hand.proc.poll() is None:
                msg = (
                    f"wire session {session!r}: child {[m.pid for m in own]} beside the "
                    f"adopted hand-started daemon {pid}"
                )
                if msg not in self.violations:
                    self.violate(msg)

    # -------------------------------------------------------------- faults

    def inject(self, kind: str) -> bool:
        """One fault; False if it did not apply now (nothing to hit)."""
        fn = getattr(self, f"fault_{kind}")
        done = bool(fn())
        if done:
            self.faults[kind] += 1
            self.last_fault = time.monotonic()
        return done

    def _live_children(self, pool: str | None = None) -> list[Marked]:
        ids = {run.id for name, run in self.pools.items() if pool in (None, name)}
        return [g[0] for g in children_of(scan_marked(ids)).values() if len(g) == 1]

    def _signal_child(self, sig: int) -> bool:
        kids = self._live_children()
        if not kids:
            return False
        victim = self.rng.choice(kids)
        if identity_of(victim.pid) != victim.ident:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, sig)
        return True

    def fault_child_sigkill(self) -> bool:
        return self._signal_child(signal.SIGKILL)

    def fault_child_sigterm(self) -> bool:
        return self._signal_child(signal.SIGTERM)

    def fault_child_crashloop(self) -> bool:
        """Kill one session's child again each time it is replaced: rapid
        failures build a backoff streak (which must survive a supervisor
        restart and still end in a child)."""
        kids = self._live_children()
        if not kids:
            return False
        victim = self.rng.choice(kids)
        for _ in range(self.rng.randint(2, 4)):
            if identity_of(victim.pid) != victim.ident:
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10  # backoff 1 s, 2 s, 4 s...
            while time.monotonic() < deadline:
                group = children_of(scan_marked({victim.pool})).get((victim.pool, victim.session))
                if group and group[0].pid != victim.pid:
                    victim = group[0]
                    break
                time.sleep(0.1)
            else:
                break
        return True

    def _records(self, run: PoolRun) -> list[Path]:
        return [
            p
            for p in (run.state_dir / "sessions").glob("*.json")
            if not p.name.startswith(".") and p.is_file()
        ]

    def _kill_supervisor(self, sig: int) -> bool:
        run = self.pools[self.rng.choice(list(self.pools))]
        sup = run.sup
        assert sup is not None
        sup.proc.send_signal(sig)
        try:
            sup.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.violate(f"{run.plugin} supervisor ignored signal {sig} for 60s")
            sup.proc.kill()
            sup.proc.wait()
        # While no supervisor runs: the faults a crash (or a careless
        # operator) leaves in the state dir for the next one to meet.
        records = self._records(run)
        self.rng.shuffle(records)
        if records and self.rng.random() < 0.5:
            for path in records[: self.rng.randint(1, 3)]:
                with contextlib.suppress(OSError):
                    data = path.read_bytes()
                    path.write_bytes(data[: self.rng.randrange(max(1, len(data) - 1))])
                    self.faults["record_truncated_offline"] += 1
            junk = run.state_dir / "sessions" / f".chaos-{self._n}.json.x1y2z3.tmp"
            junk.write_text('{"schema": "wirepool.rec')  # a temp file cut mid-write
            self.faults["temp_file_left"] += 1
            self._n += 1
        if records and self.decoys and self.rng.random() < 0.3:
            path = records[-1]
            decoy = self.rng.choice(self.decoys)
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if isinstance(data, dict) and isinstance(data.get("worker"), dict):
                    # the decoy "inherited" the child's pid: same pid, other start
                    data["worker"].update(pid=decoy.proc.pid)
                    path.write_text(json.dumps(data))
                    self.faults["record_pointed_at_decoy"] += 1
        if self.rng.random() < 0.3:
            time.sleep(self.rng.uniform(0.0, 2.0))  # children run unsupervised
        if self.rng.random() < 0.25:
            self._race_supervisors(run)
        else:
            self.start_supervisor(run)
        return True

    def _refuse(self, sup: Supervisor) -> None:
        ident = identity_of(sup.proc.pid)
        if ident is not None:
            self.refused.add(ident)

    def _race_supervisors(self, run: PoolRun) -> None:
        """Two replacements at once, with no supervisor running: exactly one
        may win; the other must say so and start nothing."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRE_", "WIREPOOL_"))}
        racers = []
        for _ in range(2):
            run.generation += 1
            err_path = self.work / "logs" / f"{run.plugin}-{run.generation}.stderr"
            run.stderr_paths.append(err_path)
            with open(err_path, "w") as err:
                racers.append(self.tracker.supervisor(*run.args, env=env, stderr=err))
        wait_for(
            lambda: all(s.of("supervisor_started") or s.proc.poll() is not None for s in racers), 60
        )
        winners = [s for s in racers if s.proc.poll() is None]
        losers = [s for s in racers if s not in winners]
        self.faults["supervisors_raced"] += 1
        if len(winners) != 1:
            self.violate(f"{len(winners)} of 2 racing {run.plugin} supervisors kept running")
        for sup in losers:
            with contextlib.suppress(AssertionError):  # its last line may still be in the pipe
                wait_for(lambda s=sup: any(e.get("status") == "skipped" for e in s.events), 10)
            skipped = [e for e in sup.events if e.get("status") == "skipped"]
            if sup.proc.returncode != 0 or not skipped or sup.of("spawned"):
                self.violate(
                    f"racing {run.plugin} supervisor lost: rc {sup.proc.returncode}, "
                    f"events {sup.events[:3]}"
                )
        if winners:
            run.sup = winners[0]
        else:
            self.start_supervisor(run)

    def fault_supervisor_sigkill(self) -> bool:
        return self._kill_supervisor(signal.SIGKILL)

    def fault_supervisor_sigterm(self) -> bool:
        return self._kill_supervisor(signal.SIGTERM)

    def fault_second_supervisor(self) -> bool:
        run = self.pools[self.rng.choice(list(self.pools))]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRE_", "WIREPOOL_"))}
        err_path = self.work / "logs" / f"{run.plugin}-second-{self._n}.stderr"
        self._n += 1
        with open(err_path, "w") as err:
            second = self.tracker.supervisor(*run.args, json_events=False, env=env, stderr=err)
        self._refuse(second)
        try:
            rc = second.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.violate(f"second {run.plugin} supervisor still running after 60s")
            second.proc.kill()
            second.proc.wait()
            return True
        text = err_path.read_text()
        # wire's own singleton (supervisor.pid) is met first: a second wire
        # supervisor skips with exit 0, as `wire daemon --all-sessions` does;
        # other plugins meet the pool's lock: exit 5
        expected = 0 if run.plugin == "wire" else 5
        if rc != expected or "already running" not in text:
            self.violate(f"second {run.plugin} supervisor: rc {rc}, stderr {text[-500:]!r}")
        self.checks["second supervisors refused"] += 1
        return True

    def fault_session_add(self) -> bool:
        if len(self.services) + len(self.homes) > self.cfg.sessions * 1.2:
            return False
        if self.rng.random() < self.cfg.wire_share:
            self.add_home()
        else:
            self.add_service()
        return True

    def fault_session_remove(self) -> bool:
        if len(self.services) + len(self.homes) < self.cfg.sessions * 0.8:
            return False
        if self.rng.random() < self.cfg.wire_share and self.homes:
            name = self.rng.choice(sorted(self.homes))
            shutil.rmtree(self.homes.pop(name), ignore_errors=True)
        elif self.services:
            name = self.rng.choice(sorted(self.services))
            del self.services[name]
            shutil.rmtree(self.svc_root / name, ignore_errors=True)
        else:
            return False
        return True

    def fault_toggle_down(self) -> bool:
        if not self.services:
            return False
        down = self.svc_root / self.rng.choice(sorted(self.services)) / "down"
        if down.exists():
            down.unlink()
        else:
            down.touch()
        return True

    def fault_hand_daemon(self) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRE_", "WIREPOOL_"))}
        if self.rng.random() < self.cfg.wire_share and self.homes:
            name = self.rng.choice(sorted(self.homes))
            argv = [str(self.wire_bin), "daemon", "--interval", "5"]
            env["WIRE_HOME"] = str(self.homes[name])
            cwd = self.homes[name]
        else:
            # only services that die of SIGTERM: a signal sent to one is seen
            plain = [n for n, k in self.services.items() if k in ("plain", "env")]
            if not plain:
                return False
            name = self.rng.choice(sorted(plain))
            argv, cwd = ["./run"], self.svc_root / name
            env["NAP"] = LONG
        try:
            self._start_by_hand(name, argv, cwd, env)
        except OSError:
            return False  # the directory went away meanwhile
        return True

    def _start_by_hand(self, name: str, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.hands.append(Owned(proc, f"hand-started daemon for {name!r}", session=name))
        self.tracker.pids.add(proc.pid)

    def fault_hand_first(self) -> bool:
        """A wire home whose daemon was started by hand before the home became
        a session (its card had no DID yet): the pool must adopt that daemon,
        not start a second one."""
        if len(self.services) + len(self.homes) > self.cfg.sessions * 1.2:
            return False
        key = self._name("w")
        home = make_home(self.wire_root, key, did=False)  # a husk: no session yet
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRE_", "WIREPOOL_"))}
        env["WIRE_HOME"] = str(home)
        name = str(home.relative_to(self.wire_root))
        self._start_by_hand(name, [str(self.wire_bin), "daemon", "--interval", "5"], home, env)
        with contextlib.suppress(AssertionError):
            wait_for((home / "state" / "wire" / "daemon.pid").exists, 10)
        make_home(self.wire_root, key)  # now with a DID: a session
        self.homes[name] = home
        return True

    def fault_hand_retire(self) -> bool:
        live = [h for h in self.hands if h.proc.poll() is None and not h.retired]
        if not live:
            return False
        self.rng.choice(live).retire()
        return True

    def _daemon_pid(self) -> Path | None:
        if not self.homes:
            return None
        home = self.homes[self.rng.choice(sorted(self.homes))]
        path = home / "state" / "wire" / "daemon.pid"
        return path if path.parent.is_dir() else None

    def fault_pidfile_corrupt(self) -> bool:
        path = self._daemon_pid()
        if path is None:
            return False
        how = self.rng.choice(["garbage", "truncated", "empty", "binary"])
        try:
            text = path.read_bytes() if path.exists() else b'{"pid": 1}'
            body = {
                "garbage": b"pid=??? not a pidfile",
                "truncated": text[: len(text) // 2],
                "empty": b"",
                "binary": bytes(self.rng.randrange(256) for _ in range(64)),
            }[how]
            path.write_bytes(body)
        except OSError:
            return False
        return True

    def fault_pidfile_decoy(self) -> bool:
        path = self._daemon_pid()
        if path is None or not self.decoys:
            return False
        decoy = self.rng.choice(self.decoys)
        pid = decoy.proc.pid
        body = self.rng.choice(
            [
                f"{pid}\n",
                json.dumps({"pid": pid}),
                json.dumps(
                    {
                        "schema": "wire-daemon-pid-v1",
                        "pid": pid,
                        "bin_path": str(self.wire_bin),
                        "version": "0.16.0",
                        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "did": None,
                    }
                ),
            ]
        )
        try:
            path.write_text(body)
        except OSError:
            return False
        return True

    def fault_record_truncate_live(self) -> bool:
        run = self.pools[self.rng.choice(list(self.pools))]
        records = self._records(run)
        if not records:
            return False
        path = self.rng.choice(records)
        try:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 3])
        except OSError:
            return False
        return True

    def fault_status_truncate(self) -> bool:
        run = self.pools[self.rng.choice(list(self.pools))]
        path = run.state_dir / "status.json"
        try:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        except OSError:
            return False
        return True

    def fault_supervisor_json_decoy(self) -> bool:
        """``supervisor.json`` (information only: the lock is the truth) made
        to name a decoy; ``wirepool stop`` at the end must still stop the
        real supervisor and never signal the decoy."""
        run = self.pools[self.rng.choice(list(self.pools))]
        decoy = self.rng.choice(self.decoys)
        if decoy.ident is None:
            return False
        path = run.state_dir / "supervisor.json"
        body = self.rng.choice(
            [
                {"pid": decoy.ident.pid},  # no start time to check it by
                {"pid": decoy.ident.pid, "process_start": decoy.ident.start + 1},  # reused
                {"pid": decoy.ident.pid, "process_start": None},
            ]
        )
        try:
            path.write_text(json.dumps(body))
        except OSError:
            return False
        return True

    # --------------------------------------------------------- convergence

    def expected(self) -> dict[str, set[str]]:
        """Per pool, the sessions that must have exactly one child, read
        from the disk as the test left it."""
        svc = {
            n
            for n in self.services
            if (self.svc_root / n / "run").exists() and not (self.svc_root / n / "down").exists()
        }
        return {"servicedir": svc, "wire": set(self.homes)}

    def mismatches(self) -> list[str]:
        want = self.expected()
        kids = children_of(scan_marked({run.id for run in self.pools.values()}))
        problems = []
        for name, run in self.pools.items():
            have = {s: len(g) for (p, s), g in kids.items() if p == run.id}
            for s in sorted(want[name] - set(have)):
                problems.append(f"{name} {s!r}: no child")
            for s in sorted(set(have) - want[name]):
                problems.append(f"{name} {s!r}: {have[s]} child(ren), wants none")
            for s in sorted(want[name] & set(have)):
                if have[s] != 1:
                    problems.append(f"{name} {s!r}: {have[s]} children")
        return problems

    def wait_converged(self, bound: float, what: str) -> float:
        t0 = self.last_fault
        deadline = time.monotonic() + bound
        while True:
            problems = self.mismatches()
            self.checks["convergence checks"] += 1
            if not problems:
                took = time.monotonic() - t0
                self.convergence.append(took)
                return took
            if time.monotonic() > deadline:
                detail = "; ".join(problems[:10])
                self.violate(f"not converged {bound:.0f}s after {what}: {detail}")
                for run in self.pools.values():
                    self._dump_status(run, problems)
                return float("inf")
            time.sleep(0.25)

    def _dump_status(self, run: PoolRun, problems: list[str]) -> None:
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads((run.state_dir / "status.json").read_text())
            for s in doc.get("sessions", []):
                if any(repr(s.get("name")) in p for p in problems):
                    self.say(f"  {run.plugin} status of {s.get('name')!r}: {s}")

    # --------------------------------------------------------------- run

    def run_faults(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        kinds, weights = list(FAULT_WEIGHTS), list(FAULT_WEIGHTS.values())
        while time.monotonic() < end:
            self.inject(self.rng.choices(kinds, weights)[0])
            self._tried += 1
            if self._tried % 200 == 0:
                self.say(f"{self._tried} faults tried; {sum(self.faults.values())} injected")
            time.sleep(self.rng.expovariate(self.cfg.rate))
            for run in self.pools.values():
                assert run.sup is not None
                if run.sup.proc.poll() is not None:
                    self.violate(
                        f"{run.plugin} supervisor died on its own "
                        f"(rc {run.sup.proc.returncode}); see {run.stderr_paths[-1]}"
                    )
                    self.start_supervisor(run)

    def quiet(self, what: str) -> None:
        """Faults stop; the test retires its hand daemons (so what is judged
        is the pool's own children); every session must converge."""
        for hand in self.hands:
            if hand.proc.poll() is None:
                hand.retire()
                self.last_fault = time.monotonic()
        took = self.wait_converged(self.cfg.bound, what)
        self.say(f"converged {took:.1f}s after {what}")

    def finish(self) -> None:
        """The last quiet period; then the pools are stopped and must leave
        nothing behind."""
        self.quiet("the last fault")
        self.sample()
        self._sampling.clear()
        if self._sampler is not None:
            self._sampler.join(30)
        self.stop_pools()
        self.check_state_files()

    def stop_pools(self) -> None:
        for run in self.pools.values():
            if run.plugin == "servicedir":
                target = [run.plugin, str(self.svc_root)]
            else:
                target = [run.plugin, "--sessions-root", str(self.wire_root)]
            result = subprocess.run(
                [*WIREPOOL, "stop", *target, "--children", "--timeout", "60"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode != 0:
                self.violate(f"`wirepool stop {run.plugin} --children` failed: {result.stderr}")
            assert run.sup is not None
            try:
                run.sup.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.violate(f"{run.plugin} supervisor did not exit after `stop`")
        ids = {run.id for run in self.pools.values()}
        try:
            wait_for(lambda: not scan_marked(ids), 30)
        except AssertionError:
            left = scan_marked(ids)
            self.violate(f"leaked after stop: {[(m.pid, m.session) for m in left]}")
        leaked = [i for i in self.seen if is_alive(i)]
        if leaked:
            self.violate(f"children still alive after stop: {leaked}")
        self.checks["leak checks"] += 1
        for owned in [*self.decoys, *self.hands]:
            problem = owned.verdict()
            if problem is not None and problem not in self.violations:
                self.violate(problem)

    def check_state_files(self) -> None:
        """Every file the pool reads back must parse; quarantined copies and
        temp files are counted (kept for inspection, by design)."""
        for run in self.pools.values():
            root = run.state_dir
            for path in sorted(root.rglob("*")):
                if not path.is_file() or path.parent.name == "logs":
                    continue
                rel = path.relative_to(root)
                self.checks["state files checked"] += 1
                if ".corrupt-" in path.name:
                    self.notes["quarantined records"] += 1
                    continue
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    self.violate(f"{run.plugin}: temp file left in the state dir: {rel}")
                    continue
                if path.name == "lock" or path.parent.name == "control":
                    continue
                try:
                    json.loads(path.read_text())
                except (OSError, ValueError) as exc:
                    self.violate(f"{run.plugin}: unreadable state file {rel}: {exc}")

    def cleanup(self) -> None:
        self._sampling.clear()
        for owned in [*self.decoys, *self.hands]:
            owned.retire()
        self.tracker.cleanup()
        ids = {run.id for run in self.pools.values() if run.id}
        # last resort, by identity: anything still carrying our markers
        for m in scan_marked(ids):
            signal_group(m.ident, signal.SIGKILL)

    def report(self) -> dict[str, Any]:
        load1, load5, load15 = os.getloadavg()
        return {
            "seed": self.seed,
            "duration": self.cfg.duration,
            "sessions": self.cfg.sessions,
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "checks": dict(sorted(self.checks.items())),
            "violations": list(self.violations),
            "worst_convergence_s": round(max(self.convergence[1:], default=0.0), 2),
            "convergence_s": [round(c, 2) for c in self.convergence[1:]],
            "initial_start_s": round(self.convergence[0], 2) if self.convergence else None,
            "supervisor_generations": {n: r.generation for n, r in self.pools.items()},
            "notes": {
                **self.notes,
                "hand-started daemons": len(self.hands),
                "hand-started wire daemons adopted": len(self.adopted_hands),
                "hand-started daemons that exited by themselves": sum(
                    1 for h in self.hands if h.proc.returncode == 0 and not h.retired
                ),
            },
            "children_seen": len(self.seen),
            "load_average_at_end": [round(load1, 2), round(load5, 2), round(load15, 2)],
            "max_load_1min": round(self.max_load, 2),
            "cpus": os.cpu_count(),
        }

    def run(self) -> dict[str, Any]:
        try:
            self.setup()
            left, burst = self.cfg.duration, self.cfg.burst or self.cfg.duration
            while left > 0:
                self.run_faults(min(burst, left))
                left -= burst
                if left > 0:
                    self.quiet(f"burst {len(self.convergence)}")
            self.finish()
        finally:
            self.cleanup()
        return self.report()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=None, help="RNG seed (default: random)")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2.0, help="faults per second")
    parser.add_argument("--bound", type=float, default=120.0, help="convergence bound, s")
    parser.add_argument(
        "--burst", type=float, default=None, help="seconds of faults between quiet periods"
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    chaos = Chaos(
        Config(
            duration=args.duration,
            seed=args.seed,
            sessions=args.sessions,
            rate=args.rate,
            bound=args.bound,
            burst=args.burst,
            workdir=args.workdir,
        )
    )
    commit = ""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            cwd=_TESTS.parent,
            check=False,
        ).stdout.strip()
    started = time.monotonic()
    report = chaos.run()
    report["wall_time_s"] = round(time.monotonic() - started, 1)
    report["commit"] = commit
    report["python"] = sys.version.split()[0]
    text = json.dumps(report, indent=2)
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n")
    if not report["violations"] and args.workdir is None:
        shutil.rmtree(chaos.work, ignore_errors=True)
    return 1 if report["violations"] else 0
