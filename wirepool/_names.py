"""Which session an operator means.

A session has one name an operator sees: its display name (for ``wire``
the persona handle, what ``wire supervisor --json`` reports), the same in
the table, in ``status --json``, in events and in log file names.  Its key
(the pool's internal name: ``by-key/<hash>`` for ``wire``) and its home's
path are accepted as input too, since scripts may hold either.

Two sessions may share a display name (two wire homes with one handle).
They are both listed, told apart by key, and a name that fits both is an
error listing each: a verb must never act on a guess.  An unknown name is
an error with the close matches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wirepool._value import Value, frozen

__all__ = ["NameProblem", "Named", "resolve", "resolve_all"]


@frozen
class Named(Value):
    """What resolution needs of a session."""

    key: str  # the pool's internal name: unique
    name: str  # what the operator sees
    home: str = ""


class NameProblem(Exception):
    """An unknown or ambiguous session name; ``code`` is the control
    protocol's error code, ``candidates`` what the operator may have meant."""

    def __init__(self, code: str, message: str, candidates: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.candidates = list(candidates)


def resolve(query: str, sessions: Mapping[str, Named]) -> str:
    """The key of the one session ``query`` names: its key, its display
    name or its home's path, in that order."""
    if query in sessions:
        return query
    by_name = sorted(key for key, s in sessions.items() if s.name == query)
    if not by_name:
        by_name = sorted(key for key, s in sessions.items() if s.home and s.home == query)
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        listed = [f"{sessions[k].name} (key {k})" for k in by_name]
        raise NameProblem(
            "ambiguous-session",
            f"{query!r} names {len(by_name)} sessions: {', '.join(listed)}; give the key",
            by_name,
        )
    names = sorted({s.name for s in sessions.values()} | set(sessions))
    import difflib  # only for a name not found: ~1 ms of every start

    close = difflib.get_close_matches(query, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise NameProblem("unknown-session", f"no session named {query!r}{hint}", close)


def resolve_all(queries: Iterable[str], sessions: Mapping[str, Named]) -> list[str]:
    """The keys of every session named, each once, in the order given; the
    first unknown or ambiguous name raises (nothing is acted on then)."""
    keys: list[str] = []
    for query in queries:
        key = resolve(query, sessions)
        if key not in keys:
            keys.append(key)
    return keys


def shown_names(sessions: Mapping[str, Named]) -> dict[str, str]:
    """The name each session is shown by: its display name, with its key
    after it where another session shows the same one."""
    count: dict[str, int] = {}
    for s in sessions.values():
        count[s.name] = count.get(s.name, 0) + 1
    return {
        key: s.name if count[s.name] == 1 or s.name == key else f"{s.name} ({key})"
        for key, s in sessions.items()
    }
