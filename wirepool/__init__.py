"""wirepool: keep one long-running daemon alive per session.

The public surface is this module's ``__all__``; everything else is private
(``wirepool._*``) or lives in a named public module: :mod:`wirepool.testing`
for test helpers, :mod:`wirepool.plugin` for plugin authors.

wirepool is a library first, so it never configures logging: its loguru
messages are disabled here until an application (the ``wirepool`` CLI, or
yours) calls ``logger.enable("wirepool")`` and adds its own sinks.
"""

from __future__ import annotations

import gc as _gc
from typing import TYPE_CHECKING

# No garbage collection while the engine's modules are imported (the state
# is put back at the end): the ~35 collections the import triggered find
# nearly nothing, and were ~10 % of it: `wirepool run`'s first child waits
# for the import (benchmarks/bench_startup.py).
_collecting = _gc.isenabled()
_gc.disable()

try:
    from wirepool import _log
    from wirepool._clock import Clock, SystemClock
    from wirepool._events import Event, EventKind, EventStream
    from wirepool._pool import SessionPool
    from wirepool._proc import ProcessIdentity
    from wirepool._session import Phase
    from wirepool._status import SessionStatus, Snapshot
    from wirepool._types import ExitStatus, Session, Verdict
    from wirepool.discovery import DirectoryScan, Discovery, StaticDiscovery
    from wirepool.eligibility import (
        ActiveWithin,
        Always,
        Bound,
        Eligibility,
        HasMarker,
        NoDownFile,
    )
    from wirepool.errors import (
        ConfigError,
        ControlError,
        LockHeldError,
        NoSupervisorError,
        PluginError,
        SpawnError,
        UnsafeStateDirError,
        WirepoolError,
    )
    from wirepool.health import HealthCheck, HeartbeatCheck, NoHealthCheck, PidfileCheck
    from wirepool.plugin import Guard, Plugin, PoolSpec
    from wirepool.restart import RestartPolicy, SpawnRateLimit, wait_jitter
    from wirepool.spawn import (
        AdoptedWorker,
        CallableSpawner,
        CommandSpawner,
        Environment,
        Spawner,
        Worker,
    )

    _log.disable_until_enabled("wirepool")
finally:
    if _collecting:
        _gc.enable()
    del _collecting

if TYPE_CHECKING:
    from wirepool._client import Client

    __version__: str


def __getattr__(name: str) -> object:
    # The control socket's client: not needed to supervise, so not imported
    # until asked for (start-up time; see wirepool._log).
    if name == "Client":
        from wirepool._client import Client

        return Client
    if name == "__version__":  # importlib.metadata, when asked (wirepool._version)
        from wirepool._version import version

        return version()
    raise AttributeError(f"module 'wirepool' has no attribute {name!r}")


__all__ = [
    "ActiveWithin",
    "AdoptedWorker",
    "Always",
    "Bound",
    "CallableSpawner",
    "Client",
    "Clock",
    "CommandSpawner",
    "ConfigError",
    "ControlError",
    "DirectoryScan",
    "Discovery",
    "Eligibility",
    "Environment",
    "Event",
    "EventKind",
    "EventStream",
    "ExitStatus",
    "Guard",
    "HasMarker",
    "HealthCheck",
    "HeartbeatCheck",
    "LockHeldError",
    "NoDownFile",
    "NoHealthCheck",
    "NoSupervisorError",
    "Phase",
    "PidfileCheck",
    "Plugin",
    "PluginError",
    "PoolSpec",
    "ProcessIdentity",
    "RestartPolicy",
    "Session",
    "SessionPool",
    "SessionStatus",
    "Snapshot",
    "SpawnError",
    "SpawnRateLimit",
    "Spawner",
    "StaticDiscovery",
    "SystemClock",
    "UnsafeStateDirError",
    "Verdict",
    "WirepoolError",
    "Worker",
    "__version__",
    "wait_jitter",
]
