"""wirepool's value types: dataclasses made without the ``dataclasses`` module.

Importing ``dataclasses`` brings ``inspect`` along (with ``ast``, ``dis``
and ``tokenize``): ~7 ms of CPU, and creating the ~45 classes with it
(each field's annotation looked at, each generated method compiled from
source) was ~10 ms more, at every start of ``wirepool run``, whose first
child waits for it.  So :func:`frozen` and :func:`record` make the classes
themselves: the fields from the annotations, defaults and :func:`field`,
``__slots__``, ``__match_args__``, an ``__init__``, the frozen pair and what
pickling a frozen slots class needs.

They still are dataclasses to everyone else.  ``dataclasses.fields``,
``replace``, ``asdict`` and ``is_dataclass`` work on them: the class's
``__dataclass_fields__`` and ``__dataclass_params__`` are made by
``dataclasses`` itself, from the same fields, the first time anything asks
for them.  A plugin's ``@dataclass(frozen=True)`` may subclass one, and
mypy checks them as dataclasses (``typing.dataclass_transform``).

The ``__init__``: one shared by every class (no compiling), ~1 us slower per
call than a compiled one; a type built in bulk on a hot path asks for a
compiled one (``fast_init=True``: ``Session``, ``SessionState``).  Equality,
hash and repr come from the base classes here (:class:`Value`: one look-up
of the fields per call), or, for a class compared on a hot path, a compiled
``__eq__`` and ``__hash__`` (``eq=True``, as ``dataclass`` generates them).
:func:`replace` is ``dataclasses.replace`` for these classes, without a call
of ``__init__`` (``__post_init__`` is still called).
"""

from __future__ import annotations

import reprlib
import sys
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, TypeVar, dataclass_transform, get_origin, overload

__all__ = ["MISSING", "Ordered", "Record", "Shown", "Value", "field", "frozen", "record", "replace"]

_T = TypeVar("_T")
_set = object.__setattr__


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: no default (``dataclasses.MISSING`` where the two meet)
MISSING: Any = _Missing()


class _Field:
    """A field: :func:`field`'s answer, and what a class keeps of each."""

    __slots__ = ("compare", "default", "default_factory", "hash", "name", "repr", "type")

    def __init__(
        self,
        default: Any = MISSING,
        default_factory: Any = MISSING,
        repr: bool = True,
        hash: bool | None = None,
        compare: bool = True,
    ) -> None:
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.hash = hash
        self.compare = compare
        self.name = ""
        self.type: Any = None


@overload
def field(
    *, default: _T, repr: bool = True, hash: bool | None = None, compare: bool = True
) -> _T: ...
@overload
def field(
    *,
    default_factory: Callable[[], _T],
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
) -> _T: ...
@overload
def field(*, repr: bool = True, hash: bool | None = None, compare: bool = True) -> Any: ...


def field(
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    repr: bool = True,
    hash: bool | None = None,
    compare: bool = True,
) -> Any:
    """``dataclasses.field``, for the classes made here."""
    return _Field(default, default_factory, repr, hash, compare)


class _Spec:
    """What a class made here is: its fields, in ``__init__``'s order."""

    __slots__ = ("eq", "fields", "frozen", "names", "own_init", "post_init", "shown", "slots")

    def __init__(
        self, cls: type, fields: tuple[_Field, ...], *, frozen: bool, eq: bool, slots: bool
    ) -> None:
        self.fields = fields
        self.names = tuple(f.name for f in fields)
        self.frozen = frozen
        self.eq = eq
        self.slots = slots
        # whether its __init__ calls __post_init__ (looked up on the instance,
        # as dataclass's does: a subclass's own one is the one called)
        self.post_init = hasattr(cls, "__post_init__")
        self.own_init = False  # the class wrote its own __init__ (replace calls it)
        self.shown = cls.__qualname__


#: every class made here, and every plain subclass of one looked up since
_SPECS: dict[type, _Spec] = {}


def _spec_of(cls: type) -> _Spec | None:
    """The fields of ``cls`` if they are those of a class made here (itself
    or a subclass adding none); None for one ``dataclass`` made."""
    spec = _SPECS.get(cls)
    if spec is not None:
        return spec
    for klass in cls.__mro__:
        spec = _SPECS.get(klass)
        if spec is not None:
            mine = _Spec(cls, spec.fields, frozen=spec.frozen, eq=spec.eq, slots=spec.slots)
            mine.post_init = spec.post_init
            below = cls.__mro__[: cls.__mro__.index(klass)]
            mine.own_init = spec.own_init or any("__init__" in k.__dict__ for k in below)
            _SPECS[cls] = mine
            return mine
        if "__dataclass_fields__" in klass.__dict__:
            return None
    return None


