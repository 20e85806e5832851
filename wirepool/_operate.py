"""The operator's verbs: restart, down, up, signal, reset, rescan and a
live status, for the control socket (:mod:`wirepool._control`) and the
Python API alike.  Each runs on the loop thread and turns into one event
for the session's state machine (:mod:`wirepool._session`): this module
decides which sessions a request names and whether it can be done, never
a session's phase.

A request naming several sessions is all or nothing: every name is
resolved and every session checked before any is acted on, so a typo in
the third name does not leave the first two restarted.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wirepool._control import PROTOCOL, Conn, ControlServer
from wirepool._core import _Slot
from wirepool._discover import _DiscoveryDriver
from wirepool._events import Event
from wirepool._log import logger
from wirepool._names import Named, NameProblem, resolve_all
from wirepool._session import Down, Phase, Reset, Restart, Up
from wirepool._version import version
from wirepool.errors import ControlError

#: the verbs that act on named sessions
VERBS = ("restart", "down", "up", "signal", "reset")
#: the event kinds the live status counts over the last minute
_COUNTED = ("spawned", "exited")


class _Operator(_DiscoveryDriver):
    """See :mod:`wirepool._operate`."""

    _control: ControlServer | None = None
    #: (wall time, kind) of the spawns and exits of about the last minute
    _recent: deque[tuple[float, str]]

    # ------------------------------------------------------------ the socket

    def _open_control(self) -> None:
        """Listen on the control socket.  A pool that cannot (a read-only
        state directory, say) still supervises: it says so, once, and
        ``wirepool status`` falls back to ``status.json``."""
        if not self.control:
            return
        assert self._selector is not None
        server = ControlServer(self.state.root, self._control_request, self._control_failed)
        try:
            server.open(self._selector)
        except OSError as exc:
            logger.warning(
                "control socket {} unavailable ({}); verbs cannot reach this supervisor",
                server.path,
                exc.strerror or exc,
            )
            self._set_degraded("control", f"no control socket: {exc.strerror or exc}")
            return
        self._control = server
        self._recent = deque(maxlen=100_000)
        self._listeners.append(self._broadcast)

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None

    def _broadcast(self, event: Event) -> None:
        if event.kind in _COUNTED:
            self._recent.append((event.at, event.kind))
        if self._control is not None:
            self._control.broadcast({"event": event.to_json()})

    def _last_minute(self) -> dict[str, int]:
        """Spawns and exits of the last minute (what `top`'s header shows)."""
        recent, cutoff = self._recent, self.clock.time() - 60.0
        while recent and recent[0][0] < cutoff:
            recent.popleft()
        counts = dict.fromkeys(_COUNTED, 0)
        for _, kind in recent:
            counts[kind] += 1
        return counts

    def _control_failed(self, what: str, exc: BaseException) -> None:
        self._log_once(f"control:{what}:{exc}", "control socket: {} failed: {}", what, exc)

    def _control_request(self, conn: Conn, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "subscribe":
            conn.subscribed = True
            return {"subscribed": True}
        return self._operate(op, request)

    # ------------------------------------------------------------ operations

    def _operate(self, op: str, request: Mapping[str, Any]) -> Any:
        """Do what ``request`` asks (loop thread); the result, or ControlError."""
        if op == "hello":
            return self._hello()
        if op == "status":
            names = _names_of(request, required=False)
            return self._live_status(names)
        if op == "rescan":
            self._next_rescan = 0.0
            self._replan = True
            return {"rescan": "scheduled"}
        if op in VERBS and (self._draining or self._stopping):
            raise ControlError("stopping", "the supervisor is stopping; nothing is started now")
        if op not in VERBS:
            raise ControlError(
                "unknown-op",
                f"no operation {op!r} (known: hello, status, rescan, subscribe, "
                f"{', '.join(VERBS)})",
            )
        keys = self._resolve(_names_of(request, required=True))
        # From an event callback during a plan's starts: a child already
        # started but not yet stepped "spawned" would be acted on as if it
        # had none (a restart answered and lost, a down that stops nothing).
        self._finish_spawns(self._unstepped, self.clock.monotonic())
        slots = [self._slots[key] for key in keys]
        act: Callable[[_Slot], str]
        if op == "signal":
            sig = _signal_of(request.get("signal"))
            for slot in slots:
                self._check_signal(slot, sig)
            act = lambda slot: self._send_signal(slot, sig)  # noqa: E731
        else:
            check, act = {
                "restart": (self._check_restart, self._do_restart),
                "down": (None, self._do_down),
                "up": (None, self._do_up),
                "reset": (None, self._do_reset),
            }[op]
            for slot in slots:
                if check is not None:
                    check(slot)
        done = [{**self._named(slot), "outcome": act(slot)} for slot in slots]
        logger.info("operator {}: {}", op, ", ".join(f"{d['name']} ({d['outcome']})" for d in done))
        return {"sessions": done}

    def _hello(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "version": version(),
            "pid": os.getpid(),
            "plugin": self.plugin,
            "state_dir": str(self.state.root),
            "sessions": len(self._slots),
        }

    def _resolve(self, names: Sequence[str]) -> list[str]:
        named = {
            key: Named(key, slot.session.display_name, str(slot.session.home))
            for key, slot in self._slots.items()
        }
        try:
            return resolve_all(names, named)
        except NameProblem as exc:
            raise ControlError(exc.code, str(exc), exc.candidates) from None

    @staticmethod
    def _named(slot: _Slot) -> dict[str, Any]:
        return {"name": slot.session.display_name, "key": slot.session.name}

    def _live_status(self, names: Sequence[str] | None) -> dict[str, Any]:
        """The status document, from memory: what status.json will say at
        its next write, without its quarter-second lag."""
        keys = self._resolve(names) if names else None
        snap = self._build_snapshot(count=False, only=keys)
        doc = self._status_doc(snap, snap.sessions.values())
        doc["live"] = True
        if self._control is not None:
            doc["last_minute"] = self._last_minute()
        return doc

    # restart: SIGTERM, the grace, SIGKILL, then a new child at once

    def _check_restart(self, slot: _Slot) -> None:
        st, name = slot.state, slot.session.display_name
        if st.down:
            raise ControlError("down", f"{name} is down by operator; `up` it to start it again")
        run = st.running
        if run is not None and not run.owned:
            raise ControlError(
                "not-ours",
                f"{name}: pid {slot.worker.pid if slot.worker else '?'} was not started by "
                "this pool (found serving the session), so it is not ours to restart",
            )
        if run is None and not st.verdict.eligible and st.phase is Phase.INELIGIBLE:
            raise ControlError("ineligible", f"{name} is not eligible: {st.reason}")

    def _do_restart(self, slot: _Slot) -> str:
        pid = slot.worker.pid if slot.worker is not None else None
        already = slot.state.running is not None and slot.state.running.stop_reason is not None
        self._apply(slot, Restart(), self.clock.monotonic())
        if pid is None:
            return "starting"
        return f"restarting pid {pid}" + (" (already stopping)" if already else "")

    def _do_down(self, slot: _Slot) -> str:
        if slot.state.down:
            return "already down"
        pid = slot.worker.pid if slot.worker is not None else None
        self._apply(slot, Down(self.clock.time()), self.clock.monotonic())
        self._replan = True
        if pid is None:
            return "down"
        run = slot.state.running
        if run is not None and not run.owned:
            return f"down; pid {pid} is not ours to stop and keeps running"
        return f"down; stopping pid {pid}"

    def _do_up(self, slot: _Slot) -> str:
        if not slot.state.down:
            return "was not down"
        self._apply(slot, Up(), self.clock.monotonic())
        self._replan = True
        return "up"

    def _do_reset(self, slot: _Slot) -> str:
        st = slot.state
        n = st.streak.failures
        if st.failed:
            was = "was failed"
        elif st.phase is Phase.BACKOFF:
            was = "was backing off"
        elif n:
            was = f"cleared {n} rapid failure{'s' if n > 1 else ''}"
        else:
            was = "nothing held it back"
        self._apply(slot, Reset(), self.clock.monotonic())
        return f"reset ({was})"

    def _check_signal(self, slot: _Slot, sig: signal.Signals) -> None:
        name = slot.session.display_name
        if slot.worker is None:
            raise ControlError("not-running", f"{name} has no child to signal ({slot.state.phase})")
        if not slot.worker.owned:
            raise ControlError(
                "not-ours", f"{name}: pid {slot.worker.pid} was not started by this pool"
            )

    def _send_signal(self, slot: _Slot, sig: signal.Signals) -> str:
        worker = slot.worker
        assert worker is not None
        if not worker.send_signal(sig):
            return f"pid {worker.pid} had already exited"
        return f"sent {sig.name} to pid {worker.pid}"


def _names_of(request: Mapping[str, Any], *, required: bool) -> list[str]:
    names = request.get("sessions")
    if names is None and not required:
        return []
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) and n for n in names)
        or (required and not names)
    ):
        raise ControlError("bad-request", '"sessions" must be a non-empty list of session names')
    return names


def _signal_of(value: Any) -> signal.Signals:
    """A signal by number or name (``HUP``, ``SIGHUP``, ``1``)."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value)
        if isinstance(value, str):
            text = value.strip().upper()
            if text.isdigit():
                return signal.Signals(int(text))
            return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        pass
    raise ControlError("bad-signal", f"not a signal: {value!r:.40}")
