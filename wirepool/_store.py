"""Everything the pool writes to disk, written so a crash never leaves half.

* Atomic writes: temp file in the same directory, fsync, ``os.replace``.  A
  supervisor SIGKILLed mid-write leaves the old record or the new one, never a
  torn one -- and a torn or foreign file is still handled: it is renamed
  aside (kept for inspection, not deleted) and that one session starts fresh.
* One record per session, not one file for all: a corrupt record costs one
  session its history, not the whole pool its memory of every child.
* The singleton is an ``flock`` on ``lock``, a file that is never deleted
  (unlinking a lock file races: py-filelock#31).  The kernel drops the lock
  when the holder dies, however it dies, so there is no stale-pid logic at
  all; ``supervisor.json`` beside it is information for humans and ``stop``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import importlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wirepool._value import Value, frozen
from wirepool.errors import LockHeldError, UnsafeStateDirError

if TYPE_CHECKING:
    import hashlib


def _builtin_sha256() -> Callable[[bytes], hashlib._Hash]:
    # hashlib loads OpenSSL's libcrypto at import (~3 ms of every start)
    # for a sha256 the interpreter also has built in; the digest is the same.
    for module in ("_sha256", "_sha2"):  # Python <= 3.11, then 3.12 on
        with contextlib.suppress(ImportError, AttributeError):
            found: Callable[[bytes], hashlib._Hash] = importlib.import_module(module).sha256
            return found
    import hashlib

    return hashlib.sha256


#: ``hashlib.sha256``, without importing OpenSSL
sha256 = _builtin_sha256()

STATUS_SCHEMA = "wirepool.status/1"
RECORD_SCHEMA = "wirepool.record/1"


def atomic_write_json(
    path: Path, data: Any, *, durable: bool = True, indent: int | None = 1, strict: bool = False
) -> None:
    """``strict``: for documents other programs read (``status.json``), as
    :func:`dumps_strict` writes them.  Records stay as Python reads them
    back, names exact."""
    separators = (",", ":") if indent is None else None
    dumps = dumps_strict if strict else json.dumps
    payload = dumps(data, indent=indent, separators=separators, default=str).encode()
    atomic_write(path, payload, durable=durable)


def atomic_write(
    path: Path,
    payload: bytes,
    *,
    durable: bool = True,
    mode: int | None = None,
    sync_dir: bool = False,
) -> None:
    """Whole or not at all: a temp file beside ``path`` (0600, ``O_EXCL``,
    so a planted name is never followed), written, fsynced when
    ``durable``, then renamed over ``path`` -- a reader or a crash sees the
    old file or the new one, never half of it.  ``mode``: the file's mode,
    if not 0600.  ``sync_dir``: make the rename itself durable too (an fsync
    of the directory, where the file system allows it).

    The temp name is this process's and thread's own, not ``mkstemp``'s
    random one (a fifth of the cost of writing a record: ten thousand of
    them end every stop).  One left by a crash of a process that had our
    pid is removed -- a link, never what it names -- and made anew."""
    tmp = f"{path.parent}/.{path.name}.{os.getpid()}-{threading.get_ident()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


# A lone surrogate: what ``surrogateescape`` makes of a byte that is not
# UTF-8 (U+DC80..U+DCFF), or what a JSON ``\\udXXX`` escape without its
# pair decodes to.
@functools.cache
def _surrogate() -> re.Pattern[str]:
    # compiled when a non-ASCII string first comes, not as a supervisor starts
    return re.compile("[\ud800-\udfff]")


_BYTES_SUFFIX = "_bytes"
_MAX_DEPTH = 64  # our documents nest less than 30 deep (attrs stop at 20)


def dumps_strict(
    value: Any,
    *,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``json.dumps`` whose output every strict JSON parser takes.

    Session names come from directory entries, which are bytes; one that is
    not UTF-8 reaches Python as lone surrogates, which ``json.dumps`` writes
    as ``"\\udce9"``: Python reads that back, strict parsers (serde_json,
    for one) refuse the whole document.  So, as :func:`strict_json` says,
    each undecodable byte is written as the four characters ``\\xNN`` and
    a string that needed it gets a sibling ``<key>_bytes`` with its exact
    bytes in base64.  The output is ASCII (``ensure_ascii``).  Documents
    without a surrogate pay one ``json.dumps`` and a substring test.
    """
    text = json.dumps(value, indent=indent, separators=separators, default=default)
    if "\\ud" not in text:  # no surrogate at all, not even a valid pair
        return text
    return json.dumps(strict_json(value), indent=indent, separators=separators, default=default)


