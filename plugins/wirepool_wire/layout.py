"""wire's on-disk layout, read without side effects.

Pure functions and small frozen values that describe what wire (SlanchaAi/wire
0.16: ``src/session.rs``, ``src/ensure_up.rs``, ``src/daemon_supervisor.rs``)
keeps on disk.  Nothing here spawns,
signals, deletes or writes; the engine decides what to do with the facts.

Why each rule is the way it is
------------------------------

* **Homes are found by directory, not by name (#174).**  wire's first
  multi-session supervisor (#170) passed ``--session <persona>`` to its
  children; the resolver of the time mapped that to ``sessions/<name>`` while
  the homes lived in ``sessions/by-key/<hash>``, so 127 of 133 children exited
  at once and were respawned in a backoff loop: a fork storm.  The fix, and
  the only contract a daemon has, is ``WIRE_HOME=<home dir>``.  So
  :func:`scan_homes` returns *paths*; :class:`WireHome.key` is the path
  relative to the root, never a persona, and two homes with the same handle
  stay two homes (wire keyed its child map by handle and would collide).

* **Husks are reported, never deleted (#212, #243).**  Every Claude tab
  minted a by-key home; one box had 147 homes for about 5 real sessions and
  ran 100+ daemons.  wire's answer was the idle filter (see
  :func:`parse_max_idle_days`) plus a husk *reaper* that ``remove_dir_all``\\ s
  homes.  A supervisor that deletes user directories on a heuristic is one
  bug away from deleting identities, so :func:`scan_homes` separates
  DID-less homes ("husks", wire's E8 rule) from sessions and leaves them be.
  A home we cannot read also ends up a husk: unknowable is not runnable.

* **"Bound" is computed the way wire meant it, not the way it does it.**
  ``registry.json`` maps cwd -> session *name*, but wire 0.16's
  ``list_sessions`` (``src/session.rs``) looks the cwd up
  with the by-key *hash* as the name, so ``cwd`` is null for essentially every
  session and its "registry-bound => keep" rule never fires.
  :func:`bound_cwds` matches ``by_key_dir_name(sanitize_name(value))`` (and
  the literal value, for legacy homes and for whatever wire itself would
  match), so everything wire considers bound we do too, plus what it misses.

* **A listing failure is not "zero sessions".**  wire's supervisor loop
  (``run_supervisor`` in ``src/daemon_supervisor.rs``) treats a failed
  ``list_sessions()`` as empty and then SIGKILLs every child.  Here only a
  missing or unreadable root (or ``by-key/``) raises ``OSError``, so the caller
  can keep its previous view; a bad *entry* never raises.

* **Three pidfile readers, three tolerances.**  wire's singleton check
  (``ensure_up::read_pid_record``) accepts only the full JSON record,
  ``list_sessions`` (``session::session_role_pid``) any object with a ``pid``,
  and the supervisor's pre-spawn check
  (``daemon_supervisor::existing_daemon_for_session``) also a legacy bare
  integer.
  :func:`parse_daemon_pid` accepts all three and says which one it saw
  (:attr:`DaemonPidRecord.form`), so a caller can apply whichever rule it is
  reproducing.  A pid of 0 or below is always refused: ``os.kill(0, sig)``
  signals the caller's whole process group and ``os.kill(-1, sig)`` signals
  every process the user owns.

* **Stale-binary detection under-flags on purpose (#198).**
  :func:`version_is_older` is wire's dotted-integer compare; a pre-release
  such as ``0.14.2-rc.1`` is never "older", so a refresh never kills a daemon
  because of a version string it cannot order.

* **Activity ignores ``daemon.pid``**, as wire's ``fs_last_active``
  (``src/daemon_supervisor.rs``) does.  Spawning writes the pidfile; counting
  it would let a supervisor keep a session "active" forever just by
  respawning it.

Parsing mirrors the Rust it replaces where that matters: integers follow
``str::trim`` + ``u64/u32::from_str`` (ASCII digits, optional ``+``, Unicode
``White_Space`` trimmed), JSON files are decoded as strict UTF-8 the way
``serde_json`` reads them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePath
from typing import Final, Literal

from wirepool._value import Value, frozen

__all__ = [
    "BY_KEY_DIR",
    "DEFAULT_HUSK_REAP_MAX_AGE_HOURS",
    "DEFAULT_MAX_IDLE_DAYS",
    "SECONDS_PER_DAY",
    "Card",
    "DaemonPidRecord",
    "PidfileError",
    "PidfileForm",
    "RegistryError",
    "WireHome",
    "binding_index",
    "bound_cwds",
    "by_key_dir_name",
    "card_path",
    "daemon_pid_path",
    "daemon_pid_problem",
    "display_handle_from_did",
    "examine_key",
    "is_by_key_name",
    "is_wire_daemon_cmdline",
    "is_wire_supervisor_cmdline",
    "last_active",
    "parse_daemon_pid",
    "parse_husk_reap_max_age_hours",
    "parse_max_idle_days",
    "parse_rfc3339",
    "private_key_path",
    "read_card",
    "read_daemon_pid",
    "read_last_sync",
    "read_registry",
    "read_supervisor_pid",
    "resolve_sessions_root",
    "sanitize_name",
    "scan_homes",
    "seed_eligible",
    "state_dir",
    "version_is_older",
]

# ---------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------

BY_KEY_DIR: Final = "by-key"
SECONDS_PER_DAY: Final = 86_400
DEFAULT_MAX_IDLE_DAYS: Final = 7
DEFAULT_HUSK_REAP_MAX_AGE_HOURS: Final = 48

_SANITIZE_MAX: Final = 32
_EMPTY_NAME: Final = "wire-session"
_ASCII_ALNUM: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_BY_KEY_RE: Final = re.compile(r"[0-9a-f]{16}")

_U32_MAX: Final = 2**32 - 1
_U64_MAX: Final = 2**64 - 1

# Size caps: every file we read can be replaced by something huge (or a FIFO)
# on a shared box; a supervisor must not stall or balloon on one bad entry.
_CARD_LIMIT: Final = 1 << 20
_REGISTRY_LIMIT: Final = 8 << 20
_PIDFILE_LIMIT: Final = 64 << 10
_ACTIVITY_FILES: Final = ("last_sync.json", "notify.cursor", "reactor.cursor")


def sanitize_name(name: str) -> str:
    """wire's ``sanitize_name``: the session-name form of an arbitrary string.

    ASCII letters and digits (lowercased), ``-`` and ``_`` are kept; any run of
    other characters (and of ``-``) becomes one ``-``; leading and trailing
    ``-`` are trimmed; at most 32 characters, re-trimmed after the cut; an
    empty result becomes ``wire-session``.  Non-ASCII letters are *not* kept
    (``"ünìcødë"`` -> ``"n-c-d"``), exactly as in Rust's ``is_ascii_alphanumeric``.
    """
    out: list[str] = []
    prev_dash = False
    for ch in name:
        c = ch.lower() if ch in _ASCII_ALNUM or ch == "_" else "-"
        if c == "-":
            # A dash is never emitted first, so leading separators vanish.
            if not prev_dash and out:
                out.append("-")
            prev_dash = True
        else:
            out.append(c)
            prev_dash = False
    trimmed = "".join(out).strip("-")
    if not trimmed:
        return _EMPTY_NAME
    if len(trimmed) > _SANITIZE_MAX:
        return trimmed[:_SANITIZE_MAX].rstrip("-")
    return trimmed


def by_key_dir_name(key: str) -> str:
    """First 8 bytes of SHA-256(key), lowercase hex: the ``by-key/`` dir name.

    For a named session the key is ``sanitize_name(name)``; for an agent
    session it is the raw session key (e.g. a Claude Code session id).  The
    string is hashed as UTF-8; ``surrogateescape`` is allowed so a key that
    came from ``os.environ`` hashes to the bytes the OS actually holds.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def is_by_key_name(name: str) -> bool:
    """True for exactly 16 lowercase hex characters (wire's by-key shape)."""
    return _BY_KEY_RE.fullmatch(name) is not None


