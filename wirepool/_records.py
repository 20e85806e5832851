"""A session's record: the one owner of its on-disk format.

One JSON file per session in ``<state dir>/sessions/``, written by the pool
(atomically) whenever the session's facts change, read back by the next
supervisor to adopt the children left running and to resume each backoff
where it stood, and read and edited by ``wirepool stop --children`` and
``wirepool reset`` when no supervisor runs.  All of them go through
:class:`SessionRecord`, so the format is written and validated in one
place.

A record is outside data once it is on disk (a torn write on a full disk, a
hand edit, another program's file): :meth:`SessionRecord.from_json` checks
every field and raises ValueError saying what is off, and only that session
starts fresh.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wirepool._proc import ProcessIdentity, is_alive
from wirepool._store import RECORD_LIMIT, RECORD_SCHEMA, atomic_write_json, read_json
from wirepool._tail import LAST_OUTPUT_BYTES, LAST_OUTPUT_LINES
from wirepool._types import ExitStatus, Session
from wirepool._value import Value, frozen
from wirepool.spawn import is_pool_child

__all__ = ["RecordedWorker", "SessionRecord", "WorkerRecord", "recorded_worker"]


@frozen
class WorkerRecord(Value):
    """The child a record names: who it is, and whether the pool started it."""

    identity: ProcessIdentity
    owned: bool = True
    started_at: float | None = None  # wall time
    fingerprint: str | None = None  # what it was started from (Spawner.fingerprint)


@frozen
class SessionRecord(Value):
    """A session's record in the state directory."""

    session: Session
    worker: WorkerRecord | None = None
    streak: int = 0  # consecutive rapid failures
    next_start_at: float | None = None  # wall time the backoff ends
    restarts: int = 0
    failed: bool = False
    reason: str = ""
    last_exit: ExitStatus | None = None
    last_exit_at: float | None = None  # wall time
    #: held down by the operator (``wirepool down``) since this wall time:
    #: kept here so that it outlives the supervisor, even a SIGKILLed one
    down: bool = False
    down_since: float | None = None
    log_path: Path | None = None  # the child's log
    last_output: tuple[str, ...] = ()  # what the last run wrote last

    def to_json(self) -> dict[str, Any]:
        worker = self.worker
        return {
            "schema": RECORD_SCHEMA,
            "session": {
                "name": self.session.name,
                "home": str(self.session.home),
                "cwd": str(self.session.cwd) if self.session.cwd else None,
            },
            "worker": None
            if worker is None
            else {
                **worker.identity.to_json(),
                "owned": worker.owned,
                "started_at": worker.started_at,
                "fingerprint": worker.fingerprint,
            },
            "streak": self.streak,
            "next_start_at": self.next_start_at,
            "restarts": self.restarts,
            "failed": self.failed,
            "reason": self.reason,
            "last_exit": None
            if self.last_exit is None
            else {**self.last_exit.to_json(), "at": self.last_exit_at},
            "down": self.down,
            "down_since": self.down_since,
            "log": str(self.log_path) if self.log_path is not None else None,
            "last_output": list(self.last_output),
        }

    @classmethod
    def from_json(cls, data: Any) -> SessionRecord:
        """Check every field; ValueError saying what is off.  (An int() of a
        JSON ``Infinity`` raised OverflowError here once, which killed the
        supervisor at every start.)"""
        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
            raise ValueError("not a wirepool session record")
        sess = data.get("session")
        if not isinstance(sess, dict) or not isinstance(sess.get("name"), str) or not sess["name"]:
            raise ValueError("record has no session name")
        home, cwd = sess.get("home"), sess.get("cwd")
        for what, value in (("name", sess["name"]), ("home", home), ("cwd", cwd)):
            if value is not None and (not isinstance(value, str) or "\0" in value):
                raise ValueError(f"record has a bad session {what}: {value!r:.80}")
        session = Session(name=sess["name"], home=Path(home or "/"), cwd=Path(cwd) if cwd else None)
        worker = None
        if data.get("worker") is not None:
            w = data["worker"]
            if not isinstance(w, dict):
                raise ValueError(f"record has a bad worker: {w!r:.80}")
            fingerprint = w.get("fingerprint")
            worker = WorkerRecord(
                ProcessIdentity.from_json(w),
                _bool(w, "owned", True),
                _time(w, "started_at"),
                fingerprint if isinstance(fingerprint, str) else None,
            )
        last_exit = last_exit_at = None
        if isinstance(data.get("last_exit"), dict):
            le = data["last_exit"]
            code, sig = le.get("code"), le.get("signal")
            for what, value in (("code", code), ("signal", sig)):
                if value is not None and (not _is_int(value) or abs(value) > 1 << 31):
                    raise ValueError(f"record has a bad exit {what}: {value!r:.80}")
            last_exit = ExitStatus(code=code, signal=sig)
            last_exit_at = _time(le, "at")
        reason = data.get("reason", "")
        log = data.get("log")
        return cls(
            session=session,
            worker=worker,
            streak=_count(data, "streak"),
            next_start_at=_time(data, "next_start_at"),
            restarts=_count(data, "restarts"),
            failed=_bool(data, "failed", False),
            reason=reason if isinstance(reason, str) else "",
            last_exit=last_exit,
            last_exit_at=last_exit_at,
            down=_bool(data, "down", False),
            down_since=_time(data, "down_since"),
            # What is only shown: one that is off is dropped, not the record.
            log_path=Path(log) if isinstance(log, str) and log and "\0" not in log else None,
            last_output=_lines(data.get("last_output")),
        )

    @classmethod
    def read(cls, path: Path) -> SessionRecord:
        """OSError if it cannot be read, ValueError if it is not a record."""
        return cls.from_json(read_json(path, RECORD_LIMIT))

    def write(self, path: Path, *, durable: bool) -> None:
        # Compact: json's C encoder only runs without an indent, and a crash
        # loop writes a record twice a cycle.
        atomic_write_json(path, self.to_json(), durable=durable, indent=None)

    @staticmethod
    def whole(path: Path | None) -> bool:
        """Whether ``path`` holds a record (or nothing yet): a torn or
        foreign file there would cost the next supervisor the session's
        history."""
        if path is None:
            return True
        try:
            data = read_json(path, RECORD_LIMIT)
        except FileNotFoundError:
            return True  # never written: nothing was torn
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("schema") == RECORD_SCHEMA


