"""Tests for wirepool_wire.layout: wire's on-disk rules, reproduced and hardened."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from wirepool_wire import layout
from wirepool_wire.fixtures import make_box, make_home, write_registry_entry
from wirepool_wire.layout import (
    DaemonPidRecord,
    PidfileError,
    RegistryError,
    WireHome,
    bound_cwds,
    by_key_dir_name,
    display_handle_from_did,
    is_wire_daemon_cmdline,
    is_wire_supervisor_cmdline,
    last_active,
    parse_daemon_pid,
    parse_husk_reap_max_age_hours,
    parse_max_idle_days,
    parse_rfc3339,
    read_card,
    read_daemon_pid,
    read_last_sync,
    read_registry,
    read_supervisor_pid,
    resolve_sessions_root,
    sanitize_name,
    scan_homes,
    seed_eligible,
    version_is_older,
)

DAY = 86_400.0


# --- names ------------------------------------------------------------------


def test_by_key_vectors_from_the_spec() -> None:
    assert by_key_dir_name("named-pane") == "f913aa9128b65b75"
    assert by_key_dir_name("sess-aaa") == "60d09667e1b4b368"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # wire's own unit-test vectors (src/session.rs)
        ("paul-mac", "paul-mac"),
        ("Paul Mac!", "paul-mac"),
        ("ünìcødë", "n-c-d"),
        ("", "wire-session"),
        ("---", "wire-session"),
        # edges
        ("a" * 100, "a" * 32),
        ("a" * 31 + "-b", "a" * 31),  # cut at 32 lands on a dash: re-trimmed
        ("b" * 33, "b" * 32),
        ("__x__", "__x__"),  # underscores are kept and never trimmed
        ("-a-", "a"),
        ("x" + "-" * 40 + "y", "x-y"),  # runs of dashes collapse
        ("My  Project..v2", "my-project-v2"),
        ("UPPER_case-Name", "upper_case-name"),
        ("tab\tnew\nline", "tab-new-line"),
        ("😀emoji😀", "emoji"),
        ("日本語", "wire-session"),
        ("\uff21\uff22\uff23", "wire-session"),  # fullwidth letters are not ASCII
        ("e\u0301te", "e-te"),  # a combining accent is a separator
        ("/Users/alice/Source/slancha-api", "users-alice-source-slancha-api"),
    ],
)
def test_sanitize_name(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


def test_sanitize_name_is_idempotent_and_in_alphabet() -> None:
    rng = random.Random(1234)
    alphabet = "aZ09-_ .!/é😀\t"
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 50)))
        once = sanitize_name(raw)
        assert sanitize_name(once) == once
        assert 1 <= len(once) <= 32
        assert set(once) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_")
        assert not once.startswith("-")
        assert not once.endswith("-")
        assert "--" not in once


@pytest.mark.parametrize(
    ("did", "handle"),
    [
        ("did:wire:coral-weasel-0616dc6c", "coral-weasel"),
        ("did:wire:paul", "paul"),  # legacy, no suffix
        ("did:wire:paul-ABCDEF12", "paul"),  # hex is case-insensitive, as in Rust
        ("did:wire:a-1234567", "a-1234567"),  # 7 hex: not a suffix
        ("did:wire:a-123456789", "a-123456789"),  # 9 hex: not a suffix
        ("did:wire:x-1234567g", "x-1234567g"),
        ("did:wire:-deadbeef", ""),
        ("plain-deadbeef", "plain"),  # no prefix: only the suffix goes
    ],
)
def test_display_handle_from_did(did: str, handle: str) -> None:
    assert display_handle_from_did(did) == handle


# --- sessions root -------------------------------------------------------------


def test_sessions_root_wire_home_with_sessions_subdir(tmp_path: Path) -> None:
    (tmp_path / "sessions").mkdir()
    env = {"WIRE_HOME": str(tmp_path)}
    assert resolve_sessions_root(env, "linux", Path("/home/u")) == tmp_path / "sessions"


def test_sessions_root_inside_a_by_key_home_walks_up(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    home = make_home(root, "named-pane")
    env = {"WIRE_HOME": str(home)}
    assert resolve_sessions_root(env, "linux", Path("/home/u")) == root


def test_sessions_root_inside_a_legacy_home_walks_up(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    home = make_home(root, "old-project", legacy=True)
    assert resolve_sessions_root({"WIRE_HOME": str(home)}, "darwin", Path("/h")) == root


def test_sessions_root_wire_home_that_is_the_root_resolves_to_itself(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    root.mkdir()
    assert resolve_sessions_root({"WIRE_HOME": str(root)}, "linux", Path("/h")) == root


def test_sessions_root_nonexistent_sessions_dir_is_still_used(tmp_path: Path) -> None:
    env = {"WIRE_HOME": str(tmp_path / "plain")}
    assert resolve_sessions_root(env, "linux", Path("/h")) == tmp_path / "plain" / "sessions"


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({}, "linux", "/home/u/.local/state/wire/sessions"),
        ({"XDG_STATE_HOME": "/xdg/state"}, "linux", "/xdg/state/wire/sessions"),
        ({"XDG_STATE_HOME": "relative/state"}, "linux", "/home/u/.local/state/wire/sessions"),
        ({"XDG_STATE_HOME": ""}, "linux", "/home/u/.local/state/wire/sessions"),
        ({"XDG_STATE_HOME": "/xdg/state"}, "freebsd14", "/xdg/state/wire/sessions"),
        ({}, "darwin", "/home/u/Library/Application Support/wire/sessions"),
        (
            {"XDG_STATE_HOME": "/xdg/state"},
            "darwin",
            "/home/u/Library/Application Support/wire/sessions",
        ),
        ({"WIRE_HOME": ""}, "linux", "/home/u/.local/state/wire/sessions"),  # empty = unset
        (
            {"LOCALAPPDATA": "/c/Users/u/AppData/Local"},
            "win32",
            "/c/Users/u/AppData/Local/wire/sessions",
        ),
    ],
)
def test_sessions_root_defaults(env: dict[str, str], platform: str, expected: str) -> None:
    assert resolve_sessions_root(env, platform, Path("/home/u")) == Path(expected)


# --- card and scan --------------------------------------------------------------


def _write_card(home: Path, body: bytes | str) -> None:
    card = home / "config" / "wire" / "agent-card.json"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_bytes(body.encode() if isinstance(body, str) else body)


def test_read_card_full_and_derived_handle(tmp_path: Path) -> None:
    _write_card(tmp_path / "a", '{"did":"did:wire:coral-weasel-0616dc6c","handle":"coral"}')
    _write_card(tmp_path / "b", '{"did":"did:wire:coral-weasel-0616dc6c"}')
    _write_card(tmp_path / "c", '{"did":"did:wire:coral-weasel-0616dc6c","handle":null}')
    _write_card(tmp_path / "d", '{"did":"did:wire:x-0616dc6c","handle":""}')
    assert read_card(tmp_path / "a") == layout.Card("did:wire:coral-weasel-0616dc6c", "coral")
    assert read_card(tmp_path / "b") == layout.Card(
        "did:wire:coral-weasel-0616dc6c", "coral-weasel"
    )
    assert read_card(tmp_path / "c") == layout.Card(
        "did:wire:coral-weasel-0616dc6c", "coral-weasel"
    )
    assert read_card(tmp_path / "d") == layout.Card("did:wire:x-0616dc6c", "")  # as wire


@pytest.mark.parametrize(
    "body",
    [
        b'{"handle":"no-did"}',
        b'{"did": 42}',
        b'{"did": null}',
        b"[1, 2]",
        b'"did:wire:x"',
        b"{not json",
        b"",
        b'\xff\xfe{"did":"did:wire:x"}',
        b'{"did": NaN}',
        b"[" * 50_000,
    ],
)
def test_read_card_rejects_bad_cards(tmp_path: Path, body: bytes) -> None:
    _write_card(tmp_path, body)
    assert read_card(tmp_path) is None


def test_read_card_missing_dir_fifo_and_huge(tmp_path: Path) -> None:
    assert read_card(tmp_path / "nowhere") is None
    (tmp_path / "dir" / "config" / "wire" / "agent-card.json").mkdir(parents=True)
    assert read_card(tmp_path / "dir") is None
    fifo_home = tmp_path / "fifo"
    (fifo_home / "config" / "wire").mkdir(parents=True)
    os.mkfifo(fifo_home / "config" / "wire" / "agent-card.json")
    assert read_card(fifo_home) is None  # and, above all, returns instead of blocking
    huge = '{"did":"did:wire:x-0616dc6c","pad":"' + "x" * (2 << 20) + '"}'
    _write_card(tmp_path / "huge", huge)
    assert read_card(tmp_path / "huge") is None


def test_scan_homes_sessions_husks_and_legacy(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    real = make_home(root, "named-pane", handle="coral-weasel")
    keyless = make_home(root, "persona-tab", identity=False)
    husk_no_card = make_home(root, "adopted", identity=False, card=False)
    husk_no_did = make_home(root, "half-init", did=False)
    legacy = make_home(root, "old-project", legacy=True)
    legacy_husk = make_home(root, "old-husk", legacy=True, did=False)

    sessions, husks = scan_homes(root)

    assert [h.key for h in sessions] == sorted(
        ["by-key/f913aa9128b65b75", f"by-key/{keyless.name}", "old-project"]
    )
    by_path = {h.path: h for h in sessions}
    assert by_path[real] == WireHome(
        path=real,
        key="by-key/f913aa9128b65b75",
        legacy=False,
        did=by_path[real].did,
        handle="coral-weasel",
        has_private_key=True,
    )
    assert by_path[real].did.startswith("did:wire:coral-weasel-")
    assert by_path[keyless].has_private_key is False
    assert by_path[legacy].legacy is True
    assert by_path[legacy].key == "old-project"
    assert husks == sorted([husk_no_card, husk_no_did, legacy_husk])


def test_scan_homes_skips_odd_entries_without_raising(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    good = make_home(root, "good")
    by_key = root / "by-key"
    # Wrong by-key shapes (uppercase, short, named) are not homes, even with a card.
    for odd in ("ABCDEF0123456789", "abcdef012345678", "my-session", "abcdef0123456789x"):
        _write_card(by_key / odd, '{"did":"did:wire:x-0616dc6c"}')
    (by_key / "0123456789abcdef").write_text("a file where a home should be")
    (by_key / "fedcba9876543210").symlink_to(tmp_path / "dangling")
    (root / "registry.json").write_text("{}")
    (root / "supervisor.pid").write_text("1")
    (root / ".auto-init.lock").write_text("")
    _write_card(root / ".hidden", '{"did":"did:wire:h-0616dc6c"}')
    (root / "stray-dir").mkdir()  # no card: not a home, not a husk
    _write_card(root / "has space ✓\nnewline", '{"did":"did:wire:sp-0616dc6c"}')
    # A directory name that is not UTF-8 (Linux allows any bytes).
    bad = os.fsencode(root) + b"/bad-\xff-name"
    os.mkdir(bad)
    _write_card(Path(os.fsdecode(bad)), '{"did":"did:wire:bad-0616dc6c"}')

    sessions, husks = scan_homes(root)

    assert sorted(h.key for h in sessions) == sorted(
        [f"by-key/{good.name}", "has space ✓\nnewline"]
    )
    assert husks == []


def test_scan_homes_follows_a_symlinked_home(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    elsewhere = make_home(tmp_path / "other-root", "moved")
    (root / "by-key").mkdir(parents=True)
    (root / "by-key" / elsewhere.name).symlink_to(elsewhere)
    sessions, _ = scan_homes(root)
    assert [h.key for h in sessions] == [f"by-key/{elsewhere.name}"]


def test_scan_homes_by_key_as_a_file_leaves_legacy_homes(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    make_home(root, "legacy-one", legacy=True)
    (root / "by-key").write_text("not a directory")
    sessions, husks = scan_homes(root)
    assert [h.key for h in sessions] == ["legacy-one"]
    assert husks == []


def test_scan_homes_missing_or_file_root_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_homes(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        scan_homes(tmp_path / "file")


def _permissions_enforced(tmp_path: Path) -> bool:
    # Root (CAP_DAC_OVERRIDE) reads a mode-000 directory anyway; probe, don't guess.
    probe = tmp_path / "probe"
    probe.mkdir(exist_ok=True)
    probe.chmod(0)
    try:
        os.listdir(probe)
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
    return False


def test_scan_homes_unreadable_home_is_a_husk_and_unreadable_by_key_raises(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sessions"
    locked = make_home(root, "locked")
    locked.chmod(0)
    try:
        sessions, husks = _scan(root, tmp_path)
        assert sessions == []
        assert husks == [str(locked)]
        (root / "by-key").chmod(0)
        try:
            # not "zero sessions": the caller keeps its view
            assert _scan(root, tmp_path) == "PermissionError"
        finally:
            (root / "by-key").chmod(0o755)
    finally:
        locked.chmod(0o755)


_SCAN = """
import json, sys
from pathlib import Path
from wirepool_wire.layout import scan_homes
try:
    s, h = scan_homes(Path(sys.argv[1]))
    print(json.dumps([[str(x.path) for x in s], [str(x) for x in h]]))
