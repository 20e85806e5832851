"""Metrics: ``wirepool run --metrics`` scraped over HTTP (and a unix socket)
and parsed with prometheus_client's own parser, checked against ``wirepool
status``; the textfile read while it is rewritten; the CLI's errors; the
fleet's alert rules run by Prometheus's own ``promtool`` on real series."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import pytest
import tenacity
from conftest import Services, Supervisor, Tracker, alive, cli, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_bench_smoke import leftovers

from wirepool import (
    CommandSpawner,
    RestartPolicy,
    Session,
    SessionPool,
    StaticDiscovery,
)
from wirepool._metrics import PoolMetrics, TextfileWriter, parse_address, serve
from wirepool._status import STATES
from wirepool.restart import SpawnRateLimit

REPO = Path(__file__).resolve().parent.parent
FLEET = REPO / "docs" / "fleet"
PROMTOOL = shutil.which("promtool")
# .ci/run installs it (Debian's prometheus package) where it can.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)"
)
CRASHER = "#!/bin/sh\nexit 3\n"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, keyed by name and labels: prometheus_client's parser."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def per_session(samples: Samples, name: str) -> dict[str, float]:
    return {dict(k[1])["session"]: v for k, v in samples.items() if k[0] == name}


def fetch(conn: http.client.HTTPConnection, path: str = "/metrics") -> str:
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, response.status
        return response.read().decode()
    finally:
        conn.close()


def http_get(address: str) -> str:
    host, _, port = address.rpartition(":")
    return fetch(http.client.HTTPConnection(host, int(port), timeout=10))


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(self.path))


def unix_get(path: Path) -> str:
    return fetch(UnixConnection(path))


def served_at(log: Path) -> str:
    """The address a supervisor started with --metrics HOST:0 bound."""
    found = wait_for(
        lambda: re.search(r"serving metrics on http://([\d.]+:\d+)/metrics", log.read_text())
    )
    return str(found.group(1))


def status_json(services: Services) -> dict[str, Any]:
    result = cli("status", "servicedir", str(services.root), "--json")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def exit_value(last: dict[str, Any] | None) -> float | None:
    if not last:
        return None
    if last.get("code") is not None:
        return float(last["code"])
    return -float(last["signal"]) if last.get("signal") is not None else None


def disagreements(samples: Samples, doc: dict[str, Any], events: Counter[str]) -> list[str]:
    """Where the scrape and ``wirepool status`` (and the --json events)
    say different things; empty when they agree."""
    sessions = {s["name"]: s for s in doc["sessions"]}
    wrong: list[str] = []

    def check(what: str, scraped: float | None, expected: float | None) -> None:
        if scraped != expected:
            wrong.append(f"{what}: scraped {scraped}, status {expected}")

    states = Counter(s["state"] for s in sessions.values())
    for state in STATES:
        scraped = value(samples, "wirepool_sessions", pool="servicedir", state=state)
        check(f"sessions {state}", scraped, float(states.get(state, 0)))
    up = per_session(samples, "wirepool_session_up")
    restarts = per_session(samples, "wirepool_session_restarts_total")
    exits = per_session(samples, "wirepool_session_last_exit_code")
    starts = per_session(samples, "wirepool_session_start_time_seconds")
    check("session names", float(len(up)), float(len(sessions)))
    for name, s in sessions.items():
        check(f"{name} up", up.get(name), 1.0 if s["state"] in ("running", "adopted") else 0.0)
        check(f"{name} restarts", restarts.get(name), float(s["restarts"]))
        check(f"{name} last exit", exits.get(name), exit_value(s["last_exit"]))
        check(f"{name} start time", starts.get(name), s["started_at"] if s["pid"] else None)
    for kind in ("spawned", "exited", "backoff", "adopted"):
        total = value(samples, "wirepool_events_total", pool="servicedir", kind=kind)
        check(f"events {kind}", total, float(events[kind]))
    return wrong


def supervise(
    tracker: Tracker,
    services: Services,
    err: TextIO,
    *extra: str,
    on_exit: str = "stop",
    metrics: str = "127.0.0.1:0",
) -> Supervisor:
    """``wirepool run servicedir`` with metrics, its log to ``err``."""
    return tracker.supervisor(
        "servicedir",
        str(services.root),
        "--on-exit",
        on_exit,
        "--metrics",
        metrics,
        *extra,
        stderr=err,
    )


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "supervisor.log"
    path.touch()
    return path


def test_scrape_agrees_with_status(
    services: Services, tracker: Tracker, tmp_path: Path, log: Path
) -> None:
    for name in ("a", "b", "c"):
        services.add(name)
    services.add("crash", CRASHER)
    textfile = tmp_path / "wirepool.prom"
    with log.open("w") as err:
        sup = supervise(tracker, services, err, "--metrics-textfile", str(textfile))
        address = served_at(log)
        wait_for(lambda: len([e for e in sup.of("exited") if e["session"] == "crash"]) >= 2)

        def agreed() -> tuple[Samples, dict[str, Any]] | None:
            before = parse(http_get(address))
            doc = status_json(services)
            events = Counter(e["event"] for e in list(sup.events))
            after = parse(http_get(address))
            if disagreements(before, doc, events) or disagreements(after, doc, events):
                return None
            return after, doc

        # The crashing session changes between two looks now and then (the
        # file lags the snapshot by a quarter second): wait for a quiet moment.
        try:
            samples, doc = wait_for(agreed, timeout=40, interval=0.3)
        except AssertionError:
            doc = status_json(services)
            events = Counter(e["event"] for e in list(sup.events))
            raise AssertionError(disagreements(parse(http_get(address)), doc, events)) from None
        crash = next(s for s in doc["sessions"] if s["name"] == "crash")
        assert crash["restarts"] >= 1 and crash["last_exit"]["code"] == 3
        assert value(samples, "wirepool_supervisor_running", pool="servicedir") == 1.0
        sup_doc = doc["supervisor"]
        info = [k for k in samples if k[0] == "wirepool_supervisor_info"]
        assert dict(info[0][1])["version"] == sup_doc["version"]
        assert dict(info[0][1])["state_dir"] == str(services.state_dir)
        # every loop pass and the first discovery were measured
        assert value(samples, "wirepool_loop_lag_seconds_count", pool="servicedir")
        full = {"pool": "servicedir", "scope": "full"}
        assert value(samples, "wirepool_discovery_pass_seconds_count", **full)
        # the textfile names the same sessions, and the last one, written
        # as the supervisor stops, says it stopped
        wait_for(textfile.exists)
        written = parse(textfile.read_text())
        assert per_session(written, "wirepool_session_up").keys() == {"a", "b", "c", "crash"}
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
    final = parse(textfile.read_text())
    assert value(final, "wirepool_supervisor_running", pool="servicedir") == 0.0
    assert value(final, "wirepool_events_total", pool="servicedir", kind="supervisor_stopped") == 1
    assert textfile.stat().st_mode & 0o777 == 0o644  # node_exporter reads it as another user
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@needs_promtool
def test_promtool_accepts_the_exposition(services: Services, tracker: Tracker, log: Path) -> None:
    """Prometheus's own linter: names, units, counters' _total, HELP."""
    services.add("a")
    services.add("crash", CRASHER)
    with log.open("w") as err:
        sup = supervise(tracker, services, err)
        address = served_at(log)
        wait_for(lambda: sup.of("exited"))
        text = http_get(address)
        sup.proc.send_signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
    assert "wirepool_session_last_exit_code" in text
    result = subprocess.run(
        [str(PROMTOOL or "promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""  # not even a lint warning


def test_a_new_supervisor_adopts_and_its_metrics_say_so(
    services: Services, tracker: Tracker, log: Path
) -> None:
    """The fleet's rolling upgrade (docs/FLEET.md): the supervisor is
    replaced, its children are not -- the scrape after shows the same
    children (start times), adopted, none spawned."""
    names = ["a", "b", "c"]
    for name in names:
        services.add(name)
    with log.open("w") as err:
        first = supervise(tracker, services, err, on_exit="leave")
        address = served_at(log)
        wait_for(lambda: len(first.of("spawned")) == 3)
        before = wait_for(
            lambda: (
                (s := parse(http_get(address)))
                and len(per_session(s, "wirepool_session_start_time_seconds")) == 3
                and s
            )
        )
        pids = {e["session"]: e["pid"] for e in first.of("spawned")}
        first.proc.send_signal(signal.SIGTERM)
        assert first.wait_exit() == 0
        assert all(alive(pid) for pid in pids.values())
        log.write_text("")
    with log.open("w") as err:
        port = address.rpartition(":")[2]
        second = supervise(tracker, services, err, metrics=f"127.0.0.1:{port}")
        wait_for(lambda: len(second.of("adopted")) == 3)
        after = wait_for(
            lambda: (
                (s := parse(http_get(address)))
                and value(s, "wirepool_sessions", pool="servicedir", state="adopted") == 3
                and s
            )
        )
        assert value(after, "wirepool_events_total", pool="servicedir", kind="spawned") == 0
        assert value(after, "wirepool_events_total", pool="servicedir", kind="adopted") == 3
        assert per_session(after, "wirepool_session_start_time_seconds") == per_session(
            before, "wirepool_session_start_time_seconds"
        )
        assert set(per_session(after, "wirepool_session_up").values()) == {1.0}
        assert {e["session"]: e["pid"] for e in second.of("adopted")} == pids
        second.proc.send_signal(signal.SIGTERM)
        assert second.wait_exit() == 0
    for pid in pids.values():
        wait_for(lambda p=pid: not alive(p))


# ------------------------------------------------------------ in-process


def pool_of(tmp_path: Path, *sessions: tuple[str, list[str]], **kwargs: Any) -> SessionPool:
    homes = []
    commands = {}
    for name, argv in sessions:
        home = tmp_path / name
        home.mkdir()
        homes.append(Session(name, home))
        commands[name] = argv
    return SessionPool(
        StaticDiscovery(homes),
        spawner=CommandSpawner(lambda s: commands[s.name]),
        state_dir=tmp_path / "state",
        **kwargs,
    )


SLEEP = ["sleep", "1000"]
CRASH = ["sh", "-c", "exit 3"]


def test_spawn_failures_rate_limit_waits_and_the_session_cap(tmp_path: Path) -> None:
    pool = pool_of(
        tmp_path,
        *[(f"s{i}", SLEEP) for i in range(4)],
        ("missing", [str(tmp_path / "no-such-program")]),
        restart=RestartPolicy(wait=tenacity.wait_fixed(0.2)),
        spawn_limit=SpawnRateLimit(rate=20.0, burst=2),
    )
    metrics = PoolMetrics(pool, "test", max_sessions=5)
    with pool:
        wait_for(lambda: len(pool.snapshot().in_state("running")) == 4)
        wait_for(lambda: pool.snapshot()["missing"].spawn_failures >= 3)
        samples = parse(_exposition(metrics))
        failures = per_session(samples, "wirepool_session_spawn_failures_total")
        snap_failures = pool.snapshot()["missing"].spawn_failures
        assert failures["missing"] >= 3 and failures["missing"] <= snap_failures
        assert {failures[f"s{i}"] for i in range(4)} == {0.0}
        # first starts are not paced; restarts are: four at once, a burst of
        # two (spent in part on the missing program's tries) -- some wait
        for status in pool.snapshot().in_state("running"):
            assert status.pid is not None
            os.kill(status.pid, signal.SIGKILL)

        def waits() -> float:
            found = value(
                parse(_exposition(metrics)), "wirepool_spawn_rate_limit_waits_total", pool="test"
            )
            return found or 0

        wait_for(lambda: waits() >= 2)
        wait_for(lambda: len(pool.snapshot().in_state("running")) == 4)
        samples = parse(_exposition(metrics))
        assert value(samples, "wirepool_metrics_sessions_dropped", pool="test") == 0
        metrics.max_sessions = 4  # five sessions: above the cap
        capped = parse(_exposition(metrics))
        assert value(capped, "wirepool_metrics_sessions_dropped", pool="test") == 1
        assert not [k for k in capped if k[0].startswith("wirepool_session_")]
        assert value(capped, "wirepool_sessions", pool="test", state="running") == 4
    metrics.close()
    assert pool.instruments is None


def _exposition(metrics: PoolMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


def test_a_name_that_is_not_utf8_does_not_break_the_scrape(tmp_path: Path) -> None:
    name = "caf\udce9"  # the byte 0xe9 of a Latin-1 directory name
    pool = SessionPool(
        StaticDiscovery([Session(name, tmp_path)]),
        spawner=CommandSpawner(SLEEP),
        state_dir=tmp_path / "state",
    )
    metrics = PoolMetrics(pool, "test")
    with pool:
        wait_for(lambda: pool.snapshot().in_state("running"))
        samples = parse(_exposition(metrics))
    metrics.close()
    assert per_session(samples, "wirepool_session_up") == {"caf\\xe9": 1.0}


def test_textfile_is_never_seen_half_written(tmp_path: Path) -> None:
    """A crash loop changes the snapshot all the time; the writer, unthrottled
    here, rewrites the file as fast as it can while readers read it."""
    pool = pool_of(
        tmp_path,
        *[(f"c{i}", CRASH) for i in range(3)],
        *[(f"s{i}", SLEEP) for i in range(40)],
        restart=RestartPolicy(wait=tenacity.wait_fixed(0.01)),
    )
    metrics = PoolMetrics(pool, "test")
    target = tmp_path / "out" / "wirepool.prom"
    target.parent.mkdir()
    reads: list[int] = []
    torn: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                text = target.read_text()
            except FileNotFoundError:
                continue
            try:
                samples = parse(text)
            except Exception as exc:
                torn.append(f"unparsable ({exc}): {text[-200:]!r}")
                continue
            # the last family written is whole: every session has its start time
            if len(per_session(samples, "wirepool_session_start_time_seconds")) < 40:
                torn.append(f"cut short: {text[-200:]!r}")
            reads.append(len(text))
            # A breath between reads: two readers parsing back to back held
            # the interpreter lock from the writer and the pool (1.5 writes
            # a second; the test took 45-60 s of its 60).
            stop.wait(0.005)

    with pool:
        writer = TextfileWriter(metrics, target, interval=0.0)
        readers = [threading.Thread(target=reader) for _ in range(2)]
        for thread in readers:
            thread.start()
        try:
            wait_for(lambda: writer.writes >= 100 and len(reads) >= 100, timeout=60)
        finally:
            stop.set()
            for thread in readers:
                thread.join()
            writer.close()
    metrics.close()
    assert torn == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["wirepool.prom"]  # no temp left


def test_textfile_writes_on_change_only_and_throttled(tmp_path: Path) -> None:
    pool = pool_of(
        tmp_path,
        ("crash", CRASH),
        ("idle", SLEEP),
        restart=RestartPolicy(wait=tenacity.wait_fixed(0.05)),
    )
    metrics = PoolMetrics(pool, "test")
    target = tmp_path / "wirepool.prom"
    with pool:
        writer = TextfileWriter(metrics, target, interval=0.5)
        began = time.monotonic()
        wait_for(lambda: pool.snapshot()["crash"].restarts >= 20)
        wait_for(lambda: writer.writes >= 2)
        elapsed = time.monotonic() - began
        writes = writer.writes
        # twenty restarts, far more snapshots; a write per half second at most
        assert writes <= elapsed / 0.5 + 2, (writes, elapsed)
        pool.stop(children=True)
    # the pool's final snapshot is written once the throttle allows; after
    # that nothing changes, and nothing is written
    wait_for(lambda: writer.written == pool.snapshot().generation)
    pool_done = writer.writes
    time.sleep(1.5)
    assert writer.writes == pool_done
    writer.close()
    metrics.close()
    samples = parse(target.read_text())
    assert value(samples, "wirepool_supervisor_running", pool="test") == 0


def test_unix_socket_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    path.write_text("not a socket")
    pool = pool_of(tmp_path, ("a", SLEEP))
    with pytest.raises(OSError, match="not a socket"):
        serve(pool, "test", address=parse_address(f"unix:{path}"))
    assert pool.instruments is None  # nothing left attached
    path.unlink()
    # a socket file a dead supervisor left is taken over
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    served = serve(pool, "test", address=parse_address(f"unix:{path}"))
    try:
        with pool:
            wait_for(lambda: pool.snapshot().in_state("running"))
            samples = parse(unix_get(path))
            assert per_session(samples, "wirepool_session_up") == {"a": 1.0}
            with pytest.raises(OSError, match="already listens"):
                serve(pool, "test", address=parse_address(f"unix:{path}"))
    finally:
        served.close()
    assert not path.exists()


def full_passes(text: str) -> float:
    found = value(parse(text), "wirepool_discovery_pass_seconds_count", pool="test", scope="full")
    assert found is not None
    return found


def test_an_unchanged_pool_is_rendered_once(tmp_path: Path) -> None:
    """The HTTP endpoint keeps its last answer while nothing it says has
    changed; a change (here a discovery pass) is in the next scrape."""
    pool = pool_of(tmp_path, ("a", SLEEP))
    served = serve(pool, "test", address=parse_address("127.0.0.1:0"))
    assert served.server is not None
    address = str(served.server.bound)
    renders: list[int] = []
    collect = served.metrics.collect

    def counted(snap: Any = None) -> Any:
        renders.append(1)
        return collect(snap)

    served.metrics.collect = counted  # type: ignore[method-assign]
    try:
        with pool:
            wait_for(lambda: pool.snapshot().in_state("running"))
            # the loop settles (a status write follows the first spawn)
            wait_for(lambda: http_get(address) == http_get(address))
            first, count = http_get(address), len(renders)
            assert [http_get(address) for _ in range(5)] == [first] * 5
            assert len(renders) == count
            passes = full_passes(first)
            pool.rescan()
            wait_for(lambda: full_passes(http_get(address)) == passes + 1)
            assert len(renders) > count
    finally:
        served.close()


def test_a_stalled_client_does_not_hold_the_next_scrape(tmp_path: Path) -> None:
    pool = pool_of(tmp_path, ("a", SLEEP))
    served = serve(pool, "test", address=parse_address("127.0.0.1:0"))
    assert served.server is not None
    address = str(served.server.bound)
    host, _, port = address.rpartition(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the rest
    try:
        with pool:
            wait_for(lambda: pool.snapshot().in_state("running"))
            assert "wirepool_session_up" in http_get(address)
    finally:
        stalled.close()
        served.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9187", "127.0.0.1:9187"),
        (":9187", ":9187"),
        ("[::1]:9187", "[::1]:9187"),
        ("unix:/run/w.sock", "unix:/run/w.sock"),
    ],
)
def test_addresses(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", ["9187", "host:http", "::1:9187", "127.0.0.1:70000", "unix:"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


def test_cli_refuses_bad_metrics_options_in_one_line(services: Services, tmp_path: Path) -> None:
    services.add("a")
    root = str(services.root)
    bad = cli("run", "servicedir", root, "--metrics", "localhost")
    assert bad.returncode == 2 and "is not HOST:PORT" in bad.stderr
    txt = cli("run", "servicedir", root, "--metrics-textfile", str(tmp_path / "m.txt"))
    assert txt.returncode == 2 and "*.prom" in txt.stderr
    # a port already taken: one line, and nothing was started
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        busy = cli("run", "servicedir", root, "--metrics", f"127.0.0.1:{port}")
    finally:
        taken.close()
    assert busy.returncode == 1, busy.stderr
    assert busy.stderr.strip().splitlines() == [
        f"wirepool: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (services.state_dir / "status.json").exists()
    for args in ([], ["--metrics", "127.0.0.1:9187"]):
        unit = cli("service", "install", "servicedir", root, *args, "--dry-run")
        assert unit.returncode == 0, unit.stderr
        assert ("--metrics 127.0.0.1:9187" in unit.stdout) == bool(args)
    refused = cli("service", "install", "servicedir", root, "--metrics", "nope", "--dry-run")
    assert refused.returncode == 2 and "is not HOST:PORT" in refused.stderr


# ------------------------------------------------------------ alert rules


@needs_promtool
def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    for args in (
        ["check", "rules", str(FLEET / "alerts.yml")],
        ["test", "rules", str(FLEET / "alerts.test.yml")],
        ["check", "config", str(FLEET / "prometheus.yml")],
    ):
        result = subprocess.run(
            [str(PROMTOOL or "promtool"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=FLEET,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_fire_on_the_series_wirepool_really_serves(tmp_path: Path) -> None:
    """The rules' names and labels against a real scrape, not a copy of
    them: a pool with a failed session and a crash loop is scraped, its
    series go into a promtool unit test as they are, and the alerts must
    fire (and the healthy pool's must not)."""
    pool = pool_of(
        tmp_path,
        ("ok", SLEEP),
        ("gave-up", CRASH),
        restart=RestartPolicy(wait=tenacity.wait_fixed(0.05), stop=tenacity.stop_after_attempt(3)),
    )
    metrics = PoolMetrics(pool, "servicedir")
    with pool:
        wait_for(lambda: pool.snapshot()["gave-up"].state == "failed")
        samples = parse(_exposition(metrics))
    metrics.close()
    target = {"job": "wirepool", "instance": "host1:9187"}
    series = []
    for (name, labels), val in samples.items():
        if not name.startswith("wirepool_"):
            continue
        full = {**dict(labels), **target}
        selector = ",".join(f'{k}="{v}"' for k, v in sorted(full.items()))
        if name == "wirepool_session_restarts_total" and full["session"] == "gave-up":
            # the scrape is one moment: the crash loop goes on at this pace
            assert val >= 2
            values = f"{val:g}+2x40"
        else:
            values = f"{val:g}x40"
        series.append({"series": f"{name}{{{selector}}}", "values": values})
    series.append({"series": 'up{job="wirepool",instance="host1:9187"}', "values": "1x40"})
    expected = [
        {
            "alertname": "WirepoolSessionFailed",
            "labels": {"instance": "host1:9187", "job": "wirepool", "pool": "servicedir"},
            "annotations": {
                "summary": "1 failed wirepool session(s) on host1:9187 (servicedir)",
                "description": "See `wirepool status servicedir` on the host for the reason; "
                "`wirepool reset` once fixed.",
            },
        },
        {
            "alertname": "WirepoolRestartsHigh",
            "labels": {
                "instance": "host1:9187",
                "job": "wirepool",
                "pool": "servicedir",
                "session": "gave-up",
            },
            "annotations": {
                "summary": "wirepool session gave-up on host1:9187 "
                "restarted 30 times in 15 minutes",
                "description": "Its log: `wirepool status servicedir` names it.",
            },
        },
        {"alertname": "WirepoolSupervisorDown", "labels": None},
    ]
    tests = {
        "rule_files": [str(FLEET / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": e["alertname"],
                        "exp_alerts": []
                        if e["labels"] is None
                        else [
                            {
                                "exp_labels": {**e["labels"], "severity": "warning"},
                                "exp_annotations": e["annotations"],
                            }
                        ],
                    }
                    for e in expected
                ],
            }
        ],
    }
    test_file = tmp_path / "real.test.yml"
    test_file.write_text(json.dumps(tests))  # JSON is YAML
    result = subprocess.run(
        [str(PROMTOOL or "promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_benchmark_runs_and_leaves_nothing(tmp_path: Path) -> None:
    """benchmarks/bench_metrics.py, tiny: the harness, not its numbers."""
    out, work = tmp_path / "results", tmp_path / "work"
    work.mkdir()
    argv = ["--sessions", "5", "--window", "1", "--settle", "0", "--burst", "4"]
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_metrics.py"), *argv,
         "--out", str(out), "--tmp", str(work)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [report] = out.glob("metrics-*.json")
    rows = {r["mode"]: r for r in json.loads(report.read_text())["results"]}
    assert rows.keys() == {"off", "http", "textfile"}
    assert rows["http"]["scrapes"] >= 1 and rows["http"]["cpu_ms_per_rendered_scrape"] >= 0
    assert all(r["pss_mb"] > 0 for r in rows.values())
    assert "| textfile |" in next(out.glob("metrics-*.md")).read_text()
    assert leftovers(work) == [] and list(work.iterdir()) == []
