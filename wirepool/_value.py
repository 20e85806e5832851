"""One ``__init__``, ``__repr__``, ``__eq__`` and ``__hash__`` (and frozen
``__setattr__``/``__delattr__``) for wirepool's dataclasses.

``dataclass`` compiles each method it generates from source, for every class
at every start: the largest part of ``import wirepool``.  The value types
therefore take ``repr=False, eq=False`` and subclass :class:`Value`, whose
three methods do what the generated ones would (the same output, the same
equality, the same hash) from the class's fields, looked up once per class.
The frozen ones are made by :func:`frozen` (the mutable ones by
:func:`record`), which has ``dataclass`` generate nothing at all
(``init=False``, not frozen) and gives the class one shared ``__init__``
and a frozen pair: 0.45 ms less per class, three compiled
methods fewer; ~1 us more per construction, so a type built in bulk on a
hot path (``Session``, ``SessionState``) keeps the generated ``__init__``.
Value's ``__eq__`` reads the fields with one ``attrgetter``, two to three
times as slow as the generated method's attribute loads: a class compared on
a hot path keeps the generated one (``eq=True``, as ``SessionState`` does).
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["Ordered", "Record", "Shown", "Value", "frozen", "record"]

_T = TypeVar("_T")
_set = object.__setattr__

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


@dataclass_transform(frozen_default=True, eq_default=False, field_specifiers=(field,))
def frozen(cls: type[_T]) -> type[_T]:
    """``@dataclass(frozen=True, slots=True, repr=False, eq=False)``, made
    without compiling a method (see the module's docstring).  ``fields``,
    ``replace``, ``__match_args__``, pickling and copying work as for it."""
    made: Any = dataclass(slots=True, init=False, repr=False, eq=False)(cls)
    # What a subclass's @dataclass checks: a frozen one may extend it (and
    # a mutable one may not), as with the frozen dataclass it stands for.
    made.__dataclass_params__.frozen = True
    made.__init__ = _init_for(made)
    made.__setattr__ = _frozen_setattr
    made.__delattr__ = _frozen_delattr
    made.__getstate__ = _getstate
    made.__setstate__ = _setstate
    result: type[_T] = made
    return result


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, slots: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(eq_default=False, field_specifiers=(field,))
def record(cls: Any = None, /, *, slots: bool = False) -> Any:
    """``@dataclass(repr=False, eq=False, slots=slots)``, made with the
    shared ``__init__`` of :func:`frozen`: a mutable record."""

    def make(cls: Any) -> Any:
        made = dataclass(slots=slots, init=False, repr=False, eq=False)(cls)
        made.__init__ = _init_for(made)
        return made

    return make if cls is None else make(cls)


def _init_for(cls: type) -> Callable[..., None]:
    flds = fields(cls)
    if any(not f.init for f in flds):  # the shared __init__ would take it
        raise TypeError(f"{cls.__qualname__}: a field with init=False needs @dataclass")
    names = tuple(f.name for f in flds)
    count = len(names)
    rest = tuple(
        (f.name, f.default, None if f.default_factory is MISSING else f.default_factory)
        for f in flds
    )
    post_init = getattr(cls, "__post_init__", None)
    what = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given > count:
            raise TypeError(f"{what}() takes {count} arguments but {given} were given")
        for name, arg in zip(names, args, strict=False):
            _set(self, name, arg)
        if given < count or kwargs:
            for name, default, factory in rest[given:]:
                if name in kwargs:
                    arg = kwargs.pop(name)
                elif factory is not None:
                    arg = factory()
                elif default is not MISSING:
                    arg = default
                else:
                    raise TypeError(f"{what}() missing required argument: {name!r}")
                _set(self, name, arg)
            if kwargs:  # unknown, or given twice (by position and by name)
                raise TypeError(f"{what}() got unexpected arguments: {', '.join(kwargs)}")
        if post_init is not None:
            post_init(self)

    __init__.__qualname__ = f"{what}.__init__"
    return __init__


def _frozen_setattr(self: object, name: str, _value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


# What ``dataclass`` gives a frozen slots class: pickle and ``copy`` would
# otherwise set the slots through the frozen ``__setattr__``.
def _getstate(self: object) -> list[Any]:
    return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]


def _setstate(self: object, state: list[Any]) -> None:
    for f, item in zip(fields(self), state, strict=False):  # type: ignore[arg-type]
        _set(self, f.name, item)