except PermissionError:
    print(json.dumps("PermissionError"))
"""


def _scan(root: Path, tmp_path: Path) -> object:
    """scan_homes as a user to whom permissions apply.  As root (which reads
    a mode-000 directory anyway) the scan runs in a child without the
    DAC-override capabilities, so the test runs instead of skipping."""
    argv = [sys.executable, "-c", _SCAN, str(root)]
    if not _permissions_enforced(tmp_path):
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root without setpriv: cannot drop CAP_DAC_OVERRIDE")
        argv = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_make_box_is_the_212_population(tmp_path: Path) -> None:
    now = time.time()
    box = make_box(tmp_path / "sessions", 150, 5, now=now)
    sessions, husks = scan_homes(box.root)
    assert len(box.real) == 5
    assert len(box.real) + len(box.idle) + len(box.husks) == 150
    assert sorted(husks) == sorted(box.husks)
    assert {h.path for h in sessions} == set(box.real) | set(box.idle)
    bound = bound_cwds(sessions, read_registry(box.root))
    max_idle = parse_max_idle_days(None)
    eligible = [
        h.path
        for h in sessions
        if seed_eligible(
            bound=h.key in bound,
            has_private_key=h.has_private_key,
            last_active=last_active(h.path),
            max_idle=max_idle,
            now=now,
        )
    ]
    assert sorted(eligible) == sorted(box.real)
    # With the filter off ("0"), every DID-bearing home is eligible: the #212 fork storm.
    storm = [
        h
        for h in sessions
        if seed_eligible(
            bound=h.key in bound,
            has_private_key=h.has_private_key,
            last_active=last_active(h.path),
            max_idle=parse_max_idle_days("0"),
            now=now,
        )
    ]
    assert len(storm) == len(box.real) + len(box.idle) > 70


# --- registry and binding -------------------------------------------------------


def test_read_registry_shapes(tmp_path: Path) -> None:
    assert read_registry(tmp_path) == {}  # missing
    reg = tmp_path / "registry.json"
    reg.write_text('{"by_cwd": {"/a": "alpha", "/b": "beta"}, "future_field": 1}')
    assert read_registry(tmp_path) == {"/a": "alpha", "/b": "beta"}
    reg.write_text('{"something_else": true}')
    assert read_registry(tmp_path) == {}  # serde default


@pytest.mark.parametrize(
    "body",
    [
        b"{corrupt",
        b"",
        b"[]",
        b'{"by_cwd": []}',
        b'{"by_cwd": null}',
        b'{"by_cwd": {"/a": 5}}',
        b'{"by_cwd": {"/a": "ok", "/b": null}}',
        b'\xff{"by_cwd": {}}',
    ],
)
def test_read_registry_corrupt_raises_a_value_error(tmp_path: Path, body: bytes) -> None:
    (tmp_path / "registry.json").write_bytes(body)
    with pytest.raises(RegistryError) as info:
        read_registry(tmp_path)
    assert isinstance(info.value, ValueError)
    assert "registry.json" in str(info.value)


def test_read_registry_directory_in_place_of_file(tmp_path: Path) -> None:
    (tmp_path / "registry.json").mkdir()
    with pytest.raises(RegistryError):
        read_registry(tmp_path)


def _wire_head_bound(homes: list[WireHome], registry: dict[str, str]) -> dict[str, str]:
    """wire 0.16's list_sessions: name_to_cwd looked up with the hash dir name."""
    name_to_cwd = {name: cwd for cwd, name in registry.items()}
    return {h.key: name_to_cwd[h.path.name] for h in homes if h.path.name in name_to_cwd}


