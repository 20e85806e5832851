"""Unit tests for eligibility: :class:`Verdict` algebra, the combinators of
:class:`Eligibility` (with plain callables on either side) and the stock rules
against real files in ``tmp_path``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from wirepool._types import Session, Verdict
from wirepool.eligibility import (
    ActiveWithin,
    Always,
    Eligibility,
    HasMarker,
    NoDownFile,
    TrustedDirectory,
    as_eligibility,
    newest_mtime,
    stat_failure,
)
from wirepool.errors import ConfigError

T_A = Verdict(True, "a")
T_B = Verdict(True, "b")
F_A = Verdict(False, "a")
F_B = Verdict(False, "b")

DAY = 86400.0


class Fixed(Eligibility):
    """A rule with a fixed answer that counts its calls."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.calls = 0

    def check(self, session: Session, now: float) -> Verdict:
        self.calls += 1
        return self.verdict


class Boom(Eligibility):
    def check(self, session: Session, now: float) -> Verdict:
        raise AssertionError("this check must not run")


def boom_fn(session: Session, now: float) -> bool:
    raise AssertionError("this check must not run")


# ------------------------------------------------------------------ Verdict


def test_verdict_is_truthy_like_its_answer() -> None:
    assert T_A
    assert not F_A


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (T_A, T_B, Verdict(True, "a and b")),
        (F_A, T_B, F_A),  # the first reason that failed
        (T_A, F_B, F_B),
        (F_A, F_B, F_A),  # both fail: still the first
        (Verdict(True, ""), T_B, Verdict(True, "b")),  # no dangling " and "
        (T_A, Verdict(True, ""), Verdict(True, "a")),
    ],
)
def test_verdict_and(left: Verdict, right: Verdict, expected: Verdict) -> None:
    assert (left & right) == expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (T_A, T_B, T_A),  # the first that passed
        (F_A, T_B, T_B),
        (T_A, F_B, T_A),
        (F_A, F_B, Verdict(False, "a; b")),  # both failed: every reason
        (Verdict(False, ""), F_B, Verdict(False, "b")),
    ],
)
def test_verdict_or(left: Verdict, right: Verdict, expected: Verdict) -> None:
    assert (left | right) == expected


def test_verdict_invert_negates_and_says_so() -> None:
    assert Verdict(False, "not (a)") == ~T_A
    assert Verdict(True, "not (a)") == ~F_A
    assert ~Verdict(True, "") == Verdict(False, "")
    assert Verdict(True, "not (not (a))") == ~~T_A


def test_verdict_is_frozen() -> None:
    with pytest.raises(AttributeError):
        T_A.eligible = False  # type: ignore[misc]


def test_verdict_of_accepts_bools_with_a_reason() -> None:
    assert Verdict.of(True) == Verdict(True, "eligible")
    assert Verdict.of(False) == Verdict(False, "not eligible")
    assert Verdict.of(False, "has_run") == Verdict(False, "has_run")


def test_verdict_of_passes_a_verdict_through() -> None:
    assert Verdict.of(F_A, "ignored") is F_A


@pytest.mark.parametrize("garbage", [1, 0, None, "yes", [], 1.0, object()])
def test_verdict_of_rejects_anything_else(garbage: object) -> None:
    with pytest.raises(TypeError, match="Verdict or a bool"):
        Verdict.of(garbage)  # type: ignore[arg-type]


# ------------------------------------------------------------- combinators


def test_and_of_two_rules_reports_the_first_failure(sess: Session) -> None:
    assert (Fixed(F_A) & Fixed(F_B)).check(sess, 0.0) == F_A
    assert (Fixed(T_A) & Fixed(F_B)).check(sess, 0.0) == F_B
    assert (Fixed(T_A) & Fixed(T_B)).check(sess, 0.0) == Verdict(True, "a and b")


def test_or_of_two_rules_reports_the_first_pass(sess: Session) -> None:
    assert (Fixed(F_A) | Fixed(T_B)).check(sess, 0.0) == T_B
    assert (Fixed(F_A) | Fixed(F_B)).check(sess, 0.0) == Verdict(False, "a; b")


def test_invert_of_a_rule(sess: Session) -> None:
    assert (~Fixed(T_A)).check(sess, 0.0) == Verdict(False, "not (a)")


