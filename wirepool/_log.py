"""wirepool's logger: loguru's, imported when first used.

Importing loguru costs about 40 ms (it brings asyncio, multiprocessing and
logging along): more than everything else ``wirepool run`` does before its
first child starts.  :data:`logger` stands for loguru's logger; any use of
it imports loguru and goes straight there.  While :func:`hold` is in force
(``wirepool run``, until the loop has carried out the plan that started its
first children, or half a second after the first of them: see
:func:`release_after`), log calls -- ``logger.info(...)``,
``logger.bind(...).info(...)``, ``logger.opt(...).error(...)`` and the
sink set-up -- are kept, and made at :func:`release`, in order, each with
its own time and caller.  Held with ``logs=False`` (every other command),
only the set-up is kept: the first log call releases, so that one that
logs nothing (``wirepool status``) never imports loguru, and one that does
logs in order with what it prints.  Whoever imports loguru while calls are
kept (a plugin calling it directly) releases them as it does, so that its
first message already goes to the application's sinks.

The library disables its own messages at import, as it always has
(``wirepool/__init__``): when loguru is not imported yet, the disable is
made the moment anyone imports it, before they can enable them.
"""

from __future__ import annotations

import atexit
import sys
import threading
import time
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

    from loguru import Logger

__all__ = [
    "disable_until_enabled",
    "forget",
    "hold",
    "hold_setup_only",
    "kept",
    "logger",
    "release",
    "release_after",
]

#: calls that return another logger (kept as links of a chain while held)
_CHAINED = frozenset({"bind", "opt", "patch", "contextualize"})
#: calls that log, or set loguru up: the end of a chain
_ENDS = frozenset(
    {
        "trace",
        "debug",
        "info",
        "success",
        "warning",
        "error",
        "critical",
        "exception",
        "log",
        "remove",
        "add",
        "enable",
        "disable",
        "configure",
    }
)

#: the ends that set loguru up rather than log: kept while held, and not
#: worth importing loguru for at exit when nothing else was kept
_SETUP = frozenset({"remove", "add", "enable", "disable", "configure"})

#: what is kept while held: with the log calls, or only the set-up
_KEEP_ALL = _CHAINED | _ENDS
_KEEP_SETUP = _CHAINED | _SETUP

_Link = tuple[str, tuple[Any, ...], dict[str, Any]]


class _Kept:
    """One call made while held, with what loguru would have taken from
    its caller's frame and clock."""

    __slots__ = ("args", "at", "chain", "function", "kwargs", "line", "method", "module")

    def __init__(self, chain: Sequence[_Link], method: str, args: Any, kwargs: Any) -> None:
        frame = sys._getframe(3)
        self.chain, self.method, self.args, self.kwargs = chain, method, args, kwargs
        self.module = str(frame.f_globals.get("__name__", "?"))
        self.function = frame.f_code.co_name
        self.line = frame.f_lineno
        self.at = time.time()

    def make(self, real: Logger) -> None:
        target: Any = real
        if self.method not in _SETUP:
            target = real.patch(self._as_made_then)
        for name, args, kwargs in self.chain:
            target = getattr(target, name)(*args, **kwargs)
        getattr(target, self.method)(*self.args, **self.kwargs)

    def _as_made_then(self, record: Any) -> None:
        when = record["time"]
        record["time"] = type(when).fromtimestamp(self.at, tz=when.tzinfo)
        record["name"] = self.module
        record["module"] = self.module.rpartition(".")[2]
        record["function"] = self.function
        record["line"] = self.line


_kept: list[_Kept] | None = None
_lock = threading.Lock()
#: whether log calls are kept too, or only the set-up (see :func:`hold`)
_hold_logs = True
_real: Logger | None = None


def _load() -> Logger:
    global _real
    if _real is None:
        from loguru import logger as real

        _real = real
    return _real