def test_bound_cwds_fixes_wires_hash_as_name_lookup(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    make_home(root, "slancha-api", bound_cwd="/Users/alice/Source/slancha-api")
    make_home(root, "slancha-api-3f9a", bound_cwd="/Users/alice/Archive/slancha-api")
    make_home(root, "unbound-tab")
    legacy = make_home(root, "old-project", legacy=True, bound_cwd="/src/old-project")
    sessions, _ = scan_homes(root)
    registry = read_registry(root)

    # What wire 0.16 does: only the legacy home (dir name == name) is bound.
    assert _wire_head_bound(sessions, registry) == {legacy.name: "/src/old-project"}

    ours = bound_cwds(sessions, registry)
    assert ours == {
        f"by-key/{by_key_dir_name('slancha-api')}": "/Users/alice/Source/slancha-api",
        f"by-key/{by_key_dir_name('slancha-api-3f9a')}": "/Users/alice/Archive/slancha-api",
        "old-project": "/src/old-project",
    }
    # Superset: everything wire binds, we bind the same way.
    assert _wire_head_bound(sessions, registry).items() <= ours.items()


def test_bound_cwds_sanitizes_values_and_picks_the_smallest_cwd(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    home = make_home(root, "my-project")
    write_registry_entry(root, "/z/checkout", "My Project")  # hand-edited, unsanitized
    write_registry_entry(root, "/a/checkout", "my-project")
    hashed = make_home(root, "other")
    write_registry_entry(root, "/h", hashed.name)  # a value that *is* the hash: wire binds it
    sessions, _ = scan_homes(root)
    assert bound_cwds(sessions, read_registry(root)) == {
        f"by-key/{home.name}": "/a/checkout",
        f"by-key/{hashed.name}": "/h",
    }
    assert bound_cwds(sessions, {}) == {}


# --- activity and eligibility -----------------------------------------------------


def test_last_active_is_the_newest_activity_file_never_daemon_pid(tmp_path: Path) -> None:
    state = tmp_path / "state" / "wire"
    state.mkdir(parents=True)
    assert last_active(tmp_path) is None
    pid = state / "daemon.pid"
    pid.write_text("{}")
    assert last_active(tmp_path) is None  # spawning must not make a session active
    for name, mtime in (("last_sync.json", 1000.0), ("notify.cursor", 3000.0)):
        (state / name).write_text("{}")
        os.utime(state / name, (mtime, mtime))
    assert last_active(tmp_path) == 3000.0
    (state / "reactor.cursor").write_text("")
    os.utime(state / "reactor.cursor", (5000.0, 5000.0))
    assert last_active(tmp_path) == 5000.0


def test_last_active_future_mtime_is_returned_and_counts_as_active(tmp_path: Path) -> None:
    now = time.time()
    home = make_home(tmp_path, "skewed", identity=False, last_active=now + 30 * DAY)
    seen = last_active(home)
    assert seen == pytest.approx(now + 30 * DAY)
    assert seed_eligible(
        bound=False, has_private_key=False, last_active=seen, max_idle=7 * DAY, now=now
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, 7 * DAY),
        ("0", None),
        ("00", None),
        ("3", 3 * DAY),
        (" 14 ", 14 * DAY),
        ("\t2\n", 2 * DAY),
        ("+2", 2 * DAY),  # Rust's u64 parse takes a leading +
        ("garbage", 7 * DAY),
        ("", 7 * DAY),
        ("-1", 7 * DAY),
        ("3.5", 7 * DAY),
        ("1_0", 7 * DAY),  # Python's int() would take these three; Rust does not
        ("٣", 7 * DAY),
        (" +", 7 * DAY),
        ("18446744073709551616", 7 * DAY),  # u64 overflow
    ],
)
def test_parse_max_idle_days(raw: str | None, expected: float | None) -> None:
    assert parse_max_idle_days(raw) == expected


