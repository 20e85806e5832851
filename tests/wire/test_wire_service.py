"""The wire plugin's service advice: wire's own supervisor units, found through the hook.

``wirepool service install|status wire`` asks the plugin, never the core, what competes with
its service; these tests drive that hook with a real backend over a temporary home.
"""

from __future__ import annotations

import plistlib
from pathlib import Path

from wirepool_servicedir import ServiceDirPlugin
from wirepool_wire import WirePlugin

from wirepool.service import backend

UID = 4242


def _systemd_unit(home: Path) -> Path:
    unit = home / ".config/systemd/user/wire-daemon.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/wire daemon --all-sessions --interval 5\n")
    return unit


def test_no_advice_without_wires_own_units(tmp_path: Path) -> None:
    for platform in ("linux", "darwin"):
        assert WirePlugin().service_advice(backend(platform, home=tmp_path, uid=UID)) == []


def test_systemd_unit_is_found_and_its_removal_spelled_out(tmp_path: Path) -> None:
    unit = _systemd_unit(tmp_path)
    (advice,) = WirePlugin().service_advice(backend("linux", home=tmp_path, uid=UID))
    assert str(unit) in advice
    assert "wire daemon --all-sessions" in advice
    assert "wire service uninstall" in advice
    assert (
        f"`systemctl --user disable --now wire-daemon.service; rm {unit}; "
        "systemctl --user daemon-reload`"
    ) in advice
    assert "\n" not in advice  # one paragraph, wrapped by the terminal
    # the unit is systemd's: launchd on the same home has nothing to say about it
    assert WirePlugin().service_advice(backend("darwin", home=tmp_path, uid=UID)) == []


def test_launchd_agent_is_found_and_booted_out_in_the_users_domain(tmp_path: Path) -> None:
    plist = tmp_path / "Library/LaunchAgents/sh.slancha.wire.daemon.plist"
    plist.parent.mkdir(parents=True)
    plist.write_bytes(plistlib.dumps({"Label": "sh.slancha.wire.daemon", "KeepAlive": True}))
    (advice,) = WirePlugin().service_advice(backend("darwin", home=tmp_path, uid=UID))
    assert f"`launchctl bootout gui/{UID}/sh.slancha.wire.daemon; rm {plist}`" in advice


def test_other_plugins_give_no_advice_about_wire(tmp_path: Path) -> None:
    _systemd_unit(tmp_path)
    assert ServiceDirPlugin().service_advice(backend("linux", home=tmp_path, uid=UID)) == ()
