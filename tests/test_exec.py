"""``wirepool._exec``: command children started through libc's posix_spawn,
checked on real children through ``/proc``: their directory, descriptors,
signals, session, and the errors a failed start gives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wirepool import _exec
from wirepool._types import Session
from wirepool.spawn import POOL_MARKER, SESSION_MARKER, CommandSpawner, Worker

needs_posix_spawn = pytest.mark.skipif(
    not _exec.AVAILABLE, reason="libc has no posix_spawn with chdir and closefrom"
)

#: what a child reports of itself, then it waits to be killed
REPORT = textwrap.dedent(
    """\
    pwd > report
    ps -o sid= -o pgid= -p $$ >> report
    printf '%s\\n' "$GREETING" >> report
    echo to-stdout; echo to-stderr >&2
    read -r line; echo "stdin gave [$line]" >> report
    mv report report.done
    exec sleep 600
    """
)


@pytest.fixture
def pids() -> Iterator[list[int]]:
    started: list[int] = []
    yield started
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def wait_for(path: Path, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path} after {timeout}s"
        time.sleep(0.02)
    return path.read_text().splitlines()


#: nanosleep and clock_nanosleep on x86_64, then on aarch64: what
#: ``/proc/PID/syscall`` names when ``wchan`` is hidden
NANOSLEEP_CALLS = {"35", "230", "101", "115"}


def asleep(pid: int) -> bool:
    """Whether ``pid`` is blocked in ``sleep``'s nanosleep. The new image is
    not enough: right after the exec the loader holds each library open in
    turn (a CI run read ``libc.so.6`` as a fourth descriptor), and ``sleep``
    opens locale files before it sleeps."""
    if not os.readlink(f"/proc/{pid}/exe").endswith("sleep"):
        return False
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    if wchan not in ("", "0"):
        return "nanosleep" in wchan
    return Path(f"/proc/{pid}/syscall").read_text().split(" ", 1)[0] in NANOSLEEP_CALLS


def descriptors_once_asleep(pid: int, timeout: float = 30.0) -> dict[str, str]:
    """The child's descriptors once ``sleep`` sleeps (the shell's own
    redirections and the loader's are gone by then): number -> what it is
    open on."""
    deadline = time.monotonic() + timeout
    while not asleep(pid):
        assert time.monotonic() < deadline, f"{pid} never slept in sleep"
        time.sleep(0.02)
    return {fd: os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


@pytest.fixture
def host_signals() -> Iterator[None]:
    """The host ignores SIGHUP and SIGQUIT and blocks SIGUSR1 (this thread's
    mask is what a spawn from it starts with), as a program under ``nohup``
    or one handling signals by signalfd would."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGHUP, signal.SIGQUIT)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in old.items():
            signal.signal(sig, handler)