def test_parse_husk_reap_max_age_hours() -> None:
    assert parse_husk_reap_max_age_hours(None) == 48 * 3600
    assert parse_husk_reap_max_age_hours("0") is None
    assert parse_husk_reap_max_age_hours("12") == 12 * 3600
    assert parse_husk_reap_max_age_hours("soon") == 48 * 3600


@pytest.mark.parametrize(
    ("bound", "key", "age_days", "max_idle", "expected"),
    [
        (True, False, 365.0, 7 * DAY, True),  # bound: kept however old
        (False, True, None, 7 * DAY, True),  # identity: kept even if never synced (#345)
        (False, False, 2.0, 7 * DAY, True),  # recent
        (False, False, 7.0, 7 * DAY, True),  # exactly at the cutoff: kept (<=)
        (False, False, 30.0, 7 * DAY, False),  # idle
        (False, False, None, 7 * DAY, False),  # never synced, no identity
        (False, False, 999.0, None, True),  # filter off
    ],
)
def test_seed_eligible(
    bound: bool, key: bool, age_days: float | None, max_idle: float | None, expected: bool
) -> None:
    now = 1_000_000_000.0
    active = None if age_days is None else now - age_days * DAY
    assert (
        seed_eligible(
            bound=bound, has_private_key=key, last_active=active, max_idle=max_idle, now=now
        )
        is expected
    )


