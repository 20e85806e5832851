"""Filesystem faults: unreadable, deleted, symlinked session directories; a
state directory that goes read-only or full.  Everything else goes on being
supervised, and the degraded condition is visible in status and logs.

Root bypasses file modes, and these tests may run as root: an unreadable
directory is then made real by running the supervisor with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (root without them obeys
modes like anyone); a read-only or full state directory is a small tmpfs,
remounted read-only or filled to ENOSPC.  Without root, ``chmod`` does the
first, and ``chmod 0500`` stands in for the second (EACCES instead of
EROFS/ENOSPC: the same ``OSError`` path in the engine).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    WIREPOOL,
    Services,
    Supervisor,
    Tracker,
    drop_dac_override,
    read_status,
    status_sessions,
    wait_exec,
    wait_for,
)
from wirepool_servicedir import servicedir_spec

from wirepool import SessionPool, Snapshot
from wirepool._proc import ProcessIdentity, is_alive

ROOT = os.geteuid() == 0


def _running(state: Path, *names: str) -> bool:
    ss = status_sessions(state)
    return all(ss.get(n, {}).get("state") == "running" for n in names)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _ident(session: dict[str, Any]) -> ProcessIdentity:
    return ProcessIdentity(session["pid"], session["process_start"])


def test_regression_unreadable_session_dir_keeps_its_child_and_says_why(
    services: Services, tracker: Tracker
) -> None:
    for name in ("a", "b", "locked"):
        services.add(name)
    proc = subprocess.Popen(
        [*WIREPOOL, "run", "servicedir", str(services.root), "--grace", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=drop_dac_override,  # noqa: PLW1509 -- one prctl call, no locks
    )
    tracker.procs.append(proc)
    sup = Supervisor(proc, tracker)
    state = services.state_dir
    locked = services.root / "locked"
    staged = services.root.parent / "staged"
    try:
        wait_for(lambda: _running(state, "a", "b", "locked"), timeout=30)
        before = status_sessions(state)
        # "running" is written once the child is exec'd; its shell still has
        # to open ./run, which the chmod below would deny it
        wait_for(lambda: _comm(before["locked"]["pid"]) == "sleep", timeout=30)
        locked.chmod(0)
        # a new service that arrives unreadable: shown, with why, never run
        services.add("../staged")
        staged.chmod(0)
        staged.rename(services.root / "newlocked")
        sup.proc.send_signal(signal.SIGHUP)

        def marked() -> bool:
            ss = status_sessions(state)
            return "Permission denied" in ss.get("locked", {}).get("reason", "") and (
                "Permission denied" in ss.get("newlocked", {}).get("reason", "")
            )

        wait_for(marked, timeout=30)
        now = status_sessions(state)
        # the child of the unreadable one is kept: "cannot tell" is no change
        assert now["locked"]["state"] == "running"
        assert now["locked"]["pid"] == before["locked"]["pid"]
        assert "keeping its last state" in now["locked"]["reason"]
        assert now["newlocked"]["state"] == "ineligible"
        for name in ("a", "b"):
            assert now[name]["pid"] == before[name]["pid"]
            assert is_alive(_ident(now[name]))
        # readable again: the mark goes
        locked.chmod(0o755)
        sup.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "cannot read" not in status_sessions(state)["locked"]["reason"], timeout=30
        )
        assert status_sessions(state)["locked"]["pid"] == before["locked"]["pid"]
    finally:
        with contextlib.suppress(OSError):
            locked.chmod(0o755)
        with contextlib.suppress(OSError):
            (services.root / "newlocked").chmod(0o755)
        subprocess.run(
            [*WIREPOOL, "stop", "servicedir", str(services.root), "--children"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        sup.wait_exit()
    assert "Permission denied" in sup.stderr()  # and in the log


def test_regression_a_rule_that_cannot_look_inside_keeps_the_child(
    tmp_path: Path, tracker: Tracker
) -> None:
    """``dirs`` discovery lists ROOT only; its marker rule looks inside the
    directory.  A rule that could not look (EACCES) used to answer
    "ineligible", and the healthy child was stopped.  The servicedir test
    above met the same thing as a race (discovery read the directory, then
    the chmod, then the down-file check); here it is every time."""
    root = tmp_path / "src"
    kept = root / "kept"
    kept.mkdir(parents=True)
    (kept / "serve.me").write_text("")
    state = root / ".wirepool"
    proc = subprocess.Popen(
        [*WIREPOOL, "run", "dirs", str(root), "--glob", "*", "--cmd", "sleep 1000",
         "--marker", "serve.me", "--on-exit", "stop", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=drop_dac_override,  # noqa: PLW1509 -- one prctl call, no locks
    )  # fmt: skip
    tracker.procs.append(proc)
    sup = Supervisor(proc, tracker)
    try:
        wait_for(lambda: _running(state, "kept"), timeout=30)
        pid = status_sessions(state)["kept"]["pid"]
        kept.chmod(0)
        sup.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "Permission denied" in status_sessions(state)["kept"].get("reason", ""),
            timeout=30,
        )
        now = status_sessions(state)["kept"]
        assert now["state"] == "running", now
        assert now["pid"] == pid
        assert "cannot check serve.me: Permission denied; keeping its last state" in now["reason"]
        assert is_alive(_ident(now))
        assert not any(sup.of(k) for k in ("ineligible", "stopped", "exited")), sup.events
        # readable again: the mark goes, the child is the same
        kept.chmod(0o755)
        sup.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "Permission denied" not in status_sessions(state)["kept"]["reason"],
            timeout=30,
        )
        assert status_sessions(state)["kept"]["pid"] == pid
    finally:
        with contextlib.suppress(OSError):
            kept.chmod(0o755)
        sup.proc.send_signal(signal.SIGTERM)
        sup.wait_exit()


def _pool(services: Services, tracker: Tracker, state_dir: Path | None = None) -> SessionPool:
    spec = servicedir_spec(services.root, on_exit="stop", grace=0.5, stop_grace=2.0)
    if state_dir is not None:
        spec.state_dir = state_dir
    return tracker.attach(spec.pool("servicedir", durable=False))


def _all_running(*names: str) -> Any:
    return lambda s: all(n in s and s[n].state == "running" for n in names)


def test_session_directory_deleted_while_being_scanned(
    services: Services, tracker: Tracker
) -> None:
    for name in ("a", "b", "c"):
        services.add(name)
    pool = _pool(services, tracker)
    scan = pool.discovery
    inner = scan.attrs  # type: ignore[attr-defined]
    armed = {"on": False}

    def attrs(path: Path) -> Any:
        # between listing the root and looking into "c", "c" disappears
        if armed["on"] and path.name == "a":
            armed["on"] = False
            shutil.rmtree(services.root / "c")
        return inner(path)

    scan.attrs = attrs  # type: ignore[attr-defined]
    with pool:
        snap = pool.wait_until(_all_running("a", "b", "c"))
        a = snap["a"].pid
        wait_exec(*(snap[n].pid for n in ("a", "b", "c")))
        armed["on"] = True
        pool.rescan()
        pool.wait_until(lambda s: "c" not in s, timeout=20)  # gone, after its grace
        snap = pool.wait_until(_all_running("a", "b"))
        assert snap["a"].pid == a and snap["a"].restarts == 0
        assert [e.reason for e in tracker.kinds("c", "stopped")] == ["session gone"]


def test_session_directories_replaced_by_symlinks_and_loops(
    services: Services, tracker: Tracker, wirepool_logs: list[str]
) -> None:
    for name in ("a", "b", "c", "d"):
        services.add(name)
    with _pool(services, tracker) as pool:
        snap = pool.wait_until(_all_running("a", "b", "c", "d"))
        a = snap["a"].pid
        wait_exec(*(snap[n].pid for n in ("a", "b", "c", "d")))
        shutil.rmtree(services.root / "b")
        (services.root / "b").symlink_to("b")  # a loop in place of a service
        shutil.rmtree(services.root / "c")
        (services.root / "c").symlink_to(services.root / "nowhere")  # dangling
        (services.root / "d" / "run").unlink()
        (services.root / "d" / "run").symlink_to("run")  # a loop inside
        (services.root / "e").symlink_to(services.root / "e" / "x")  # a loop through itself
        pool.rescan()
        snap = pool.wait_until(
            lambda s: not ({"b", "c", "d"} & set(s.sessions)) and _all_running("a")(s), timeout=20
        )
        assert snap["a"].pid == a and "e" not in snap
        # the whole root turned into a loop: discovery fails, nothing stops
        services.root.rename(services.root.with_name("moved"))
        services.root.symlink_to(services.root)
        pool.rescan()
        wait_for(lambda: any("discovery failed" in line for line in wirepool_logs), timeout=20)
        assert pool.snapshot()["a"].pid == a and is_alive(_ident_of(pool.snapshot(), "a"))


def _ident_of(snap: Snapshot, name: str) -> ProcessIdentity:
    ident = snap[name].identity
    assert ident is not None
    return ident


# ------------------------------------------------ read-only or full state


def _write_until_full(path: Path) -> None:
    with open(path, "wb") as fh:
        while True:
            fh.write(b"\0" * (1 << 16))
            fh.flush()


class StateFault:
    """A state directory that can be made read-only or full, and healed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = self.bound = False
        path.mkdir(mode=0o700)
        if ROOT:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(path)],
                capture_output=True,
                check=False,
            )
            self.mounted = result.returncode == 0

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args, str(self.path)], check=True, capture_output=True)

    def read_only(self) -> None:
        if self.mounted:
            # A read-only bind mount over it: a plain remount,ro is refused
            # while the supervisor holds files open for writing (its lock).
            self._mount("--bind", str(self.path))
            self._mount("-o", "remount,bind,ro")
            self.bound = True
        else:
            self._chmod_all(0o500)

    def fill(self) -> None:
        if not self.mounted:
            self._chmod_all(0o500)
            return
        with pytest.raises(OSError, match="No space left") as caught:
            _write_until_full(self.path / "filler")
        assert caught.value.errno == errno.ENOSPC

    def heal(self) -> None:
        if self.mounted:
            if self.bound:
                subprocess.run(["umount", "-l", str(self.path)], check=False)
                self.bound = False
            with contextlib.suppress(OSError):
                (self.path / "filler").unlink()
        else:
            self._chmod_all(0o700)

    def _chmod_all(self, mode: int) -> None:
        for d in (self.path, *(p for p in self.path.iterdir() if p.is_dir())):
            d.chmod(mode)

    def close(self) -> None:
        self.heal()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def state_fault(tmp_path: Path) -> Iterator[StateFault]:
    fault = StateFault(tmp_path / "state")
    try:
        yield fault
    finally:
        fault.close()