def card_path(home: Path) -> Path:
    return home / "config" / "wire" / "agent-card.json"


def private_key_path(home: Path) -> Path:
    return home / "config" / "wire" / "private.key"


def state_dir(home: Path) -> Path:
    return home / "state" / "wire"


def daemon_pid_path(home: Path) -> Path:
    return state_dir(home) / "daemon.pid"


# ---------------------------------------------------------------------------
# Sessions root
# ---------------------------------------------------------------------------


def resolve_sessions_root(env: Mapping[str, str], platform: str, home: Path) -> Path:
    """Where wire keeps its sessions, given an environment (wire ``sessions_root``).

    With ``WIRE_HOME`` set: ``$WIRE_HOME/sessions`` if it exists; else the
    nearest of ``$WIRE_HOME`` and its ancestors whose name is ``sessions``
    (a session's own home resolves back to the root); else
    ``$WIRE_HOME/sessions`` anyway.  Without it, the platform default:
    ``$XDG_STATE_HOME`` (only if absolute) or ``~/.local/state`` + ``wire/sessions``
    on Linux and other Unixes, ``~/Library/Application Support/wire/sessions``
    on macOS (``dirs`` has no state dir there), ``%LOCALAPPDATA%\\wire\\sessions``
    on Windows.

    ``platform`` is a ``sys.platform`` value.  The only filesystem access is
    the ``exists()`` probe wire itself does.

    Divergence, on purpose: an *empty* ``WIRE_HOME`` is treated as unset.
    wire would resolve it to the cwd-relative ``./sessions``, which no one
    means.  A relative ``WIRE_HOME`` is returned relative, as wire does;
    callers that change directory should make it absolute first.
    """
    wire_home = env.get("WIRE_HOME", "")
    if wire_home:
        base = Path(wire_home)
        direct = base / "sessions"
        if direct.exists():
            return direct
        for candidate in (base, *base.parents):
            if candidate.name == "sessions":
                return candidate
        return direct
    if platform == "darwin":
        return home / "Library" / "Application Support" / "wire" / "sessions"
    if platform in ("win32", "cygwin"):
        local = env.get("LOCALAPPDATA", "")
        base = Path(local) if local else home / "AppData" / "Local"
        return base / "wire" / "sessions"
    xdg = env.get("XDG_STATE_HOME", "")
    state = Path(xdg) if xdg and PurePath(xdg).is_absolute() else home / ".local" / "state"
    return state / "wire" / "sessions"