# --- versions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "installed", "older"),
    [
        ("0.9.0", "0.10.0", True),  # not a string compare
        ("0.13.5", "0.14.1", True),
        ("0.14.0", "0.14.1", True),
        ("0.14.1", "0.14.1", False),
        ("0.14.2", "0.14.1", False),
        ("0.14", "0.14.1", True),  # padded with zeros
        ("0.14.1", "0.14", False),
        ("0.14.0", "0.14", False),
        ("0.14.2-rc.1", "0.14.2", False),  # unparsable: never stale
        ("0.14.2-rc.1", "0.99.0", False),
        ("0.14.1", "0.14.2-rc.1", False),
        ("garbage", "0.14.1", False),
        ("0.14.1", "garbage", False),
        ("", "0.16.0", False),
        ("0..1", "0.16.0", False),
        (" 0.14.1", "0.16.0", False),
        ("0.4294967296.0", "0.16.0", False),  # segment overflows u32
        ("0.15.9", "0.16.0", True),
    ],
)
def test_version_is_older(running: str, installed: str, older: bool) -> None:
    assert version_is_older(running, installed) is older


# --- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-19T18:57:23Z", datetime(2026, 6, 19, 18, 57, 23, tzinfo=UTC)),
        ("2026-06-19T18:57:28.5Z", datetime(2026, 6, 19, 18, 57, 28, 500000, tzinfo=UTC)),
        ("2026-06-19T18:57:28.52Z", datetime(2026, 6, 19, 18, 57, 28, 520000, tzinfo=UTC)),
        (
            "2026-06-19T18:57:23.481516273Z",  # 9 digits: truncated, not rounded
            datetime(2026, 6, 19, 18, 57, 23, 481516, tzinfo=UTC),
        ),
        (
            "2026-06-19T18:57:23.999999999Z",
            datetime(2026, 6, 19, 18, 57, 23, 999999, tzinfo=UTC),
        ),
        ("2026-06-19t18:57:23z", datetime(2026, 6, 19, 18, 57, 23, tzinfo=UTC)),
        ("2026-06-19T20:57:23+02:00", datetime(2026, 6, 19, 18, 57, 23, tzinfo=UTC)),
        ("2026-06-19T18:57:23-00:30", datetime(2026, 6, 19, 19, 27, 23, tzinfo=UTC)),
        ("2026-06-19T18:57:23", None),  # no offset
        ("2026-13-19T18:57:23Z", None),
        ("2026-06-19T18:57:60Z", None),  # leap second
        ("2026-06-19 18:57:23Z", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime | None) -> None:
    assert parse_rfc3339(text) == expected


