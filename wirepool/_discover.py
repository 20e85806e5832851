"""The discovery driver: full passes on the timer, partial ones for the
sessions a watch event names, the watches themselves, and each session's
eligibility check.  A discovery that fails means "no change", never "every
session is gone"; a session that vanishes keeps its child for a grace period.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path

from wirepool._core import _describe, _Slot
from wirepool._log import logger
from wirepool._recovery import _Recovery
from wirepool._session import Changed, Checked, CheckFailed, Seen, Vanished
from wirepool._types import Session, Verdict
from wirepool.errors import ConfigError


class _DiscoveryDriver(_Recovery):
    """See :mod:`wirepool._discover`."""

    def _on_watch_event(self) -> None:
        assert self._watcher is not None
        changes = self._watcher.drain(self.discovery.relevant)
        if not changes:
            return
        names: Collection[str] | None = None
        # Out of watches, a change may raise no event at all: the full
        # rescans of old, and no partial pass retrying every missing watch.
        if not changes.everything and self._watcher.complete:
            try:
                names = self.discovery.affected(changes.paths)
            except Exception as exc:
                self._log_once(
                    f"affected:{exc}", "discovery cannot place a change ({}); rescanning", exc
                )
        if names is None:
            self._next_rescan = 0.0
        else:
            self._rediscover.update(names)

    def _discover_pass(self) -> None:
        self._timed(self._discover_all, full=True)

    def _timed(self, work: Callable[[], None], *, full: bool) -> None:
        instruments = self.instruments
        if instruments is None:
            work()
            return
        began = time.monotonic()
        try:
            work()
        finally:
            instruments.discovery_pass(time.monotonic() - began, full)

    def _discover_all(self) -> None:
        now = self.clock.monotonic()
        cpu = time.thread_time()
        self._next_rescan = now + self.rescan_interval
        self._rescan_is_net = False
        self._rediscover.clear()
        try:
            found = list(self.discovery.discover())
        except Exception as exc:
            self._log_once(
                f"discover:{exc}", "discovery failed ({}); keeping the sessions we know", exc
            )
            return
        self._errors_seen = {e for e in self._errors_seen if not e.startswith("discover:")}
        if self._absorb(found, None, now):
            # A marker created in a new directory before its watch existed
            # raised no event: look once more -- but after the plan has
            # started what this pass found.  At start-up every watch is new,
            # and a second pass before the first spawn kept a core idle for
            # its whole length (~1 s at ten thousand sessions); a change in
            # that window is then met like any change just after a pass.
            self._look_again = True
        elif self._rescan_is_net:
            self._next_rescan = max(self._next_rescan, self._net_after(now, cpu))

    def _rediscover_pass(self) -> None:
        """Discovery of just the sessions a watch event named; their plans
        follow alone (``_plan_only``), as after an exit."""
        self._timed(self._discover_named, full=False)

    def _discover_named(self) -> None:
        now = self.clock.monotonic()
        names, self._rediscover = self._rediscover, set()
        try:
            found = list(self.discovery.rediscover(names))
        except Exception as exc:
            self._log_once(
                f"rediscover:{type(exc).__name__}",
                "discovery of {} changed session(s) failed ({}); rescanning all",
                len(names),
                exc,
            )
            self._next_rescan = 0.0
            return
        self._errors_seen = {e for e in self._errors_seen if not e.startswith("rediscover:")}
        try:
            added = self._absorb(found, set(names), now)
        except BaseException:
            self._next_rescan = 0.0  # these names must not wait for the timer
            raise
        if added:
            self._rediscover.update(names)  # as in a full pass: look once more
        self._plan_only.update(name for name in names if name in self._slots)

    def _absorb(self, found: list[Session], scope: set[str] | None, now: float) -> int:
        """Bring the slots in line with what discovery ``found`` (among the
        names in ``scope``: everything when None).  Returns how many
        directories began to be watched."""
        wall = self.clock.time()
        try:
            unreadable = dict(self.discovery.unreadable())
        except Exception:
            unreadable = {}
        if scope is not None:
            unreadable = {name: why for name, why in unreadable.items() if name in scope}
        # Seen but unreadable: kept exactly as they were ("no change"), and
        # marked; a new one is shown, ineligible, with why.
        seen: set[str] = set(unreadable)
        for name, why in unreadable.items():
            self._log_once(f"unreadable:{name}:{why}", "session {!r}: {}", name, why)
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = _Slot(session=Session(name=name, home=Path("/")))
                slot.record_path = self._record_path(name)
                self._apply(slot, Checked(Verdict(False, why)), now)
            if slot.scan_error != why:
                slot.scan_error, slot.dirty = why, True
        for session in found:
            if session.name in seen or (scope is not None and session.name not in scope):
                self._log_once(
                    f"dup:{session.name}",
                    "discovery reported session {!r} twice (or unasked); keeping the first",
                    session.name,
                )
                continue
            seen.add(session.name)
            slot = self._slots.get(session.name)
            if slot is None:
                slot = self._slots[session.name] = _Slot(session=session)
                slot.record_path = self._record_path(session.name)
            if slot.scan_error is not None:
                slot.scan_error, slot.dirty = None, True
                self._errors_seen = {
                    e for e in self._errors_seen if not e.startswith(f"unreadable:{session.name}:")
                }
            # a slot made just above holds this very session: no comparison
            if slot.session is not session and slot.session != session:
                slot.session = session
                slot.dirty = True
                self._apply(slot, Changed(), now)
            if slot.state.vanished_at is not None:
                self._apply(slot, Seen(), now)
        gone = self._slots.keys() - seen if scope is None else scope - seen
        for name in gone:
            slot = self._slots.get(name)
            if slot is not None and slot.state.vanished_at is None:
                self._apply(slot, Vanished(), now)
                logger.info(
                    "session {!r} vanished; its child stays up for {:.0f}s grace", name, self.grace
                )
        for name in seen - unreadable.keys():
            self._check(self._slots[name], wall, now)
        if scope is None and not self._first_watches_done:
            # The first full pass watches nothing yet: every watch is new,
            # and whatever changes before they exist is found by the pass
            # that follows them (_look_again).  Made after the plan has
            # started what this pass found, they keep a system call per
            # directory (~1.5 ms at two hundred) from before the first child.
            self._watches_after_plan = self._first_watches_done = True
            return 0
        return self._update_watches(now, scope)

    def _watch_after_plan(self) -> None:
        """The first full pass's watches, once its plan is carried out (or
        its pass failed); a full pass to look once more comes next if any
        was added, as ``_look_again`` has it after any other full pass."""
        if not self._watches_after_plan:
            return
        self._watches_after_plan = False
        now = self.clock.monotonic()
        if self._update_watches(now, None):
            self._next_rescan = min(self._next_rescan, now)

    def _update_watches(self, now: float, scope: set[str] | None) -> int:
        """Watch what discovery asks for; re-check the watches of what was
        just looked at (all of them after a full pass).  Returns how many
        watches were added."""
        if self._watcher is None or not self._watcher.available:
            return 0
        full = scope is None
        try:
            paths = self.discovery.watch_paths()
            if scope is None:
                refresh = None
            else:
                # by the last component: a session's name may have several
                # (re-checking a namesake elsewhere costs a system call)
                last = {name.rpartition("/")[2] for name in scope}
                refresh = [p for p in paths if p.name in last]
            added = self._watcher.update(paths, refresh)
        except Exception as exc:
            self._log_once(f"watch:{exc}", "cannot update watches: {}", exc)
            return 0
        if not self._watcher.complete:
            # A change in a directory we could not watch raises no event.
            self._next_rescan = min(self._next_rescan, now + self.rescan_interval)
        elif full and self.watched_rescan_interval is not None and not added:
            # Every change that matters raises an event: the timer is only a
            # net.  A full rescan costs ~25 ms of CPU at a thousand sessions;
            # every 30 s that was most of the idle pool's CPU.
            interval = max(self.rescan_interval, self.watched_rescan_interval)
            self._next_rescan = now + interval
            # ...and no more than its share of a core, unless it was told to
            # be no net (a network file system, whose events do not come)
            self._rescan_is_net = self.watched_rescan_interval > self.rescan_interval
        return added

    def _check(self, slot: _Slot, wall: float, now: float) -> None:
        try:
            verdict = self.eligibility.check(slot.session, wall)
        except ConfigError as exc:
            # As for discovery's unreadable: kept as it was, and said.
            why = str(exc)
            if slot.scan_error != why:
                slot.scan_error, slot.dirty = why, True
            if not slot.state.checked and slot.worker is None:
                self._apply(slot, Checked(Verdict(False, why)), now)
            return
        except Exception as exc:
            self._log_once(
                f"elig:{slot.session.name}:{exc}",
                "session {!r}: eligibility check failed: {}; keeping the last verdict",
                slot.session.name,
                exc,
            )
            self._apply(slot, CheckFailed(f"eligibility check failed: {_describe(exc)}"), now)
            return
        if not slot.state.checked or verdict != slot.state.verdict:
            self._apply(slot, Checked(verdict), now)
        self._compare_config(slot, now)