@frozen
class RecordedWorker(Value):
    """A record's worker that is still alive, and what it may be taken for."""

    identity: ProcessIdentity
    #: ours to signal: the record says the pool started it *and* the
    #: process carries this pool's markers for the record's session
    owned: bool
    started_at: float | None
    #: the record claims it as ours but the process does not carry our
    #: markers: watched at most, never signalled
    unverified: bool

    @property
    def pid(self) -> int:
        return self.identity.pid


def recorded_worker(
    rec: SessionRecord, pool_id: str, marker_dir: Path | None
) -> RecordedWorker | None:
    """What the worker of a record may be taken for, or None when there is
    none or it is gone.

    The one rule for both the recovery of a new supervisor and ``wirepool
    stop --children`` without one: a record alone never makes a process
    ours to signal.  It must be alive with the recorded start time, and
    carry this pool's marker variables for that session -- which a stale,
    copied or planted record naming someone else's process cannot give it.
    """
    if rec.worker is None:
        return None
    ident, owned = rec.worker.identity, rec.worker.owned
    if not is_alive(ident):
        return None
    marked = owned and is_pool_child(ident, pool_id, rec.session.name, marker_dir)
    return RecordedWorker(ident, marked, rec.worker.started_at, unverified=owned and not marked)


def _lines(value: object) -> tuple[str, ...]:
    """A record's ``last_output``, bounded as the pool writes it (a hand
    edit's excess is cut)."""
    if not isinstance(value, list):
        return ()
    kept = [v[:LAST_OUTPUT_BYTES] for v in value if isinstance(v, str)]
    return tuple(kept[-LAST_OUTPUT_LINES:])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    # a billion restarts is already absurd; a bigger one is a corrupt file
    if not _is_int(value) or not 0 <= value <= 1_000_000_000:
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return int(value)


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return value


def _time(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    try:
        when = float(value)
    except OverflowError:
        when = math.inf
    if not math.isfinite(when):
        raise ValueError(f"record has a bad {key}: {value!r:.80}")
    return when
