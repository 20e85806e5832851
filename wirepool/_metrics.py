"""Prometheus metrics of a running pool: ``wirepool run --metrics HOST:PORT``
(or ``unix:PATH``) serves them over HTTP, ``--metrics-textfile PATH`` writes
them for node_exporter's textfile collector.

Imported only when one of those options is given: prometheus_client costs
some 40 ms of start-up, which a pool without metrics must not pay.

Every value is computed when it is read, from the pool's in-memory snapshot
(the one ``wait_until`` reads, replaced under its condition's lock, never
mutated) and a few counters: the loop does no work for a scrape, and an idle
pool with an idle scraper stays idle.  What only the loop can see as it
happens -- how late it reacts, how long discovery takes -- it reports through
two cheap hooks (:class:`wirepool._core.Instruments`).

Series and their labels (``pool`` is the plugin's name):

=========================================== ============================== =====
series                                      labels                         count
=========================================== ============================== =====
``wirepool_supervisor_info``                pool, version, state_dir       1
``wirepool_supervisor_running``             pool                           1
``wirepool_supervisor_start_time_seconds``  pool                           1
``wirepool_sessions``                       pool, state                    9
``wirepool_events_total``                   pool, kind                     15
``wirepool_spawn_rate_limit_waits_total``   pool                           1
``wirepool_degraded``                       pool, area                     2+
``wirepool_loop_lag_seconds``               pool (histogram)               16
``wirepool_discovery_pass_seconds``         pool, scope (histogram)        32
``wirepool_metrics_sessions_dropped``       pool                           1
``wirepool_session_up``                     pool, session                  N
``wirepool_session_restarts_total``         pool, session                  N
``wirepool_session_spawn_failures_total``   pool, session                  N
``wirepool_session_last_exit_code``         pool, session                  <= N
``wirepool_session_next_start_seconds``     pool, session                  <= N
``wirepool_session_start_time_seconds``     pool, session                  <= N
=========================================== ============================== =====

About 80 series for the pool and at most six per session: a pool of more
than ``max_sessions`` sessions (``--metrics-max-sessions``) drops the
per-session ones and says so in ``wirepool_metrics_sessions_dropped``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import socketserver
import stat
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest, make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from wirepool._events import Event, EventKind
from wirepool._log import logger
from wirepool._status import STATES, SessionStatus, Snapshot
from wirepool._store import _escape_surrogates, atomic_write
from wirepool._value import Value, frozen
from wirepool._version import version as _wirepool_version

if TYPE_CHECKING:
    from wirepool._pool import SessionPool

__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "MetricsAddress",
    "PoolMetrics",
    "TextfileWriter",
    "parse_address",
    "serve",
]

#: above this many sessions the per-session series are left out
DEFAULT_MAX_SESSIONS = 1000

# A loop pass is ~0.1 ms idle and a few ms under a burst of exits; a
# second is already a supervisor in trouble.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A full pass over a thousand sessions is tens of milliseconds; a plugin on
# a slow network file system can take seconds.
DISCOVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEGRADED_AREAS = ("records", "status")  # what _publish raises; others appear as raised
LIVE_STATES = ("running", "adopted")


class _Buckets:
    """A histogram's counts, kept by the loop thread and read at scrape time.
    Not prometheus_client's Histogram: its observe takes a lock and
    timestamps nothing we need; this is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        counts, total = list(self.counts), self.total  # a copy: the loop goes on counting
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        family.add_metric(labels, buckets, total)