@needs_posix_spawn
def test_a_child_gets_its_directory_output_descriptor_and_clean_signals(
    tmp_path: Path, pids: list[int], host_signals: None
) -> None:
    (tmp_path / "work").mkdir()
    log = tmp_path / "log"
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    keep = os.open(tmp_path / "identity", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    # inheritable: Popen without close_fds would pass it on
    stray = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(stray, True)
    try:
        env = {"PATH": os.environ["PATH"], "GREETING": "hi there\x1b[2J"}
        pid = _exec.spawn(["sh", "-c", REPORT], env, str(tmp_path / "work"), out, keep)
        pids.append(pid)
    finally:
        for fd in (out, keep, stray):
            os.close(fd)
    report = wait_for(tmp_path / "work" / "report.done")
    assert report[0] == str(tmp_path / "work")
    # the stray is closed; what is kept is the child's 3
    assert descriptors_once_asleep(pid) == {
        "0": os.devnull,
        "1": str(log),
        "2": str(log),
        "3": str(tmp_path / "identity"),
    }
    # read from sleep (sh blocks signals around each fork of its own)
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    assert "SigIgn:\t0000000000000000" in status
    assert "SigBlk:\t0000000000000000" in status
    assert report[1].split() == [str(pid), str(pid)]  # its own session and group
    assert "hi there\x1b[2J" in report  # the environment, byte for byte
    assert "stdin gave []" in report  # /dev/null
    assert log.read_text().splitlines() == ["to-stdout", "to-stderr"]


@needs_posix_spawn
def test_without_a_log_or_a_kept_descriptor_only_the_standard_three(
    tmp_path: Path, pids: list[int]
) -> None:
    pid = _exec.spawn(["sh", "-c", REPORT], {"PATH": os.environ["PATH"]}, str(tmp_path), None, None)
    pids.append(pid)
    wait_for(tmp_path / "report.done")
    assert descriptors_once_asleep(pid) == {"0": os.devnull, "1": os.devnull, "2": os.devnull}


@needs_posix_spawn
@pytest.mark.parametrize(
    ("text", "mode", "said"),
    [
        # not executable: execvp skips it, and says so if none runs
        ("#!/bin/sh\necho wrong > r; mv r ran\n", 0o644, "Permission denied"),
        # executable but no program (ENOEXEC): Popen goes on, as here
        ("not a program", 0o755, "Exec format error"),
    ],
    ids=["not-executable", "not-a-program"],
)
def test_the_program_is_looked_up_on_the_childs_path(
    tmp_path: Path, pids: list[int], text: str, mode: int, said: str
) -> None:
    """A program found first but unable to run is passed over for the next
    one on the PATH; if none runs, its error is the one said."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "prog").write_text(text)
    (first / "prog").chmod(mode)
    (second / "prog").write_text("#!/bin/sh\necho right > r; mv r ran\n")
    (second / "prog").chmod(0o755)
    env = {"PATH": f"{first}:{second}:/usr/bin:/bin"}
    pid = _exec.spawn(["prog"], env, str(tmp_path), None, None)
    pids.append(pid)
    assert wait_for(tmp_path / "ran") == ["right"]
    with pytest.raises(OSError, match=said) as refused:
        _exec.spawn(["prog"], {"PATH": f"{first}:{tmp_path / 'none'}"}, str(tmp_path), None, None)
    assert refused.value.filename == "prog"
    with pytest.raises(FileNotFoundError, match="no-such-prog"):
        _exec.spawn(["no-such-prog"], env, str(tmp_path), None, None)


@needs_posix_spawn
def test_a_relative_path_entry_is_looked_at_from_the_childs_directory(
    tmp_path: Path, pids: list[int]
) -> None:
    """``PATH=bin:...`` finds ``<its directory>/bin/prog``, as Popen does,
    though the supervisor's own directory has no ``bin``."""
    work = tmp_path / "work"
    (work / "bin").mkdir(parents=True)
    (work / "bin" / "prog").write_text("#!/bin/sh\necho found > r; mv r ran\n")
    (work / "bin" / "prog").chmod(0o755)
    assert not (Path.cwd() / "bin" / "prog").exists()
    pid = _exec.spawn(["prog"], {"PATH": "bin:/usr/bin:/bin"}, str(work), None, None)
    pids.append(pid)
    assert wait_for(work / "ran") == ["found"]


@needs_posix_spawn
def test_a_failed_start_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "run").chmod(0o755)
    gone = tmp_path / "gone"
    with pytest.raises(FileNotFoundError) as missing_dir:
        _exec.spawn(["./run"], {}, str(gone), None, None)
    assert missing_dir.value.filename == str(gone)
    # on a PATH lookup too, and when the directory is a file
    with pytest.raises(FileNotFoundError) as missing_dir:
        _exec.spawn(["true"], {"PATH": "/usr/bin:/bin"}, str(gone), None, None)
    assert missing_dir.value.filename == str(gone)
    with pytest.raises(NotADirectoryError) as a_file:
        _exec.spawn(["./run"], {}, str(tmp_path / "run"), None, None)
    assert a_file.value.filename == str(tmp_path / "run")
    with pytest.raises(FileNotFoundError) as missing_prog:
        _exec.spawn(["./nope"], {}, str(tmp_path), None, None)
    assert missing_prog.value.filename == "./nope"
    (tmp_path / "data").write_text("not a program")
    (tmp_path / "data").chmod(0o755)
    with pytest.raises(OSError, match="Exec format error"):
        _exec.spawn(["./data"], {}, str(tmp_path), None, None)


