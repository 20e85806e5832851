"""End to end through the real ``wirepool`` command: supervisors as separate
processes, killed with SIGKILL, restarted, refused, and asked for status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import WIREPOOL, Services, Tracker, alive, cli, status_sessions, wait_for

from wirepool.cli import render_table

N = 8


def all_up(services: Services, names: list[str], states: tuple[str, ...] = ("running",)) -> bool:
    sessions = status_sessions(services.state_dir)
    return all(sessions.get(n, {}).get("state") in states and sessions[n].get("pid") for n in names)


def test_sigkilled_supervisor_is_replaced_and_every_child_adopted(
    services: Services, tracker: Tracker
) -> None:
    names = [f"s{i}" for i in range(N)]
    for name in names:
        services.add(name)
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: all_up(services, names))
    pids = {n: s["pid"] for n, s in status_sessions(services.state_dir).items()}
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    assert all(alive(pids[n]) for n in names)  # children survive their supervisor

    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: len(second.of("adopted")) == N)
    adopted = {e["session"]: e["pid"] for e in second.of("adopted")}
    assert adopted == pids  # every child, same processes
    assert second.of("spawned") == []  # none duplicated
    # ...and fully supervised: a crash of an adopted child is restarted
    victim = pids["s0"]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: any(e["session"] == "s0" for e in second.of("spawned")))
    assert [e for e in second.of("exited") if e["session"] == "s0"][0]["pid"] == victim
    # how an adopted child ended is its parent's to know, not ours: the
    # table says so instead of "unknown"
    wait_for(lambda: status_sessions(services.state_dir).get("s0", {}).get("last_exit"))
    doc = json.loads(cli("status", "servicedir", str(services.root), "--json").stdout)
    s0 = next(s for s in doc["sessions"] if s["name"] == "s0")
    assert (s0["last_exit"]["code"], s0["last_exit"]["signal"]) == (None, None)
    row = next(ln for ln in render_table(doc).splitlines() if ln.startswith("s0 "))
    assert "ended (adopted)" in row

    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0, result.stderr
    assert second.wait_exit() == 0
    for pid in [*pids.values(), *(e["pid"] for e in second.of("spawned"))]:
        wait_for(lambda p=pid: not alive(p))


def test_second_supervisor_is_refused_and_says_who_holds_the_lock(
    services: Services, tracker: Tracker
) -> None:
    services.add("a")
    first = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    wait_for(lambda: all_up(services, ["a"]))
    plain = cli("run", "servicedir", str(services.root))
    assert plain.returncode == 5
    assert f"pid {first.proc.pid}" in plain.stderr
    assert "Traceback" not in plain.stderr
    as_json = cli("run", "servicedir", str(services.root), "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "status": "skipped",
        "reason": "supervisor already running",
        "holder_pid": first.proc.pid,
    }
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait_exit() == 0


def test_corrupt_record_is_set_aside_and_marker_finds_the_orphan(
    services: Services, tracker: Tracker
) -> None:
    for name in ("a", "b"):
        services.add(name)
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: all_up(services, ["a", "b"]))
    pids = {n: s["pid"] for n, s in status_sessions(services.state_dir).items()}
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    record = services.state_dir / "sessions" / "a.json"
    record.write_text("{ this is not json")
    (services.state_dir / "sessions" / "b.json").write_text('{"schema": "something else"}')

    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: len(second.of("adopted")) == 2, timeout=30)
    assert {e["session"]: e["pid"] for e in second.of("adopted")} == pids
    assert second.of("spawned") == []
    kept = sorted(p.name for p in record.parent.iterdir() if ".corrupt-" in p.name)
    assert len(kept) == 2 and kept[0].startswith("a.json.corrupt-")
    second.proc.send_signal(signal.SIGTERM)
    second.wait_exit()
    err = second.stderr()
    assert "a.json is unusable" in err and "Traceback" not in err


def test_stop_children_without_a_supervisor_uses_the_records(
    services: Services, tracker: Tracker
) -> None:
    services.add("a")
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: all_up(services, ["a"]))
    pid = status_sessions(services.state_dir)["a"]["pid"]
    first.proc.send_signal(signal.SIGTERM)  # default: leave the children running
    assert first.wait_exit() == 0
    assert alive(pid)
    status = cli("status", "servicedir", str(services.root), "--json")
    assert status.returncode == 3  # no supervisor
    doc = json.loads(status.stdout)
    assert doc["supervisor"]["alive"] is False
    assert doc["sessions"][0]["alive"] is True and doc["sessions"][0]["pid"] == pid
    result = cli("stop", "servicedir", str(services.root), "--children")
    assert result.returncode == 0
    assert "stopped 1" in result.stdout
    wait_for(lambda: not alive(pid))


def test_status_before_any_supervisor_shows_sessions_and_reasons(services: Services) -> None:
    services.add("ok")
    services.add("down")
    (services.root / "down" / "down").touch()
    result = cli("status", "servicedir", str(services.root), "--json")
    assert result.returncode == 3
    doc = json.loads(result.stdout)
    assert doc["schema"] == "wirepool.status/1"
    states = {s["name"]: (s["state"], s["reason"]) for s in doc["sessions"]}
    assert states == {
        "down": ("ineligible", "down file present"),
        "ok": (
            "stopped",
            "would run (run is executable and no down file); no supervisor has run yet",
        ),
    }


def test_status_table_on_a_terminal(services: Services, tracker: Tracker) -> None:
    services.add("web")
    sup = tracker.supervisor("servicedir", str(services.root), "--on-exit", "stop")
    wait_for(lambda: all_up(services, ["web"]))
    # `script` gives the command a real terminal, so it renders the table
    out = subprocess.run(
        [
            "script",
            "-qec",
            " ".join([*WIREPOOL, "status", "servicedir", str(services.root)]),
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = status_sessions(services.state_dir)["web"]["pid"]
    assert "NAME" in out.stdout and "STATE" in out.stdout and "REASON" in out.stdout
    assert f"supervisor: running (pid {sup.proc.pid})" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("web"))
    assert "running" in line and str(pid) in line
    sup.proc.send_signal(signal.SIGTERM)
    sup.wait_exit()


def test_plugins_lists_bundled_and_reports_a_broken_one(tmp_path: Path) -> None:
    dist = tmp_path / "brokenplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[wirepool.plugins]\nbroken = brokenplug_missing_module:Plugin\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    infos = {p["name"]: p for p in json.loads(result.stdout)}
    assert infos["servicedir"]["error"] is None
    assert infos["servicedir"]["distribution"] == "wirepool"
    assert infos["servicedir"]["origin"].endswith("wirepool_servicedir/__init__.py")
    assert infos["wire"]["error"] is None
    assert "ModuleNotFoundError" in infos["broken"]["error"]
    human = cli("plugins", env=env)
    assert "broken" in human.stdout and "BROKEN" in human.stdout
    assert "Traceback" not in human.stdout + human.stderr


def test_unknown_plugin_and_bad_usage_exit_codes() -> None:
    unknown = cli("run", "nosuchplugin")
    assert unknown.returncode == 4
    assert "no plugin named 'nosuchplugin'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    usage = cli("run", "servicedir")  # missing ROOT
    assert usage.returncode == 2


def test_a_root_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    for verb in ("run", "status"):
        for args in (["servicedir", str(typo)], ["dirs", str(typo), "--glob", "*", "--cmd", "x"]):
            result = cli(verb, *args)
            assert result.returncode == 2, (verb, args, result.stderr)
            assert f"wirepool: error: {typo} does not exist" in result.stderr
            assert "Traceback" not in result.stderr
    assert not typo.exists()  # no /typo/.wirepool made on the way
    (tmp_path / "file").write_text("")
    result = cli("run", "servicedir", str(tmp_path / "file"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # wire's sessions root is made by its first session: absent is normal
    result = cli("status", "wire", "--sessions-root", str(typo))
    assert result.returncode == 3, result.stderr  # not running; not a usage error


def test_a_third_party_plugin_is_found_through_the_entry_point(
    tmp_path: Path, tracker: Tracker
) -> None:
    pkg = tmp_path / "myplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        import click
        from wirepool import Plugin, PoolSpec, StaticDiscovery, Session, CommandSpawner

        class EchoPlugin(Plugin):
            name = "echo"
            description = "one sleeper per --name"
            def options(self):
                return [click.Option(["--name"], multiple=True), click.Option(["--dir"])]
            def build(self, options):
                base = Path(options["dir"])
                sessions = [Session(n, base) for n in options["name"]]
                return PoolSpec(StaticDiscovery(sessions), CommandSpawner(["sleep", "1000"]),
                                base / "state", on_exit="stop")
    """)
    )
    dist = tmp_path / "myplug-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[wirepool.plugins]\necho = myplug:EchoPlugin\n")
    env = {"PYTHONPATH": str(tmp_path)}
    sup = tracker.supervisor("echo", "--name", "x", "--name", "y", "--dir", str(tmp_path), env=env)
    wait_for(lambda: len(sup.of("spawned")) == 2)
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0
    for event in sup.of("spawned"):
        wait_for(lambda p=event["pid"]: not alive(p))
    listing = cli("plugins", "--json", env=env)
    assert {"name": "echo", "version": "0.3"}.items() <= {
        k: v for k, v in next(p for p in json.loads(listing.stdout) if p["name"] == "echo").items()
    }.items()
    assert sys.executable


