"""Build wire session trees on disk for tests and demos (no real crypto).

:func:`make_home` creates one home in the shape wire leaves behind (the
``config/wire/agent-card.json`` wire's ``src/agent_card.rs`` writes, a
``private.key`` for a real identity, the ``state/wire/`` activity files a
daemon touches, a ``registry.json`` binding); :func:`make_box` creates a whole
"147 homes for 5 real sessions" box, the population behind wire #212, so a
supervisor can be shown to start exactly the real ones.

Homes are placed where ``wire session new <key>`` would put them:
``<root>/by-key/<by_key_dir_name(sanitize_name(key))>``, or ``<root>/<name>``
for the pre-0.16 legacy layout.  Point the code under test at ``root``
directly, or via ``WIRE_HOME=<root>`` when ``root`` is named ``sessions``
(which :func:`~wirepool_wire.layout.resolve_sessions_root` resolves to itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from wirepool_wire.layout import (
    by_key_dir_name,
    card_path,
    private_key_path,
    sanitize_name,
    state_dir,
)

__all__ = ["Box", "make_box", "make_home", "write_registry_entry"]


def _fixture_did(handle: str, key: str) -> str:
    # Real DIDs end in sha256(pubkey)[:4] as hex; a hash of the key gives the
    # same shape and keeps fixtures reproducible.
    return f"did:wire:{handle}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def write_registry_entry(root: Path, cwd: str, name: str) -> None:
    """Add ``cwd -> name`` to ``<root>/registry.json``, keeping other entries.

    Read-modify-write with tmp + rename, as wire's ``update_registry`` does
    (without its flock: fixtures are built by one process).
    """
    path = root / "registry.json"
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        current = {}
    if not isinstance(current, dict):
        raise ValueError(f"{path}: not a JSON object; refusing to overwrite it")
    by_cwd = current.setdefault("by_cwd", {})
    by_cwd[cwd] = name
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def make_home(
    root: Path,
    key: str,
    *,
    handle: str | None = None,
    identity: bool = True,
    legacy: bool = False,
    did: bool | str = True,
    card: bool = True,
    bound_cwd: str | None = None,
    last_active: float | None = None,
    dir_mtime: float | None = None,
) -> Path:
    """Create one session home under sessions root ``root``; return its path.

    Args:
        key: the session name; the directory is
            ``by-key/<by_key_dir_name(sanitize_name(key))>`` (or
            ``<sanitize_name(key)>`` when ``legacy``).
        handle: the card's ``handle``; defaults to ``sanitize_name(key)``.
        identity: write 32 random bytes to ``config/wire/private.key`` (0600).
        legacy: use the pre-0.16 top-level layout.
        did: put a ``did:wire:<handle>-<8 hex>`` in the card; a string is
            used as the DID verbatim; False leaves it out (a husk).
        card: write ``agent-card.json`` at all (False: a bare husk dir, what
            session adoption mints for a tab that never initialized).
        bound_cwd: add ``bound_cwd -> sanitize_name(key)`` to ``registry.json``.
        last_active: epoch seconds; create ``state/wire/last_sync.json`` and
            ``notify.cursor`` with this mtime.  None: never synced.
        dir_mtime: epoch seconds for the home directory's own mtime (husk
            age).  Applied last, since creating entries bumps it.
    """
    name = sanitize_name(key)
    home = root / name if legacy else root / "by-key" / by_key_dir_name(name)
    config = card_path(home).parent
    config.mkdir(parents=True, exist_ok=True)
    if card:
        the_handle = name if handle is None else handle
        body: dict[str, str] = {}
        if did is True:
            body["did"] = _fixture_did(the_handle, key)
        elif isinstance(did, str):
            body["did"] = did
        body["handle"] = the_handle
        card_path(home).write_text(json.dumps(body, indent=2), encoding="utf-8")
    if identity:
        keyfile = private_key_path(home)
        keyfile.write_bytes(os.urandom(32))
        keyfile.chmod(0o600)
    if last_active is not None:
        state = state_dir(home)
        state.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_active))
        last_sync = {
            "schema": "wire-daemon-last-sync-v1",
            "ts": stamp,
            "push_n": 0,
            "pull_n": 0,
            "rejected_n": 0,
        }
        (state / "last_sync.json").write_text(json.dumps(last_sync, indent=2), encoding="utf-8")
        (state / "notify.cursor").write_text("{}", encoding="utf-8")
        for activity in ("last_sync.json", "notify.cursor"):
            os.utime(state / activity, (last_active, last_active))
    if bound_cwd is not None:
        write_registry_entry(root, bound_cwd, name)
    if dir_mtime is not None:
        os.utime(home, (dir_mtime, dir_mtime))
    return home


@dataclass(frozen=True, slots=True)
class Box:
    """What :func:`make_box` built, by the role each home should play."""

    root: Path
    #: Initialized (DID + private.key) and recently active; the first is
    #: also registry-bound.  The only homes that should get a daemon.
    real: tuple[Path, ...]
    #: DID but no private.key, last active long ago: listed by wire, not
    #: eligible under the default 7-day idle cutoff.
    idle: tuple[Path, ...]
    #: No DID (no card, or a card without one), old directory mtime.
    husks: tuple[Path, ...]


def make_box(
    root: Path,
    n_homes: int = 150,
    n_real: int = 5,
    *,
    now: float | None = None,
    idle_days: float = 30.0,
) -> Box:
    """Populate ``root`` with ``n_homes`` homes of which ``n_real`` are real sessions.

    The rest are split between idle persona homes and husks (half each,
    husks alternating between "no card" and "card without DID"), all dated
    ``idle_days`` back, the shape of the box in wire #212.
    """
    if not 0 <= n_real <= n_homes:
        raise ValueError(f"need 0 <= n_real <= n_homes, got {n_real} and {n_homes}")
    t = time.time() if now is None else now
    old = t - idle_days * 86_400
    real = tuple(
        make_home(
            root,
            f"real-{i}",
            last_active=t - 60,
            bound_cwd=f"/home/dev/src/project-{i}" if i == 0 else None,
        )
        for i in range(n_real)
    )
    others = n_homes - n_real
    n_husks = others // 2
    husks = tuple(
        make_home(root, f"husk-{i:03d}", identity=False, did=False, card=i % 2 == 1, dir_mtime=old)
        for i in range(n_husks)
    )
    idle = tuple(
        make_home(root, f"tab-{i:03d}", identity=False, last_active=old, dir_mtime=old)
        for i in range(others - n_husks)
    )
    return Box(root=root, real=real, idle=idle, husks=husks)
