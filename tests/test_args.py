"""wirepool._args: the options of ``wirepool run`` and ``wirepool status``
read without click give what click gives, or are left to click; the real
``run`` starts its children, and ``status`` answers, without importing click,
and ``status`` says what click's path says."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import WIREPOOL, alive, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirepool._args import Argument, Option, all_light, parse
from wirepool._cli_run import run_params
from wirepool._cli_status import status_params
from wirepool.plugin import load_plugin, timing_options

PLUGINS = ("servicedir", "dirs", "wire")


def params_of(plugin: str, verb: str = "run") -> list[Option | Argument]:
    mine = run_params() if verb == "run" else status_params()
    params = [*load_plugin(plugin).options(), *mine]
    assert all_light(params)
    return list(params)


def by_click(params: Sequence[Option | Argument], line: Sequence[str]) -> dict[str, Any] | None:
    """What click makes of ``line`` with the same options; None for its error."""
    command = click.Command("run", params=[p.to_click() for p in params])
    try:
        with command.make_context("run", list(line)) as ctx:
            return dict(ctx.params)
    except click.ClickException:
        return None


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, with NaN equal to NaN (click takes ``--grace nan`` too)."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y or type(x) is not type(y):
            return False
    return True


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("args")
    (base / "file.prom").write_text("")
    (base / "dir").mkdir()
    return {"file": str(base / "file.prom"), "dir": str(base / "dir"), "base": str(base)}


def words(places: dict[str, str]) -> st.SearchStrategy[str]:
    spellings = sorted(
        {
            s
            for plugin in PLUGINS
            for p in params_of(plugin)
            if isinstance(p, Option)
            for s in p.spellings
        }
    )
    values = [
        "1",
        "0",
        "-1",
        "2.5",
        "1e3",
        "nan",
        "inf",
        "abc",
        "",
        "leave",
        "stop",
        "10M",
        "64k",
        "bogus",
        "90s",
        "7d",
        "x=y",
        ":9187",
        "127.0.0.1:70000",
        "[::1]:80",
        "unix:",
        "a b",
        "-",
        "--",
        "-h",
        "--help",
        "-q",
        "-vv",
        "--version",
        "--nope",
        places["file"],
        places["dir"],
        places["base"] + "/absent",
        places["base"] + "/x.prom",
        places["dir"] + "/m.prom",
        "/dev/null",
        "\x1b[31mred",
        "s1",
        "-n",
        "--lines",
        "3",
    ]
    with_eq = [f"{s}={v}" for s in spellings[:8] for v in ("3", "stop", "")]
    return st.sampled_from(spellings + values + with_eq)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_line_read_without_click_is_read_as_click_reads_it(
    places: dict[str, str], data: st.DataObject
) -> None:
    plugin = data.draw(st.sampled_from(PLUGINS))
    line = data.draw(st.lists(words(places), max_size=9))
    params = params_of(plugin, data.draw(st.sampled_from(("run", "status"))))
    fast = parse(params, line)
    if fast is not None:
        slow = by_click(params, line)
        assert slow is not None, f"{plugin} {line}: click refuses what was taken"
        assert same(fast, slow), f"{plugin} {line}: {fast} != {slow}"


ORDINARY = [
    ("servicedir", ["/srv/services"]),
    ("servicedir", ["/srv/services", "--on-exit", "stop", "--json"]),
    ("servicedir", ["--grace=2", "/srv", "--stop-grace", "0.5", "--log-max-size", "1M"]),
    ("servicedir", ["/srv", "--metrics", ":9187", "--watched-rescan-interval", "60"]),
    (
        "dirs",
        ["/src", "--glob", "*/.git/..", "--cmd", "sleep 1000", "--env", "A=1", "--env", "B=2"],
    ),
    ("dirs", ["/src", "--glob", "*", "--cmd", "x {dir}", "--max-idle", "12h"]),
    ("wire", []),
    (
        "wire",
        ["--sessions-root", "/home/u/.wire/sessions", "--interval", "3", "--hung-after", "90"],
    ),
]


ORDINARY_STATUS = [
    ("servicedir", ["/srv/services"]),
    ("servicedir", ["/srv/services", "web", "db", "-n", "3"]),
    ("servicedir", ["/srv", "--json", "--state-dir", "/var/lib/x", "web"]),
    ("dirs", ["/src", "--glob", "*", "--cmd", "x {dir}", "a/b", "--lines=0"]),
    ("wire", []),
    ("wire", ["alice", "bob", "--json"]),
]


@pytest.mark.parametrize(
    ("plugin", "line", "verb"),
    [(*o, "run") for o in ORDINARY] + [(*o, "status") for o in ORDINARY_STATUS],
)
def test_an_ordinary_line_is_read_without_click_and_as_click_reads_it(
    plugin: str, line: list[str], verb: str
) -> None:
    params = params_of(plugin, verb)
    fast = parse(params, line)
    assert fast is not None, f"{plugin} {line} was left to click"
    slow = by_click(params, line)
    assert slow is not None and same(fast, slow)


@pytest.mark.parametrize(
    "line",
    [
        ["/srv", "--help"],  # click's help
        ["/srv", "--grace", "-1"],  # out of range: click says so
        ["/srv", "--grace", "1", "--grace", "2"],  # repeated
        ["/srv", "--", "--json"],
        ["/srv", "/other"],  # one argument too many
        [],  # the root is missing
        ["/srv", "--on-exit", "never"],
        ["/srv", "--log-max-size", "lots"],  # the callback's ValueError
        ["/srv", "--nope"],
    ],
)
def test_a_line_out_of_the_ordinary_is_left_to_click(line: list[str]) -> None:
    assert parse(params_of("servicedir"), line) is None


@pytest.mark.parametrize(
    "line",
    [
        ["/srv", "-n", "-1"],  # out of range
        ["/srv", "-n3"],  # a short option glued to its value
        ["/srv", "--", "-web"],
        ["/srv", "web", "--help"],
        [],  # the root is missing
    ],
)
def test_a_status_line_out_of_the_ordinary_is_left_to_click(line: list[str]) -> None:
    assert parse(params_of("servicedir", "status"), line) is None


def test_any_number_of_values_are_read_only_as_the_last_argument() -> None:
    rest = Argument("names", nargs=-1, required=False)
    first = Argument("first")
    assert parse([first, rest], ["a", "b", "c"]) == {"first": "a", "names": ("b", "c")}
    assert parse([first, rest], ["a"]) == {"first": "a", "names": ()}
    assert by_click([first, rest], ["a", "b", "c"]) == {"first": "a", "names": ("b", "c")}
    # before another argument, click spreads them its own way: left to it
    assert parse([rest, first], ["a", "b"]) is None
    needed = Argument("names", nargs=-1)
    assert parse([needed], []) is None and by_click([needed], []) is None
    with pytest.raises(TypeError):
        Argument("pair", nargs=2)


def test_an_option_is_the_click_option_it_stands_for() -> None:
    grace = next(o for o in timing_options() if o.name == "grace")
    made = grace.to_click(hidden=True)
    assert isinstance(made, click.Option)
    assert made.name == "grace" and made.opts == ["--grace"]
    assert isinstance(made.type, click.FloatRange) and made.type.min == 0
    assert made.default == 10.0 and made.show_default and made.hidden
    assert Option("--json", "as_json", is_flag=True).name == "as_json"
    assert Option("-n", "--lines", kind=int).name == "lines"
    root = Argument("root", kind=Path, file_okay=False).to_click()
    assert isinstance(root.type, click.Path) and not root.type.file_okay
    with pytest.raises(TypeError):
        Option("--x/--no-x")  # on/off pairs are click's
    with pytest.raises(TypeError):
        Option("--n", kind=str, min=1)


def test_wirepool_run_starts_its_first_child_without_importing_click(tmp_path: Path) -> None:
    root = tmp_path / "services"
    (root / "a").mkdir(parents=True)
    run = root / "a" / "run"
    run.write_text('#!/bin/sh\necho "$$" > ../../started\nexec sleep 1000\n')
    run.chmod(0o755)
    started = tmp_path / "started"
    proc = subprocess.Popen(
        [*WIREPOOL, "-q", "run", "servicedir", str(root), "--on-exit", "stop"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    try:
        wait_for(lambda: started.exists() and started.read_text().strip())
        child = int(started.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    wait_for(lambda: not alive(child))
    imported = [line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if "|" in line]
    assert "wirepool._main" in imported and "wirepool.spawn" in imported
    assert not [m for m in imported if m == "click" or m.startswith("click.")]


CLICK_PATH = [
    sys.executable,
    "-c",
    "import sys; sys.argv[0] = 'wirepool'; from wirepool.cli import main; main()",
]


@pytest.mark.parametrize(
    "extra", [[], ["b", "-n", "1"], ["--json"], ["a", "--json"], ["nosuch"], ["-n", "-1"]]
)
def test_wirepool_status_answers_without_click_and_as_clicks_path_does(
    tmp_path: Path, extra: list[str]
) -> None:
    root = tmp_path / "services"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "run").write_text("#!/bin/sh\nexec sleep 1000\n")
        (root / name / "run").chmod(0o755)
    line = ["status", "servicedir", str(root), "--state-dir", str(tmp_path / "state"), *extra]
    fast = subprocess.run(
        [*WIREPOOL, *line],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    slow = subprocess.run([*CLICK_PATH, *line], capture_output=True, text=True, timeout=60)
    assert fast.returncode == slow.returncode
    if "--json" in extra:  # the same document, made a moment apart
        docs = [json.loads(r.stdout) for r in (fast, slow)]
        assert all(isinstance(d.pop("generated_at"), float) for d in docs)
        assert docs[0] == docs[1] and docs[0]["sessions"]
    else:
        assert fast.stdout == slow.stdout
    imported = [w.rsplit("|", 1)[-1].strip() for w in fast.stderr.splitlines() if "|" in w]
    said = [w for w in fast.stderr.splitlines() if "|" not in w and w.strip()]
    assert fast.stdout.strip() or said
    assert said == [w for w in slow.stderr.splitlines() if w.strip()]
    clicked = [m for m in imported if m == "click" or m.startswith("click.")]
    # a line click must read (-n -1: its range error) imports it; no other
    assert bool(clicked) is (extra == ["-n", "-1"]), extra
    assert "loguru" not in imported  # nothing was logged


def test_a_line_left_to_click_gets_clicks_message_and_exit_code(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    result = subprocess.run(
        [*WIREPOOL, "run", "servicedir", str(tmp_path / "services"), "--grace", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Invalid value for '--grace'" in result.stderr
    assert "Usage: wirepool run servicedir" in result.stderr


def test_an_option_click_would_read_otherwise_is_refused_or_read_as_click_does() -> None:
    with pytest.raises(TypeError, match="a default is a value"):
        Option("--when", default=lambda: 1)
    with pytest.raises(TypeError, match="True or False"):
        Option("--dry", is_flag=True, default=None)
    with pytest.raises(TypeError, match="default is a tuple"):
        Option("--env", multiple=True, default="ab")
    with pytest.raises(TypeError, match="give the name"):
        Option("--1x")
    assert Option("---x").name == "_x" == Option("---x").to_click().name
    for params in (
        [Option("--dry", is_flag=True, callback=lambda v: f"cb:{v}")],
        [Option("--env", multiple=True, required=True, default=())],
        [Option("--env", multiple=True, default=("a", "b"))],
    ):
        for line in ([], ["--dry"] if params[0].is_flag else ["--env", "c"]):
            fast, slow = parse(params, line), by_click(params, line)
            assert fast is None or (slow is not None and same(fast, slow)), (line, fast, slow)
    assert parse([Option("--dry", is_flag=True, callback=lambda v: f"cb:{v}")], []) == {
        "dry": "cb:False"
    }


PLUGIN = """
from pathlib import Path
import click
from wirepool._log import logger
from wirepool.plugin import Argument, Option, Plugin, PluginError

