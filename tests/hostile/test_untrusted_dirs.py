"""Directories other users can write are never where a child runs.

A root supervisor, and a second real user (``nobody``) who can write the
session root: the attacks of a session-root writer, run as that user with
real processes, against a real ``wirepool run``.  Each must end with the
session ineligible and its reason in ``status``, and nothing of theirs run.
See docs/SECURITY.md.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import (
    AS_NOBODY,
    NOBODY,
    WIREPOOL,
    Services,
    Supervisor,
    Tracker,
    alive,
    cli,
    needs_second_user,
    reachable_dir,
    status_sessions,
    wait_for,
)
from wirepool_dirs import CommandCheck, dirs_spec, resolve
from wirepool_servicedir import RunScriptCheck, servicedir_spec
from wirepool_wire.fake_wire import install_fake_wire
from wirepool_wire.fixtures import make_home

from wirepool import CommandSpawner, Session
from wirepool.eligibility import (
    TrustedDirectory,
    directory_problem,
    executable_problem,
    symlink_problem,
)

SH = ("sh", "-c")
ROOT = os.geteuid() == 0
needs_root = needs_second_user

# What the reported attack planted: `make` is ours (root's, mode 0755) and
# passed every check on `run`; the Makefile next to it is theirs.
MAKEFILE = r"all:\n\tid > PWNED; sleep 1000\n"
PLANT_MAKE = f"mkdir evil && ln -s /usr/bin/make evil/run && printf '{MAKEFILE}' > evil/Makefile"


def as_nobody(script: str, cwd: Path) -> None:
    """Run ``sh -c script`` as nobody:nogroup with no supplementary groups."""
    subprocess.run(
        [*AS_NOBODY, *SH, script],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )


@pytest.fixture
def public() -> Iterator[Path]:
    """A fresh directory nobody can reach: pytest's own tmp directories are
    mode 0700 under root, so the attacker could not get to a ROOT there."""
    with reachable_dir("wirepool-untrusted-") as base:
        probe = base / "probe"
        probe.mkdir(mode=0o1777)
        probe.chmod(0o1777)
        try:
            as_nobody("touch reachable", cwd=probe)
        except subprocess.CalledProcessError:
            pytest.fail(
                f"nobody cannot reach {base}: set TMPDIR to a directory all users can enter"
            )
        shutil.rmtree(probe)
        yield base


def shared_root(path: Path) -> Path:
    """A session root anyone may write, as /tmp is (mode 1777)."""
    path.mkdir()
    path.chmod(0o1777)
    return path


def supervise(tracker: Tracker, public: Path, *args: str) -> tuple[Supervisor, IO[str]]:
    # A file, not a pipe: nobody drains a long-lived supervisor's stderr.
    err = open(public / f"supervisor-{len(tracker.procs)}.stderr", "w")  # noqa: SIM115
    return tracker.supervisor(*args, stderr=err), err


def stop(args: list[str], sup: Supervisor, err: IO[str]) -> None:
    try:
        result = subprocess.run(
            [*WIREPOOL, "stop", *args, "--children"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert sup.wait_exit(timeout=60) == 0
    finally:
        err.close()


def spawned(sup: Supervisor, name: str) -> list[dict[str, Any]]:
    return [e for e in sup.of("spawned") if e.get("key") == name]


def settle(state: Path, *, running: Collection[str], listed: Collection[str]) -> None:
    """Wait until ``running`` run and ``listed`` are in status: a pass has
    judged them all (and would have spawned any it let through)."""

    def done() -> bool:
        found = status_sessions(state)
        return set(listed) <= found.keys() and all(
            found.get(name, {}).get("state") == "running" for name in running
        )

    wait_for(done, timeout=60)


def refused(found: dict[str, dict[str, Any]], sup: Supervisor, name: str, reason: str) -> None:
    assert (found[name]["state"], found[name]["reason"]) == ("ineligible", reason)
    assert not spawned(sup, name)


def status_json(*args: str) -> dict[str, dict[str, Any]]:
    result = cli("status", *args, "--json")
    assert result.returncode == 0, result.stderr
    return {s["key"]: s for s in json.loads(result.stdout)["sessions"]}


# ----------------------------------------------------------------- servicedir


@needs_root
def test_regression_service_dir_of_another_user_is_refused_never_run(
    public: Path, tracker: Tracker
) -> None:
    """The reported attack: in a mode-1777 ROOT, nobody makes a directory
    whose ``run`` is a symlink to root's ``make`` and whose ``Makefile`` is
    theirs.  It ran as root.  Now the directory is refused for its owner."""
    root = shared_root(public / "services")
    services = Services(root)
    services.add("good")
    loose = services.add("loose")
    loose.chmod(0o777)  # root's own, but anyone may add a Makefile to it
    as_nobody(PLANT_MAKE, cwd=root)
    sup, err = supervise(tracker, public, "servicedir", str(root), "--grace", "1")
    state = services.state_dir
    try:
        settle(state, running=["good"], listed=["evil", "loose"])
        # and the same planted while the supervisor watches (the partial pass)
        as_nobody(PLANT_MAKE.replace("evil", "late"), cwd=root)
        settle(state, running=["good"], listed=["late"])
        found = status_json("servicedir", str(root))
        for name in ("evil", "late"):
            reason = f"service directory {root / name} is owned by uid {NOBODY}, not root"
            refused(found, sup, name, reason)
        reason = f"service directory {loose} is writable by group or others (mode 777)"
        refused(found, sup, "loose", reason)
        assert found["good"]["state"] == "running"
    finally:
        stop(["servicedir", str(root)], sup, err)
    assert not list(root.rglob("PWNED"))


@needs_root
def test_regression_symlinked_service_dir_is_followed_only_if_root_placed_it(
    public: Path, tracker: Tracker
) -> None:
    """s6 scan directories are made of symlinks to service directories
    elsewhere: one root placed is followed; one nobody planted is not, even
    to a proper root-owned service directory; one root placed to nobody's
    directory is refused for that directory."""
    elsewhere = Services(public / "elsewhere")
    target = elsewhere.add("svc")  # root's, mode 0755: a proper service dir
    drop = shared_root(public / "drop")
    as_nobody(
        "mkdir theirs && printf '#!/bin/sh\\nexec sleep 1000\\n' > theirs/run"
        " && chmod 755 theirs/run",
        cwd=drop,
    )
    root = shared_root(public / "scan")
    (root / "linked").symlink_to(target)
    (root / "to-theirs").symlink_to(drop / "theirs")
    as_nobody(f"ln -s {target} planted", cwd=root)
    sup, err = supervise(tracker, public, "servicedir", str(root), "--grace", "1")
    state = root / ".wirepool"
    try:
        settle(state, running=["linked"], listed=["planted", "to-theirs"])
        found = status_json("servicedir", str(root))
        reason = f"{root / 'planted'} is a symlink owned by uid {NOBODY}, not root; not followed"
        refused(found, sup, "planted", reason)
        reason = (
            f"service directory {drop / 'theirs'} (linked from {root / 'to-theirs'}) "
            f"is owned by uid {NOBODY}, not root"
        )
        refused(found, sup, "to-theirs", reason)
        assert spawned(sup, "linked")
    finally:
        stop(["servicedir", str(root)], sup, err)


def test_a_directory_made_writable_stops_its_child_and_fixed_starts_it(
    tmp_path: Path, tracker: Tracker
) -> None:
    """The directory's owner and mode are judged on every pass, from the
    same stats as ``run``'s: a chmod is seen through the watch on ROOT (no
    rescan timer needed), and fixing it is a change that starts the
    service again without a restart of the pool."""
    services = Services(tmp_path / "services")
    svc = services.add("svc")
    spec = servicedir_spec(
        services.root, on_exit="stop", grace=1.0, stop_grace=3.0, rescan_interval=600
    )
    with tracker.attach(spec.pool("servicedir", durable=False)) as pool:
        snap = pool.wait_until(lambda s: "svc" in s and s["svc"].state == "running")
        pid = snap["svc"].pid
        assert pid is not None
        svc.chmod(0o775)
        snap = pool.wait_until(lambda s: s["svc"].state == "ineligible", timeout=30)
        assert snap["svc"].reason == (
            f"service directory {svc} is writable by group or others (mode 775)"
        )
        wait_for(lambda: not alive(pid))
        svc.chmod(0o755)
        pool.wait_until(lambda s: s["svc"].state == "running", timeout=30)


def test_symlinked_run_is_refused_even_to_a_program_we_own(tmp_path: Path) -> None:
    """Followed, the link's target is judged but the link is what runs."""
    services = Services(tmp_path / "services")
    real = services.add("real")
    linked = services.add("linked")
    (linked / "run").unlink()
    (linked / "run").symlink_to(real / "run")
    check = RunScriptCheck()
    session = Session(name="linked", home=linked)
    verdict = check.check(session, time.time())
    assert not verdict.eligible
    assert verdict.reason == "run is a symlink, which is not followed; make it a regular file"
    assert check.check(Session(name="real", home=real), time.time()).eligible


