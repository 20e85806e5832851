"""Small frozen value types shared by every strategy family.

They are frozen and slotted (attrs style) because they cross thread
boundaries (the pool runs its loop in a background thread while embedding
code reads snapshots) and end up in logs, where a good ``repr`` pays off.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wirepool._value import Value, field, frozen

__all__ = ["ExitStatus", "Session", "Verdict"]


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


# a compiled __init__: one per session at every discovery pass
@frozen(fast_init=True)
class Session(Value):
    """One unit of supervision: usually a directory that deserves one daemon.

    ``name`` is the unique key the pool tracks the session by.  Plugins should
    pick something that cannot collide: the wire plugin uses the home's path
    relative to the sessions root, because two homes may share a handle
    (the Rust supervisor keyed by handle and could confuse them).
    ``attrs`` carries plugin-specific facts (a display name, a DID, ...); it is
    compared but not hashed, so sessions stay usable as dict keys.
    """

    name: str
    home: Path
    cwd: Path | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a session needs a non-empty name")
        # A Path is kept as given (a copy of it was ~0.3 KB a session); a
        # str, as the annotations do not forbid at run time, is made one.
        home: Any = self.home
        if not isinstance(home, Path):
            object.__setattr__(self, "home", Path(home))
        cwd: Any = self.cwd
        if cwd is not None and not isinstance(cwd, Path):
            object.__setattr__(self, "cwd", Path(cwd))
        object.__setattr__(self, "attrs", _frozen_mapping(self.attrs))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Session):
            return NotImplemented
        return (
            self.name == other.name
            and self.home == other.home
            and self.cwd == other.cwd
            and dict(self.attrs) == dict(other.attrs)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.home, self.cwd))

    def __reduce__(self) -> tuple[type[Session], tuple[str, Path, Path | None, dict[str, Any]]]:
        # MappingProxyType does not pickle; a plain dict does.
        return (Session, (self.name, self.home, self.cwd, dict(self.attrs)))

    @property
    def display_name(self) -> str:
        """What an operator recognises: ``attrs["display_name"]`` or the key."""
        shown = self.attrs.get("display_name")
        return str(shown) if shown else self.name


# a compiled __init__: one per session at every eligibility pass
@frozen(fast_init=True)
class Verdict(Value):
    """An eligibility answer that always carries its reason.

    Verdicts compose like booleans so that a combined rule still explains
    itself: ``a & b`` reports the first reason that failed, ``a | b`` the
    first that passed, ``~a`` negates and says so.  Status output shows the
    reason verbatim, which is the whole point: the Rust supervisor only ever
    logged "X of Y eligible" and left operators guessing which and why.
    """

    eligible: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.eligible

    def __and__(self, other: Verdict) -> Verdict:
        if not self.eligible:
            return self
        if not other.eligible:
            return other
        return Verdict(True, _join(self.reason, other.reason, " and "))

    def __or__(self, other: Verdict) -> Verdict:
        if self.eligible:
            return self
        if other.eligible:
            return other
        return Verdict(False, _join(self.reason, other.reason, "; "))

    def __invert__(self) -> Verdict:
        return Verdict(not self.eligible, f"not ({self.reason})" if self.reason else "")

    @classmethod
    def of(cls, value: Verdict | bool, default_reason: str = "") -> Verdict:
        """Accept what a plain callable may return: a Verdict or a bool."""
        if isinstance(value, Verdict):
            return value
        if isinstance(value, bool):
            return cls(value, default_reason or ("eligible" if value else "not eligible"))
        raise TypeError(f"an eligibility check must return a Verdict or a bool, not {value!r}")


def _join(a: str, b: str, sep: str) -> str:
    return sep.join(part for part in (a, b) if part)


@frozen
class ExitStatus(Value):
    """How a child ended.  ``code`` and ``signal`` are both None when the
    process was not ours to reap (an adopted daemon): the kernel only tells
    its real parent, so we record that it ended, not how."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        if returncode < 0:
            return cls(signal=-returncode)
        return cls(code=returncode)

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        return cls.from_returncode(os.waitstatus_to_exitcode(status))

    @property
    def success(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.code is not None:
            return f"exit code {self.code}"
        return "exited (status unknown: not our child)"

    def to_json(self) -> dict[str, int | None]:
        return {"code": self.code, "signal": self.signal}