def test_parse_rfc3339_agrees_with_fromisoformat_up_to_six_digits() -> None:
    for frac in ("", ".1", ".12", ".123", ".1234", ".12345", ".123456"):
        text = f"2026-06-19T18:57:23{frac}Z"
        assert parse_rfc3339(text) == datetime.fromisoformat(text)


def test_read_last_sync(tmp_path: Path) -> None:
    assert read_last_sync(tmp_path) is None
    state = tmp_path / "state" / "wire"
    state.mkdir(parents=True)
    (state / "last_sync.json").write_text(
        json.dumps({"schema": "wire-daemon-last-sync-v1", "ts": "2026-06-19T18:57:28.5Z"})
    )
    assert read_last_sync(tmp_path) == datetime(2026, 6, 19, 18, 57, 28, 500000, tzinfo=UTC)
    (state / "last_sync.json").write_text('{"ts": 5}')
    assert read_last_sync(tmp_path) is None


# --- pidfiles ------------------------------------------------------------------------

FULL = {
    "schema": "wire-daemon-pid-v1",
    "pid": 48211,
    "bin_path": "/Users/alice/.cargo/bin/wire",
    "version": "0.16.0",
    "started_at": "2026-06-19T18:57:23.481516273Z",
    "did": "did:wire:coral-weasel-0616dc6c",
    "relay_url": "https://wireup.net",
}