class PoolMetrics:
    """The pool's collector (prometheus_client's ``collect()`` protocol) and
    its :class:`~wirepool._core.Instruments`.  Attach it before the pool
    starts, so that it counts the first events."""

    def __init__(
        self, pool: SessionPool, pool_label: str, *, max_sessions: int = DEFAULT_MAX_SESSIONS
    ) -> None:
        self.pool = pool
        self.pool_label = pool_label
        self.max_sessions = max_sessions
        self._events: Counter[str] = Counter()
        self._observed = 0  # what the hooks saw: a scrape's output depends on it
        self._lag = _Buckets(LAG_BUCKETS)
        self._discovery = {True: _Buckets(DISCOVERY_BUCKETS), False: _Buckets(DISCOVERY_BUCKETS)}
        self._unsubscribe = pool.subscribe(self._on_event)
        pool.instruments = self
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def close(self) -> None:
        self._unsubscribe()
        if self.pool.instruments is self:
            self.pool.instruments = None

    # -- the loop's side: cheap, on the loop thread

    def _on_event(self, event: Event) -> None:
        self._events[event.kind] += 1
        self._observed += 1

    def loop_lag(self, seconds: float) -> None:
        self._lag.observe(seconds)
        self._observed += 1

    def discovery_pass(self, seconds: float, full: bool) -> None:
        self._discovery[full].observe(seconds)
        self._observed += 1

    def version(self) -> tuple[int, ...] | None:
        """What the output depends on, as of now: equal versions, equal
        output.  None while it also depends on the time (a session waits
        out a backoff: its seconds until the next start count down)."""
        snap = self.pool.snapshot()
        if any(s.next_start_at is not None for s in snap.sessions.values()):
            return None
        return (id(snap), snap.generation, self._observed, self.pool._spawn_waits)

    # -- the scraper's side

    def collect(self, snap: Snapshot | None = None) -> Iterator[Metric]:
        if snap is None:
            snap = self.pool.snapshot()  # taken under the snapshot's lock, then ours alone
        now = time.time()
        pool = self.pool_label
        yield _gauge(
            "wirepool_supervisor_info",
            "The supervisor's version and state directory (always 1).",
            ["pool", "version", "state_dir"],
            [([pool, _wirepool_version(), _label(str(self.pool.state_dir))], 1)],
        )
        yield _gauge(
            "wirepool_supervisor_running",
            "1 while the supervisor's loop runs; 0 once it is stopping or stopped.",
            ["pool"],
            [([pool], 1 if snap.running else 0)],
        )
        started = self.pool._started_at
        if started:
            yield _gauge(
                "wirepool_supervisor_start_time_seconds",
                "When this supervisor started, in seconds since the epoch.",
                ["pool"],
                [([pool], started)],
            )
        states = Counter(s.state for s in snap.sessions.values())
        yield _gauge(
            "wirepool_sessions",
            "Sessions by state.",
            ["pool", "state"],
            [([pool, state], states.get(state, 0)) for state in STATES],
        )
        events = CounterMetricFamily(
            "wirepool_events", "Events the pool emitted, by kind.", labels=["pool", "kind"]
        )
        counts = dict(self._events)  # a copy: the loop goes on counting
        for kind in (*(k.value for k in EventKind), *sorted(counts.keys() - set(EventKind))):
            events.add_metric([pool, kind], counts.get(kind, 0))
        yield events
        waits = CounterMetricFamily(
            "wirepool_spawn_rate_limit_waits",
            "Due spawns that the pool-wide spawn-rate limit held back.",
            labels=["pool"],
        )
        waits.add_metric([pool], self.pool._spawn_waits)
        yield waits
        areas = (*DEGRADED_AREAS, *sorted(snap.degraded.keys() - set(DEGRADED_AREAS)))
        yield _gauge(
            "wirepool_degraded",
            "1 while the pool cannot write its state (records, status) though it supervises on.",
            ["pool", "area"],
            [([pool, area], 1 if area in snap.degraded else 0) for area in areas],
        )
        lag = HistogramMetricFamily(
            "wirepool_loop_lag_seconds",
            "From the moment something needed the loop (an exit, a signal, a deadline) "
            "until it waited again.",
            labels=["pool"],
        )
        self._lag.add_to(lag, [pool])
        yield lag
        discovery = HistogramMetricFamily(
            "wirepool_discovery_pass_seconds",
            "How long a discovery pass took (full: every session; partial: those a watch named).",
            labels=["pool", "scope"],
        )
        self._discovery[True].add_to(discovery, [pool, "full"])
        self._discovery[False].add_to(discovery, [pool, "partial"])
        yield discovery
        dropped = len(snap.sessions) > self.max_sessions
        yield _gauge(
            "wirepool_metrics_sessions_dropped",
            "1 when the per-session series are left out: more sessions than "
            "--metrics-max-sessions.",
            ["pool"],
            [([pool], 1 if dropped else 0)],
        )
        if not dropped:
            yield from _per_session(pool, snap.sessions.values(), now)