def test_chains_keep_their_order(sess: Session) -> None:
    rule = Fixed(T_A) & (Fixed(T_B) & Fixed(Verdict(False, "c"))) & Fixed(F_A)
    assert rule.check(sess, 0.0) == Verdict(False, "c")
    rule = (Fixed(F_A) | Fixed(F_B)) | Fixed(Verdict(False, "c"))
    assert rule.check(sess, 0.0) == Verdict(False, "a; b; c")


def test_a_rule_is_callable_like_a_plain_function(sess: Session) -> None:
    rule = Fixed(F_B)
    assert rule(sess, 5.0) == F_B


def test_plain_callable_on_the_right(sess: Session) -> None:
    def named_a(session: Session, now: float) -> bool:
        return session.name == "a"

    rule = Fixed(T_A) & named_a
    assert isinstance(rule, Eligibility)
    verdict = rule.check(sess, 0.0)
    assert not verdict
    assert verdict.reason == "named_a"  # a bare bool borrows the function's name


def test_plain_callable_on_the_left_via_rand(sess: Session) -> None:
    def first(session: Session, now: float) -> Verdict:
        return Verdict(False, "first says no")

    rule = first & Fixed(F_B)  # function & Eligibility -> Eligibility.__rand__
    assert isinstance(rule, Eligibility)
    assert rule.check(sess, 0.0) == Verdict(False, "first says no")  # left runs first


def test_plain_callable_in_or_on_either_side(sess: Session) -> None:
    def yes(session: Session, now: float) -> Verdict:
        return Verdict(True, "yes")

    assert (Fixed(F_A) | yes).check(sess, 0.0) == Verdict(True, "yes")
    left = yes | Fixed(T_B)
    assert isinstance(left, Eligibility)
    assert left.check(sess, 0.0) == Verdict(True, "yes")


def test_callables_receive_the_session_and_now(sess: Session) -> None:
    seen: list[tuple[Session, float]] = []

    def spy(session: Session, now: float) -> bool:
        seen.append((session, now))
        return True

    assert (Always() & spy).check(sess, 123.5)
    assert seen == [(sess, 123.5)]


def test_and_short_circuits(sess: Session) -> None:
    assert (Fixed(F_A) & Boom()).check(sess, 0.0) == F_A
    assert (Fixed(F_A) & boom_fn).check(sess, 0.0) == F_A
    assert (Fixed(T_A) & Fixed(F_B) & Boom()).check(sess, 0.0) == F_B


def test_or_short_circuits(sess: Session) -> None:
    assert (Fixed(T_A) | Boom()).check(sess, 0.0) == T_A
    assert (Fixed(T_A) | boom_fn).check(sess, 0.0) == T_A


def test_a_later_rule_runs_when_the_earlier_one_passes(sess: Session) -> None:
    second = Fixed(F_B)
    assert (Fixed(T_A) & second).check(sess, 0.0) == F_B
    assert second.calls == 1


def test_a_callable_returning_garbage_is_a_type_error(sess: Session) -> None:
    rule = Always() & (lambda session, now: "yes")
    with pytest.raises(TypeError):
        rule.check(sess, 0.0)


def test_non_callables_are_rejected() -> None:
    with pytest.raises(TypeError, match="not an eligibility check"):
        as_eligibility(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Always() & 42  # type: ignore[operator]


def test_as_eligibility_keeps_an_eligibility_as_is() -> None:
    rule = Always()
    assert as_eligibility(rule) is rule


# ------------------------------------------------------- HasMarker, NoDownFile


def test_has_marker(sess: Session, home: Path) -> None:
    rule = HasMarker("run")
    assert rule.check(sess, 0.0) == Verdict(False, "no run")
    (home / "run").write_text("#!/bin/sh\n")
    assert rule.check(sess, 0.0) == Verdict(True, "has run")


def test_has_marker_nested_path(sess: Session, home: Path) -> None:
    rule = HasMarker("config/wire.toml")
    assert not rule.check(sess, 0.0)
    (home / "config").mkdir()
    (home / "config" / "wire.toml").write_text("")
    assert rule.check(sess, 0.0)


def test_has_marker_executable(sess: Session, home: Path) -> None:
    rule = HasMarker("run", executable=True)
    run = home / "run"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o644)
    verdict = rule.check(sess, 0.0)
    assert not verdict
    assert verdict.reason == "run is not executable"
    run.chmod(0o755)
    assert rule.check(sess, 0.0) == Verdict(True, "has run")


def test_has_marker_executable_rejects_a_directory(sess: Session, home: Path) -> None:
    (home / "run").mkdir()
    assert HasMarker("run").check(sess, 0.0)  # exists is enough without executable
    assert not HasMarker("run", executable=True).check(sess, 0.0)


