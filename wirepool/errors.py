"""wirepool's exceptions.  Each subclasses the builtin it resembles, so
callers can catch broadly::

    WirepoolError (Exception)
    ├── SpawnError (WirepoolError, OSError)      a child could not be started
    ├── LockHeldError (WirepoolError, RuntimeError)  another supervisor owns the state dir
    ├── UnsafeStateDirError (WirepoolError, PermissionError)  others could write the state dir
    ├── PluginError (WirepoolError, ImportError)     a plugin failed to load or to build
    ├── ControlError (WirepoolError, RuntimeError)   the supervisor refused a request
    └── NoSupervisorError (WirepoolError, ConnectionError)  no supervisor to ask
"""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = [
    "ControlError",
    "LockHeldError",
    "NoSupervisorError",
    "PluginError",
    "SpawnError",
    "UnsafeStateDirError",
    "WirepoolError",
]


class WirepoolError(Exception):
    """Base class of every error wirepool raises on purpose."""


class SpawnError(WirepoolError, OSError):
    """A spawner could not start a child.  The pool counts it as a rapid
    failure and shows the message as the session's reason."""


class LockHeldError(WirepoolError, RuntimeError):
    """Another supervisor holds the state directory's lock."""

    def __init__(self, state_dir: Path, holder_pid: int | None) -> None:
        self.state_dir = state_dir
        self.holder_pid = holder_pid
        who = f"pid {holder_pid}" if holder_pid else "an unknown process"
        super().__init__(f"another supervisor ({who}) already runs on {state_dir}")


class UnsafeStateDirError(WirepoolError, PermissionError):
    """The state directory (or one under it) is not a directory only we can
    write: owned by another user, or writable by group or others.  Whoever
    can write there can plant records naming any process as our child."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(errno.EPERM, f"state directory {path} {problem}; refusing it")
        self.filename = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return str(self.args[1])


class PluginError(WirepoolError, ImportError):
    """A plugin could not be loaded or configured."""


class ControlError(WirepoolError, RuntimeError):
    """The supervisor refused an operator request: an unknown or ambiguous
    session name, a session that cannot do what was asked, a malformed
    request.  ``code`` is stable (``docs/CONTROL.md``); ``candidates`` are
    the sessions a name may have meant."""

    def __init__(self, code: str, message: str, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.candidates = list(candidates or [])


class NoSupervisorError(WirepoolError, ConnectionError):
    """No supervisor is running on the state directory (or it cannot be
    reached through its control socket)."""