@pytest.mark.parametrize("fault", ["read_only", "fill"])
def test_regression_state_dir_read_only_or_full_degrades_but_starts_go_on(
    services: Services, tracker: Tracker, state_fault: StateFault, fault: str
) -> None:
    for name in ("a", "b"):
        services.add(name)
    with _pool(services, tracker, state_fault.path) as pool:
        snap = pool.wait_until(_all_running("a", "b"))
        b = snap["b"].pid
        getattr(state_fault, fault)()
        # a crash and a new service, while nothing can be written
        identity = _ident_of(snap, "a")
        os.killpg(identity.pid, signal.SIGKILL)
        services.add("c")
        pool.rescan()
        snap = pool.wait_until(
            lambda s: _all_running("a", "b", "c")(s) and s["a"].pid != identity.pid and s.degraded,
            timeout=30,
        )
        assert snap["b"].pid == b
        assert any("cannot write" in d for d in snap.degraded.values())
        # what `wirepool status` shows meanwhile, from a status.json it
        # cannot refresh
        status = subprocess.run(
            [
                *WIREPOOL,
                *("status", "servicedir", str(services.root), "--json"),
                *("--state-dir", str(state_fault.path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if state_fault.mounted:
            assert any(
                "status.json may be stale" in d for d in json.loads(status.stdout)["degraded"]
            )
        state_fault.heal()
        pool.rescan()
        snap = pool.wait_until(lambda s: not s.degraded, timeout=30)
        # healed: the records caught up, so a successor can adopt by them
        for name in ("a", "b", "c"):
            record = json.loads((state_fault.path / "sessions" / f"{name}.json").read_text())
            assert record["worker"]["pid"] == snap[name].pid
        wait_for(lambda: read_status(state_fault.path).get("degraded") == [])