def test_no_down_file(sess: Session, home: Path) -> None:
    rule = NoDownFile()
    assert rule.check(sess, 0.0) == Verdict(True, "no down file")
    (home / "down").touch()
    assert rule.check(sess, 0.0) == Verdict(False, "down file present")
    (home / "down").unlink()
    assert rule.check(sess, 0.0)


def test_no_down_file_custom_name(sess: Session, home: Path) -> None:
    (home / "down").touch()
    rule = NoDownFile("disabled")
    assert rule.check(sess, 0.0)
    (home / "disabled").touch()
    assert rule.check(sess, 0.0) == Verdict(False, "disabled file present")


def test_servicedir_style_combination(sess: Session, home: Path) -> None:
    rule = HasMarker("run", executable=True) & NoDownFile()
    assert rule.check(sess, 0.0).reason == "no run"
    run = home / "run"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    assert rule.check(sess, 0.0) == Verdict(True, "has run and no down file")
    (home / "down").touch()
    assert rule.check(sess, 0.0) == Verdict(False, "down file present")
    assert (~NoDownFile()).check(sess, 0.0) == Verdict(True, "not (down file present)")


# ------------------------------------------------------------ cannot tell
#
# A stat that fails for a reason other than "not there" (EACCES on a directory
# chmod'ed for a moment, EIO) means the rule cannot tell: ConfigError, which
# the pool takes as "keep what it has", never as "ineligible", which would
# stop a healthy child.  A name longer than NAME_MAX makes such an error
# without needing a user that file modes apply to.

TOO_LONG = "x" * 300


class Unsure(Eligibility):
    def check(self, session: Session, now: float) -> Verdict:
        raise ConfigError("cannot check it: Permission denied")


def test_stat_failure_is_a_no_when_gone_and_cannot_tell_otherwise(tmp_path: Path) -> None:
    for missing in (tmp_path / "missing", tmp_path / "missing" / "below"):
        with pytest.raises(OSError) as gone:
            missing.stat()
        assert stat_failure(missing, gone.value) == Verdict(
            False, f"cannot stat {missing}: No such file or directory"
        )
    with pytest.raises(OSError) as unsure:
        (tmp_path / TOO_LONG).stat()
    with pytest.raises(ConfigError, match="cannot stat x: File name too long"):
        stat_failure("x", unsure.value)


