"""The command line under fuzzed options: every outcome is a documented exit
code with at most one line of error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_helpers import hostile_text
from hypothesis import given
from hypothesis import strategies as st

from wirepool.cli import main

OPTIONS = ["--grace", "--stop-grace", "--rescan-interval", "--state-dir", "--json", "--timeout"]
WIRE_OPTIONS = ["--interval", "--max-idle-days", "--hung-after", "--wire-bin", "--sessions-root"]

args = st.lists(
    st.one_of(st.sampled_from(OPTIONS + WIRE_OPTIONS), hostile_text.map(lambda t: t[:50])),
    max_size=6,
)


def _check(result: object, allowed: set[int]) -> None:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    exc = result.exception  # type: ignore[attr-defined]
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    assert exit_code in allowed
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


@given(st.sampled_from(["status", "stop", "reset"]), st.sampled_from(["servicedir", "wire"]), args)
def test_fuzzed_options_give_a_documented_exit(
    tmp_path_factory: pytest.TempPathFactory, verb: str, plugin: str, extra: list[str]
) -> None:
    root = tmp_path_factory.mktemp("root")
    argv = [verb, plugin]
    if plugin == "servicedir":
        argv.append(str(root))
    else:
        argv += ["--sessions-root", str(root)]
    argv += ["--state-dir", str(root / ".wp")]
    argv += [a.replace("\0", "") for a in extra]
    # No supervisor runs: status says 3, stop and reset 0; usage errors 2;
    # a runtime error 1; a fuzzed word taken as a session name that names
    # none, 8.
    result = CliRunner().invoke(main, argv, env={"WIRE_ALL_SESSIONS_MAX_IDLE_DAYS": "x"})
    _check(result, {0, 1, 2, 3, 8})


@given(hostile_text)
def test_fuzzed_environment_cutoff_gives_a_documented_exit(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    root = tmp_path_factory.mktemp("root")
    value = value.replace("\0", "")
    result = CliRunner().invoke(
        main,
        ["status", "wire", "--sessions-root", str(root), "--json"],
        env={"WIRE_ALL_SESSIONS_MAX_IDLE_DAYS": value},
    )
    _check(result, {3})


def test_state_dir_that_is_a_file_is_one_line_of_error(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(
        main, ["run", "servicedir", str(tmp_path / "svc"), "--state-dir", str(tmp_path / "file")]
    )
    _check(result, {1, 2})