# ---------------------------------------------------------------------------
# Small, defensive file reads
# ---------------------------------------------------------------------------


def _read_small(path: Path, limit: int) -> bytes:
    """Read a regular file of at most ``limit`` bytes, or raise ``OSError``.

    Opened non-blocking and checked with ``fstat`` so that a FIFO or a device
    planted where a JSON file belongs cannot hang the scan.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _reject_constant(name: str) -> object:
    # serde_json has no NaN/Infinity; neither do we.
    raise ValueError(f"invalid JSON constant {name}")


def _loads(data: bytes | str) -> object:
    """``serde_json``-like decode: strict UTF-8, no NaN, errors as ValueError."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:  # absurd nesting is just another bad file
        raise ValueError("JSON nested too deeply") from exc


# Rust's char::is_whitespace (the Unicode White_Space property); str.strip()
# would also eat U+001C..U+001F, which Rust keeps.
_RUST_WS: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_UINT_RE: Final = re.compile(r"\+?[0-9]+", re.ASCII)


def _parse_rust_uint(text: str, maximum: int) -> int | None:
    """``text.trim().parse::<uN>()``: optional ``+``, ASCII digits, in range."""
    s = text.strip(_RUST_WS)
    if _UINT_RE.fullmatch(s) is None:
        return None
    # Out of range either way, and int() refuses more than 4300 digits with
    # a ValueError no caller expects (Python's CVE-2020-10735 guard).
    digits = s.lstrip("+").lstrip("0") or "0"
    if len(digits) > len(str(maximum)):
        return None
    value = int(digits)
    return value if value <= maximum else None


# ---------------------------------------------------------------------------
# Agent card and homes
# ---------------------------------------------------------------------------