def test_parse_daemon_pid_full_record() -> None:
    rec = parse_daemon_pid(json.dumps(FULL, indent=2))
    assert rec == DaemonPidRecord(
        pid=48211,
        form="json",
        version="0.16.0",
        started_at=datetime(2026, 6, 19, 18, 57, 23, 481516, tzinfo=UTC),
        bin_path="/Users/alice/.cargo/bin/wire",
        did="did:wire:coral-weasel-0616dc6c",
        relay_url="https://wireup.net",
    )


def test_parse_daemon_pid_full_record_with_null_or_absent_optionals() -> None:
    body = {**FULL, "did": None}
    del body["relay_url"]
    rec = parse_daemon_pid(json.dumps(body))
    assert rec.form == "json"
    assert rec.did is None
    assert rec.relay_url is None


def test_parse_daemon_pid_bad_started_at_is_still_a_full_record() -> None:
    rec = parse_daemon_pid(json.dumps({**FULL, "started_at": "not a time"}))
    assert rec.form == "json"  # wire's serde only wants a string
    assert rec.started_at is None


@pytest.mark.parametrize(
    ("body", "pid", "version"),
    [
        ('{"pid": 4242}', 4242, None),
        ('{"pid": 4242, "version": "0.13.5"}', 4242, "0.13.5"),  # missing bin_path etc.
        (json.dumps({**FULL, "schema": 1}), 48211, "0.16.0"),  # wrong type: not strict
        (json.dumps({**FULL, "did": 7}), 48211, "0.16.0"),
    ],
)
def test_parse_daemon_pid_partial(body: str, pid: int, version: str | None) -> None:
    rec = parse_daemon_pid(body)
    assert (rec.form, rec.pid, rec.version) == ("partial", pid, version)


@pytest.mark.parametrize("body", ["12345", "12345\n", "  12345  \n", "+12345"])
def test_parse_daemon_pid_bare(body: str) -> None:
    assert parse_daemon_pid(body) == DaemonPidRecord(pid=12345, form="bare")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "  \n",
        "abc",
        "{",
        "[12345]",
        "true",
        "1.5",
        "1e3",
        "-5",
        "0",  # os.kill(0, ...) would hit our own process group
        "4294967296",  # above u32
        '{"pid": "12345"}',
        '{"pid": -1}',
        '{"pid": 0}',
        '{"pid": true}',
        '{"pid": 1.0}',
        '{"pid": null}',
        '{"not_pid": 1}',
        "NaN",
    ],
)
def test_parse_daemon_pid_corrupt_says_why(body: str) -> None:
    with pytest.raises(PidfileError) as info:
        parse_daemon_pid(body)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