def test_rules_that_cannot_look_cannot_tell(sess: Session, home: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot check {TOO_LONG}: File name too long"):
        NoDownFile(TOO_LONG).check(sess, 0.0)
    with pytest.raises(ConfigError, match="File name too long"):
        HasMarker(TOO_LONG).check(sess, 0.0)
    unreadable_home = Session(name="s", home=home / TOO_LONG)
    with pytest.raises(ConfigError, match="File name too long"):
        TrustedDirectory().check(unreadable_home, 0.0)
    # a home that is not there is a plain no, as before
    gone = TrustedDirectory().check(Session(name="s", home=home / "gone"), 0.0)
    assert not gone
    assert "No such file or directory" in gone.reason


def test_cannot_tell_decides_nothing_a_later_part_can_decide(sess: Session) -> None:
    # | : a later yes decides; a later no leaves it untold
    assert (Unsure() | Fixed(T_A)).check(sess, 0.0) == T_A
    assert (Fixed(F_A) | Unsure() | Fixed(T_B)).check(sess, 0.0) == T_B
    with pytest.raises(ConfigError, match="Permission denied"):
        (Unsure() | Fixed(F_A)).check(sess, 0.0)
    # & : a later no decides; a later yes leaves it untold
    assert (Unsure() & Fixed(F_A)).check(sess, 0.0) == F_A
    with pytest.raises(ConfigError, match="Permission denied"):
        (Fixed(T_A) & Unsure() & Fixed(T_B)).check(sess, 0.0)
    with pytest.raises(ConfigError):
        (~Unsure()).check(sess, 0.0)
    # an earlier decision still spares the rest
    assert (Fixed(T_A) | Unsure()).check(sess, 0.0) == T_A
    assert (Fixed(F_A) & Unsure()).check(sess, 0.0) == F_A


def test_active_within_an_unreadable_activity_file(sess: Session, home: Path) -> None:
    now = time.time()
    touch(home / "activity", now - 60)
    # what could be read is recent enough: active, whatever the other says
    assert ActiveWithin(DAY, [TOO_LONG, "activity"]).check(sess, now)
    # what could be read is old: the unreadable one may be newer
    with pytest.raises(ConfigError, match="File name too long"):
        ActiveWithin(30, [TOO_LONG, "activity"]).check(sess, now)
    with pytest.raises(ConfigError, match="File name too long"):
        ActiveWithin(30, [TOO_LONG]).check(sess, now)
    # missing files are no activity, as before
    assert ActiveWithin(30, ["missing"]).check(sess, now) == Verdict(False, "never active")
    assert newest_mtime([home / TOO_LONG, home / "activity"]) == (home / "activity").stat().st_mtime


# --------------------------------------------------------------- ActiveWithin


def touch(path: Path, mtime: float) -> None:
    path.touch()
    os.utime(path, (mtime, mtime))


def test_active_within_recent_activity_is_eligible(sess: Session, home: Path) -> None:
    now = time.time()
    touch(home / "activity", now - 60)
    verdict = ActiveWithin(7 * DAY, ["activity"]).check(sess, now)
    assert verdict
    assert verdict.reason == "active 60s ago"


def test_active_within_old_activity_is_ineligible_with_idle_reason(
    sess: Session, home: Path
) -> None:
    now = time.time()
    touch(home / "activity", now - 10 * DAY)
    verdict = ActiveWithin(7 * DAY, ["activity"]).check(sess, now)
    assert not verdict
    assert verdict.reason.startswith("idle for ")
    assert "10.0d" in verdict.reason
    assert "limit 7.0d" in verdict.reason


def test_active_within_boundary_is_inclusive(sess: Session, home: Path) -> None:
    now = 2_000_000_000.0
    touch(home / "activity", now - 3600)
    assert ActiveWithin(3600, ["activity"]).check(sess, now)
    assert not ActiveWithin(3599, ["activity"]).check(sess, now)


def test_active_within_future_mtime_counts_as_active(sess: Session, home: Path) -> None:
    now = time.time()
    touch(home / "activity", now + 30 * DAY)  # clock skew, a restored backup
    verdict = ActiveWithin(60, ["activity"]).check(sess, now)
    assert verdict
    assert "-" not in verdict.reason  # never "idle for a negative time"


def test_active_within_uses_the_newest_of_several_files(sess: Session, home: Path) -> None:
    now = time.time()
    touch(home / "old", now - 30 * DAY)
    touch(home / "new", now - 5)
    rule = ActiveWithin(DAY, ["old", "missing", "new"])
    assert rule.check(sess, now)
    assert newest_mtime([home / "old", home / "missing", home / "new"]) == pytest.approx(now - 5)


def test_active_within_no_activity_file_is_never_active(sess: Session) -> None:
    verdict = ActiveWithin(DAY, ["activity", "other"]).check(sess, time.time())
    assert verdict == Verdict(False, "never active")
    assert newest_mtime([]) is None


def test_active_within_disabled_is_always_eligible(sess: Session) -> None:
    verdict = ActiveWithin(None, ["activity"]).check(sess, time.time())
    assert verdict
    assert "disabled" in verdict.reason


def test_active_within_injected_probe_replaces_the_files(sess: Session, home: Path) -> None:
    now = 5_000_000.0
    touch(home / "activity", now)  # the files say "active now"...
    seen: list[Session] = []

    def probe(session: Session) -> float | None:
        seen.append(session)
        return now - 2 * DAY  # ...but the probe wins

    verdict = ActiveWithin(DAY, ["activity"], probe=probe).check(sess, now)
    assert not verdict
    assert "idle for" in verdict.reason
    assert seen == [sess]


def test_active_within_probe_only(sess: Session) -> None:
    assert ActiveWithin(60, probe=lambda s: 990.0).check(sess, 1000.0)
    assert ActiveWithin(60, probe=lambda s: None).check(sess, 1000.0) == Verdict(
        False, "never active"
    )


def test_active_within_needs_files_or_a_probe() -> None:
    with pytest.raises(ValueError, match="activity files or a probe"):
        ActiveWithin(60)


def test_active_within_short_circuit_skips_the_probe(sess: Session) -> None:
    def probe(session: Session) -> float | None:
        raise AssertionError("probe must not run for a session that is out anyway")

    rule = NoDownFile() & ActiveWithin(60, probe=probe)
    (sess.home / "down").touch()
    assert rule.check(sess, 0.0) == Verdict(False, "down file present")