@frozen(eq=True)
class Card(Value):
    """The two facts a supervisor needs from ``agent-card.json``."""

    did: str
    #: Card ``handle``, else derived from the DID; in practice the persona.
    handle: str


def display_handle_from_did(did: str) -> str:
    """Strip ``did:wire:`` and a trailing ``-<exactly 8 hex>`` (wire's rule).

    Hex is matched case-insensitively, as Rust's ``is_ascii_hexdigit`` does;
    anything else passes through, so a legacy ``did:wire:paul`` gives ``paul``.
    """
    stripped = did.removeprefix("did:wire:")
    head, sep, suffix = stripped.rpartition("-")
    if sep and len(suffix) == 8 and all(c in "0123456789abcdefABCDEF" for c in suffix):
        return head
    return stripped


def read_card(home: Path) -> Card | None:
    """``<home>/config/wire/agent-card.json`` -> :class:`Card`, or None.

    None when the file is missing, unreadable, not a regular file, larger
    than 1 MiB, not UTF-8 JSON, not an object, or has no string ``did``: in
    every such case wire's ``read_card_identity`` yields ``did = None``, which
    makes the home a husk.  A non-string ``handle`` falls back to the DID, as
    in wire; an empty-string handle is kept, as in wire.
    """
    try:
        value = _loads(_read_small(card_path(home), _CARD_LIMIT))
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    did = value.get("did")
    if not isinstance(did, str):
        return None
    handle = value.get("handle")
    return Card(did=did, handle=handle if isinstance(handle, str) else display_handle_from_did(did))


@frozen(eq=True)
class WireHome(Value):
    """One initialized session home (it has a DID)."""

    path: Path
    #: ``path`` relative to the sessions root, POSIX form: ``by-key/<hash>`` or
    #: a legacy ``<name>``.  Unique per home, unlike the handle; use it as the
    #: session id.
    key: str
    #: A pre-0.16 top-level ``<root>/<name>/`` home.  Children for these need
    #: ``WIRE_HOME_FORCE=1``, because only a by-key-shaped ``WIRE_HOME`` beats
    #: an ambient session-key variable (wire's ``maybe_adopt_session_wire_home``).
    legacy: bool
    did: str
    handle: str
    #: ``config/wire/private.key`` exists: wire's "real identity" rule (#345),
    #: and ``wire daemon`` refuses to run without it.
    has_private_key: bool


def _valid_utf8(name: str) -> bool:
    # os.scandir hands back undecodable bytes as lone surrogates; wire skips
    # such names (``to_str()`` is None), and so do we: they cannot round-trip
    # through JSON, logs or a child's environment.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, like Rust's Path::is_dir
    except OSError:
        return False


def _examine(path: Path, key: str, legacy: bool) -> WireHome | None:
    card = read_card(path)
    if card is None:
        return None
    try:
        has_key = private_key_path(path).exists()
    except OSError:
        has_key = False
    return WireHome(
        path=path,
        key=key,
        legacy=legacy,
        did=card.did,
        handle=card.handle,
        has_private_key=has_key,
    )


def scan_homes(root: Path) -> tuple[list[WireHome], list[Path]]:
    """List the session homes under a sessions root: ``(sessions, husks)``.

    Considered: every ``by-key/<16 lowercase hex>/`` directory, and every
    legacy top-level ``<name>/`` directory (not ``by-key``, not hidden) that
    holds ``config/wire/agent-card.json``.  One with a readable DID is a
    session; one without is a husk (returned, never touched).  Other entries
    (files, locks, ``registry.json``, odd by-key names, names that are not
    UTF-8) are skipped.  Both lists are sorted.

    Raises ``OSError`` only when ``root`` itself, or an existing ``by-key``
    directory, cannot be listed.  Callers should treat that as "no change",
    not as "every session is gone".
    """
    sessions: list[WireHome] = []
    husks: list[Path] = []
    with os.scandir(root) as top:
        top_entries = list(top)
    for entry in top_entries:
        name = entry.name
        if not _valid_utf8(name) or name.startswith("."):
            continue
        if name == BY_KEY_DIR:
            if _is_dir(entry):
                _scan_by_key(Path(entry.path), sessions, husks)
            continue
        if not _is_dir(entry):
            continue
        path = Path(entry.path)
        try:
            has_card = os.path.lexists(card_path(path))
        except OSError:
            has_card = False
        if not has_card:
            continue  # an unrelated directory, not a home
        home = _examine(path, name, legacy=True)
        if home is None:
            husks.append(path)
        else:
            sessions.append(home)
    sessions.sort(key=lambda h: h.key)
    husks.sort()
    return sessions, husks