def _fields_of(cls: type) -> tuple[Any, ...]:
    spec = _spec_of(cls)
    if spec is not None:
        return spec.fields
    import dataclasses

    return dataclasses.fields(cls)


# ------------------------------------------------------------ making a class


def _class_var(kind: Any, space: dict[str, Any]) -> bool:
    """Whether an annotation says ClassVar, as dataclass reads it: a string
    (``from __future__ import annotations``) by what its head names in the
    class's module, however typing or ClassVar was imported there."""
    if isinstance(kind, str):
        found: Any = space
        for part in kind.split("[", 1)[0].strip().split("."):
            found = found.get(part) if isinstance(found, dict) else getattr(found, part, None)
            if found is None:
                return False
        kind = found
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None and (
        kind is dataclasses.InitVar
        or isinstance(kind, dataclasses.InitVar)
        or kind is dataclasses.KW_ONLY
    ):
        raise TypeError(f"{kind}: InitVar and KW_ONLY need @dataclass")
    return kind is ClassVar or get_origin(kind) is ClassVar


def _as_field(value: Any) -> _Field:
    if isinstance(value, _Field):
        return value
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None and isinstance(value, dataclasses.Field):
        if not value.init or value.metadata or value.kw_only is True:
            raise TypeError("a field with init=False, metadata or kw_only needs @dataclass")
        return _Field(
            MISSING if value.default is dataclasses.MISSING else value.default,
            MISSING if value.default_factory is dataclasses.MISSING else value.default_factory,
            value.repr,
            value.hash,
            value.compare,
        )
    return _Field(default=value)


def _collect(cls: type, *, frozen: bool) -> tuple[_Field, ...]:
    """The fields, a base's first, as ``dataclass`` orders them."""
    found: dict[str, _Field] = {}
    for base in reversed(cls.__mro__[1:]):
        spec = _SPECS.get(base)
        if spec is not None:
            if spec.fields and spec.frozen != frozen:
                raise TypeError(
                    f"cannot inherit {'' if frozen else 'non-'}frozen dataclass "
                    f"from a {'non-' if frozen else ''}frozen one"
                )
            found.update((f.name, f) for f in spec.fields)
        elif "__dataclass_fields__" in base.__dict__:
            raise TypeError(f"{cls.__qualname__}: its base {base.__qualname__} is a @dataclass")
    space = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
    # the class's own (since 3.10 never a base's; on 3.14 evaluated from
    # __annotate__, as strings under `from __future__ import annotations`)
    for name, kind in cls.__annotations__.items():
        if _class_var(kind, space):
            continue
        made = _as_field(cls.__dict__.get(name, MISSING))
        if made.default is not MISSING and made.default.__class__.__hash__ is None:
            raise ValueError(
                f"mutable default {type(made.default)} for field {name} is not allowed: "
                "use default_factory"
            )
        made.name, made.type = name, kind
        found[name] = made
    fields = tuple(found.values())
    seen_default = False
    for f in fields:
        if f.default is not MISSING or f.default_factory is not MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
    return fields


