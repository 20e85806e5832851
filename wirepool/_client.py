"""A client of a running supervisor's control socket, for test harnesses,
tools and the ``wirepool`` verbs (:mod:`wirepool._control` is the server;
``docs/CONTROL.md`` the protocol)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wirepool._control import MAX_REQUEST, PROTOCOL, connect, decode_line, encode, socket_path
from wirepool._store import StateDir
from wirepool.errors import ControlError, NoSupervisorError

__all__ = ["Client", "EventSubscription"]

#: a reply line may be a whole status document: 10 000 sessions are ~5 MB
MAX_REPLY = 256 << 20


class Client:
    """Talk to the supervisor of ``state_dir``::

        with wirepool.Client(state_dir) as client:
            client.restart("web", wait=True)
            print(client.status("web")["sessions"][0]["pid"])

    Every verb names sessions as an operator would (the name ``status``
    shows, the key, or the home's path) and acts on all of them or none.
    Raises :class:`NoSupervisorError` when no supervisor listens,
    :class:`ControlError` when it refuses (``code``: ``unknown-session``,
    ``ambiguous-session``, ``down``, ``not-ours``, ...), TimeoutError when it
    does not answer within ``timeout`` seconds.
    """

    def __init__(self, state_dir: Path | str, *, timeout: float = 30.0) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._ids = itertools.count(1)

    # ------------------------------------------------------------- the verbs

    def hello(self) -> dict[str, Any]:
        """The supervisor's pid, version, protocol, plugin and session count."""
        result: dict[str, Any] = self.request("hello")
        return result

    def status(self, *names: str) -> dict[str, Any]:
        """The status document (as ``status.json``, but live), of every
        session or of those named."""
        result: dict[str, Any] = self.request("status", sessions=list(names) or None)
        return result

    def restart(self, *names: str, wait: bool = False) -> dict[str, Any]:
        """Stop each child (SIGTERM, grace, SIGKILL) and start a new one at
        once.  ``wait``: return once every session has a new child (its
        ``spawned`` or ``adopted`` event), ControlError ``not-restarted`` if
        one backs off or fails instead."""
        if not wait:
            return self._verb("restart", names)
        with self.events() as events:
            result = self._verb("restart", names)
            self._await_start(events, result)
        return result

    def down(self, *names: str) -> dict[str, Any]:
        """Hold sessions down (their children stopped, none started) until :meth:`up`."""
        return self._verb("down", names)

    def up(self, *names: str) -> dict[str, Any]:
        return self._verb("up", names)

    def reset(self, *names: str) -> dict[str, Any]:
        """Clear failure streaks and ``failed`` marks."""
        return self._verb("reset", names)

    def signal(self, name: str, sig: int | str) -> dict[str, Any]:
        """Send ``sig`` (``"HUP"``, ``"SIGUSR1"``, ``15``) to a session's child."""
        result: dict[str, Any] = self.request("signal", sessions=[name], signal=sig)
        return result

    def rescan(self) -> None:
        self.request("rescan")

    def events(self) -> EventSubscription:
        """The supervisor's events from now on, as the dicts ``wirepool run
        --json`` prints, on a connection of their own."""
        return EventSubscription(self.state_dir, self.timeout)

    # ----------------------------------------------------------- the wire

    def request(self, op: str, **params: Any) -> Any:
        """Send one request and return its ``result`` (the protocol, raw)."""
        rid = next(self._ids)
        body = {"v": PROTOCOL, "id": rid, "op": op}
        body.update({k: v for k, v in params.items() if v is not None})
        line = encode(body)
        if len(line) > MAX_REQUEST:
            raise ControlError("too-large", f"a request line is at most {MAX_REQUEST} bytes")
        sock = self._connected()
        try:
            sock.sendall(line)
            while True:
                reply = self._read_line()
                if reply.get("id") == rid or "event" not in reply:
                    break
        except TimeoutError:
            self.close()
            raise TimeoutError(
                f"the supervisor did not answer {op!r} within {self.timeout}s"
            ) from None
        except OSError as exc:
            self.close()
            raise NoSupervisorError(f"lost the supervisor on {self.state_dir}: {exc}") from None
        if not reply.get("ok"):
            raw = reply.get("error")
            error: dict[str, Any] = raw if isinstance(raw, dict) else {}
            raise ControlError(
                str(error.get("code", "error")),
                str(error.get("message", "the supervisor refused the request")),
                [str(c) for c in error.get("candidates", []) if isinstance(c, str)],
            )
        return reply.get("result")

    def close(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _verb(self, op: str, names: Iterable[str]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(op, sessions=list(names))
        return result

    def _connected(self) -> socket.socket:
        if self._sock is None:
            self._sock = open_socket(self.state_dir, self.timeout)
            self._reader = self._sock.makefile("rb")
        return self._sock

    def _read_line(self) -> dict[str, Any]:
        line = self._reader.readline(MAX_REPLY)
        if not line:
            raise ConnectionResetError("the supervisor closed the connection")
        if not line.endswith(b"\n"):
            raise ConnectionResetError("a reply too long or cut short")
        return decode_line(line)

    def _await_start(self, events: EventSubscription, result: dict[str, Any]) -> None:
        waiting = {s["key"]: s["name"] for s in result.get("sessions", [])}
        deadline = time.monotonic() + self.timeout
        for event in events.iter(until=deadline):
            key = event.get("key")
            if key not in waiting:
                continue
            kind = event.get("event")
            if kind in ("spawned", "adopted"):
                for s in result["sessions"]:
                    if s["key"] == key:
                        s["pid"] = event.get("pid")
                del waiting[key]
            elif kind in ("backoff", "failed", "ineligible"):
                raise ControlError(
                    "not-restarted",
                    f"{waiting[key]}: {kind}: {event.get('reason') or 'no new child'}",
                )
            if not waiting:
                return
        raise TimeoutError(f"no new child for {', '.join(waiting.values())} within {self.timeout}s")


class EventSubscription:
    """An open subscription to a supervisor's events.  Iterate it (ends
    when the supervisor stops), or :meth:`iter` with a deadline; close it
    (or use it as a context manager) when done."""

    def __init__(self, state_dir: Path, timeout: float) -> None:
        self._sock = open_socket(state_dir, timeout)
        self._reader = self._sock.makefile("rb")
        self._sock.sendall(encode({"v": PROTOCOL, "id": 0, "op": "subscribe"}))
        reply = self._next()
        if reply is None or not reply.get("ok"):
            self.close()
            raise NoSupervisorError(f"the supervisor on {state_dir} refused a subscription")

    def _next(self) -> dict[str, Any] | None:
        try:
            line = self._reader.readline(MAX_REPLY)
        except (OSError, ValueError):
            return None
        if not line.endswith(b"\n"):
            return None
        return decode_line(line)

    def iter(self, *, until: float | None = None) -> Iterator[dict[str, Any]]:
        """Events until the supervisor stops or the monotonic ``until``
        (a subscription that reached its deadline is done: open another)."""
        while True:
            if until is not None:
                left = until - time.monotonic()
                if left <= 0:
                    return
                self._sock.settimeout(left)
            else:
                self._sock.settimeout(None)
            try:
                line = self._next()
            except TimeoutError:
                return
            if line is None:
                return
            event = line.get("event")
            if isinstance(event, dict):
                yield event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.iter()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._reader.close()
        self._sock.close()

    def __enter__(self) -> EventSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_socket(state_dir: Path, timeout: float) -> socket.socket:
    """A connection to the supervisor of ``state_dir``, or
    NoSupervisorError saying why there is none."""
    state = StateDir(state_dir)
    if not state.verify(missing_ok=True):
        raise NoSupervisorError(f"no supervisor has run on {state_dir} (no such directory)")
    try:
        return connect(state_dir, timeout=timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoSupervisorError(
            f"no supervisor is running on {state_dir} ({socket_path(state_dir)} has no listener)"
        ) from None
    except PermissionError as exc:
        raise NoSupervisorError(
            f"cannot reach the supervisor on {state_dir}: {exc.strerror or exc}"
        ) from None