class _Chain:
    """``logger`` and what its chained calls return while held."""

    __slots__ = ("_links",)

    def __init__(self, links: tuple[_Link, ...] = ()) -> None:
        self._links = links

    def __getattr__(self, name: str) -> Any:
        if _kept is None or name not in (_KEEP_ALL if _hold_logs else _KEEP_SETUP):
            real: Any = _load()
            release()
            for link, args, kwargs in self._links:
                real = getattr(real, link)(*args, **kwargs)
            return getattr(real, name)
        links = self._links
        if name in _CHAINED:
            return lambda *a, **k: _Chain((*links, (name, a, k)))
        return lambda *a, **k: _keep(links, name, a, k)

    def __repr__(self) -> str:
        return "<wirepool's loguru logger>"


def _keep(links: tuple[_Link, ...], method: str, args: Any, kwargs: Any) -> None:
    # Under the lock: a line kept by another thread (the log keeper, a
    # probe) as release() takes the list would be lost.
    with _lock:
        if _kept is not None:
            _kept.append(_Kept(links, method, args, kwargs))
            return
    getattr(_Chain(links), method)(*args, **kwargs)  # released meanwhile


#: loguru's logger, imported at its first use (see the module docstring)
logger: Logger = _Chain()  # type: ignore[assignment]


def hold(logs: bool = True) -> None:
    """Keep the sink set-up until :func:`release`, and log calls too unless
    ``logs`` is false: then the first of them releases (see the module
    docstring)."""
    global _kept, _hold_logs
    if "loguru" not in sys.modules and _kept is None:
        _kept = []
        _hold_logs = logs
        atexit.register(_at_exit)


def _at_exit() -> None:
    # the set-up alone is not made: importing loguru to set up sinks that
    # will never see a message is the cost hold() is there to save
    if _kept and any(call.method not in _SETUP for call in _kept):
        release()


def hold_setup_only() -> None:
    """Go on as :func:`hold` with ``logs=False`` would have: the set-up
    stays kept and the next log call releases; log calls kept so far are
    made now (only they import loguru)."""
    global _hold_logs
    with _lock:
        logged = _kept is not None and any(call.method not in _SETUP for call in _kept)
        _hold_logs = False
    if logged:
        release()


def release() -> None:
    """Import loguru now, and make every kept call, in order."""
    global _kept
    with _lock:
        kept, _kept = _kept, None
    if kept:
        real = _load()
        for call in kept:
            call.make(real)


def kept() -> int:
    """How many calls are kept so far (0 when not holding)."""
    with _lock:
        return len(_kept) if _kept is not None else 0


def forget(since: int) -> None:
    """Drop the calls kept after the first ``since`` (and keep holding): a
    step the command will make again (wirepool._main), making them again.
    Lines made already (released) cannot be taken back."""
    with _lock:
        if _kept is not None:
            del _kept[since:]


_release_at: float | None = None


def release_after(delay: float) -> None:
    """:func:`release` once ``delay`` seconds have passed since the first
    call (made at each spawn).  Importing loguru takes ~40 ms of CPU: made
    at the first child, it held up the rest of a bring-up of 200 on two
    cores by a fifth; the loop releases when the plan is carried out, and
    this bounds how long a big one keeps the lines from the operator."""
    global _release_at
    if _kept is None:
        return
    now = time.monotonic()
    if _release_at is None:
        _release_at = now + delay
    elif now >= _release_at:
        release()


def disable_until_enabled(name: str) -> None:
    """``logger.disable(name)``: now if loguru is imported, else the moment
    anyone imports it (before they can call anything on it)."""
    module = sys.modules.get("loguru")
    if module is not None:
        module.logger.disable(name)
        return
    sys.meta_path.insert(0, _DisableOnImport(name))


class _DisableOnImport:
    """A meta path finder that finds nothing itself: it wraps loguru's own
    loader so that its module, once executed, has ``name`` disabled.  (Not
    subclassing ``importlib.abc``: importing that costs 5 ms.)"""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "loguru":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _ThenDisable(spec.loader, self.name)  # type: ignore[assignment]
                return spec
        return None


class _ThenDisable:
    def __init__(self, loader: Loader, name: str) -> None:
        self.loader, self.name = loader, name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.logger.disable(self.name)
        release()  # whoever imports it: the kept set-up made before their first call

    def __getattr__(self, name: str) -> Any:  # get_source for tracebacks, ...
        return getattr(self.loader, name)
