"""The control socket: how ``wirepool`` verbs and :class:`wirepool.Client`
talk to a running supervisor.

``<state dir>/control/sock``, an ``AF_UNIX`` stream socket, mode 0600 in a
0700 directory; the kernel's word on each peer (``SO_PEERCRED``) must name
the supervisor's own uid or root, whatever the file's mode says.  The
protocol is JSON lines (``docs/CONTROL.md``)::

    -> {"v": 1, "id": 7, "op": "restart", "sessions": ["web"]}
    <- {"v": 1, "id": 7, "ok": true, "result": {...}}
    <- {"v": 1, "id": 7, "ok": false, "error": {"code": "...", "message": "..."}}
    <- {"v": 1, "event": {...}}                  (after "subscribe")

The server lives on the supervisor's loop thread, in the same ``select`` as
every child's exit fd, and never blocks on a client: sockets are
non-blocking; a request line over 64 KiB is refused and the connection
closed; replies wait in a per-connection buffer, and a connection with more
than 1 MiB unread is not read from until it catches up (a script that
pipelines requests is slowed, not dropped), while a subscriber that far
behind is dropped -- the loop must not hold an unbounded backlog for a
client that stopped reading.
"""

from __future__ import annotations

# The supervisor's side uses the C module's socket type alone: ``socket``
# itself (the Python wrapper) builds four IntEnums of every constant as it
# is imported, ~1.2 ms of a supervisor's start before its first child, for
# ``accept``, which is ``_accept`` and a wrap here.  Clients (``connect``)
# get a ``socket.socket``, imported when they connect.
import _socket
import contextlib
import errno
import json
import os
import selectors
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wirepool._store import dumps_strict, from_strict_json
from wirepool._value import Shown, field, record
from wirepool.errors import ControlError

if TYPE_CHECKING:
    import socket

__all__ = [
    "MAX_REQUEST",
    "PROTOCOL",
    "Conn",
    "ControlServer",
    "connect",
    "decode_line",
    "encode",
    "error_json",
    "socket_path",
]

PROTOCOL = 1
#: the longest request line taken; a longer one is refused unread
MAX_REQUEST = 64 << 10
#: unread bytes a connection may hold before it is no longer read from (or,
#: for a subscriber, dropped)
MAX_BACKLOG = 1 << 20
#: connections at once; one more is told so and closed
MAX_CONNECTIONS = 256
#: bytes read from one connection per wake-up, so that one busy client
#: cannot keep the loop from its children
READ_CHUNK = 256 << 10


def socket_path(state_root: Path) -> Path:
    return state_root / "control" / "sock"


