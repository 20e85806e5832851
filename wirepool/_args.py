"""Command-line options declared once: click parameters for help, errors and
every verb, and parsed without click for an ordinary ``wirepool run`` line.

Importing click and parsing with it is ~15 ms of the ~90 ms from the exec of
``wirepool run`` to its first child (``benchmarks/bench_startup.py``), and a
supervisor is usually started with the same few options.  So a plugin (and
``run`` itself) declares options with :class:`Option` and :class:`Argument`:
:meth:`~Option.to_click` makes the click parameter from one, and
:func:`parse` reads a line with them and no click.

:func:`parse` takes a line only when click would take it the same way:
options given once as ``--name value``, ``--name=value`` or their declared
short spelling alone, flags, positionals in any order, values that do not
start with ``-``, each converted and checked as click's type would
(``FloatRange``, ``IntRange``, ``Path``, ``Choice``) and passed to the
option's callback.  Anything else -- help, ``--``, a cluster of short
options, an unknown or repeated option, a bad or missing value -- is
declined (None), and click parses the whole line again with its own
messages.  ``tests/test_args.py`` holds the two to the same result.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeGuard

if TYPE_CHECKING:
    import click

__all__ = ["Argument", "Option", "ValueKind", "all_light", "parse"]

#: what a value is: text (``str``), a number (``int``, ``float``), a path
#: (``Path``), or one of some words (a tuple of them)
ValueKind: TypeAlias = type[str] | type[int] | type[float] | type[Path] | tuple[str, ...]

_UNSET: Any = object()


class _Decline(Exception):
    """The fast parser is not sure of the line: click reads it."""


class _Param:
    """What an option and an argument share: the value's kind and checks."""

    __slots__ = ("callback", "dir_okay", "file_okay", "kind", "max", "metavar", "min", "name")

    def __init__(
        self,
        name: str,
        kind: ValueKind,
        *,
        min: float | None,
        max: float | None,
        file_okay: bool,
        dir_okay: bool,
        callback: Callable[[Any], Any] | None,
        metavar: str | None,
    ) -> None:
        if isinstance(kind, tuple) and not all(isinstance(word, str) for word in kind):
            raise TypeError(f"{name}: a choice is a tuple of words")
        if (min is not None or max is not None) and kind not in (int, float):
            raise TypeError(f"{name}: min and max are for int and float values")
        self.name = name
        self.kind = kind
        self.min = min
        self.max = max
        self.file_okay = file_okay
        self.dir_okay = dir_okay
        self.callback = callback
        self.metavar = metavar

    def convert(self, value: Any) -> Any:
        """``value`` (text from the line, or the default) made what click's
        type would make it; :class:`_Decline` where click would refuse it."""
        kind = self.kind
        if isinstance(kind, tuple):
            if value not in kind:
                raise _Decline
            return value
        if kind is int or kind is float:
            try:
                number = kind(value)  # click's INT and FLOAT: int() and float()
            except (TypeError, ValueError):
                raise _Decline from None
            if (self.min is not None and number < self.min) or (
                self.max is not None and number > self.max
            ):
                raise _Decline
            return number
        if kind is Path:
            return _path(value, file_okay=self.file_okay, dir_okay=self.dir_okay)
        if not isinstance(value, str):
            raise _Decline
        return value

    def finish(self, value: Any) -> Any:
        if self.callback is None or value is None:
            return value
        try:
            return self.callback(value)
        except Exception:  # click's path calls it again, and says what is wrong
            raise _Decline from None

    def click_kwargs(self) -> dict[str, Any]:
        """What an option and an argument pass click alike: the type (left
        out for text, click's default), the callback, the metavar."""
        kwargs: dict[str, Any] = {"callback": self._click_callback(), "metavar": self.metavar}
        click_type = self._click_type()
        if click_type is not None:
            kwargs["type"] = click_type
        return kwargs

    def _click_type(self) -> Any:
        import click

        kind = self.kind
        if isinstance(kind, tuple):
            return click.Choice(list(kind))
        if kind is float:
            return click.FloatRange(self.min, self.max) if self._bounded() else click.FLOAT
        if kind is int:
            return click.IntRange(self.min, self.max) if self._bounded() else click.INT  # type: ignore[arg-type]
        if kind is Path:
            return click.Path(file_okay=self.file_okay, dir_okay=self.dir_okay, path_type=Path)
        return None

    def _click_callback(self) -> Any:
        callback = self.callback
        if callback is None:
            return None

        def checked(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
            import click

            if value is None:
                return None
            try:
                return callback(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

        return checked

    def _bounded(self) -> bool:
        return self.min is not None or self.max is not None


def _path(value: Any, *, file_okay: bool, dir_okay: bool) -> Path:
    """click's ``Path`` check, as its ``convert`` makes it with its defaults
    (``exists=False``, ``readable=True``): a path that is there must be of a
    kind allowed, and readable; one that is not there is taken as it is."""
    if not isinstance(value, str | Path) or value in ("", "-"):
        raise _Decline
    try:
        st = os.stat(value)
    except OSError:
        return Path(value)
    except ValueError:  # an embedded NUL: click's own error
        raise _Decline from None
    if (not file_okay and stat.S_ISREG(st.st_mode)) or (not dir_okay and stat.S_ISDIR(st.st_mode)):
        raise _Decline
    if not os.access(value, os.R_OK):
        raise _Decline
    return Path(value)


class Option(_Param):
    """An option of a plugin (or a verb): ``Option("--grace", kind=float,
    min=0, default=10.0, help=...)``.  ``decls`` are as click's: the
    spellings, and optionally the name the value goes under (otherwise the
    first long spelling, ``--stop-grace`` giving ``stop_grace``).

    ``is_flag`` takes no value (True when given); ``multiple`` may be given
    again and again (a tuple).  ``callback`` gets the converted value (not
    None: an option not given with no default stays None) and returns the
    one to use; a ValueError from it is the option's error.  It may be
    called twice for one command line (a line the fast parser declines
    after calling it is read again by click), so it should only convert and
    check.  ``run_only`` shows it only in ``run --help``
    (:func:`wirepool.plugin.run_only`)."""

    __slots__ = (
        "decls",
        "default",
        "help",
        "hidden",
        "is_flag",
        "multiple",
        "required",
        "run_only",
        "show_default",
    )

    def __init__(
        self,
        *decls: str,
        kind: ValueKind = str,
        min: float | None = None,
        max: float | None = None,
        file_okay: bool = True,
        dir_okay: bool = True,
        default: Any = _UNSET,
        is_flag: bool = False,
        multiple: bool = False,
        required: bool = False,
        callback: Callable[[Any], Any] | None = None,
        help: str | None = None,
        metavar: str | None = None,
        show_default: bool = False,
        hidden: bool = False,
        run_only: bool = False,
    ) -> None:
        spellings = [d for d in decls if d.startswith("-")]
        names = [d for d in decls if not d.startswith("-")]
        if not spellings or len(names) > 1 or any(not n.isidentifier() for n in names):
            raise TypeError(f"option {decls!r}: spellings, then at most one name")
        if any("/" in d or ";" in d or (d.startswith("--") and len(d) < 3) for d in spellings):
            raise TypeError(f"option {decls!r}: on/off pairs and bare dashes go through click")
        if is_flag and (multiple or kind is not str):
            raise TypeError(f"option {decls!r}: a flag takes no value")
        # Defaults click treats in ways of its own (called, iterated, a flag's
        # None kept) are refused rather than read differently here.
        if callable(default):
            raise TypeError(f"option {decls!r}: a default is a value, not a function")
        if is_flag and default is not _UNSET and not isinstance(default, bool):
            raise TypeError(f"option {decls!r}: a flag's default is True or False")
        if multiple and default not in (_UNSET, None) and not isinstance(default, tuple | list):
            raise TypeError(f"option {decls!r}: a multiple option's default is a tuple")
        if names:
            name = names[0]
        else:  # click's rule: the first of the longest prefix, less that prefix
            longest = sorted(spellings, key=lambda d: -(2 if d.startswith("--") else 1))[0]
            name = longest[2 if longest.startswith("--") else 1 :].replace("-", "_").lower()
            if not name.isidentifier():
                raise TypeError(f"option {decls!r}: give the name its value goes under")
        super().__init__(
            name,
            kind,
            min=min,
            max=max,
            file_okay=file_okay,
            dir_okay=dir_okay,
            callback=callback,
            metavar=metavar,
        )
        self.decls = tuple(decls)
        self.default = default
        self.is_flag = is_flag
        self.multiple = multiple
        self.required = required
        self.help = help
        self.show_default = show_default
        self.hidden = hidden
        self.run_only = run_only

    @property
    def spellings(self) -> tuple[str, ...]:
        return tuple(d for d in self.decls if d.startswith("-"))

    def to_click(self, *, hidden: bool = False) -> click.Option:
        """The click option, hidden also when ``hidden``."""
        import click

        kwargs = self.click_kwargs()
        if self.default is not _UNSET:
            kwargs["default"] = self.default
        if self.is_flag:
            kwargs["is_flag"] = True
        return click.Option(
            list(self.decls),
            multiple=self.multiple,
            required=self.required,
            help=self.help,
            show_default=self.show_default,
            hidden=self.hidden or hidden,
            **kwargs,
        )

    def value(self, given: list[str] | None) -> Any:
        """What click passes on: the line's value(s) or the default, converted."""
        if given is None:
            if self.is_flag:
                return self.finish(False if self.default is _UNSET else self.default)
            if self.multiple:
                default = () if self.default in (_UNSET, None) else tuple(self.default)
                if self.required and not default:
                    raise _Decline
                return self.finish(tuple(self.convert(v) for v in default))
            if self.default in (_UNSET, None):
                if self.required:
                    raise _Decline
                return self.finish(None)
            return self.finish(self.convert(self.default))
        if self.is_flag:
            return self.finish(True)
        if self.multiple:
            return self.finish(tuple(self.convert(v) for v in given))
        return self.finish(self.convert(given[0]))


class Argument(_Param):
    """A positional argument of a plugin: ``Argument("root", kind=Path,
    file_okay=False)``; one value, required unless ``required=False``.
    ``nargs=-1``: any number of values (a tuple), at least one if required;
    :func:`parse` reads such an argument only as the last one."""

    __slots__ = ("nargs", "required")

    def __init__(
        self,
        name: str,
        *,
        kind: ValueKind = str,
        min: float | None = None,
        max: float | None = None,
        file_okay: bool = True,
        dir_okay: bool = True,
        required: bool = True,
        nargs: int = 1,
        callback: Callable[[Any], Any] | None = None,
        metavar: str | None = None,
    ) -> None:
        if not name.isidentifier():
            raise TypeError(f"argument {name!r}: a name, such as 'root'")
        if nargs not in (1, -1):
            raise TypeError(f"argument {name!r}: one value (nargs=1) or any number (-1)")
        super().__init__(
            name,
            kind,
            min=min,
            max=max,
            file_okay=file_okay,
            dir_okay=dir_okay,
            callback=callback,
            metavar=metavar,
        )
        self.required = required
        self.nargs = nargs

    def to_click(self, *, hidden: bool = False) -> click.Argument:
        import click

        kwargs = self.click_kwargs()
        # said, not left to click: a "required" one taking any number is
        # optional unless it is said to be required
        kwargs["required"] = self.required
        if self.nargs != 1:
            kwargs["nargs"] = self.nargs
        return click.Argument([self.name], **kwargs)

    def value(self, given: Sequence[str]) -> Any:
        """What click passes on for the positionals ``given`` to it (one at
        most, unless it takes any number)."""
        if self.nargs == -1:
            if self.required and not given:
                raise _Decline
            return self.finish(tuple(self.convert(v) for v in given))
        if not given:
            if self.required:
                raise _Decline
            return self.finish(None)
        return self.finish(self.convert(given[0]))


def all_light(params: Sequence[object]) -> TypeGuard[Sequence[Option | Argument]]:
    """Whether every one is an :class:`Option` or :class:`Argument` (a click
    parameter among them sends the line to click)."""
    return all(isinstance(p, Option | Argument) for p in params)


def parse(params: Sequence[Option | Argument], line: Sequence[str]) -> dict[str, Any] | None:
    """The values of ``params`` in ``line``, by name, as click would give
    them; None when the line is one for click to read (see the module)."""
    by_spelling = {s: p for p in params if isinstance(p, Option) for s in p.spellings}
    arguments = [p for p in params if isinstance(p, Argument)]
    given: dict[str, list[str]] = {}
    positional: list[str] = []
    i = 0
    try:
        while i < len(line):
            word = line[i]
            i += 1
            if word[:1] != "-" or word == "-":
                positional.append(word)
                continue
            spelling, eq, text = word.partition("=")
            option = by_spelling.get(spelling)
            if option is None or (eq and not spelling.startswith("--")):
                raise _Decline
            if option.name in given and not option.multiple:
                raise _Decline  # click keeps the last; rare enough to let it say so
            if option.is_flag:
                if eq:
                    raise _Decline
                text = ""
            elif not eq:
                if i == len(line) or line[i][:1] == "-":
                    raise _Decline
                text = line[i]
                i += 1
            given.setdefault(option.name, []).append(text)
        # click spreads the positionals over the arguments in order, one
        # each, and what is left to one that takes any number: read here
        # only when that one is the last
        if any(a.nargs != 1 for a in arguments[:-1]):
            raise _Decline
        rest = bool(arguments) and arguments[-1].nargs != 1
        if len(positional) > len(arguments) and not rest:
            raise _Decline
        values: dict[str, Any] = {}
        for param in params:
            if isinstance(param, Argument):
                at = arguments.index(param)
                mine = positional[at:] if param.nargs != 1 else positional[at : at + 1]
                values[param.name] = param.value(mine)
            else:
                values[param.name] = param.value(given.get(param.name))
        return values
    except _Decline:
        return None