def test_a_failed_start_keeps_nothing_of_its_log_for_a_later_one(tmp_path: Path) -> None:
    """The log file a spawn took is kept by session name until the pool
    observes its child (spawns overlap); one that failed leaves nothing that
    a later spawn of the session, opening its log by itself, would take for
    its own."""
    home = tmp_path / "home"
    home.mkdir()
    session = Session("s1", home)
    spawner = CommandSpawner(["./not-there"])
    spawner.attach(tmp_path / "state", {POOL_MARKER: "c" * 16})
    log = spawner.log_path(session)
    assert log is not None
    spawner._open_log_with_mark(session, log, b"starting\n")  # as the pool does first
    with pytest.raises(FileNotFoundError):
        spawner.spawn(session)
    assert not spawner._files_for_observe
    assert spawner._log_for_spawn is None


@needs_posix_spawn
def test_what_c_would_cut_short_is_refused_as_popen_refuses_it(tmp_path: Path) -> None:
    """A NUL would end the string in C: the child would run with an argument
    or a variable cut short, so the start is refused instead."""
    with pytest.raises(ValueError, match="null byte"):
        _exec.spawn(["sh", "-c", "exit 0\0rm -rf ~"], {}, str(tmp_path), None, None)
    with pytest.raises(ValueError, match="null byte"):
        _exec.spawn(["/bin/true"], {"A": "x\0y"}, str(tmp_path), None, None)
    with pytest.raises(ValueError, match="environment variable name"):
        _exec.spawn(["/bin/true"], {"A=B": "c"}, str(tmp_path), None, None)


def test_the_strings_a_child_gets_are_what_fsencode_makes_of_them() -> None:
    """Every string is encoded at once and cut at the NULs: each piece must
    be exactly what ``os.fsencode`` gives for it, an empty string and a
    non-UTF-8 name (surrogate-escaped) included, and nothing is added."""
    strings = ["", "a=b", "", "caf\u00e9", "x\udcffy", "==", " ", "WIREPOOL_SESSION=s\udc80"]
    arr = _exec._array(strings)
    assert [arr[i] for i in range(len(strings))] == [os.fsencode(s) for s in strings]
    assert arr[len(strings)] is None  # the NULL that ends it
    empty = _exec._array([])
    assert empty[0] is None
    with pytest.raises(ValueError, match="null byte"):
        _exec._array(["ok", "\0"])


LOW_FDS = textwrap.dedent(
    """\
    import os, sys
    from wirepool import _exec
    here = sys.argv[1]
    # started with 0, 1 and 2 closed: the log and the identity take them
    log = os.open(os.path.join(here, "log"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    keep = os.open(os.path.join(here, "identity"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC)
    assert (log, keep) == (0, 1), (log, keep)
    script = 'readlink /proc/$$/fd/3; readlink /proc/$$/fd/0; echo err >&2'
    pid = _exec.spawn(["sh", "-c", script], {"PATH": os.environ["PATH"]}, here, log, keep)
    os.waitpid(pid, 0)
    """
)


@needs_posix_spawn
def test_descriptors_below_three_are_not_lost_to_the_childs_stdio(tmp_path: Path) -> None:
    """A supervisor started with its standard descriptors closed opens its
    logs as 0, 1 or 2: setting up the child's must not overwrite them."""
    closed = 'exec 0<&- 1>&- 2>&-; exec "$0" -c "$1" "$2"'
    subprocess.run(
        ["sh", "-c", closed, sys.executable, LOW_FDS, str(tmp_path)], timeout=60, check=True
    )
    assert (tmp_path / "log").read_text().splitlines() == [
        str(tmp_path / "identity"),
        os.devnull,
        "err",
    ]


