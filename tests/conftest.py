"""Shared fixtures: real service directories, real pools, real processes.

Every process a test causes to exist is tracked by pid (from the pool's
``spawned`` events, or from the supervisor subprocess the test started) and
killed at teardown if it is still alive -- never by a name pattern.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from wirepool import Event, Session, SessionPool
from wirepool._proc import ProcessIdentity, cmdline, identity_of, is_alive, signal_group
from wirepool._store import StateDir

# The suite's files get the modes the tests mean, whatever umask the
# machine runs it under: with 002, every service directory and env/ file
# would be group-writable -- refused, and rightly (tests that want a lax
# umask set one themselves).
os.umask(0o022)


def pytest_configure(config: pytest.Config) -> None:
    """Every temporary file of the run -- pytest's own, ours, and those of
    the supervisors the tests start and sometimes SIGKILL on purpose (which
    then leave multiprocess's ``pymp-*`` directory behind) -- goes under one
    directory, removed when the run ends.  0755: tests that act as a second
    user must be able to reach what they plant."""
    base = tempfile.mkdtemp(prefix="wirepool-tests-")
    os.chmod(base, 0o755)
    config.stash[_TMP_KEY] = base
    os.environ["TMPDIR"] = base
    tempfile.tempdir = None  # read TMPDIR again
    # A suite started in the background by a shell without job control
    # inherits SIGINT ignored, and so would every command it starts: the
    # tests that press Ctrl-C on `wirepool events`, `logs -f` and `top`
    # (SIGINT) would wait for an exit that never comes.  Python's own
    # handler here; an exec resets it to the default in each child.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_TMP_KEY, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


_TMP_KEY = pytest.StashKey[str]()

# Acting as a second user: the attacks of tests/hostile plant files and hold
# locks as nobody, against real processes of ours.
NOBODY = 65534  # nobody and nogroup, as Debian and most others number them
#: argv prefix: run the rest as nobody:nogroup, with no supplementary groups
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
needs_second_user = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="acting as a second user (nobody) takes root and setpriv",
)


@contextlib.contextmanager
def reachable_dir(prefix: str, mode: int = 0o755) -> Iterator[Path]:
    """A fresh directory the second user can reach (pytest's own tmp_path is
    0700 under root), with ``mode``; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        path.chmod(mode)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


BIN = Path(sys.executable).parent
WIREPOOL = [sys.executable, "-m", "wirepool"]

SLEEPER = "#!/bin/sh\nexec sleep 1000\n"

PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
# Loaded here, in the parent: dlopen in a child forked from a threaded
# process could deadlock on the loader's lock.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def drop_dac_override() -> None:
    """A ``preexec_fn``: as root, leave the bounding set without the two
    capabilities that let root ignore file modes, so the program exec'd
    next meets permissions as any user would."""
    if os.geteuid() != 0:
        return
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if _PRCTL(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll until ``predicate()`` is truthy; generous timeouts, no tight limits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_exec(*pids: int | None, program: str = "sleep") -> None:
    """Wait until each child has exec'd ``program`` (SLEEPER's ``exec sleep``).
    A pool reports a child running once it is spawned, but ``sh`` opens
    ``./run`` a moment later: a test that removes the service directory in
    between makes the child exit 2 on its own, a different story than the
    one it means to tell."""
    for pid in pids:
        assert pid is not None
        wait_for(lambda pid=pid: (cmdline(pid) or [""])[0].endswith(program))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``wirepool ARGS`` to completion."""
    return subprocess.run(
        [*WIREPOOL, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def alive(pid: int) -> bool:
    return identity_of(pid) is not None


class Services:
    """A service root (s6/runit style) under a test's tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        name: str,
        script: str = SLEEPER,
        *,
        mode: int = 0o755,
        env: dict[str, str] | None = None,
    ) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        run = d / "run"
        run.write_text(script)
        run.chmod(mode)
        for key, value in (env or {}).items():
            (d / "env").mkdir(exist_ok=True)
            (d / "env" / key).write_text(value)
        return d

    @property
    def state_dir(self) -> Path:
        return self.root / ".wirepool"


class PidSet(set[int]):
    """Pids to clean up, each with the identity it had when recorded: a pid
    reused by someone else's process (suites running side by side wrap the
    pid space) is never killed."""

    def __init__(self) -> None:
        super().__init__()
        self.idents: dict[int, ProcessIdentity] = {}

    def add(self, pid: int) -> None:
        super().add(pid)
        ident = identity_of(pid)
        if ident is not None:
            self.idents.setdefault(pid, ident)

    def update(self, *others: Iterable[int]) -> None:
        for other in others:
            for pid in other:
                self.add(pid)


class Tracker:
    """Records events and every pid any pool or supervisor started."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.pids = PidSet()
        self.procs: list[subprocess.Popen[str]] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if event.pid and event.kind in ("spawned", "adopted"):
            self.pids.add(event.pid)

    def kinds(self, session: str, kind: str) -> list[Event]:
        return [e for e in list(self.events) if e.session == session and e.kind == kind]

    def attach(self, pool: SessionPool) -> SessionPool:
        pool.subscribe(self)
        return pool

    def supervisor(
        self,
        *args: str,
        json_events: bool = True,
        env: dict[str, str] | None = None,
        stderr: IO[str] | int = subprocess.PIPE,
    ) -> Supervisor:
        """Start ``wirepool run ...`` as a real subprocess.  A long-lived
        supervisor's stderr should go to a file: nobody drains the pipe
        until the end, and a full pipe blocks the supervisor's logging."""
        argv = [*WIREPOOL, "run", *args]
        if json_events:
            argv.append("--json")
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.procs.append(proc)
        return Supervisor(proc, self)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.communicate(timeout=10)
        for ident in self.pids.idents.values():
            if is_alive(ident):
                signal_group(ident, signal.SIGKILL)


class Supervisor:
    """A ``wirepool run`` subprocess with its JSON event stream."""

    def __init__(self, proc: subprocess.Popen[str], tracker: Tracker) -> None:
        self.proc = proc
        self.tracker = tracker
        self.events: list[dict[str, Any]] = []
        import threading

        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("pid") and event.get("event") in ("spawned", "adopted"):
                self.tracker.pids.add(int(event["pid"]))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("event") == kind]

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty session home."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def sess(home: Path) -> Session:
    """A session over :func:`home`."""
    return Session(name="s", home=home)


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return Services(tmp_path / "services")


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """umask 0: whatever ends up owner-only is so on purpose, not by umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker()
    try:
        yield t
    finally:
        t.cleanup()


def read_status(state_dir: Path) -> dict[str, Any]:
    """The whole status document (a big pool's is in parts: StateDir.read_status)."""
    try:
        data = StateDir(state_dir).read_status()
    except (OSError, ValueError):
        return {}
    return data or {}


def status_sessions(state_dir: Path) -> dict[str, dict[str, Any]]:
    # by key: what the tests name sessions by (the name is the display name)
    return {s.get("key") or s["name"]: s for s in read_status(state_dir).get("sessions", [])}
