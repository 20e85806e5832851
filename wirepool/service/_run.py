"""Running a service manager's commands: never raising, always saying what to run by hand.

A manager that cannot be reached (no user bus in a container: "Failed to connect to bus", a
missing ``systemctl``, a timeout) is an outcome to report, not an exception: the unit file is
already written by then, and the user needs the exact commands to finish by hand.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["CommandOutcome", "Runner", "call", "default_runner", "run_sequence"]

#: Runs one service-manager command; :func:`default_runner` wraps ``subprocess.run``.
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

# A manager that hangs (a wedged user bus) must not hang `wirepool service` forever.
_RUNNER_TIMEOUT_S: Final = 60.0


def default_runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a manager command, capturing text output, never raising on a non-zero exit."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=_RUNNER_TIMEOUT_S,
    )


@dataclass(frozen=True)
class CommandOutcome:
    """One service-manager command and how it ended (127: not found, 124: timed out)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def command(self) -> str:
        """The command as a shell line, for messages."""
        return shlex.join(self.argv)

    @property
    def reason(self) -> str:
        """The first line the command printed about its failure."""
        for text in (self.stderr, self.stdout):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
        return f"exit status {self.returncode}"

    @property
    def failure(self) -> str:
        """The command and why it failed, as a result's ``error``."""
        return f"`{self.command}` failed: {self.reason}"


def call(runner: Runner, argv: Sequence[str]) -> CommandOutcome:
    """Run one command; a missing manager or a timeout is an outcome, never an exception."""
    args = tuple(argv)
    try:
        done = runner(args)
    except FileNotFoundError:
        return CommandOutcome(args, 127, "", f"{args[0]}: command not found")
    except subprocess.TimeoutExpired as exc:
        return CommandOutcome(args, 124, "", f"{args[0]} timed out after {exc.timeout:g} s")
    except OSError as exc:
        return CommandOutcome(args, 126, "", f"{args[0]}: {exc}")
    return CommandOutcome(args, done.returncode, done.stdout or "", done.stderr or "")


def run_sequence(
    runner: Runner, commands: Sequence[Sequence[str]]
) -> tuple[list[CommandOutcome], CommandOutcome | None, tuple[str, ...]]:
    """Run until one fails; return (outcomes, the failure, the commands still to run by hand)."""
    outcomes: list[CommandOutcome] = []
    for index, argv in enumerate(commands):
        outcome = call(runner, argv)
        outcomes.append(outcome)
        if not outcome.ok:
            return outcomes, outcome, tuple(shlex.join(c) for c in commands[index:])
    return outcomes, None, ()
