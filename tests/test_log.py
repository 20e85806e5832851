"""wirepool's logger (wirepool._log): loguru imported at first use, log
calls held while a bring-up starts its children, the library's messages disabled until an
application enables them.  Each case runs in a fresh interpreter, where
loguru is not imported yet."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

HELD = r"""
import json, sys, time
from wirepool import _log
assert "loguru" not in sys.modules
_log.hold()
# a module of the library, calling as the engine does
g = {"__name__": "wirepool.fake", "L": _log.logger}
exec(
    "def f(n):\n"
    "    L.bind(session='s').info('line {}', n)\n"
    "    L.opt(exception=ValueError('x')).error('oops')\n",
    g,
)
_log.logger.remove()
FORMAT = "{time:YYYY-MM-DDTHH:mm:ss.SSSSSSZZ} {name}:{function}:{line} {level} {message} {extra}"
_log.logger.add(sys.argv[1], format=FORMAT, level="DEBUG")
_log.logger.enable("wirepool")
before = time.time()
g["f"](1)
time.sleep(0.2)
held = "loguru" in sys.modules
_log.release()
print(json.dumps({"held_without_loguru": not held, "before": before,
                  "loaded": "loguru" in sys.modules}))
_log.logger.info("after release")
"""


def test_held_calls_are_made_at_release_with_their_own_time_and_caller(tmp_path: Path) -> None:
    out = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, "-c", HELD, str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["held_without_loguru"]
    assert facts["loaded"]
    lines = out.read_text().splitlines()
    assert len(lines) >= 3, lines
    first, second = lines[0].split(" ", 1), lines[1].split(" ", 1)
    # the time the call was made, not the release 0.2 s later
    assert abs(datetime.fromisoformat(first[0]).timestamp() - facts["before"]) < 0.1
    assert first[1].startswith("wirepool.fake:f:2 INFO line 1 {'session': 's'}")
    assert second[1].startswith("wirepool.fake:f:3 ERROR oops")
    assert any("ValueError: x" in line for line in lines)
    assert "after release" in lines[-1]


AFTER = r"""
import sys, time
from wirepool import _log
_log.hold()
_log.logger.remove()
_log.logger.add(sys.stderr, format="{message}")
_log.logger.enable("wirepool")
g = {"__name__": "wirepool.fake", "L": _log.logger}
exec("def f(m):\n    L.info(m)\n", g)
g["f"]("spawned one")
delay = float(sys.argv[1])
_log.release_after(delay)  # the first spawn: the clock starts
g["f"]("spawned two")
_log.release_after(delay)
print("held at the second:", "loguru" not in sys.modules, file=sys.stderr, flush=True)
time.sleep(0.5)
_log.release_after(delay)
print("held after 0.5 s:", "loguru" not in sys.modules, file=sys.stderr, flush=True)
"""


def test_release_after_holds_the_lines_for_so_long_after_the_first_spawn() -> None:
    """A bring-up's lines wait (``release_after``, at each spawn) until the
    given time has passed since the first of them, then come out in order."""

    def run(delay: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", AFTER, delay], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stderr.splitlines()

    # held all along; at exit the kept lines are still made
    assert run("60") == [
        "held at the second: True",
        "held after 0.5 s: True",
        "spawned one",
        "spawned two",
    ]
    assert run("0.25") == [
        "held at the second: True",
        "spawned one",
        "spawned two",
        "held after 0.5 s: False",
    ]


SETUP_ONLY = r"""
import sys
from wirepool import _log
assert "loguru" not in sys.modules
_log.hold(logs=False)
_log.logger.remove()
_log.logger.add(sys.stderr, format="{level} {name}:{function} {message}")
_log.logger.enable("wirepool")
print("kept:", "loguru" in sys.modules, file=sys.stderr, flush=True)
g = {"__name__": "wirepool.fake", "L": _log.logger}
exec("def f(m):\n    L.bind(session='s').warning(m)\n", g)
if sys.argv[1] == "log":
    g["f"]("first message")
    print("after it:", "loguru" in sys.modules, file=sys.stderr, flush=True)
elif sys.argv[1] == "third-party":
    from loguru import logger  # a plugin calling loguru itself
    logger.info("from a plugin")