def _per_session(pool: str, sessions: Iterable[SessionStatus], now: float) -> Iterator[Metric]:
    labels = ["pool", "session"]
    up = GaugeMetricFamily(
        "wirepool_session_up",
        "1 while the session has a live child (running or adopted).",
        labels=labels,
    )
    restarts = CounterMetricFamily(
        "wirepool_session_restarts",
        "Starts of the session's child after its first (kept across supervisors).",
        labels=labels,
    )
    failures = CounterMetricFamily(
        "wirepool_session_spawn_failures",
        "Starts of the session's child that failed, in this supervisor's life.",
        labels=labels,
    )
    exit_code = GaugeMetricFamily(
        "wirepool_session_last_exit_code",
        "How the session's last child ended: its exit code, or minus the signal that killed it.",
        labels=labels,
    )
    next_start = GaugeMetricFamily(
        "wirepool_session_next_start_seconds",
        "Seconds until the session's next start, while it waits in backoff.",
        labels=labels,
    )
    start_time = GaugeMetricFamily(
        "wirepool_session_start_time_seconds",
        "When the session's child started, in seconds since the epoch.",
        labels=labels,
    )
    for s in sessions:
        key = [pool, _label(s.name)]
        up.add_metric(key, 1 if s.state in LIVE_STATES else 0)
        restarts.add_metric(key, s.restarts)
        failures.add_metric(key, s.spawn_failures)
        last = s.last_exit
        if last is not None and last.code is not None:
            exit_code.add_metric(key, last.code)
        elif last is not None and last.signal is not None:
            exit_code.add_metric(key, -last.signal)
        if s.next_start_at is not None:
            next_start.add_metric(key, max(0.0, s.next_start_at - now))
        if s.started_at is not None and s.pid is not None:
            start_time.add_metric(key, s.started_at)
    yield from (up, restarts, failures, exit_code, next_start, start_time)


