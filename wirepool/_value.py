"""One ``__repr__``, ``__eq__`` and ``__hash__`` for wirepool's dataclasses.

``dataclass`` compiles each method it generates from source, for every class
at every start: the largest part of ``import wirepool``.  The value types
therefore take ``repr=False, eq=False`` and subclass :class:`Value`, whose
three methods do what the generated ones would (the same output, the same
equality, the same hash) from the class's fields, looked up once per class.
``__init__`` and the frozen ``__setattr__``/``__delattr__`` are still
generated: a shared ``__init__`` would be slower at every construction, and
the frozen pair cannot be shared without one.  Value's ``__eq__`` reads the
fields with one ``attrgetter``, two to three times as slow as the generated
method's attribute loads: a class compared on a hot path keeps the generated
one (``eq=True``, as ``SessionState`` does).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import fields
from operator import attrgetter
from typing import Any

__all__ = ["Ordered", "Record", "Shown", "Value"]

_Getter = Callable[[Any], tuple[Any, ...]]


def _getter(names: tuple[str, ...]) -> _Getter:
    """The fields' values as a tuple, as the generated methods build it."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


# per class: its compared values, its hashed values, the names its repr shows
_Look = tuple[_Getter, _Getter, tuple[str, ...]]
_LOOKS: dict[type, _Look] = {}


def _look(cls: type) -> _Look:
    flds = fields(cls)
    look = (
        _getter(tuple(f.name for f in flds if f.compare)),
        # dataclass's rule: ``hash=None`` follows ``compare``
        _getter(tuple(f.name for f in flds if (f.compare if f.hash is None else f.hash))),
        tuple(f.name for f in flds if f.repr),
    )
    _LOOKS[cls] = look
    return look


def _looks(cls: type) -> _Look:
    return _LOOKS.get(cls) or _look(cls)


class Shown:
    """Shown as ``Name(field=value, ...)``, the fields with ``repr=True``, as
    the generated ``__repr__`` does (base of a ``repr=False`` dataclass)."""

    __slots__ = ()

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        names = _looks(self.__class__)[2]
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"


class Value(Shown):
    """Base of a ``@dataclass(frozen=True, slots=True, repr=False, eq=False)``:
    equal only to an instance of the same class with equal fields, hashed by
    its fields, shown as :class:`Shown` is."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            values = _looks(self.__class__)[0]
            return values(self) == values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_looks(self.__class__)[1](self))


class Ordered(Value):
    """A :class:`Value` ordered as ``order=True`` orders: by its compared
    fields, against an instance of the same class only."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            values = _looks(self.__class__)[0]
            return values(self) < values(other)
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            values = _looks(self.__class__)[0]
            return values(self) <= values(other)
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            values = _looks(self.__class__)[0]
            return values(self) > values(other)
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            values = _looks(self.__class__)[0]
            return values(self) >= values(other)
        return NotImplemented


class Record(Value):
    """Base of a mutable ``@dataclass(repr=False, eq=False)``: equal and shown
    as :class:`Value` is, and unhashable, as a mutable dataclass with
    ``eq=True`` is."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