# ----------------------------------------------------------------------- dirs


@needs_root
def test_regression_dirs_session_dir_of_another_user_is_refused_never_run(
    public: Path, tracker: Tracker
) -> None:
    """``--cmd make`` runs root's ``make`` in each matched directory, and
    ``make`` reads the ``Makefile`` it finds there: nobody's directory is
    refused, and so is nobody's symlink to root's; root's symlink is
    followed."""
    root = shared_root(public / "src")
    (root / "mine").mkdir()
    (root / "mine" / "Makefile").write_text("all:\n\tsleep 1000\n")
    (root / "alias").symlink_to(root / "mine")
    as_nobody(
        f"mkdir evil && printf '{MAKEFILE}' > evil/Makefile && ln -s {root}/mine planted", root
    )
    args = ["dirs", str(root), "--glob", "*", "--cmd", "make"]
    sup, err = supervise(tracker, public, *args, "--on-exit", "stop", "--grace", "1")
    state = root / ".wirepool"
    try:
        settle(state, running=["mine", "alias"], listed=["evil", "planted"])
        found = status_json(*args)
        reason = f"session directory {root / 'evil'} is owned by uid {NOBODY}, not root"
        refused(found, sup, "evil", reason)
        reason = f"{root / 'planted'} is a symlink owned by uid {NOBODY}, not root; not followed"
        refused(found, sup, "planted", reason)
    finally:
        stop(args, sup, err)
    assert not list(root.rglob("PWNED"))