def test_service_install_writes_a_unit_running_the_validated_command(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rust = home / ".config/systemd/user/wire-daemon.service"
    rust.parent.mkdir(parents=True)
    rust.write_text("[Service]\nExecStart=/usr/bin/wire daemon --all-sessions\n")
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    bad = cli("service", "install", "wire", "--no-such-option", "--no-load", env=env)
    assert bad.returncode == 2 and "No such option" in bad.stderr
    result = cli("service", "install", "wire", "--interval", "7", "--no-load", env=env)
    assert result.returncode == 0, result.stderr
    unit = home / ".config/systemd/user/wirepool-wire.service"
    text = unit.read_text()
    exec_start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert exec_start.endswith("-m wirepool run wire --interval 7")
    assert "KillMode=process" in text  # the daemons outlive a supervisor restart
    # the Rust supervisor's unit is detected and the user told how to remove it
    assert str(rust) in result.stderr and "wire service uninstall" in result.stderr
    removed = cli("service", "uninstall", "wire", env=env)
    assert not unit.exists()
    assert "removed" in removed.stdout


def _register_plugin(where: Path, package: str, entry_point: str, source: str) -> None:
    """Make ``package`` (one ``__init__.py`` of ``source``) an installed distribution with one
    ``wirepool.plugins`` entry point, found once ``where`` is on PYTHONPATH."""
    (where / package).mkdir()
    (where / package / "__init__.py").write_text(textwrap.dedent(source))
    dist = where / f"{package}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[wirepool.plugins]\n{entry_point}\n")