def examine_key(root: Path, key: str) -> WireHome | Path | None:
    """What :func:`scan_homes` would make of the home at ``key`` (a by-key
    ``by-key/<hash>`` or a legacy ``<name>``): the session, the husk's path,
    or None (not a home).  Raises ``OSError`` where the scan would: when
    the directory that would list it cannot be searched."""
    head, sep, tail = key.partition("/")
    if sep:
        if head != BY_KEY_DIR or "/" in tail or not is_by_key_name(tail):
            return None
        path = root / BY_KEY_DIR / tail
    elif not key or key == BY_KEY_DIR or key.startswith(".") or not _valid_utf8(key):
        return None
    else:
        path = root / key
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise
    if not sep:
        try:
            if not os.path.lexists(card_path(path)):
                return None  # an unrelated directory, not a home
        except OSError:
            return None
    return _examine(path, key, legacy=not sep) or path


def _scan_by_key(by_key: Path, sessions: list[WireHome], husks: list[Path]) -> None:
    with os.scandir(by_key) as it:
        entries = list(it)
    for entry in entries:
        name = entry.name
        if not is_by_key_name(name) or not _is_dir(entry):
            continue
        path = Path(entry.path)
        home = _examine(path, f"{BY_KEY_DIR}/{name}", legacy=False)
        if home is None:
            husks.append(path)
        else:
            sessions.append(home)


# ---------------------------------------------------------------------------
# Registry and binding
# ---------------------------------------------------------------------------


class RegistryError(ValueError):
    """``registry.json`` exists but cannot be used (unreadable or malformed).

    wire itself treats this as an empty registry, and its next
    ``update_registry`` then rewrites the file from empty.  Raising lets the
    caller choose: fall back to ``{}`` (wire's behaviour) or keep the
    registry it read last time.
    """


