"""Tests for wirepool.service: rendering, file IO and the commands issued.

The home directory is always ``tmp_path`` and the service manager is a fake runner that records
commands; nothing here touches the real home or the real systemctl/launchctl. Where
``systemd-analyze`` exists, rendered units are also checked by systemd's own parser.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from wirepool_wire.service import detect_rust_wire_units, rust_wire_removal_advice

from wirepool import service as svc
from wirepool.service import (
    CommandOutcome,
    ServiceError,
    ServiceSpec,
    build_spec,
    install,
    render_launchd_plist,
    render_systemd_unit,
    service_name,
    status,
    strip_deleted_suffix,
    systemd_exec_start,
    uninstall,
    unit_path,
)

UID = 4242
BUS_DOWN = "Failed to connect to bus: No medium found\n"

# Arguments that exercise every quoting rule: spaces, specifiers (including one systemd does
# not know, which is fatal if left undoubled), variables, both quote kinds, backslashes, a
# lone semicolon (the old command separator), an empty word, control characters, non-ASCII.
HOSTILE_ARGS = (
    "--name",
    "a b",
    "100%Z",
    "%h",
    "$HOME",
    "${HOME}",
    "a$$b",
    'say "hi"',
    "it's",
    "back\\slash",
    "trailing\\",
    ";",
    "",
    "tab\there",
    "new\nline",
    "caf\u00e9 \u2603",
    "-",
    "@x",
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

Reply = tuple[int, str, str]


class FakeRunner:
    """Stands in for systemctl/launchctl: records argv, answers from ``reply``."""

    def __init__(self, reply: Callable[[tuple[str, ...]], Reply] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self._reply = reply or (lambda argv: (0, "", ""))

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        args = tuple(argv)
        self.calls.append(args)
        code, out, err = self._reply(args)
        return subprocess.CompletedProcess(args, code, out, err)


def _spec(
    *args: str,
    executable: str = "/opt/wp/bin/python3",
    description: str = "wirepool supervisor for wire sessions",
    environment: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> ServiceSpec:
    return ServiceSpec(
        name="wirepool-wire",
        argv=(executable, "-m", "wirepool", "run", "wire", *args),
        description=description,
        environment={"PATH": "/usr/bin:/bin"} if environment is None else environment,
        log_path=log_path,
    )


def _directive(unit: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]


_CUNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "s": " "}


def _systemd_words(value: str) -> list[str]:
    """A reference reading of a systemd value: extract_first_word(UNQUOTE|CUNESCAPE).

    Raises on anything the quoter should never emit (unbalanced quotes, unknown escapes).
    """
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t":
            i += 1
        if i >= n:
            return words
        word: list[str] = []
        quote: str | None = None
        while i < n and (quote is not None or value[i] not in " \t"):
            ch = value[i]
            if ch == "\\":
                nxt = value[i + 1]
                if nxt == "x":
                    word.append(chr(int(value[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                word.append(_CUNESCAPE[nxt])
                i += 2
                continue
            if quote is None and ch in "\"'":
                quote = ch
            elif ch == quote:
                quote = None
            else:
                word.append(ch)
            i += 1
        if quote is not None:
            raise AssertionError(f"unbalanced quoting in {value!r}")
        words.append("".join(word))


def _specifiers(word: str) -> str:
    """Resolve specifiers; only ``%%`` may appear in what we render."""
    assert re.fullmatch(r"(?:[^%]|%%)*", word), f"undoubled % in {word!r}"
    return word.replace("%%", "%")


def _dollars(word: str) -> str:
    """Exec-time variable expansion; only ``$$`` may appear in what we render."""
    assert re.fullmatch(r"(?:[^$]|\$\$)*", word), f"undoubled $ in {word!r}"
    return word.replace("$$", "$")


def _exec_argv(unit: str) -> list[str]:
    (value,) = _directive(unit, "ExecStart")
    words = [_specifiers(w) for w in _systemd_words(value)]
    return [words[0], *(_dollars(w) for w in words[1:])]


# --------------------------------------------------------------------------------------------
# names, specs, paths
# --------------------------------------------------------------------------------------------


def test_service_name() -> None:
    assert service_name("wire") == "wirepool-wire"
    assert service_name("servicedir") == "wirepool-servicedir"
    for bad in ("", "a/b", "x@y", "-x", "a b", "..", "w\n"):
        with pytest.raises(ServiceError):
            service_name(bad)


def test_spec_validation() -> None:
    with pytest.raises(ServiceError, match="absolute"):
        ServiceSpec("wirepool-wire", ("python3", "-m", "wirepool"), "d")
    with pytest.raises(ServiceError, match="empty"):
        ServiceSpec("wirepool-wire", (), "d")
    with pytest.raises(ServiceError, match="environment variable name"):
        ServiceSpec("wirepool-wire", ("/bin/true",), "d", {"1BAD": "x"})
    with pytest.raises(ServiceError, match="control character"):
        ServiceSpec("wirepool-wire", ("/bin/true",), "d", {"A": "x\ny"})
    with pytest.raises(ServiceError, match="service name"):
        ServiceSpec("bad name", ("/bin/true",), "d")
    spec = ServiceSpec("wirepool-wire", ["/bin/true", "x"], "d", {"A": "1"})  # type: ignore[arg-type]
    assert spec.argv == ("/bin/true", "x")
    assert spec.unit_name == "wirepool-wire.service"
    assert spec.label == "dev.wirepool.wirepool-wire"
    with pytest.raises(TypeError):
        spec.environment["B"] = "2"  # type: ignore[index]


def test_deleted_suffix_is_stripped() -> None:
    assert strip_deleted_suffix("/usr/bin/wire (deleted)") == "/usr/bin/wire"
    assert strip_deleted_suffix("/usr/bin/wire") == "/usr/bin/wire"
    spec = _spec(executable="/opt/wp/bin/python3 (deleted)")
    assert spec.argv[0] == "/opt/wp/bin/python3"
    unit = render_systemd_unit(spec)
    assert "(deleted)" not in unit
    assert _exec_argv(unit)[0] == "/opt/wp/bin/python3"
    plist = plistlib.loads(render_launchd_plist(spec, spec.label).encode())
    assert plist["ProgramArguments"][0] == "/opt/wp/bin/python3"


def test_unit_paths(tmp_path: Path) -> None:
    assert unit_path("wirepool-wire", platform="linux", home=tmp_path) == (
        tmp_path / ".config/systemd/user/wirepool-wire.service"
    )
    assert unit_path(_spec(), platform="darwin", home=tmp_path) == (
        tmp_path / "Library/LaunchAgents/dev.wirepool.wirepool-wire.plist"
    )
    assert unit_path("x", platform="linux", home=tmp_path, config_home=tmp_path / "cfg") == (
        tmp_path / "cfg/systemd/user/x.service"
    )
    with pytest.raises(ServiceError, match="not 'win32'"):
        unit_path("x", platform="win32", home=tmp_path)


def test_build_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/home/u/.cargo/bin:/usr/bin")
    spec = build_spec("wire", ["--interval", "5"], platform="linux", home=tmp_path)
    assert spec.name == "wirepool-wire"
    assert spec.argv == (sys.executable, "-m", "wirepool", "run", "wire", "--interval", "5")
    assert spec.environment["PATH"] == "/home/u/.cargo/bin:/usr/bin"
    assert spec.log_path is None
    mac = build_spec("wire", [], platform="darwin", home=tmp_path, python="/usr/bin/python3")
    assert mac.argv[0] == "/usr/bin/python3"
    assert mac.log_path == tmp_path / "Library/Logs/wirepool-wire.log"
    pinned = build_spec("wire", platform="linux", environment={"PATH": "/x"})
    assert dict(pinned.environment) == {"PATH": "/x"}


# --------------------------------------------------------------------------------------------
# systemd rendering
# --------------------------------------------------------------------------------------------


def test_systemd_unit_contents() -> None:
    unit = render_systemd_unit(_spec("--interval", "5"))
    lines = unit.splitlines()
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert lines.count(section) == 1
    assert lines.index("[Unit]") < lines.index("[Service]") < lines.index("[Install]")
    assert _directive(unit, "Description") == ["wirepool supervisor for wire sessions"]
    assert _directive(unit, "After") == ["default.target"]
    assert "network-online" not in unit
    assert _directive(unit, "Type") == ["simple"]
    assert _directive(unit, "ExecStart") == [
        "/opt/wp/bin/python3 -m wirepool run wire --interval 5"
    ]
    assert _directive(unit, "Restart") == ["on-failure"]
    assert _directive(unit, "RestartSec") == ["5"]
    assert _directive(unit, "KillMode") == ["process"]
    assert _directive(unit, "WantedBy") == ["default.target"]
    assert _directive(unit, "Environment") == ['"PATH=/usr/bin:/bin"']
    assert unit.endswith("\n")


def test_exec_start_quoting_round_trips() -> None:
    spec = _spec(*HOSTILE_ARGS, executable="/opt/my env/100%/bin/python3")
    unit = render_systemd_unit(spec)
    assert _exec_argv(unit) == list(spec.argv)
    (value,) = _directive(unit, "ExecStart")
    assert value.startswith('"/opt/my env/100%%/bin/python3" ')
    assert '"100%%Z"' not in value
    assert " 100%%Z " in value
    assert " $$HOME " in value
    assert '"$${HOME}"' in value
    assert '"say \\"hi\\""' in value
    assert '"back\\\\slash"' in value
    assert ' ";" ' in value
    assert ' "" ' in value
    assert '"new\\nline"' in value
    assert '"tab\\there"' in value
    assert "\n" not in value  # one physical line, never a continuation
    assert not value.endswith("\\")


def test_exec_start_refuses_paths_systemd_rejects() -> None:
    for bad in ('/opt/q"uote/python', "/opt/o'brien/python", "/opt/back\\slash/py", "/opt/$x/py"):
        with pytest.raises(ServiceError, match="cannot start an executable"):
            render_systemd_unit(_spec(executable=bad))
    with pytest.raises(ServiceError, match="absolute"):
        systemd_exec_start(["python3"])


def test_environment_lines_quoted() -> None:
    env = {"PATH": "/a b/bin:/usr/bin", "PCT": "100%", "DOLLAR": "$HOME", "Q": 'x"y\\z'}
    unit = render_systemd_unit(_spec(environment=env))
    values = _directive(unit, "Environment")
    assert len(values) == 4
    parsed = []
    for value in values:
        (word,) = _systemd_words(value)  # one quoted word per line
        parsed.append(_specifiers(word))  # '$' is literal in Environment=
    assert parsed == [f"{k}={v}" for k, v in env.items()]
    assert '"PCT=100%%"' in values
    assert '"DOLLAR=$HOME"' in values


def test_description_is_one_safe_line() -> None:
    unit = render_systemd_unit(_spec(description="a\nb 100% \\"))
    assert _directive(unit, "Description") == ["a b 100%%"]


# --------------------------------------------------------------------------------------------
# launchd rendering
# --------------------------------------------------------------------------------------------


def test_launchd_plist_parses_back(tmp_path: Path) -> None:
    spec = _spec("--interval", "5", "a b", log_path=tmp_path / "wp.log")
    data = plistlib.loads(render_launchd_plist(spec, "dev.wirepool.wirepool-wire").encode())
    assert data["Label"] == "dev.wirepool.wirepool-wire"
    assert data["ProgramArguments"] == list(spec.argv)
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["AbandonProcessGroup"] is True
    assert data["ProcessType"] == "Background"
    assert data["ThrottleInterval"] == 5
    assert data["EnvironmentVariables"] == {"PATH": "/usr/bin:/bin"}
    assert data["StandardOutPath"] == data["StandardErrorPath"] == str(tmp_path / "wp.log")


def test_launchd_plist_without_log_or_env() -> None:
    data = plistlib.loads(render_launchd_plist(_spec(environment={}), "l").encode())
    assert "StandardOutPath" not in data
    assert "EnvironmentVariables" not in data


def test_launchd_plist_refuses_control_characters() -> None:
    with pytest.raises(ServiceError, match="launchd plist"):
        render_launchd_plist(_spec("bell\x07"), "l")


# --------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------


def test_install_linux_writes_and_loads(tmp_path: Path) -> None:
    runner = FakeRunner()
    spec = _spec("--interval", "5")
    result = install(
        spec, platform="linux", home=tmp_path, runner=runner, uid=UID, linger_dir=tmp_path
    )
    path = tmp_path / ".config/systemd/user/wirepool-wire.service"
    assert result.path == path
    assert path.read_text() == render_systemd_unit(spec)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["wirepool-wire.service"]  # no tmp
    assert runner.calls == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "--now", "wirepool-wire.service"),
    ]
    assert result.loaded
    assert result.ok
    assert result.changed
    assert result.error is None
    assert result.manager == "systemd"
    assert "journalctl --user -u wirepool-wire.service" in " ".join(result.notes)
    assert "started" in result.summary()


def test_install_linux_reinstall_restarts_only_when_changed(tmp_path: Path) -> None:
    def run(spec: ServiceSpec, runner: FakeRunner) -> svc.InstallResult:
        return install(spec, platform="linux", home=tmp_path, runner=runner, linger_dir=tmp_path)

    run(_spec("--interval", "5"), FakeRunner())
    same = FakeRunner()
    result = run(_spec("--interval", "5"), same)
    assert not result.changed
    assert ("systemctl", "--user", "try-restart", "wirepool-wire.service") not in same.calls
    changed = FakeRunner()
    result = run(_spec("--interval", "9"), changed)
    assert result.changed
    assert changed.calls == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "try-restart", "wirepool-wire.service"),
        ("systemctl", "--user", "enable", "--now", "wirepool-wire.service"),
    ]


def test_install_linux_bus_failure_is_reported_not_raised(tmp_path: Path) -> None:
    runner = FakeRunner(lambda argv: (1, "", BUS_DOWN))
    spec = _spec()
    result = install(spec, platform="linux", home=tmp_path, runner=runner, linger_dir=tmp_path)
    assert result.path.read_text() == render_systemd_unit(spec)  # the file is still written
    assert runner.calls == [("systemctl", "--user", "daemon-reload")]  # stopped at once
    assert not result.loaded
    assert not result.ok
    assert result.load_attempted
    assert result.error is not None
    assert "Failed to connect to bus: No medium found" in result.error
    assert result.manual_commands == (
        "systemctl --user daemon-reload",
        "systemctl --user enable --now wirepool-wire.service",
    )
    line = result.summary()
    assert "\n" not in line
    assert "could not load" in line
    assert "systemctl --user enable --now wirepool-wire.service" in line


def test_install_missing_systemctl_is_reported(tmp_path: Path) -> None:
    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    result = install(_spec(), platform="linux", home=tmp_path, runner=runner, linger_dir=tmp_path)
    assert not result.loaded
    assert result.commands[0].returncode == 127
    assert "systemctl: command not found" in (result.error or "")


def test_install_timeout_is_reported(tmp_path: Path) -> None:
    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(list(argv), 60)

    result = install(_spec(), platform="linux", home=tmp_path, runner=runner, linger_dir=tmp_path)
    assert not result.loaded
    assert "timed out" in (result.error or "")


def test_install_without_load(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = install(_spec(), platform="linux", home=tmp_path, runner=runner, load=False)
    assert runner.calls == []
    assert result.path.exists()
    assert result.ok
    assert not result.loaded
    assert "load it with" in result.summary()
    assert result.manual_commands[-1] == "systemctl --user enable --now wirepool-wire.service"


def test_install_linger_note(tmp_path: Path) -> None:
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    linger = tmp_path / "linger"
    linger.mkdir()
    home = tmp_path / "home"
    result = install(_spec(), platform="linux", home=home, runner=FakeRunner(), linger_dir=linger)
    assert any(f"loginctl enable-linger {user}" in n for n in result.notes)
    (linger / user).touch()
    result = install(_spec(), platform="linux", home=home, runner=FakeRunner(), linger_dir=linger)
    assert not any("linger" in n for n in result.notes)


def test_install_darwin_writes_and_bootstraps(tmp_path: Path) -> None:
    not_loaded = (3, "", "Boot-out failed: 3: No such process\n")
    runner = FakeRunner(lambda argv: not_loaded if argv[1] == "bootout" else (0, "", ""))
    log = tmp_path / "Library/Logs/wirepool-wire.log"
    spec = _spec(log_path=log)
    result = install(spec, platform="darwin", home=tmp_path, runner=runner, uid=UID)
    path = tmp_path / "Library/LaunchAgents/dev.wirepool.wirepool-wire.plist"
    assert result.path == path
    assert result.manager == "launchd"
    assert plistlib.loads(path.read_bytes())["ProgramArguments"] == list(spec.argv)
    assert log.parent.is_dir()
    assert runner.calls == [
        ("launchctl", "bootout", f"gui/{UID}/dev.wirepool.wirepool-wire"),
        ("launchctl", "bootstrap", f"gui/{UID}", str(path)),
    ]
    assert result.loaded
    assert result.error is None


def test_install_darwin_bootstrap_failure_retries_once_then_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("wirepool.service.launchd.time.sleep", sleeps.append)
    failing = (5, "", "Bootstrap failed: 5: Input/output error\n")
    runner = FakeRunner(lambda argv: failing if argv[1] == "bootstrap" else (0, "", ""))
    result = install(_spec(), platform="darwin", home=tmp_path, runner=runner, uid=UID)
    assert [c[1] for c in runner.calls] == ["bootout", "bootstrap", "bootstrap"]
    assert sleeps == [1.0]
    assert result.path.exists()
    assert not result.loaded
    assert "Input/output error" in (result.error or "")
    assert result.manual_commands == (f"launchctl bootstrap gui/{UID} {result.path}",)


def test_install_unsupported_platform_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ServiceError):
        install(_spec(), platform="win32", home=tmp_path, runner=FakeRunner())
    assert list(tmp_path.iterdir()) == []


def test_install_unwritable_location_raises_service_error(tmp_path: Path) -> None:
    (tmp_path / ".config").write_text("a file where a directory should be")
    with pytest.raises(ServiceError, match="cannot write"):
        install(_spec(), platform="linux", home=tmp_path, runner=FakeRunner())


# --------------------------------------------------------------------------------------------
# uninstall
# --------------------------------------------------------------------------------------------


def test_uninstall_linux(tmp_path: Path) -> None:
    install(_spec(), platform="linux", home=tmp_path, runner=FakeRunner(), linger_dir=tmp_path)
    path = unit_path("wirepool-wire", platform="linux", home=tmp_path)
    wants = path.parent / "default.target.wants" / path.name
    wants.parent.mkdir()
    wants.symlink_to(path)  # what `systemctl --user enable` leaves
    runner = FakeRunner()
    result = uninstall("wirepool-wire", platform="linux", home=tmp_path, runner=runner)
    assert result.removed
    assert result.ok
    assert not path.exists()
    assert not wants.is_symlink()
    assert runner.calls == [
        ("systemctl", "--user", "disable", "--now", "wirepool-wire.service"),
        ("systemctl", "--user", "daemon-reload"),
    ]


def test_uninstall_linux_bus_failure_still_removes_file(tmp_path: Path) -> None:
    spec = _spec()
    install(spec, platform="linux", home=tmp_path, runner=FakeRunner(), linger_dir=tmp_path)
    runner = FakeRunner(lambda argv: (1, "", BUS_DOWN))
    result = uninstall(spec, platform="linux", home=tmp_path, runner=runner)
    assert result.removed
    assert not result.path.exists()
    assert not result.ok
    assert "Failed to connect to bus" in (result.error or "")
    assert "systemctl --user stop wirepool-wire.service" in result.manual_commands
    assert "\n" not in result.summary()


def test_uninstall_linux_not_installed(tmp_path: Path) -> None:
    runner = FakeRunner(lambda argv: (5, "", "Unit wirepool-wire.service not loaded.\n"))
    result = uninstall("wirepool-wire", platform="linux", home=tmp_path, runner=runner)
    assert not result.removed
    assert result.ok
    assert runner.calls == [("systemctl", "--user", "stop", "wirepool-wire.service")]
    assert "was not installed" in result.summary()


def test_uninstall_darwin(tmp_path: Path) -> None:
    spec = _spec()
    install(spec, platform="darwin", home=tmp_path, runner=FakeRunner(), uid=UID)
    runner = FakeRunner()
    result = uninstall(spec, platform="darwin", home=tmp_path, runner=runner, uid=UID)
    assert result.removed
    assert result.ok
    assert not result.path.exists()
    assert runner.calls == [("launchctl", "bootout", f"gui/{UID}/dev.wirepool.wirepool-wire")]


def test_uninstall_darwin_not_loaded_is_fine(tmp_path: Path) -> None:
    install(_spec(), platform="darwin", home=tmp_path, runner=FakeRunner(), uid=UID)
    runner = FakeRunner(lambda argv: (3, "", "Boot-out failed: 3: No such process\n"))
    result = uninstall("wirepool-wire", platform="darwin", home=tmp_path, runner=runner, uid=UID)
    assert result.removed
    assert result.ok


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def test_status_linux_active(tmp_path: Path) -> None:
    spec = _spec("--interval", "5")
    install(spec, platform="linux", home=tmp_path, runner=FakeRunner(), linger_dir=tmp_path)
    show = (
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=1234\n"
        "UnitFileState=enabled\n"
    )
    runner = FakeRunner(lambda argv: (0, show, ""))
    st = status("wirepool-wire", platform="linux", home=tmp_path, runner=runner)
    assert runner.calls == [
        (
            "systemctl",
            "--user",
            "show",
            "wirepool-wire.service",
            "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState",
        )
    ]
    assert st.installed
    assert st.loaded
    assert st.active
    assert st.enabled
    assert st.pid == 1234
    assert st.state == "active (running)"
    assert st.exec_start == "/opt/wp/bin/python3 -m wirepool run wire --interval 5"
    assert "pid 1234" in st.summary()


def test_status_linux_not_installed_and_bus_down(tmp_path: Path) -> None:
    show = "LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n"
    st = status(
        "wirepool-wire", platform="linux", home=tmp_path, runner=FakeRunner(lambda a: (0, show, ""))
    )
    assert not st.installed
    assert st.loaded is False
    assert st.active is False
    assert st.pid is None
    assert "not installed" in st.summary()
    install(_spec(), platform="linux", home=tmp_path, runner=FakeRunner(), linger_dir=tmp_path)
    down = FakeRunner(lambda argv: (1, "", BUS_DOWN))
    st = status(_spec(), platform="linux", home=tmp_path, runner=down)
    assert st.installed
    assert st.loaded is None
    assert st.active is None
    assert st.error == "Failed to connect to bus: No medium found"
    assert st.exec_start is not None
    assert "state unknown" in st.summary()


def test_status_darwin(tmp_path: Path) -> None:
    spec = _spec("a b")
    install(spec, platform="darwin", home=tmp_path, runner=FakeRunner(), uid=UID)
    printed = (
        f"gui/{UID}/dev.wirepool.wirepool-wire = {{\n\tactive count = 1\n"
        "\tstate = running\n\tprogram = /opt/wp/bin/python3\n\tpid = 777\n"
        "\tendpoints = {\n\t\tstate = idle\n\t}\n}\n"
    )
    runner = FakeRunner(lambda argv: (0, printed, ""))
    st = status("wirepool-wire", platform="darwin", home=tmp_path, runner=runner, uid=UID)
    assert runner.calls == [("launchctl", "print", f"gui/{UID}/dev.wirepool.wirepool-wire")]
    assert st.installed
    assert st.loaded
    assert st.active
    assert st.pid == 777
    assert st.state == "running"
    assert st.exec_start == "/opt/wp/bin/python3 -m wirepool run wire 'a b'"
    gone = FakeRunner(lambda argv: (113, "", "Could not find service in domain\n"))
    st = status("wirepool-wire", platform="darwin", home=tmp_path, runner=gone, uid=UID)
    assert st.loaded is False
    assert st.active is False
    assert st.error is None


# --------------------------------------------------------------------------------------------
# wire's own units
# --------------------------------------------------------------------------------------------


def test_detect_rust_wire_units(tmp_path: Path) -> None:
    assert detect_rust_wire_units(platform="linux", home=tmp_path) == []
    assert detect_rust_wire_units(platform="darwin", home=tmp_path) == []
    linux = tmp_path / ".config/systemd/user/wire-daemon.service"
    linux.parent.mkdir(parents=True)
    linux.write_text("[Service]\nExecStart=/home/u/.cargo/bin/wire daemon --all-sessions\n")
    mac = tmp_path / "Library/LaunchAgents/sh.slancha.wire.daemon.plist"
    mac.parent.mkdir(parents=True)
    mac.write_bytes(plistlib.dumps({"Label": "sh.slancha.wire.daemon"}))
    assert detect_rust_wire_units(platform="linux", home=tmp_path) == [linux]
    assert detect_rust_wire_units(platform="darwin", home=tmp_path) == [mac]
    assert detect_rust_wire_units(platform="win32", home=tmp_path) == []


def test_rust_wire_removal_advice(tmp_path: Path) -> None:
    assert rust_wire_removal_advice([]) == ""
    linux = tmp_path / ".config/systemd/user/wire-daemon.service"
    text = rust_wire_removal_advice([linux])
    assert "wire service uninstall" in text
    assert "systemctl --user disable --now wire-daemon.service" in text
    assert str(linux) in text
    assert "\n" not in text
    mac = tmp_path / "Library/LaunchAgents/sh.slancha.wire.daemon.plist"
    text = rust_wire_removal_advice([mac], uid=UID)
    assert f"launchctl bootout gui/{UID}/sh.slancha.wire.daemon" in text
    assert "wire service uninstall" in text


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------


def test_backend_is_chosen_by_platform(tmp_path: Path) -> None:
    assert svc.backend_class("linux") is svc.SystemdManager
    assert svc.backend_class("darwin") is svc.LaunchdManager
    assert isinstance(svc.backend("linux", home=tmp_path), svc.SystemdManager)
    assert svc.manager_for("darwin") == "launchd"
    for platform in ("win32", "cygwin", "freebsd14"):
        with pytest.raises(ServiceError, match=f"not {platform!r}"):
            svc.backend(platform, home=tmp_path)


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_a_backend_installs_what_it_renders_and_reads_it_back(
    tmp_path: Path, platform: str
) -> None:
    manager = svc.backend(
        platform, home=tmp_path, runner=FakeRunner(), uid=UID, linger_dir=tmp_path
    )
    spec = build_spec("wire", ["--interval", "5"], platform=platform, home=tmp_path)
    result = manager.install(spec)
    assert result.manager == manager.kind == svc.manager_for(platform)
    assert result.path == manager.unit_path(spec.name)
    assert result.path.read_text() == manager.render(spec)
    assert manager.log_path(spec.name) == spec.log_path
    st = manager.status(spec.name)
    assert st.installed
    assert st.exec_start == " ".join(spec.argv)  # no word here needs quoting in either format
    assert manager.uninstall(spec.name).removed
    assert not result.path.exists()
    assert not manager.status(spec.name).installed


def test_systemd_finds_other_units_where_installers_put_them(tmp_path: Path) -> None:
    manager = svc.SystemdManager(svc.Host.of(tmp_path, config_home=tmp_path / "xdg", uid=UID))
    assert manager.installed_files("rival.service") == []
    home_unit = tmp_path / ".config/systemd/user/rival.service"
    xdg_unit = tmp_path / "xdg/systemd/user/rival.service"
    for unit in (home_unit, xdg_unit):
        unit.parent.mkdir(parents=True)
        unit.write_text("[Service]\nExecStart=/bin/true\n")
    assert manager.installed_files("rival.service") == [home_unit, xdg_unit]
    assert manager.removal_command("rival.service", tmp_path / "a b.service") == (
        f"systemctl --user disable --now rival.service; rm '{tmp_path}/a b.service'; "
        "systemctl --user daemon-reload"
    )


def test_launchd_finds_other_agents_by_label(tmp_path: Path) -> None:
    manager = svc.LaunchdManager(svc.Host.of(tmp_path, uid=UID))
    assert manager.installed_files("org.rival") == []
    plist = tmp_path / "Library/LaunchAgents/org.rival.plist"
    plist.parent.mkdir(parents=True)
    plist.write_bytes(plistlib.dumps({"Label": "org.rival"}))
    assert manager.installed_files("org.rival") == [plist]
    assert manager.removal_command("org.rival", plist) == (
        f"launchctl bootout gui/{UID}/org.rival; rm {plist}"
    )


def test_command_outcome_reason() -> None:
    assert CommandOutcome(("x",), 1, "", "\n  boom \nmore").reason == "boom"
    assert CommandOutcome(("x",), 2).reason == "exit status 2"


# --------------------------------------------------------------------------------------------
# systemd's own parser
# --------------------------------------------------------------------------------------------

_ENVIRONMENTAL = (
    "Failed to initialize manager",
    "Failed to lookup RuntimeDirectory",
    "Failed to connect to bus",
    "No such device or address",
    "XDG_RUNTIME_DIR",
)


def _verify(target: str | Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify --user TARGET`` in an isolated environment.

    The user manager needs a runtime directory; containers often have no /run/user/<uid>, so
    a private XDG_RUNTIME_DIR is supplied (HOME and XDG_CONFIG_HOME point into tmp_path too, so
    the real user's units are never read). If systemd still refuses for an environmental
    reason, fall back to ``--man=no`` and then to system mode; if nothing runs, skip with
    systemd's own words.
    """
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / ".config"),
        "XDG_RUNTIME_DIR": str(runtime),
        "SYSTEMD_PAGER": "",
    }
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    attempts = [
        [analyze, "verify", "--user", str(target)],
        [analyze, "verify", "--user", "--man=no", str(target)],
        [analyze, "verify", "--system", "--man=no", str(target)],
    ]
    reasons: list[str] = []
    for argv in attempts:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, env=env, timeout=60
        )
        if done.returncode == 0 or not any(m in done.stderr for m in _ENVIRONMENTAL):
            return done
        reasons.append(done.stderr.strip())
    pytest.skip(f"systemd-analyze cannot run here: {' | '.join(reasons)}")