def strict_json(value: Any, _depth: int = 0) -> Any:
    """``value`` with every string valid Unicode, reversibly where it counts.

    * In a string, each undecodable byte (U+DC80..U+DCFF) becomes ``\\xNN``
      (NN its value in lower-case hex), any other lone surrogate ``\\uXXXX``.
    * A dict entry whose string value needed that gets a sibling entry
      ``<key>_bytes``: the exact bytes, base64 (standard alphabet, padded),
      when the string has them (only undecodable bytes, no other lone
      surrogate).  ``name`` becomes ``"caf\\xe9"`` and ``name_bytes``
      ``"Y2Fm6Q=="``.  Consumers that need the exact name take
      ``name_bytes`` when it is there and ``name`` otherwise;
      :func:`from_strict_json` does exactly that.
    * Strings in lists (messages, argv) and dict keys are escaped only.
    * Objects JSON has no type for are converted with ``str`` first, as
      ``default=str`` would; what nests deeper than 64 is replaced by a
      string saying so (no document of ours does).
    """
    if isinstance(value, str):
        return _escape_surrogates(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if _depth > _MAX_DEPTH:
        return "(nested too deeply)"
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for raw_key, item in value.items():
            key = _escape_surrogates(raw_key) if isinstance(raw_key, str) else raw_key
            if isinstance(item, str) and not item.isascii() and _surrogate().search(item):
                out[key] = _escape_surrogates(item)
                import base64  # a non-UTF-8 name: rare, and kept off the start

                with contextlib.suppress(UnicodeEncodeError):
                    raw = item.encode("utf-8", "surrogateescape")
                    out[f"{key}{_BYTES_SUFFIX}"] = base64.b64encode(raw).decode("ascii")
            else:
                out[key] = strict_json(item, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [strict_json(item, _depth + 1) for item in value]
    return _escape_surrogates(str(value))


def from_strict_json(value: Any, _depth: int = 0) -> Any:
    """Undo :func:`strict_json` where it can: a string with a ``<key>_bytes``
    sibling whose bytes escape back to exactly that string is replaced by
    those bytes, decoded as Python decodes file names, and the sibling is
    dropped.  Anything else is left as it is."""
    if _depth > _MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [from_strict_json(item, _depth + 1) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    used: set[str] = set()
    for key, item in value.items():
        exact = value.get(f"{key}{_BYTES_SUFFIX}") if isinstance(key, str) else None
        if isinstance(item, str) and isinstance(exact, str):
            import base64

            try:
                name = base64.b64decode(exact, validate=True).decode("utf-8", "surrogateescape")
            except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
                name = None
            if name is not None and _escape_surrogates(name) == item:
                out[key] = name
                used.add(f"{key}{_BYTES_SUFFIX}")
                continue
        out[key] = from_strict_json(item, _depth + 1)
    for key in used:
        out.pop(key, None)
    return out


def _escape_surrogates(text: str) -> str:
    if text.isascii():  # most are: no pattern to run
        return text
    surrogate = _surrogate()
    if surrogate.search(text) is None:
        return text
    return surrogate.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def read_small(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """Read a regular file of at most ``limit`` bytes, or raise OSError.

    For files someone else may have planted (a pidfile, an ``env/`` entry):
    opened non-blocking and checked with ``fstat``, because a FIFO there
    would block the supervisor's loop for good and ``/dev/zero`` would eat
    its memory.  ``follow=False`` refuses a symlink as the last component.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        data = b""
        # Asked for what the file holds and one byte more (which tells
        # whether it grew), not for the limit: os.read allocates what it is
        # asked for, and a megabyte for a 40-byte `run` was an mmap and a
        # munmap on every spawn's fingerprint (in the spawn threads).
        want = max(st.st_size + 1, 4096)
        while len(data) <= limit:
            asked = min(limit + 1 - len(data), want)
            chunk = os.read(fd, asked)
            data += chunk
            # Short, with all fstat counted: the end, without a second read
            # (a system call per fingerprint and env/ entry) to hear so.  A
            # file system that reads short before the end reads on, as does
            # one whose files have no size (/proc, /sys: a page per read).
            if not chunk or (len(chunk) < asked and 0 < st.st_size <= len(data)):
                break
            want = 1 << 16
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return data
    finally:
        os.close(fd)


#: Caps on what is read of each state file.  status.json of 10 000 sessions
#: is about 4 MB; records and supervisor.json are a few hundred
#: bytes.  A file over its cap is refused unread: 110 MB of status.json cost
#: ``wirepool status`` 2.9 s and 290 MB of memory.
STATUS_LIMIT = 32 << 20
#: a pool of more sessions than this writes them in ``STATUS_PARTS`` part
#: files beside a small ``status.json`` (see :meth:`StateDir.read_status`)
STATUS_PARTS_ABOVE = 256
STATUS_PARTS = 64
RECORD_LIMIT = 1 << 20
SMALL_STATE_LIMIT = 64 << 10


def read_json(path: Path, limit: int = RECORD_LIMIT) -> Any:
    """Parse a JSON state file: a regular file, not a symlink, at most
    ``limit`` bytes (OSError otherwise; ValueError for bad JSON).

    Through :func:`read_small` because a FIFO planted as a record hung
    ``wirepool run`` at start-up -- deaf to SIGTERM, inside ``open`` -- and
    one as ``status.json`` hung ``wirepool status``."""
    raw = read_small(path, limit, follow=False)
    try:
        return json.loads(raw)
    except RecursionError:  # "[[[[...": one documented error for every caller
        raise ValueError("JSON nested too deeply") from None


def quarantine(path: Path) -> Path | None:
    """Move a file we cannot use aside, keeping it for inspection.  Never
    overwrites an earlier quarantined copy."""
    for n in range(100):
        target = path.with_name(f"{path.name}.corrupt-{int(time.time())}{f'-{n}' if n else ''}")
        try:
            os.link(path, target)  # fails if target exists: nothing is overwritten
        except FileExistsError:
            continue
        except OSError:
            break
        with contextlib.suppress(OSError):
            os.unlink(path)
        return target
    return None


@frozen
class StateDir(Value):
    """The state directory's layout."""

    root: Path

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def supervisor_path(self) -> Path:
        return self.root / "supervisor.json"

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def records_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def status_parts_dir(self) -> Path:
        """The sessions of a big pool's status, in parts (see :meth:`read_status`)."""
        return self.root / "status.d"

    def status_part_path(self, part: int) -> Path:
        return self.status_parts_dir / f"{part:02d}.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def control_dir(self) -> Path:
        """The control socket's directory (see :mod:`wirepool._control`)."""
        return self.root / "control"

    @property
    def markers_dir(self) -> Path:
        """Marker files of Python workers (see ``spawn.write_marker``)."""
        return self.root / "markers"

    @property
    def pool_id(self) -> str:
        """The identity every child of this pool carries in its marker
        variables: a hash of the state directory's real path, so it is the
        same for every supervisor, ``stop`` and ``status`` of the pool."""
        return sha256(os.fsencode(os.path.realpath(self.root))).hexdigest()[:16]

    def verify(self, *, missing_ok: bool = False) -> bool:
        """Check that only we can write the state directory, changing nothing.

        Whoever can write here can plant a record naming any live process
        as "our child", and the supervisor would adopt -- and on stop,
        signal -- it; with a root supervisor that is anyone's process.  The
        same planted directory fools the verbs that only read it: a lock
        someone else holds made ``status`` say "supervisor: running", and
        ``stop --children`` killed what their records named.  So every
        verb checks first: the state directory and each directory under it
        that exists must be a directory owned by us and not writable by
        group or others, or :class:`UnsafeStateDirError` is raised.

        Returns False when the state directory does not exist and
        ``missing_ok`` (``status`` then falls back to discovery); a
        missing one is FileNotFoundError otherwise.
        """
        for d in (self.root, *self._subdirs):
            try:
                st = os.stat(d)
            except FileNotFoundError:
                if d != self.root:
                    continue
                if missing_ok:
                    return False
                raise
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeStateDirError(d, "is not a directory")
            if st.st_uid != os.geteuid():
                raise UnsafeStateDirError(d, f"is owned by uid {st.st_uid}, not {os.geteuid()}")
            if st.st_mode & 0o022:
                raise UnsafeStateDirError(
                    d, f"is writable by group or others (mode {st.st_mode & 0o777:o})"
                )
        return True

    def ensure(self) -> None:
        """Create the state directory owner-only, and refuse one that is not.

        :meth:`verify` decides what is refused, before anything is created
        in it or changed; one of ours that is merely readable by others
        (made by an older version, or under a lax umask) is then tightened
        to 0700.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.verify()
        for d in (self.records_dir, self.logs_dir, self.control_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        for d in (self.root, *self._subdirs):
            with contextlib.suppress(FileNotFoundError):  # markers/: made on demand
                if os.stat(d).st_mode & 0o077:
                    os.chmod(d, 0o700)

    @property
    def _subdirs(self) -> tuple[Path, ...]:
        return (
            self.records_dir,
            self.logs_dir,
            self.control_dir,
            self.markers_dir,
            self.status_parts_dir,
        )

    def remove_stale_temp_files(self) -> int:
        """Delete what a writer killed between making its temp file and ``os.replace``
        left behind.  Call only while holding the lock: supervisors are the
        writers here, so every temp file then present is an earlier one's."""
        removed = 0
        for directory in (self.root, self.records_dir, self.markers_dir, self.status_parts_dir):
            try:
                entries = list(directory.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        entry.unlink()
                        removed += 1
        return removed

    def iter_records(self) -> Iterator[Path]:
        try:
            entries = sorted(self.records_dir.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.suffix == ".json" and not entry.name.startswith("."):
                yield entry

    def read_supervisor(self) -> dict[str, Any] | None:
        try:
            data = read_json(self.supervisor_path, SMALL_STATE_LIMIT)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def read_status(self) -> dict[str, Any] | None:
        """``status.json``, or None when there is none.  A file that is
        there but unusable raises OSError or ValueError saying why.

        The whole document, always: a pool of more than
        ``STATUS_PARTS_ABOVE`` sessions writes its sessions in part files
        (``status.d/NN.json``, each one ``{"sessions": [...]}``, a session
        always in the same part) and names how many in ``status.json``'s
        ``session_parts``, so that one session's change rewrites a part of
        the status, not megabytes of it.  Those are read here and put back
        in ``sessions``, by name."""
        try:
            data = read_json(self.status_path, STATUS_LIMIT)
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            return None
        parts = data.pop("session_parts", None)
        if not isinstance(parts, int) or isinstance(parts, bool) or not 0 < parts <= 4096:
            return data
        sessions: list[Any] = []
        for part in range(parts):
            doc = read_json(self.status_part_path(part), STATUS_LIMIT)
            found = doc.get("sessions") if isinstance(doc, dict) else None
            if not isinstance(found, list):
                raise ValueError(f"{self.status_part_path(part)}: no list of sessions")
            sessions.extend(found)
        sessions.sort(key=lambda s: str(s.get("name")) if isinstance(s, dict) else "")
        data["sessions"] = sessions
        return data


def acquire_lock(state: StateDir, attempts: int = 5) -> int:
    """Take the pool's singleton lock or raise :class:`LockHeldError`.

    A few quick retries cover the moment when ``wirepool status`` holds a
    shared lock to ask whether anyone holds it.
    """
    state.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = _open_lock(state.lock_path, os.O_RDWR | os.O_CREAT)
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            if attempt + 1 < attempts:
                time.sleep(0.05)
    os.close(fd)
    info = state.read_supervisor() or {}
    pid = info.get("pid") if isinstance(info.get("pid"), int) else None
    raise LockHeldError(state.root, pid)


def _open_lock(path: Path, flags: int) -> int:
    """The lock file, never through a symlink (a planted ``lock -> ~/x``
    would be created or locked in our name)."""
    return open_regular(path, flags)


def open_regular(path: Path, flags: int) -> int:
    """``path`` opened with ``flags``: never through a symlink as its last
    component, and only a regular file: a FIFO opened without
    ``O_NONBLOCK`` blocks until a writer comes (``0600`` if created)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_holder(state: StateDir) -> int | None:
    """The pid holding the pool's lock, as the kernel's lock table
    (``/proc/locks``) names it; None when nobody does or it cannot tell
    (not Linux, no /proc).  Unlike ``supervisor.json`` this cannot be stale,
    truncated or pointed at someone else."""
    try:
        st = os.lstat(state.lock_path)  # the file acquire_lock locks, not a link's target
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146840 0 EOF"; a waiter's
        # line carries "->" and holds nothing
        fields = line.split()
        if (
            len(fields) >= 6
            and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"]
            and fields[5] == want
            and fields[4].isdigit()
        ):
            return int(fields[4])
    return None


def lock_is_held(state: StateDir) -> bool:
    """Whether some process holds the pool's lock right now (a supervisor
    is alive).  Asks the kernel, so it cannot be fooled by a stale pidfile."""
    try:
        fd = _open_lock(state.lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