def _slots_of(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__[1:-1]:
        slots = klass.__dict__.get("__slots__", ())
        names.update((slots,) if isinstance(slots, str) else slots)
    return names


def _make(cls: type, *, frozen: bool, slots: bool, eq: bool, fast_init: bool) -> Any:
    fields = _collect(cls, frozen=frozen)
    if frozen and ("__setattr__" in cls.__dict__ or "__delattr__" in cls.__dict__):
        raise TypeError(f"Cannot overwrite attribute __setattr__ in class {cls.__qualname__}")
    made: Any
    body = dict(cls.__dict__)
    own = cls.__annotations__
    if slots:
        if "__slots__" in body:
            raise TypeError(f"{cls.__qualname__} already specifies __slots__")
        inherited = _slots_of(cls)
        body["__slots__"] = tuple(f.name for f in fields if f.name not in inherited)
        for f in fields:
            body.pop(f.name, None)
        body.pop("__dict__", None)
        body.pop("__weakref__", None)  # rebuilt, if the new class has one
        made = type(cls)(cls.__name__, cls.__bases__, body)
        made.__qualname__ = cls.__qualname__
    else:
        made = cls
        for f in fields:
            if f.name in own:  # a class attribute as dataclass leaves it
                if f.default is MISSING:
                    if f.name in body:
                        delattr(made, f.name)
                else:
                    setattr(made, f.name, f.default)
    spec = _Spec(made, fields, frozen=frozen, eq=eq, slots=slots)
    if "__init__" in body:
        spec.own_init = True
    else:
        made.__init__ = _compiled_init(made, spec) if fast_init else _shared_init(made, spec)
    if "__match_args__" not in body:
        made.__match_args__ = spec.names  # type: ignore[misc]
    if "__replace__" not in body:  # copy.replace (3.13), as dataclass gives it
        made.__replace__ = replace
    if frozen:
        made.__setattr__ = _frozen_setattr
        made.__delattr__ = _frozen_delattr
        if slots:
            # pickle and copy would otherwise set the slots through the frozen
            # __setattr__ (what dataclass gives a frozen slots class)
            if "__getstate__" not in body:
                made.__getstate__ = _getstate
            if "__setstate__" not in body:
                made.__setstate__ = _setstate
    if eq:
        _add_eq(made, spec, body, frozen=frozen)
    made.__dataclass_fields__ = _DataclassView(made, "fields")
    made.__dataclass_params__ = _DataclassView(made, "params")
    _SPECS[made] = spec
    return made


def _compile(source: str, env: dict[str, Any], name: str, cls: type) -> Any:
    exec(source, env)  # noqa: S102 -- our own source, made from field names
    function = env[name]
    function.__qualname__ = f"{cls.__qualname__}.{name}"
    return function


def _compiled_init(cls: type, spec: _Spec) -> Callable[..., None]:
    """``__init__`` as ``dataclass`` writes it: compiled, for a type built
    in bulk on a hot path."""
    env: dict[str, Any] = {"__wp_set": _set, "__wp_missing": MISSING}
    args, lines = [], []
    for f in spec.fields:
        value = f.name
        if f.default_factory is not MISSING:
            env[f"__wp_f_{f.name}"] = f.default_factory
            args.append(f"{f.name}=__wp_missing")
            value = f"__wp_f_{f.name}() if {f.name} is __wp_missing else {f.name}"
        elif f.default is not MISSING:
            env[f"__wp_d_{f.name}"] = f.default
            args.append(f"{f.name}=__wp_d_{f.name}")
        else:
            args.append(f.name)
        if spec.frozen:
            lines.append(f"__wp_set(self, {f.name!r}, {value})")
        else:
            lines.append(f"self.{f.name} = {value}")
    if spec.post_init:
        lines.append("self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n    " + "\n    ".join(lines or ["pass"])
    result: Callable[..., None] = _compile(source, env, "__init__", cls)
    return result


def _shared_init(cls: type, spec: _Spec) -> Callable[..., None]:
    """One ``__init__`` for every class (no compiling): the fields by
    position or by name, their defaults and factories, ``__post_init__``."""
    names = spec.names
    count = len(names)
    rest = tuple((f.name, f.default, f.default_factory) for f in spec.fields)
    put = _set if spec.frozen else setattr
    post_init = spec.post_init
    what = cls.__qualname__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given > count:
            raise TypeError(f"{what}() takes {count} arguments but {given} were given")
        for name, arg in zip(names, args, strict=False):
            put(self, name, arg)
        if given < count or kwargs:
            for name, default, factory in rest[given:]:
                if name in kwargs:
                    arg = kwargs.pop(name)
                elif factory is not MISSING:
                    arg = factory()
                elif default is not MISSING:
                    arg = default
                else:
                    raise TypeError(f"{what}() missing required argument: {name!r}")
                put(self, name, arg)
            if kwargs:  # unknown, or given twice (by position and by name)
                raise TypeError(f"{what}() got unexpected arguments: {', '.join(kwargs)}")
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{what}.__init__"
    return __init__


def _add_eq(cls: Any, spec: _Spec, body: dict[str, Any], *, frozen: bool) -> None:
    """The ``__eq__`` and ``__hash__`` ``dataclass(eq=True)`` generates."""
    compared = [f.name for f in spec.fields if f.compare]
    hashed = [f.name for f in spec.fields if (f.compare if f.hash is None else f.hash)]

    def values(of: str, names: list[str]) -> str:
        return "(" + "".join(f"{of}.{name}," for name in names) + ")"

    if "__eq__" not in body:
        cls.__eq__ = _compile(
            "def __eq__(self, other):\n"
            "    if other.__class__ is self.__class__:\n"
            f"        return {values('self', compared)} == {values('other', compared)}\n"
            "    return NotImplemented\n",
            {},
            "__eq__",
            cls,
        )
    # dataclass's table: a hash written in the class is kept (Python sets
    # __hash__ to None beside an __eq__ written there: that one is not)
    explicit = body.get("__hash__", MISSING)
    if explicit is not MISSING and not (explicit is None and "__eq__" in body):
        return
    if frozen:
        cls.__hash__ = _compile(
            f"def __hash__(self):\n    return hash({values('self', hashed)})\n",
            {},
            "__hash__",
            cls,
        )
    else:
        cls.__hash__ = None


class _DataclassView:
    """``__dataclass_fields__`` or ``__dataclass_params__`` of a class made
    here: made by ``dataclasses`` itself the first time anything asks
    (``fields``, ``replace``, ``asdict``, a ``@dataclass`` subclass), then
    kept on the class in its place."""

    __slots__ = ("cls", "what")

    def __init__(self, cls: type, what: str) -> None:
        self.cls = cls
        self.what = what

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        import dataclasses

        cls = self.cls
        spec = _SPECS[cls]
        space: dict[str, Any] = {
            "__annotations__": {f.name: f.type for f in spec.fields},
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        }
        for f in spec.fields:
            space[f.name] = dataclasses.field(
                default=dataclasses.MISSING if f.default is MISSING else f.default,
                default_factory=(
                    dataclasses.MISSING if f.default_factory is MISSING else f.default_factory
                ),
                repr=f.repr,
                hash=f.hash,
                compare=f.compare,
            )
        shadow: Any = dataclasses.dataclass(
            frozen=spec.frozen, eq=spec.eq, repr=False, slots=spec.slots
        )(type(cls.__name__, (), space))
        type.__setattr__(cls, "__dataclass_fields__", shadow.__dataclass_fields__)
        type.__setattr__(cls, "__dataclass_params__", shadow.__dataclass_params__)
        return getattr(cls, f"__dataclass_{self.what}__")


def _frozen_setattr(self: object, name: str, _value: object) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    from dataclasses import FrozenInstanceError

    raise FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: object) -> list[Any]:
    return [getattr(self, f.name) for f in _fields_of(self.__class__)]


def _setstate(self: object, state: list[Any]) -> None:
    for f, item in zip(_fields_of(self.__class__), state, strict=False):
        _set(self, f.name, item)


def replace(obj: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace``: a copy of ``obj`` with ``changes``.  For a
    class made here, made without a call of ``__init__`` (its
    ``__post_init__`` is still called): the state machine makes one at
    every step."""
    cls = obj.__class__
    spec = _spec_of(cls)
    if spec is None or spec.own_init:
        import dataclasses

        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    new: Any = object.__new__(cls)
    for name in spec.names:
        _set(new, name, changes.pop(name) if name in changes else getattr(obj, name))
    if changes:
        raise TypeError(f"{spec.shown}.__init__() got unexpected arguments: {', '.join(changes)}")
    if spec.post_init:
        new.__post_init__()
    made: _T = new
    return made


@overload
def frozen(cls: type[_T], /) -> type[_T]: ...
@overload
def frozen(*, eq: bool = False, fast_init: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True, eq_default=False, field_specifiers=(field, _Field))
def frozen(cls: Any = None, /, *, eq: bool = False, fast_init: bool = False) -> Any:
    """``@dataclass(frozen=True, slots=True, repr=False, eq=eq)`` (see the
    module's docstring); ``fast_init`` compiles its ``__init__``."""

    def make(cls: Any) -> Any:
        return _make(cls, frozen=True, slots=True, eq=eq, fast_init=fast_init)

    return make if cls is None else make(cls)


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, slots: bool = False, fast_init: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(eq_default=False, field_specifiers=(field, _Field))
def record(cls: Any = None, /, *, slots: bool = False, fast_init: bool = False) -> Any:
    """``@dataclass(repr=False, eq=False, slots=slots)``: a mutable record
    (see the module's docstring); ``fast_init`` compiles its ``__init__``."""

    def make(cls: Any) -> Any:
        return _make(cls, frozen=False, slots=slots, eq=False, fast_init=fast_init)

    return make if cls is None else make(cls)


# ------------------------------------------------------------ the base classes


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
    flds = _fields_of(cls)
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
    the generated ``__repr__`` does."""

    __slots__ = ()

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        names = _looks(self.__class__)[2]
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"


class Value(Shown):
    """Base of a value type: equal only to an instance of the same class
    with equal fields, hashed by its fields, shown as :class:`Shown` is."""

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
    """Base of a mutable record: equal and shown as :class:`Value` is, and
    unhashable, as a mutable dataclass with ``eq=True`` is."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