def read_registry(root: Path) -> dict[str, str]:
    """``<root>/registry.json`` ``by_cwd``: cwd -> session name.

    A missing file is ``{}``.  Anything else that serde would refuse raises
    :class:`RegistryError`: unreadable, not UTF-8 JSON, not an object,
    ``by_cwd`` present but not an object of strings (one bad value spoils the
    whole file, as with serde's ``HashMap<String, String>``).  Unknown
    top-level fields are ignored and an absent ``by_cwd`` is ``{}``.
    """
    path = root / "registry.json"
    try:
        data = _read_small(path, _REGISTRY_LIMIT)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        value = _loads(data)
    except ValueError as exc:
        raise RegistryError(f"{path}: not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise RegistryError(f"{path}: top level is not an object")
    by_cwd = value.get("by_cwd", {})
    if not isinstance(by_cwd, dict):
        raise RegistryError(f"{path}: by_cwd is not an object")
    out: dict[str, str] = {}
    for cwd, name in by_cwd.items():
        if not isinstance(name, str):
            raise RegistryError(f"{path}: by_cwd[{cwd!r}] is not a string")
        out[cwd] = name
    return out


def bound_cwds(homes: Iterable[WireHome], registry: Mapping[str, str]) -> dict[str, str]:
    """Which homes the registry binds to a cwd: ``{home.key: cwd}``.

    A home is bound by registry value ``v`` when its directory name is
    ``by_key_dir_name(sanitize_name(v))`` (by-key homes: where ``wire session
    new v`` puts it), or ``sanitize_name(v)`` (legacy homes: where pre-0.16
    ``session_dir`` put it), or ``v`` itself (what wire 0.16's own lookup
    compares; kept so that we are a superset of wire).

    wire 0.16 only does the last comparison, with the *hash* directory name,
    so it leaves every by-key session unbound (``list_sessions`` in
    ``src/session.rs``).  When several cwds bind
    one home, the smallest cwd wins, so the answer does not depend on dict
    order (wire's pick is arbitrary).
    """
    wanted = binding_index(registry)
    return {home.key: wanted[home.path.name] for home in homes if home.path.name in wanted}


def binding_index(registry: Mapping[str, str]) -> dict[str, str]:
    """The directory names the registry binds, each to its cwd (see
    :func:`bound_cwds`): a home is bound when its directory name is a key."""
    wanted: dict[str, str] = {}
    for cwd, value in sorted(registry.items(), reverse=True):
        sanitized = sanitize_name(value)
        for dir_name in {by_key_dir_name(sanitized), sanitized, value}:
            wanted[dir_name] = cwd  # reverse-sorted, so the smallest cwd ends up here
    return wanted


# ---------------------------------------------------------------------------
# Activity and eligibility
# ---------------------------------------------------------------------------


def last_active(home: Path) -> float | None:
    """Newest mtime (epoch seconds) of the daemon's activity files, or None.

    ``state/wire/last_sync.json``, ``notify.cursor`` and the legacy
    ``reactor.cursor``.  Never ``daemon.pid``: spawning writes it, and it
    must not keep a session alive by itself.  A future mtime (clock skew) is
    returned as is; :func:`seed_eligible` counts it as active, as wire does.
    None means "never synced".
    """
    state = state_dir(home)
    newest: float | None = None
    for name in _ACTIVITY_FILES:
        try:
            mtime = os.stat(state / name).st_mtime
        except (OSError, ValueError):
            continue
        if newest is None or mtime > newest:
            newest = mtime
    return newest


def _parse_cutoff(raw: str | None, default: int, unit_seconds: int) -> float | None:
    if raw is None:
        return float(default * unit_seconds)
    value = _parse_rust_uint(raw, _U64_MAX)
    if value is None:
        value = default
    return None if value == 0 else float(value * unit_seconds)


def parse_max_idle_days(raw: str | None) -> float | None:
    """``WIRE_ALL_SESSIONS_MAX_IDLE_DAYS`` -> idle cutoff in **seconds**.

    Unset: 7 days.  ``"0"``: None, meaning no idle filter (every session is
    eligible).  A whole number of days (surrounding whitespace and a leading
    ``+`` allowed, as Rust's parse allows) is used as is; anything else
    (``"3.5"``, ``"-1"``, ``"seven"``, ``""``) falls back to 7 days.

    Seconds, not days, because every caller compares it with ``now - mtime``.
    """
    return _parse_cutoff(raw, DEFAULT_MAX_IDLE_DAYS, SECONDS_PER_DAY)


def parse_husk_reap_max_age_hours(raw: str | None) -> float | None:
    """``WIRE_HUSK_REAP_MAX_AGE_HOURS`` -> age in **seconds**; same rules, default 48 h.

    Only for reporting: nothing in this plugin deletes husks.
    """
    return _parse_cutoff(raw, DEFAULT_HUSK_REAP_MAX_AGE_HOURS, 3600)


def seed_eligible(
    *,
    bound: bool,
    has_private_key: bool,
    last_active: float | None,
    max_idle: float | None,
    now: float,
) -> bool:
    """wire 0.16's ``supervisor_eligible`` for one (DID-bearing) session.

    Kept if the filter is off (``max_idle is None``), or the session is
    registry-bound, or it has a private key (#345, which fixed #340's
    never-synced-so-never-eligible catch-22), or it was active within
    ``max_idle`` seconds (a future mtime counts as active).  The engine may
    compose its own policy; this is the reference to test it against.
    """
    if max_idle is None or bound or has_private_key:
        return True
    if last_active is None:
        return False
    return now - last_active <= max_idle


# ---------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------

_RFC3339_RE: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(text: str) -> datetime | None:
    """Parse an RFC 3339 timestamp into an aware UTC datetime, or None.

    wire writes ``Z`` with 0 to 9 fractional digits (trailing zeros trimmed).
    Python keeps microseconds, so digits past the sixth are truncated, not
    rounded: rounding could move ``started_at`` past the real start.  Numeric
    offsets are accepted and converted.  Leap seconds (``:60``) give None.
    """
    m = _RFC3339_RE.fullmatch(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, zulu, sign, oh, om = m.groups()
    micros = int((frac or "")[:6].ljust(6, "0"))
    # An offset of 24 h or more, or one that pushes year 1 / 9999 out of
    # range, is as unparsable as a bad month (ValueError / OverflowError).
    try:
        if zulu:
            tz = UTC
        else:
            offset = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(-offset if sign == "-" else offset)
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def read_last_sync(home: Path) -> datetime | None:
    """``state/wire/last_sync.json`` ``ts``, or None if absent or unparsable.

    The daemon rewrites it every cycle; a live pid whose ``ts`` stops moving
    is a hung daemon (wire calls > 60 s "stale").
    """
    try:
        value = _loads(_read_small(state_dir(home) / "last_sync.json", _PIDFILE_LIMIT))
    except (OSError, ValueError):
        return None
    ts = value.get("ts") if isinstance(value, dict) else None
    return parse_rfc3339(ts) if isinstance(ts, str) else None


# ---------------------------------------------------------------------------
# daemon.pid and supervisor.pid
# ---------------------------------------------------------------------------

PidfileForm = Literal["json", "partial", "bare"]


class PidfileError(ValueError):
    """A ``daemon.pid`` body that no wire reader would accept."""


@frozen(eq=True)
class DaemonPidRecord(Value):
    """What a ``daemon.pid`` says.  Always check liveness: it outlives its daemon."""

    pid: int
    #: ``json``: a full ``DaemonPid`` (what wire's strict singleton reader
    #: accepts).  ``partial``: a JSON object with a usable ``pid`` but not
    #: all required fields.  ``bare``: a legacy integer body (pre-0.5.11).
    form: PidfileForm
    version: str | None = None
    #: Parsed ``started_at``; None if absent or unparsable (a ``json``
    #: record only needs it to be a string).
    started_at: datetime | None = None
    bin_path: str | None = None
    did: str | None = None
    relay_url: str | None = None


_REQUIRED_STR_FIELDS: Final = ("schema", "bin_path", "version", "started_at")


def _usable_pid(value: object) -> int | None:
    # bool is an int subclass; JSON true is not a pid.
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _U32_MAX:
        return value
    return None


def _opt_str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def parse_daemon_pid(text: str) -> DaemonPidRecord:
    """Parse a ``daemon.pid`` body; raise :class:`PidfileError` saying why not.

    Accepted: the full JSON record, any JSON object with a ``pid``, and a
    bare integer (surrounding whitespace allowed).  The pid must be an
    integer in 1..2**32-1.  Refused where wire is laxer: a pid of 0 (wire
    would probe ``/proc/0`` and call it dead; handed to ``os.kill`` it would
    signal our process group) and a pid above u32 (wire's supervisor check
    silently truncates it to 32 bits).
    """
    body = text.strip(_RUST_WS)
    if not body:
        raise PidfileError("empty pidfile")
    try:
        value: object = _loads(body)
    except ValueError:
        value = None
    if isinstance(value, dict):
        pid = _usable_pid(value.get("pid"))
        if pid is None:
            raise PidfileError(f"JSON pidfile without a usable pid: {value.get('pid')!r}")
        full = all(isinstance(value.get(k), str) for k in _REQUIRED_STR_FIELDS) and all(
            value.get(k) is None or isinstance(value.get(k), str) for k in ("did", "relay_url")
        )
        started = _opt_str(value, "started_at")
        return DaemonPidRecord(
            pid=pid,
            form="json" if full else "partial",
            version=_opt_str(value, "version"),
            started_at=parse_rfc3339(started) if started is not None else None,
            bin_path=_opt_str(value, "bin_path"),
            did=_opt_str(value, "did"),
            relay_url=_opt_str(value, "relay_url"),
        )
    # wire's supervisor falls back to `body.trim().parse::<u64>()` for
    # anything that is not a JSON object with a pid.
    bare = _parse_rust_uint(body, _U64_MAX)
    if bare is None:
        raise PidfileError(f"neither a JSON pid record nor an integer: {body[:60]!r}")
    pid = _usable_pid(bare)
    if pid is None:
        raise PidfileError(f"pid out of range: {bare}")
    return DaemonPidRecord(pid=pid, form="bare")


def read_daemon_pid(path: Path) -> DaemonPidRecord | None:
    """Read and parse a pidfile (usually :func:`daemon_pid_path`); None if unusable.

    Missing, unreadable, not a regular file, not UTF-8 and corrupt all give
    None.  Use :func:`parse_daemon_pid` on the text to learn why.
    """
    try:
        text = _read_small(path, _PIDFILE_LIMIT).decode("utf-8")
        return parse_daemon_pid(text)
    except (OSError, ValueError):  # UnicodeDecodeError and PidfileError included
        return None


def daemon_pid_problem(path: Path) -> str | None:
    """Why :func:`read_daemon_pid` gives None for ``path``, in words; None
    when the file is missing or usable."""
    try:
        parse_daemon_pid(_read_small(path, _PIDFILE_LIMIT).decode("utf-8"))
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return "not UTF-8"
    except OSError as exc:
        return str(exc.strerror or exc)
    except ValueError as exc:
        return str(exc)
    return None


def read_supervisor_pid(root: Path) -> int | None:
    """``<root>/supervisor.pid``: wire's supervisor writes a bare decimal pid.

    None when missing, unreadable or not a pid in 1..2**32-1.  Whitespace is
    trimmed as wire's reader trims it.  Liveness is the caller's to check.
    """
    try:
        text = _read_small(root / "supervisor.pid", 4096).decode("utf-8")
    except (OSError, ValueError):
        return None
    return _usable_pid(_parse_rust_uint(text, _U32_MAX))


def version_is_older(running: str, installed: str) -> bool:
    """wire's ``version_lt``: is ``running`` strictly older than ``installed``?

    Both are split on ``.`` and every part must parse as a u32 (ASCII digits,
    optional ``+``); the shorter one is padded with zeros, so ``0.14`` <
    ``0.14.1`` and ``0.9.0`` < ``0.10.0``.  If either side does not parse
    (``0.14.2-rc.1``, ``garbage``, ``""``) the answer is False: a daemon is
    never flagged stale because of a version we cannot order (#198).
    """

    def parts(version: str) -> list[int] | None:
        out: list[int] = []
        for part in version.split("."):
            # No trimming: Rust parses each segment as is.
            value = _parse_rust_uint(part, _U32_MAX) if part == part.strip(_RUST_WS) else None
            if value is None:
                return None
            out.append(value)
        return out

    a, b = parts(running), parts(installed)
    if a is None or b is None:
        return False
    width = max(len(a), len(b))
    return a + [0] * (width - len(a)) < b + [0] * (width - len(b))


# ---------------------------------------------------------------------------
# Process command lines
# ---------------------------------------------------------------------------


def _basename(arg: str) -> str:
    return arg.rsplit("/", 1)[-1]


def _daemon_index(argv: Sequence[str]) -> int | None:
    for i in range(len(argv) - 1):
        if _basename(argv[i]) == "wire" and argv[i + 1] == "daemon":
            return i + 1
    return None


def is_wire_daemon_cmdline(argv: Sequence[str]) -> bool:
    """True if ``argv`` runs ``wire daemon``: an element named ``wire`` then ``daemon``.

    Matches ``/usr/bin/wire daemon --interval 5``, the test fake's
    ``python3 /tmp/bin/wire daemon --interval 5`` and the supervisor's
    ``wire daemon --all-sessions``.  ``daemon`` must be the very next
    argument, which is what wire's own ``pgrep -f "wire daemon"`` implies and
    keeps ``wire send peer daemon`` from matching.  Unlike the substring
    match, ``/opt/rewire daemon`` and ``wire-daemon`` do not match.
    """
    return _daemon_index(argv) is not None


def is_wire_supervisor_cmdline(argv: Sequence[str]) -> bool:
    """True for ``wire daemon ... --all-sessions`` (wire's own supervisor)."""
    idx = _daemon_index(argv)
    return idx is not None and "--all-sessions" in argv[idx + 1 :]