@needs_posix_spawn
def test_a_kept_descriptor_numbered_three_stays_open(tmp_path: Path) -> None:
    """Kept as itself: glibc clears close-on-exec on a dup2 to the same
    number, which is what keeps it open across the exec."""
    script = textwrap.dedent(
        """\
        import os, sys
        from wirepool import _exec
        here = sys.argv[1]
        keep = os.open(os.path.join(here, "identity"), os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC)
        assert keep == 3, keep
        pid = _exec.spawn(["sh", "-c", "readlink /proc/$$/fd/3 > out"], {}, here, None, keep)
        os.waitpid(pid, 0)
        """
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], timeout=60, check=True)
    assert (tmp_path / "out").read_text().strip() == str(tmp_path / "identity")


@pytest.mark.parametrize(
    "posix_spawn",
    [pytest.param(True, marks=needs_posix_spawn), False],
    ids=["posix_spawn", "popen"],
)
def test_a_command_spawner_child_holds_its_identity_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, posix_spawn: bool, host_signals: None
) -> None:
    """Both ways a CommandSpawner starts a child (Popen where libc lacks
    posix_spawn's chdir): the identity file held open, the markers, the
    log; only posix_spawn's child has the host's ignored signals reset."""
    monkeypatch.setattr(_exec, "AVAILABLE", posix_spawn)
    home = tmp_path / "home"
    home.mkdir()
    spawner = CommandSpawner(["sh", "-c", "echo started; exec sleep 600"])
    spawner.attach(tmp_path / "state", {POOL_MARKER: "c" * 16})
    worker: Worker = spawner.spawn(Session("s1", home))
    try:
        pid = worker.pid
        descriptors_once_asleep(pid)  # its environment is in place by then
        held = [
            os.readlink(f"/proc/{pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{pid}/fd")
            if int(fd) > 2
        ]
        assert len(held) == 1 and held[0].startswith(str(tmp_path / "state"))
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"{SESSION_MARKER}=s1".encode() in environ
        assert os.readlink(f"/proc/{pid}/cwd") == str(home)
        status = Path(f"/proc/{pid}/status").read_text()
        ignored = int(status.split("SigIgn:\t")[1].split()[0], 16)
        assert bool(ignored & (1 << (signal.SIGHUP - 1))) is not posix_spawn
        deadline = time.monotonic() + 30
        log = spawner.log_path(Session("s1", home))
        assert log is not None
        while "started" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        worker.kill()
        deadline = time.monotonic() + 30
        while worker.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker.close()


PYTHON_WORKER = textwrap.dedent(
    """\
    import os, signal, sys, time
    from pathlib import Path
    from wirepool._types import Session
    from wirepool.spawn import CallableSpawner

    def report(session):
        status = Path("/proc/self/status").read_text()
        sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
        Path(session.home, "sigint").write_text(str(sigint))
        Path(session.home, "status.tmp").write_text(status)
        os.rename(Path(session.home, "status.tmp"), Path(session.home, "status"))

    if __name__ == "__main__":
        home = Path(sys.argv[1])
        # the host under nohup, in the background of a shell without job
        # control (SIGINT ignored), blocking SIGUSR1: the forkserver starts so
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        spawner = CallableSpawner(report, log_format=None)
        worker = spawner.spawn(Session("py", home))
        deadline = time.monotonic() + 60
        while worker.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        worker.close()
    """
)


def test_a_python_worker_starts_with_the_signals_a_command_child_does(tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(PYTHON_WORKER)
    subprocess.run([sys.executable, str(script), str(tmp_path)], timeout=120, check=True)
    status = (tmp_path / "status").read_text().splitlines()
    ignored = int(next(x for x in status if x.startswith("SigIgn:")).split()[1], 16)
    blocked = int(next(x for x in status if x.startswith("SigBlk:")).split()[1], 16)
    assert not ignored & (1 << (signal.SIGHUP - 1))
    assert blocked == 0
    assert ignored & (1 << (signal.SIGPIPE - 1))  # Python's own, kept
    assert not ignored & (1 << (signal.SIGINT - 1))
    # Python's default for SIGINT, not the C one: Ctrl-C raises in a worker
    assert (tmp_path / "sigint").read_text() == "True"