@needs_root
def test_regression_dirs_program_reached_through_a_writable_directory_is_refused(
    public: Path, tracker: Tracker
) -> None:
    """``./bin/tool`` is root's, mode 0755, but ``bin`` is a public
    directory (mode 1777): nobody may put their ``tool`` there the moment
    root's is moved, and may add any missing one now.  Every directory
    the path is looked up through is held to the owner and mode rule."""
    root = public / "src"
    for name in ("shared", "tidy"):
        tool = root / name / "bin" / "tool"
        tool.parent.mkdir(parents=True)
        tool.write_text("#!/bin/sh\nexec sleep 1000\n")
        tool.chmod(0o755)
    (root / "shared" / "bin").chmod(0o1777)
    as_nobody("touch planted-by-nobody", cwd=root / "shared" / "bin")
    args = ["dirs", str(root), "--glob", "*", "--cmd", "./bin/tool"]
    sup, err = supervise(tracker, public, *args, "--on-exit", "stop", "--grace", "1")
    state = root / ".wirepool"
    try:
        settle(state, running=["tidy"], listed=["shared"])
        reason = (
            f"directory {root / 'shared' / 'bin'} (on the way to ./bin/tool) "
            "is writable by group or others (mode 1777)"
        )
        refused(status_json(*args), sup, "shared", reason)
    finally:
        stop(args, sup, err)


def test_relative_program_is_judged_where_it_resolves(tmp_path: Path) -> None:
    """A symlinked program is judged by its target, and the directories its
    path is looked up through (``..``, and where each symlink leads) by the
    directory rule; a directory's other ancestors are not on the way."""
    tmp_path = Path(os.path.realpath(tmp_path))  # resolve() answers in real paths
    root = tmp_path / "src"
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "real").write_text("#!/bin/sh\nexec sleep 1000\n")
    (tools / "real").chmod(0o755)
    proj = root / "proj"
    proj.mkdir(parents=True)
    (proj / "bin").symlink_to("../../tools")  # relative, through the parent
    (proj / "direct").symlink_to(tools / "real")  # absolute
    home = os.path.realpath(proj)
    assert resolve(home, "./bin/real") == (
        str(tools / "real"),
        [home, str(root), str(tmp_path), str(tools)],
    )
    assert resolve(home, "direct") == (
        str(tools / "real"),
        [home, "/", *(str(p) for p in reversed(tools.parents[:-1])), str(tools)],
    )
    (proj / "loop").symlink_to("loop")
    with pytest.raises(OSError) as raised:
        resolve(home, "loop")
    assert raised.value.errno == errno.ELOOP

    spawner = dirs_spec(root, "*", "./bin/real").spawner
    assert isinstance(spawner, CommandSpawner)
    session = Session("proj", proj)
    verdict = CommandCheck(spawner)(session, time.time())
    assert verdict.eligible, verdict.reason
    tools.chmod(0o777)
    verdict = CommandCheck(spawner)(session, time.time())
    assert verdict.reason == (
        f"directory {tools} (on the way to ./bin/real) is writable by group or others (mode 777)"
    )
    tools.chmod(0o755)
    proj.chmod(0o775)
    verdict = CommandCheck(spawner)(session, time.time())
    assert verdict.reason == (f"session directory {proj} is writable by group or others (mode 775)")