def _about(stderr: str, unit_file: Path) -> list[str]:
    """Diagnostics that name our unit (anything else is systemd chatter about the host)."""
    return [line for line in stderr.splitlines() if unit_file.name in line]


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_systemd_analyze_accepts_rendered_unit(tmp_path: Path) -> None:
    # argv[0] is a real executable reached through a directory whose name needs quoting and a
    # doubled '%': systemd checks that the path it parsed is executable, so a quoting mistake
    # in the executable fails here ("is not executable" / "Unbalanced quoting"). An undoubled
    # '%Z' among the arguments would be fatal too ("Failed to resolve unit specifiers").
    odd_dir = tmp_path / "bin dir 100%Z"
    odd_dir.mkdir()
    python = odd_dir / "python"
    python.symlink_to(sys.executable)
    spec = _spec(*HOSTILE_ARGS, executable=str(python), environment={"PATH": "/a b:$X:100%Z"})
    unit_file = tmp_path / "wirepool-wire.service"
    unit_file.write_text(render_systemd_unit(spec))
    done = _verify(unit_file, tmp_path)
    assert done.returncode == 0, done.stderr
    assert _about(done.stderr, unit_file) == [], done.stderr


@needs_systemd_analyze
def test_systemd_analyze_rejects_an_undoubled_specifier(tmp_path: Path) -> None:
    """The check above has teeth: the same verify fails once '%%' is undone."""
    unit_file = tmp_path / "broken.service"
    unit = render_systemd_unit(_spec("100%Z", executable=sys.executable))
    unit_file.write_text(unit.replace("%%", "%"))
    done = _verify(unit_file, tmp_path)
    assert done.returncode != 0
    assert "specifiers" in done.stderr


def _enable_by_hand(path: Path) -> None:
    """What `systemctl --user enable` does for WantedBy=default.target."""
    wants = path.parent / "default.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / path.name).symlink_to(path)


@needs_systemd_analyze
def test_systemd_analyze_enabled_unit_has_no_ordering_cycle(tmp_path: Path) -> None:
    """After=default.target with WantedBy=default.target, as `enable` wires it, is no cycle."""
    spec = _spec(executable=sys.executable)
    install(spec, platform="linux", home=tmp_path, runner=FakeRunner(), linger_dir=tmp_path)
    path = unit_path(spec, platform="linux", home=tmp_path)
    _enable_by_hand(path)
    done = _verify("default.target", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ordering cycle" not in done.stderr, done.stderr
    # The same check does see a cycle when there is one.
    path.write_text(
        path.read_text().replace(
            "After=default.target", "After=default.target\nBefore=default.target"
        )
    )
    done = _verify("default.target", tmp_path)
    assert "ordering cycle" in done.stderr, done.stderr
