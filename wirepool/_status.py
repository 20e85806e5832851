"""The pool's view of itself, as frozen values and as the versioned
``status.json`` document that ``wirepool status`` renders.

Status carries what operators of every supervisor keep asking for in one
place: the state, the pid *and* its start time, restarts, how the last run
ended, when the next start is due, and the reason -- eligibility, backoff or
health -- in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from wirepool._proc import ProcessIdentity
from wirepool._session import Phase
from wirepool._store import STATUS_SCHEMA
from wirepool._types import ExitStatus
from wirepool._value import Value, field, frozen

STATES = tuple(phase.value for phase in Phase)


# a compiled __init__: one per session in every snapshot
@frozen(fast_init=True)
class SessionStatus(Value):
    """One session's status, as ``status.json`` shows it."""

    name: str
    display_name: str
    home: str
    cwd: str | None
    state: str
    reason: str
    identity: ProcessIdentity | None = None
    owned: bool = True
    started_at: float | None = None  # wall clock
    restarts: int = 0
    spawn_failures: int = 0  # in this supervisor's life (not kept in records)
    streak: int = 0
    last_exit: ExitStatus | None = None
    last_exit_at: float | None = None
    next_start_at: float | None = None  # wall clock
    health: str | None = None
    log_path: str | None = None
    #: the last lines the last run wrote before it exited (goes with
    #: last_exit; wirepool's own lines left out): _tail.last_output
    last_output: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)
    #: the child runs from an older configuration than the session's
    #: current one (its spawner's fingerprint differs)
    outdated: bool = False

    @property
    def pid(self) -> int | None:
        return self.identity.pid if self.identity else None

    def to_json(self) -> dict[str, Any]:
        return {
            # One name per session, the one an operator sees and types: the
            # display name (wire's persona handle); the key, what records
            # and the pool go by, stays in its own field and is taken as
            # input too.
            "name": self.display_name,
            "key": self.name,
            "display_name": self.display_name,
            "home": self.home,
            "cwd": self.cwd,
            "state": self.state,
            "reason": self.reason,
            "pid": self.pid,
            "process_start": self.identity.start if self.identity else None,
            "owned": self.owned,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "streak": self.streak,
            "last_exit": (
                None
                if self.last_exit is None
                else {**self.last_exit.to_json(), "at": self.last_exit_at}
            ),
            "next_start_at": self.next_start_at,
            "health": self.health,
            "log": self.log_path,
            "outdated": self.outdated,
            "last_output": list(self.last_output),
            "attrs": {k: v for k, v in self.attrs.items() if isinstance(k, str) and _jsonable(v)},
        }


def _jsonable(value: object, depth: int = 0) -> bool:
    """Whether json.dumps takes it.  Recursive: a dict with a tuple key deep
    in one session's attrs made every status.json write raise TypeError,
    outside any except, and the loop died of it."""
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if depth > 20:
        return False
    if isinstance(value, list | tuple):
        return all(_jsonable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v, depth + 1) for k, v in value.items())
    return False


@frozen
class Snapshot(Value):
    """What :meth:`SessionPool.snapshot` returns: immutable, safe to keep."""

    sessions: Mapping[str, SessionStatus]
    supervisor_pid: int
    running: bool
    taken_at: float  # wall clock
    generation: int = 0
    #: what the pool cannot do right now though it goes on supervising
    #: (state directory full or read-only): area -> message
    degraded: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> SessionStatus:
        return self.sessions[name]

    def __contains__(self, name: object) -> bool:
        return name in self.sessions

    def __len__(self) -> int:
        return len(self.sessions)

    def in_state(self, *states: str) -> list[SessionStatus]:
        return [s for s in self.sessions.values() if s.state in states]

    def pids(self) -> dict[str, int]:
        return {n: s.pid for n, s in self.sessions.items() if s.pid is not None}


def status_document(
    *,
    plugin: str,
    state_dir: str,
    sessions: Iterable[SessionStatus],
    supervisor: Mapping[str, Any],
    updated_at: float | None,
    degraded: Iterable[str] = (),
    errors: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The ``status.json`` document (schema ``wirepool.status/1``): what the
    pool writes, and what ``wirepool status`` builds from discovery when no
    supervisor has written one yet."""
    doc: dict[str, Any] = {
        "schema": STATUS_SCHEMA,
        "plugin": plugin,
        "state_dir": state_dir,
        "updated_at": updated_at,
        "supervisor": dict(supervisor),
        "sessions": [s.to_json() for s in sessions],
        "degraded": sorted(degraded),
    }
    if errors is not None:
        doc["errors"] = list(errors)
    return doc


def normalize_status(doc: dict[str, Any]) -> None:
    """Give a document read from disk the shape readers rely on: a
    status.json from another version, or damaged, must still render."""
    if not isinstance(doc.get("supervisor"), dict):
        doc["supervisor"] = {}
    sessions = doc.get("sessions")
    doc["sessions"] = (
        [s for s in sessions if isinstance(s, dict)] if isinstance(sessions, list) else []
    )
    for key in ("errors", "notes", "degraded"):
        value = doc.get(key)
        if value is not None and not isinstance(value, list):
            doc[key] = [value]