def test_service_commands_print_the_plugins_advice(tmp_path: Path) -> None:
    """What competes with a plugin's service comes from the plugin's hook: a third-party one
    gets the same treatment as wire, and a plugin without advice adds nothing."""
    _register_plugin(
        tmp_path,
        "rivalplug",
        "rivalled = rivalplug:RivalPlugin",
        """
        from pathlib import Path
        from wirepool import CommandSpawner, Plugin, PoolSpec, StaticDiscovery

        class RivalPlugin(Plugin):
            name = "rivalled"
            def build(self, options):
                return PoolSpec(StaticDiscovery([]), CommandSpawner(["true"]), Path("state"))
            def service_advice(self, manager):
                unit = {"systemd": "rival.service", "launchd": "org.rival"}[manager.kind]
                return [f"rival at {p}: {manager.removal_command(unit, p)}"
                        for p in manager.installed_files(unit)]
        """,
    )
    home = tmp_path / "home"
    env = {
        "PYTHONPATH": str(tmp_path),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    quiet = cli("service", "install", "rivalled", "--no-load", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    rival = home / ".config/systemd/user/rival.service"
    rival.write_text("[Service]\nExecStart=/bin/true\n")
    advice = (
        f"rival at {rival}: systemctl --user disable --now rival.service; rm {rival}; "
        "systemctl --user daemon-reload"
    )
    installed = cli("service", "install", "rivalled", "--dry-run", env=env)
    assert installed.returncode == 0, installed.stderr
    assert installed.stderr.splitlines() == [advice]
    status = cli("service", "status", "rivalled", env=env)
    assert status.stdout.splitlines()[1:] == [advice]
    other = cli("service", "status", "servicedir", env=env)
    assert other.stdout.splitlines() == [
        f"wirepool-servicedir: not installed "
        f"({home}/.config/systemd/user/wirepool-servicedir.service is absent)"
    ]


def test_reset_lifts_failed_mark_of_a_running_supervisor(
    services: Services, tracker: Tracker, tmp_path: Path
) -> None:
    # A pool that gives up after 2 rapid failures, driven through the CLI
    # via a tiny third-party plugin, then reset by `wirepool reset`.
    pkg = tmp_path / "giveup"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        import click, tenacity
        from wirepool import Plugin, RestartPolicy
        from wirepool_servicedir import servicedir_spec

        class GiveUp(Plugin):
            name = "giveup"
            def options(self):
                return [click.Argument(["root"])]
            def build(self, options):
                spec = servicedir_spec(Path(options["root"]), on_exit="stop")
                spec.restart = RestartPolicy(wait=tenacity.wait_fixed(0.1),
                                             stop=tenacity.stop_after_attempt(2))
                return spec
    """)
    )
    dist = tmp_path / "giveup-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: giveup\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wirepool.plugins]\ngiveup = giveup:GiveUp\n")
    env = {"PYTHONPATH": str(tmp_path)}
    d = services.add("crash", "#!/bin/sh\nexit 1\n")
    sup = tracker.supervisor("giveup", str(services.root), env=env)
    wait_for(lambda: sup.of("failed"))
    wait_for(lambda: status_sessions(services.state_dir).get("crash", {}).get("state") == "failed")
    spawned = len(sup.of("spawned"))
    assert spawned == 2
    # an operator reset: the session is tried again (and fails again)
    result = cli("reset", "giveup", str(services.root), "--session", "crash", env=env)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: sup.of("reset"))
    wait_for(lambda: len(sup.of("failed")) == 2)
    assert len(sup.of("spawned")) == spawned + 2
    # fixing the service changes the session, which lifts the mark by itself
    (d / "run").write_text("#!/bin/sh\nexec sleep 1000\n")
    (d / "run").chmod(0o755)
    wait_for(lambda: status_sessions(services.state_dir).get("crash", {}).get("state") == "running")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_backoff_resumes_where_it_stopped_after_a_supervisor_sigkill(
    services: Services, tracker: Tracker
) -> None:
    d = services.add("crash", "#!/bin/sh\necho start >> starts\nexit 1\n")
    first = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: len(first.of("backoff")) >= 3, timeout=30)  # waits 1, 2, 4 s (jittered)
    streak = first.of("backoff")[-1]["streak"]
    record_path = services.state_dir / "sessions" / "crash.json"
    # the record is written right after the event is announced
    wait_for(lambda: json.loads(record_path.read_text())["streak"] == streak)
    first.proc.send_signal(signal.SIGKILL)
    first.wait_exit()
    second = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: second.of("backoff"), timeout=60)
    resumed = second.of("backoff")[0]
    # the streak continued: no reset to a 1 s wait and a full-speed crash loop
    assert resumed["streak"] == streak + 1
    # the reason counts as RESTARTS does: streak + 1 starts so far, so
    # `streak` restarts done and the next one pending
    assert f"{streak + 1} rapid failures in a row, restart #{streak + 1} in" in resumed["reason"]
    wait_for(lambda: status_sessions(services.state_dir)["crash"]["restarts"] == streak)
    assert resumed["delay"] > 2 ** (streak - 1) * 0.8 * 0.99
    second.proc.send_signal(signal.SIGTERM)
    second.wait_exit()
    assert (d / "starts").read_text().count("start") == streak + 1


def test_run_owned_by_another_user_is_refused(services: Services, tracker: Tracker) -> None:
    d = services.add("foreign")
    if os.getuid() != 0:
        import pytest

        pytest.skip("needs root to give the file away")
    os.chown(d / "run", 12345, -1)
    result = cli("status", "servicedir", str(services.root), "--json")
    session = json.loads(result.stdout)["sessions"][0]
    assert session["state"] == "ineligible"
    me = "root" if os.getuid() == 0 else str(os.getuid())
    assert session["reason"] == f"run is owned by uid 12345, not {me}"


def _pidfds(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return [link for link in links if "pidfd" in link]


def test_a_supervisor_holds_no_descriptor_per_child_and_restarts_every_exit(
    services: Services, tracker: Tracker
) -> None:
    # `wirepool run` finds its own children's exits by SIGCHLD and waitid:
    # every descriptor it held was copied into each new child's table and
    # closed there while the supervisor waited (vfork), a pidfd per child
    # was most of a spawn's cost at thousands of children.
    names = [f"s{i}" for i in range(12)]
    for name in names:
        services.add(name)
    sup = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: all_up(services, names))
    pids = {n: s["pid"] for n, s in status_sessions(services.state_dir).items()}
    assert _pidfds(sup.proc.pid) == []
    for name in names[:6]:  # six exits at once: one burst of SIGCHLD
        os.kill(pids[name], signal.SIGKILL)

    def restarted() -> bool:
        now = status_sessions(services.state_dir)
        return all(
            now[n]["state"] == "running" and now[n]["pid"] not in (None, pids[n]) for n in names[:6]
        )

    wait_for(restarted)
    exited = {e["session"]: e["pid"] for e in sup.of("exited")}
    assert exited == {n: pids[n] for n in names[:6]}  # each exit once, none of the others
    assert _pidfds(sup.proc.pid) == []
    assert cli("stop", "servicedir", str(services.root), "--children").returncode == 0
    assert sup.wait_exit() == 0


_FOREIGN_ZOMBIE_POOL = """
import subprocess, sys
from pathlib import Path
from wirepool import CommandSpawner, Session, SessionPool, StaticDiscovery

root = Path(sys.argv[1])
homes = [Session(name=f"s{i}", home=root / f"s{i}") for i in range(3)]
for s in homes:
    s.home.mkdir(parents=True, exist_ok=True)
# A child of this process that is not the pool's: it exits at once and is
# never waited for, a zombie the pool must neither reap nor stall behind.
foreign = subprocess.Popen(["true"])
print(foreign.pid, flush=True)
pool = SessionPool(
    StaticDiscovery(homes),
    spawner=CommandSpawner(["sleep", "1000"]),
    state_dir=root / "state",
    on_exit="stop",
    durable=False,
)
pool.run_forever()
"""


def test_exits_are_found_behind_a_zombie_that_is_not_the_pools(
    tmp_path: Path, tracker: Tracker
) -> None:
    script = tmp_path / "pool.py"
    script.write_text(_FOREIGN_ZOMBIE_POOL)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    tracker.procs.append(proc)
    assert proc.stdout is not None
    foreign = int(proc.stdout.readline())
    state = tmp_path / "state"
    names = ["s0", "s1", "s2"]

    def running() -> dict[str, int] | None:
        try:
            now = status_sessions(state)
        except (OSError, ValueError):
            return None
        if all(n in now and now[n]["state"] == "running" for n in names):
            return {n: now[n]["pid"] for n in names}
        return None

    first = wait_for(running)
    for pid in first.values():
        tracker.pids.add(pid)
    wait_for(lambda: _state(foreign) == "Z")  # the foreign zombie is there, first in line
    for name in names:
        os.kill(first[name], signal.SIGKILL)
    second = wait_for(lambda: (r := running()) and all(r[n] != first[n] for n in names) and r)
    for pid in second.values():
        tracker.pids.add(pid)
    assert _state(foreign) == "Z"  # still there: not the pool's to reap
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for pid in second.values():
        wait_for(lambda p=pid: not alive(p))


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()[0].decode()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_supervisor_after_its_last_child_exited_sleeps(
    services: Services, tracker: Tracker
) -> None:
    # Its last child found by SIGCHLD, nothing of its own left to wait
    # for: the loop must sleep, not look again for more exits forever.
    services.add("once", "#!/bin/sh\ntouch down\nexit 3\n")
    sup = tracker.supervisor("servicedir", str(services.root))
    wait_for(lambda: sup.of("exited"))
    wait_for(lambda: status_sessions(services.state_dir)["once"]["state"] == "ineligible")
    before = _cpu_seconds(sup.proc.pid)
    time.sleep(2.0)
    used = _cpu_seconds(sup.proc.pid) - before
    assert used < 0.5, f"{used:.2f} s of CPU in 2 s of idling"
    assert cli("stop", "servicedir", str(services.root)).returncode == 0
    assert sup.wait_exit() == 0