def error_json(exc: ControlError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if exc.candidates:
        out["candidates"] = exc.candidates
    return out


def encode(obj: Mapping[str, Any]) -> bytes:
    """One protocol line: strict JSON, ASCII (a name that is not UTF-8 as
    ``\\xNN`` plus its exact bytes, see ``dumps_strict``), any non-JSON
    value as its string."""
    return dumps_strict(obj, separators=(",", ":"), default=str).encode() + b"\n"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_line(line: bytes) -> dict[str, Any]:
    """A request or reply line as an object; ValueError saying what is off."""
    try:
        obj = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if b"_bytes" not in line:  # nothing to restore: skip the walk
        return obj
    restored: dict[str, Any] = from_strict_json(obj)
    return restored


def _dir_path(fd: int, name: str) -> str:
    # An AF_UNIX path holds 107 bytes; a state directory (a pytest
    # tmp_path, a deep home) may be longer.  The kernel resolves this name
    # through the open directory, whatever its path's length.
    return f"/proc/self/fd/{fd}/{name}"


def connect(state_root: Path, *, timeout: float | None = 10.0) -> socket.socket:
    """A blocking connection to the supervisor of ``state_root``.
    OSError (ENOENT, ECONNREFUSED: no supervisor listening) as the kernel
    gives it; PermissionError when the socket is someone else's."""
    import socket

    path = socket_path(state_root)
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(_dir_path(dir_fd, path.name))
            # The other way round too: a socket someone else bound there
            # (a state directory we were tricked into) is not our supervisor.
            _, uid, _ = _peer(sock)
            if uid not in (os.geteuid(), 0):
                raise PermissionError(
                    errno.EACCES, f"the control socket is served by uid {uid}", str(path)
                )
        except BaseException:
            sock.close()
            raise
    finally:
        os.close(dir_fd)
    return sock


def _peer(sock: _socket.socket) -> tuple[int, int, int]:
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


@record
class Conn(Shown):
    """One client connection (loop thread only)."""

    sock: _socket.socket
    uid: int
    pid: int
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    subscribed: bool = False
    #: the rest is discarded: the connection closes once its replies are out
    closing: bool = False
    #: where a reader looks for the end of a line (what was scanned already)
    scanned: int = 0
    #: the peer shut its sending side: no more requests come
    eof: bool = False


Handler = Callable[[Conn, dict[str, Any]], Any]


class ControlServer:
    """The listening socket and its connections, driven by the loop's
    selector: ``on_ready`` with what the selector reported.

    ``handle(conn, request)`` returns the reply's ``result`` or raises
    :class:`ControlError`; anything else it raises is a bug reported to the
    client as ``internal`` (and to ``on_error``), never to the loop.
    """

    def __init__(
        self,
        state_root: Path,
        handle: Handler,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.path = socket_path(state_root)
        self._handle = handle
        self._on_error = on_error
        self._listener: _socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._conns: dict[int, Conn] = {}
        #: see MAX_BACKLOG (an attribute, so a test can make it small)
        self.max_backlog = MAX_BACKLOG

    # ------------------------------------------------------------ lifecycle

    def open(self, selector: selectors.BaseSelector) -> None:
        """Bind and listen (the state directory's lock is ours, so a socket
        file already there is a dead supervisor's)."""
        directory = self.path.parent
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            st = os.fstat(dir_fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                # Made by us with 0700 unless someone else made it first:
                # then it is theirs to read, and not a place for our socket.
                if st.st_uid != os.geteuid():
                    raise PermissionError(
                        errno.EPERM, "the control directory is another user's", str(directory)
                    )
                os.fchmod(dir_fd, 0o700)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path.name, dir_fd=dir_fd)
            sock = _socket.socket(
                _socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC
            )
            try:
                sock.bind(_dir_path(dir_fd, self.path.name))
                os.chmod(self.path.name, 0o600, dir_fd=dir_fd)
                sock.listen(64)
            except BaseException:
                sock.close()
                raise
        finally:
            os.close(dir_fd)
        self._listener = sock
        self._selector = selector
        selector.register(sock, selectors.EVENT_READ, self)

    def close(self) -> None:
        """Close every connection and the socket, and remove its file (a
        client then hears "no supervisor", not a hang)."""
        for conn in list(self._conns.values()):
            self._drop(conn)
        if self._listener is not None:
            if self._selector is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    @property
    def subscribers(self) -> int:
        return sum(1 for c in self._conns.values() if c.subscribed)

    # --------------------------------------------------------------- events

    def on_ready(self, fileobj: Any, mask: int) -> None:
        if fileobj is self._listener:
            self._accept()
            return
        conn = self._conns.get(fileobj.fileno()) if isinstance(fileobj, _socket.socket) else None
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
            if conn.sock.fileno() in self._conns and (b"\n" in conn.inbuf or conn.eof):
                self._serve(conn)  # what waited for the replies to be read
        if mask & selectors.EVENT_READ and conn.sock.fileno() in self._conns:
            self._read(conn)

    def broadcast(self, obj: Mapping[str, Any]) -> None:
        """Send ``obj`` to every subscriber; drop one that fell too far behind."""
        if not self.subscribers:
            return
        line = encode({"v": PROTOCOL, **obj})
        for conn in list(self._conns.values()):
            if not conn.subscribed:
                continue
            if len(conn.outbuf) > self.max_backlog:
                self._drop(conn)
                continue
            self._send(conn, line)

    # ------------------------------------------------------------- internals

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(64):  # a burst of connects must not hold the loop
            try:
                # socket.socket.accept's own steps: the C accept (accept4
                # with close-on-exec), then a socket object for the fd
                fd, _ = self._listener._accept()  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE: say so once, go on
                self._on_error("accept", exc)
                return
            try:
                # what the listener is, said, as accept says it: asked of
                # the fd instead, it was three more system calls
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
            except OSError:
                os.close(fd)
                continue
            sock.setblocking(False)
            try:
                pid, uid, _ = _peer(sock)
            except OSError:
                sock.close()
                continue
            conn = Conn(sock, uid=uid, pid=pid)
            self._conns[sock.fileno()] = conn
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_READ, self)
            if uid not in (os.geteuid(), 0):
                self._refuse(
                    conn,
                    ControlError(
                        "permission-denied",
                        f"uid {uid} may not control this supervisor "
                        f"(only uid {os.geteuid()} and root)",
                    ),
                )
            elif len(self._conns) > MAX_CONNECTIONS:
                self._refuse(
                    conn, ControlError("busy", f"more than {MAX_CONNECTIONS} control connections")
                )

    def _refuse(self, conn: Conn, error: ControlError, rid: Any = None) -> None:
        self._reply(conn, {"id": rid, "ok": False, "error": error_json(error)})
        conn.closing = True
        conn.inbuf.clear()
        if not conn.outbuf:
            self._drop(conn)

    def _read(self, conn: Conn) -> None:
        if conn.closing or conn.eof or len(conn.outbuf) > self.max_backlog:
            self._want(conn)  # read again once it has caught up
            return
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if data:
            conn.inbuf += data
        else:
            conn.eof = True
        self._serve(conn)

    def _serve(self, conn: Conn) -> None:
        """Answer the whole lines received, for as long as the client reads
        the answers: a burst of pipelined requests must not pile up replies
        (a status each) faster than they are taken."""
        while not conn.closing and len(conn.outbuf) <= self.max_backlog:
            end = conn.inbuf.find(b"\n", conn.scanned)
            if end < 0:
                conn.scanned = len(conn.inbuf)
                if len(conn.inbuf) > MAX_REQUEST:
                    self._refuse(conn, _too_large())
                elif conn.eof:
                    # The peer is done sending: a last line without its
                    # newline is still a request, and replies still owed go
                    # out before the close.
                    rest, conn.inbuf = bytes(conn.inbuf), bytearray()
                    if rest.strip():
                        self._request(conn, rest)
                    conn.closing = True
                    if not conn.outbuf:
                        self._drop(conn)
                        return
                break
            line = bytes(conn.inbuf[:end])
            del conn.inbuf[: end + 1]
            conn.scanned = 0
            if len(line) > MAX_REQUEST:
                self._refuse(conn, _too_large())
                return
            if line.strip():
                self._request(conn, line)
        if conn.sock.fileno() in self._conns:
            self._want(conn)

    def _request(self, conn: Conn, line: bytes) -> None:
        rid: Any = None
        try:
            request = decode_line(line)
            rid = request.get("id")
            if request.get("v") != PROTOCOL:
                raise ControlError(
                    "bad-version",
                    f"protocol version {request.get('v')!r} is not spoken here "
                    f"(this supervisor speaks {PROTOCOL})",
                )
            if not isinstance(request.get("op"), str):
                raise ControlError("bad-request", 'a request needs an "op" string')
            result = self._handle(conn, request)
        except ValueError as exc:
            self._reply(conn, {"id": rid, "ok": False, "error": _bad(exc)})
        except ControlError as exc:
            self._reply(conn, {"id": rid, "ok": False, "error": error_json(exc)})
        except Exception as exc:
            self._on_error("request", exc)
            error = ControlError("internal", f"the supervisor failed on this request: {exc}")
            self._reply(conn, {"id": rid, "ok": False, "error": error_json(error)})
        else:
            self._reply(conn, {"id": rid, "ok": True, "result": result})

    def _reply(self, conn: Conn, obj: Mapping[str, Any]) -> None:
        self._send(conn, encode({"v": PROTOCOL, **obj}))

    def _send(self, conn: Conn, data: bytes) -> None:
        conn.outbuf += data
        self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EPIPE: it left
                self._drop(conn)
                return
            del conn.outbuf[:sent]
        if not conn.outbuf and conn.closing:
            self._drop(conn)
            return
        self._want(conn)

    def _want(self, conn: Conn) -> None:
        """Ask the selector for what this connection waits on: room to
        write what is owed, and new requests unless it is behind."""
        read = not (conn.closing or conn.eof or len(conn.outbuf) > self.max_backlog)
        events = (selectors.EVENT_READ if read else 0) | (
            selectors.EVENT_WRITE if conn.outbuf else 0
        )
        assert self._selector is not None
        fd = conn.sock.fileno()
        if fd not in self._conns:
            return
        if not events:
            # Nothing to write and nothing to read yet: a peer that closes
            # meanwhile is seen once it is read from again.
            events = selectors.EVENT_READ
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(conn.sock).events != events:
                self._selector.modify(conn.sock, events, self)

    def _drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if self._conns.pop(fd, None) is None:
            return
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.sock.close()


def _too_large() -> ControlError:
    return ControlError("too-large", f"a request line is at most {MAX_REQUEST} bytes")


def _bad(exc: ValueError) -> dict[str, Any]:
    return error_json(ControlError("bad-request", f"malformed request: {exc}"))