# ----------------------------------------------------------------------- wire


@needs_root
def test_regression_wire_home_of_another_user_is_refused(public: Path, tracker: Tracker) -> None:
    """A home the daemon would run in (and write its files in, by name) is
    the home owner's: nobody's home in a shared sessions root gets no daemon
    running as root; root's own does."""
    root = public / "sessions"
    mine = make_home(root, "mine", last_active=time.time())
    by_key = root / "by-key"
    by_key.chmod(0o1777)
    theirs = by_key / "0123456789abcdef"
    card = r'{"did": "did:wire:evil-0123abcd", "handle": "evil"}'
    as_nobody(
        f"mkdir -p {theirs}/config/wire && cd {theirs}/config/wire"
        f" && printf '%s' '{card}' > agent-card.json && head -c 32 /dev/urandom > private.key",
        cwd=root,
    )
    wire_bin = install_fake_wire(public / "bin", version="0.16.0")
    args = ["wire", "--sessions-root", str(root)]
    sup, err = supervise(tracker, public, *args, "--wire-bin", str(wire_bin))
    state = root / ".wirepool"
    key = f"by-key/{theirs.name}"
    ours = str(mine.relative_to(root))
    try:
        settle(state, running=[ours], listed=[key])
        reason = f"home {theirs} is owned by uid {NOBODY}, not root"
        refused(status_json(*args), sup, key, reason)
    finally:
        stop(args, sup, err)


# ---------------------------------------------------------- the shared rule


def test_directory_rule_refuses_writable_and_foreign_directories_sticky_or_not() -> None:
    d = 0o040000
    assert directory_problem(d | 0o755, 0, what="d", owners={0}) is None
    assert directory_problem(d | 0o700, 7, what="d", owners={7, 0}) is None
    # sticky or not: anyone may still create what is missing (a Makefile)
    assert directory_problem(d | 0o1777, 0, what="d", owners={0}) == (
        "d is writable by group or others (mode 1777)"
    )
    assert directory_problem(d | 0o775, 0, what="d", owners={0}) == (
        "d is writable by group or others (mode 775)"
    )
    assert directory_problem(d | 0o755, 65534, what="d", owners={1000, 0}) == (
        "d is owned by uid 65534, not 1000 or root"
    )
    assert directory_problem(0o100755, 0, what="d", owners={0}) == "d is not a directory"
    assert symlink_problem(0, what="l", owners={0}) is None
    assert symlink_problem(5, what="l", owners={0}) == (
        "l is a symlink owned by uid 5, not root; not followed"
    )
    # the file rule is the same rule plus "a regular executable file"
    assert executable_problem(0o100755, 5, what="f", owners={0}) == "f is owned by uid 5, not root"


def test_trusted_directory_judges_the_link_and_the_directory(tmp_path: Path) -> None:
    me = os.getuid()
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(home)
    rule = TrustedDirectory("home")
    assert rule.check(Session("h", home), 0.0).eligible
    assert rule.check(Session("l", link), 0.0).eligible
    stranger = TrustedDirectory("home", owners={me + 4242})
    assert stranger.check(Session("l", link), 0.0).reason == (
        f"{link} is a symlink owned by uid {me}, not {me + 4242}; not followed"
    )
    home.chmod(0o757)
    assert rule.check(Session("l", link), 0.0).reason == (
        f"home {home} (linked from {link}) is writable by group or others (mode 757)"
    )
    assert not rule.check(Session("gone", tmp_path / "gone"), 0.0).eligible