def _gauge(
    name: str, doc: str, labels: list[str], values: Iterable[tuple[list[str], float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def _label(text: str) -> str:
    """A name that is not UTF-8 (a directory entry's bytes) as status.json
    writes it: the exposition is UTF-8 and would fail the whole scrape."""
    return _escape_surrogates(text)


# ------------------------------------------------------------------ address


@frozen
class MetricsAddress(Value):
    """Where ``--metrics`` listens: a TCP host and port, or a unix socket."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str) -> MetricsAddress:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` (every interface) or
    ``unix:PATH``.  ValueError with what is wrong."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a path, as in unix:/run/wirepool/metrics.sock")
        return MetricsAddress(path=Path(path).absolute())
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9187, :9187 or unix:PATH)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host goes in brackets: [{host}]:{port}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 0 to 65535")
    return MetricsAddress(host=host, port=int(port))


# ------------------------------------------------------------------ HTTP


class _Handler(WSGIRequestHandler):
    """No access log; a unix socket's peer (an empty address) made
    wsgiref's environ raise IndexError."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def get_environ(self) -> dict[str, str]:
        peer: Any = self.client_address  # "" on a unix socket
        if not peer:
            self.client_address = ("local", 0)
        return super().get_environ()


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per request: a slow or stalled client holds its own thread,
    never the next scrape.  The request threads only read the snapshot."""

    daemon_threads = True

    def __init__(self, address: MetricsAddress) -> None:
        self.where = address
        target: Any
        if address.path is not None:
            self.address_family = socket.AF_UNIX
            self.allow_reuse_address = False
            target = str(address.path)
        else:
            infos = socket.getaddrinfo(
                address.host or None,
                address.port,
                type=socket.SOCK_STREAM,
                flags=socket.AI_PASSIVE,
            )
            self.address_family, _, _, _, target = infos[0]
        super().__init__(target, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own asks for the host's fully qualified name, which
        # can wait on DNS; a CGI variable is all that name is for.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.where.host or "localhost"
        self.server_port = self.where.port
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.opt(exception=True).debug("metrics request failed")


class _CachingApp:
    """prometheus_client's WSGI app, with the last response kept while
    nothing it says has changed: an idle pool scraped every 15 s renders
    its exposition once, not every time (8 ms of CPU at 200 sessions)."""

    def __init__(self, metrics: PoolMetrics) -> None:
        self.metrics = metrics
        self.inner = make_wsgi_app(metrics.registry)
        self.last: tuple[tuple[Any, ...], str, list[tuple[str, str]], list[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        version = self.metrics.version()
        asked = (
            "REQUEST_METHOD",
            "PATH_INFO",
            "QUERY_STRING",
            "HTTP_ACCEPT",
            "HTTP_ACCEPT_ENCODING",
        )
        key = (version, *(environ.get(name) for name in asked))
        last = self.last  # one read: other request threads replace it
        if version is not None and last is not None and last[0] == key:
            start_response(last[1], last[2])
            return last[3]
        seen: list[Any] = []

        def keep(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            seen[:] = [status, headers]
            return start_response(status, headers, *exc)

        body = list(self.inner(environ, keep))
        if version is not None and seen and seen[0].startswith("200"):
            self.last = (key, seen[0], seen[1], body)
        return body


class MetricsServer:
    """The HTTP endpoint, in a thread of its own that blocks in a select on
    the listening socket and a pipe -- no polling tick: an idle server costs
    nothing."""

    def __init__(self, metrics: PoolMetrics, address: MetricsAddress) -> None:
        self.address = address
        self._made: tuple[int, int] | None = None  # the socket file we made: dev, inode
        if address.path is not None:
            _clear_stale_socket(address.path)
        self._server = _Server(address)
        if address.path is not None:
            st = os.lstat(address.path)
            self._made = (st.st_dev, st.st_ino)
        self._server.set_app(_CachingApp(metrics))
        self._server.timeout = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="wirepool-metrics", daemon=True)
        self._thread.start()

    @property
    def bound(self) -> MetricsAddress:
        """The address as bound (the port the kernel chose for port 0)."""
        if self.address.path is not None:
            return self.address
        host, port = self._server.server_address[:2]
        return MetricsAddress(host=str(host), port=int(port))

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj == self._wake_r:
                        return
                    try:
                        self._server.handle_request()
                    except Exception as exc:  # never let one request end the endpoint
                        logger.debug("metrics request failed: {}", exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")
        self._thread.join(5.0)
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._made is not None and self.address.path is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(self.address.path)
                if (st.st_dev, st.st_ino) == self._made:  # still ours, not a successor's
                    os.unlink(self.address.path)


def _clear_stale_socket(path: Path) -> None:
    """A socket file left by a supervisor that died is removed; anything
    else at the path, or a socket someone still listens on, is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        os.unlink(path)  # nobody answers: stale
    else:
        raise OSError(f"something already listens on {path}")
    finally:
        probe.close()


# ------------------------------------------------------------------ textfile


class TextfileWriter:
    """Writes the metrics to ``path`` for node_exporter's textfile
    collector: whole or not at all (a temp file beside it, renamed over it:
    the collector reads only ``*.prom``, never the dot-named temp), when the
    snapshot changed but at most every ``interval`` seconds, and every
    ``heartbeat`` seconds regardless -- node_exporter exports the file's
    mtime, by which a fleet sees a supervisor that stopped writing.  A last
    write when the pool stops says it is no longer running."""

    def __init__(
        self,
        metrics: PoolMetrics,
        path: Path,
        *,
        interval: float = 5.0,
        heartbeat: float = 60.0,
    ) -> None:
        self.metrics = metrics
        self.path = path
        self.interval = interval
        self.heartbeat = heartbeat
        self.writes = 0
        self.written = 0  # the generation of the snapshot last written
        self._closed = threading.Event()
        self._failing = False
        self._cond = metrics.pool._snap_cond  # notified whenever a snapshot is published
        self._thread = threading.Thread(target=self._run, name="wirepool-textfile", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen = 0  # the placeholder before the pool's first publish
        last = float("-inf")
        beat = time.monotonic()
        while True:
            with self._cond:
                while not self._closed.is_set():
                    generation = self.metrics.pool.snapshot().generation
                    left = beat + self.heartbeat - time.monotonic()
                    if generation != seen or left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed.is_set():
                    return
                # throttled: a crash loop changes the snapshot many times a second
                pause = last + self.interval - time.monotonic()
                if pause > 0:
                    self._cond.wait_for(self._closed.is_set, pause)
                    if self._closed.is_set():
                        return
            snap = self.metrics.pool.snapshot()
            seen = snap.generation
            last = beat = time.monotonic()
            self.write(snap)
            self.written = seen

    def write(self, snap: Snapshot | None = None) -> None:
        """Write the metrics as of ``snap`` (the current snapshot if None):
        the one whose generation the writer then counts as written."""
        try:
            if snap is None:  # not `or`: a snapshot of no sessions is falsy
                snap = self.metrics.pool.snapshot()
            payload = generate_latest(_As(self.metrics, snap))
            # 0644: node_exporter runs as a user of its own
            atomic_write(self.path, payload, durable=False, mode=0o644)
        except Exception as exc:
            if not self._failing:
                logger.warning("cannot write the metrics textfile {}: {}", self.path, exc)
            self._failing = True
        else:
            if self._failing:
                logger.warning("metrics textfile {} written again", self.path)
            self._failing = False
            self.writes += 1

    def close(self) -> None:
        """Stop the thread and write once more: the pool's final state."""
        with self._cond:
            self._closed.set()
            self._cond.notify_all()
        self._thread.join(5.0)
        self.write()


class _As:
    """The metrics as of one snapshot, for ``generate_latest``."""

    def __init__(self, metrics: PoolMetrics, snap: Snapshot) -> None:
        self.metrics, self.snap = metrics, snap

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collect(self.snap)


# ------------------------------------------------------------------ wiring


class Served:
    """What :func:`serve` started, closed together."""

    def __init__(
        self,
        metrics: PoolMetrics,
        server: MetricsServer | None,
        textfile: TextfileWriter | None,
    ) -> None:
        self.metrics = metrics
        self.server = server
        self.textfile = textfile

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.textfile is not None:
            self.textfile.close()
        self.metrics.close()


def serve(
    pool: SessionPool,
    pool_label: str,
    *,
    address: MetricsAddress | None = None,
    textfile: Path | None = None,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
) -> Served:
    """Attach metrics to ``pool`` (before it starts) and serve them as
    asked.  OSError when the address cannot be bound."""
    metrics = PoolMetrics(pool, pool_label, max_sessions=max_sessions)
    try:
        server = MetricsServer(metrics, address) if address is not None else None
    except BaseException:
        metrics.close()
        raise
    if server is not None:
        where = server.bound
        shown = where if where.path is not None else f"http://{where}/metrics"
        logger.info("serving metrics on {}", shown)
    writer = TextfileWriter(metrics, textfile) if textfile is not None else None
    return Served(metrics, server, writer)