logger.warning("odd imported")  # at import: to the command's own sink, once

class Odd(Plugin):
    name = "odd"
    def options(self):
        return [Argument("root", kind=Path), Option("--fail")]
    def build(self, options):
        from wirepool._log import logger
        logger.warning("building from {}", options["root"])
        if options["fail"] == "usage":
            raise click.UsageError("bad root")
        if options["fail"] == "interrupt":
            raise KeyboardInterrupt
        raise PluginError("no such thing")
"""


@pytest.mark.parametrize("verb", ["run", "status"])
@pytest.mark.parametrize(
    ("fail", "code", "says"),
    [
        ("usage", 2, ["Usage: wirepool {verb} odd", "Error: bad root"]),
        ("interrupt", 1, ["Aborted!"]),
        ("plugin", 4, ["wirepool: error: no such thing"]),
    ],
)
def test_a_plugin_failing_to_build_is_answered_as_clicks_path_answers(
    tmp_path: Path, verb: str, fail: str, code: int, says: list[str]
) -> None:
    (tmp_path / "odd.py").write_text(PLUGIN)
    dist = tmp_path / "odd-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: odd\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wirepool.plugins]\nodd = odd:Odd\n")
    result = subprocess.run(
        [*WIREPOOL, verb, "odd", str(tmp_path), "--fail", fail],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == code, result.stderr
    for words in says:
        assert words.format(verb=verb) in result.stderr
    assert "Traceback" not in result.stderr
    # its warning once: a line read again by click builds the pool again
    assert result.stderr.count("building from") == 1
    assert result.stderr.count("odd imported") == 1
    assert re.search(r"^\S+ \S+ WARNING +odd imported$", result.stderr, re.M), result.stderr


def test_an_unknown_plugin_is_answered_as_clicks_path_answers() -> None:
    result = subprocess.run(
        [*WIREPOOL, "run", "nosuchplugin", "/tmp"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 4
    assert result.stderr.startswith("wirepool: error:") and "nosuchplugin" in result.stderr