def test_read_daemon_pid_files(tmp_path: Path) -> None:
    path = tmp_path / "daemon.pid"
    assert read_daemon_pid(path) is None  # missing
    path.write_text(json.dumps(FULL))
    rec = read_daemon_pid(path)
    assert rec is not None
    assert rec.form == "json"
    path.write_text("777\n")
    assert read_daemon_pid(path) == DaemonPidRecord(pid=777, form="bare")
    path.write_text("{corrupt")
    assert read_daemon_pid(path) is None
    path.write_bytes(b"\xff\xfe\x00")
    assert read_daemon_pid(path) is None
    path.unlink()
    path.mkdir()
    assert read_daemon_pid(path) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("4242", 4242),  # what wire writes: no newline
        ("4242\n", 4242),
        (" 4242 ", 4242),
        ("0", None),
        ("-1", None),
        ("abc", None),
        ('{"pid": 4242}', None),  # never JSON
        ("4294967296", None),
        ("", None),
    ],
)
def test_read_supervisor_pid(tmp_path: Path, body: str, expected: int | None) -> None:
    (tmp_path / "supervisor.pid").write_text(body)
    assert read_supervisor_pid(tmp_path) == expected


def test_read_supervisor_pid_missing_root(tmp_path: Path) -> None:
    assert read_supervisor_pid(tmp_path / "nope") is None


# --- command lines -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "daemon", "supervisor"),
    [
        (["python3", "/tmp/bin/wire", "daemon", "--interval", "5"], True, False),
        (["/usr/bin/wire", "daemon", "--interval", "5"], True, False),
        (["wire", "daemon"], True, False),
        (["wire", "daemon", "--all-sessions"], True, True),
        (["/usr/local/bin/wire", "daemon", "--all-sessions", "--interval", "5"], True, True),
        (["wire", "daemon", "--interval", "5", "--all-sessions"], True, True),
        (["wire", "mcp"], False, False),
        (["wire", "send", "peer", "daemon"], False, False),  # `daemon` as a message
        (["/opt/rewire", "daemon"], False, False),
        (["wire-daemon"], False, False),
        (["python3", "wire.py", "daemon"], False, False),
        (["wire"], False, False),
        ([], False, False),
        (["--all-sessions", "wire", "daemon"], True, False),  # flag before the command
    ],
)
def test_cmdline_predicates(argv: list[str], daemon: bool, supervisor: bool) -> None:
    assert is_wire_daemon_cmdline(argv) is daemon
    assert is_wire_supervisor_cmdline(argv) is supervisor
    assert is_wire_daemon_cmdline(tuple(argv)) is daemon  # any Sequence


# --- fixtures ------------------------------------------------------------------------


def test_make_home_variants(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    t = 1_700_000_000.0
    home = make_home(root, "Named Pane", bound_cwd="/src/a", last_active=t, dir_mtime=t - DAY)
    assert home == root / "by-key" / by_key_dir_name("named-pane")
    key = home / "config" / "wire" / "private.key"
    assert len(key.read_bytes()) == 32
    assert key.stat().st_mode & 0o777 == 0o600
    card = read_card(home)
    assert card is not None
    assert card.handle == "named-pane"
    assert display_handle_from_did(card.did) == "named-pane"
    assert last_active(home) == t
    assert home.stat().st_mtime == t - DAY  # applied after everything else
    assert read_last_sync(home) == datetime.fromtimestamp(t, UTC)

    make_home(root, "second", bound_cwd="/src/b")  # read-modify-write keeps /src/a
    assert read_registry(root) == {"/src/a": "named-pane", "/src/b": "second"}

    legacy = make_home(root, "Old Project", legacy=True)
    assert legacy == root / "old-project"
    vector = make_home(root, "persona", did="did:wire:coral-weasel-0616dc6c")
    assert read_card(vector) == layout.Card("did:wire:coral-weasel-0616dc6c", "persona")
    bare = make_home(root, "bare", identity=False, card=False)
    assert list((bare / "config" / "wire").iterdir()) == []