"""


def test_held_without_logs_only_the_setup_waits() -> None:
    """``hold(logs=False)`` (every command but ``run``): nothing logged, no
    loguru at all, not even at exit; the first message imports it, sets the
    sinks up, and comes out in its place among what the command prints;
    a plugin importing loguru itself finds the sinks set up."""

    def run(case: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", SETUP_ONLY, case],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        imported = [x for x in lines if x.startswith("import time:")]
        said = [x for x in lines if not x.startswith("import time:")]
        return [*said, f"loguru imported: {any(x.endswith(' loguru') for x in imported)}"]

    assert run("nothing") == ["kept: False", "loguru imported: False"]
    assert run("log") == [
        "kept: False",
        "WARNING wirepool.fake:f first message",
        "after it: True",
        "loguru imported: True",
    ]
    assert run("third-party") == [
        "kept: False",
        "INFO __main__:<module> from a plugin",
        "loguru imported: True",
    ]


def on_a_pool(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, given the servicedir root and the
    state directory under ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "root"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_other_than_run_that_logs_nothing_never_imports_loguru(
    tmp_path: Path,
) -> None:
    """``wirepool status`` (no supervisor: it says so and exits 3) imports no
    loguru, at exit included: ~50 ms of every such command."""
    (tmp_path / "root").mkdir()
    code = (
        "import atexit, sys\n"
        # registered first, so run last: after wirepool's own exit handlers
        "atexit.register(lambda: print('loguru' in sys.modules))\n"
        "from wirepool.cli import entry\n"
        "sys.argv = ['wirepool', 'status', 'servicedir', sys.argv[1], '--state-dir', sys.argv[2]]\n"
        "entry()\n"
    )
    done = on_a_pool(code, tmp_path)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("supervisor: not running")
    assert done.stdout.splitlines()[-1] == "False"


DISABLED = r"""
import io, sys
import wirepool
from wirepool import _log
assert "loguru" not in sys.modules
from loguru import logger
buf = io.StringIO()
logger.add(buf, format="{message}")
g = {"__name__": "wirepool.fake", "L": _log.logger}
exec("def f(m):\n    L.warning(m)\n", g)
g["f"]("hidden")
logger.enable("wirepool")
g["f"]("shown")
print(buf.getvalue().split())
"""


def test_the_library_is_disabled_until_enabled_whoever_imports_loguru() -> None:
    done = subprocess.run(
        [sys.executable, "-c", DISABLED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['shown']"


# What start-up leaves for later (each costs milliseconds of `wirepool run`'s
# way to its first child): loguru until then, tenacity until a rapid failure,
# multiprocess until a Python worker, importlib.metadata (with email and
# zipfile) for good (wirepool._dists), the metrics until asked for; hashlib
# (OpenSSL's libcrypto: sha256 is built in) and ctypes.util (shutil,
# tempfile, bz2, lzma: inotify is called through libc directly) for good;
# shutil and tempfile until a temporary state directory; random until a
# backoff's jitter; zlib for good (binascii has its crc32); subprocess for
# good where libc's posix_spawn starts the children (wirepool._exec).
LATER = (
    "subprocess",
    "hashlib",
    "ctypes.util",
    "shutil",
    "tempfile",
    "random",
    "zlib",
    "loguru",
    "tenacity",
    "asyncio",
    "multiprocess",
    "importlib.metadata",
    "email",
    "zipfile",
    "prometheus_client",
    "rich",
    "psutil",
    "wirepool._metrics",
)


def test_importing_the_cli_imports_none_of_what_start_up_leaves_for_later() -> None:
    code = f"import sys, wirepool.cli\nprint(sorted(m for m in {LATER!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


FIRST_SPAWN = r"""
import json, os, signal, sys
seen = []


def at_spawn(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn") and not seen:
        seen.append(sorted(m for m in LATER if m in sys.modules))
        print(json.dumps(seen[0]), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: a clean stop


sys.addaudithook(at_spawn)
from wirepool.cli import entry

sys.argv = ["wirepool", "-q", "run", "servicedir", sys.argv[1], "--state-dir", sys.argv[2],
            "--on-exit", "stop"]
entry()
"""


def test_wirepool_run_reaches_its_first_child_without_them(tmp_path: Path) -> None:
    service = tmp_path / "root" / "a"
    service.mkdir(parents=True)
    (service / "run").write_text("#!/bin/sh\nexec sleep 60\n")
    (service / "run").chmod(0o755)
    code = f"LATER = {LATER!r}\n{FIRST_SPAWN}"
    done = on_a_pool(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "[]", done.stdout + done.stderr
