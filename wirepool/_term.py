"""What reaches the operator's terminal, escaped.

Session names, paths, reasons and file contents come from directories and
files that people other than the operator may write.  Printed raw, an
escape sequence in one of them can retitle the terminal, clear it, rewrite
earlier lines or hide a session; a newline can forge a table row; a
right-to-left override (U+202E) or a zero-width space makes two different
names look alike.  So every character that is not plainly visible text is
shown as a Python-style escape (``\\x1b``, ``\\u202e``) instead:

* C0 and C1 control characters and DEL;
* Unicode format characters (category Cf: the bidirectional controls, zero
  width characters, the byte-order mark, tag characters);
* the line and paragraph separators U+2028 and U+2029;
* lone surrogates -- what ``surrogateescape`` makes of bytes that are not
  UTF-8 -- which a strict terminal encoder would refuse anyway.

:func:`install` puts one escaping layer over ``sys.stdout`` and
``sys.stderr`` of the ``wirepool`` command, so no call site can forget it;
:func:`escape` is for the places that must escape a single value *before*
layout (a table cell, whose width must be that of what is shown).
"""

from __future__ import annotations

import functools
import io
import re
import sys
from typing import TextIO

__all__ = ["EscapingStream", "escape", "install"]

# The Cf ranges of Unicode 15 (tests/hostile/test_terminal.py checks this list against
# the running interpreter's unicodedata, so a newer Unicode that adds one
# fails a test rather than slipping through).
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_OTHERS = f"\\x7f-\\x9f\\u2028\\u2029\\ud800-\\udfff{_FORMAT}"


@functools.cache
def _unsafe(keep_newlines: bool) -> re.Pattern[str]:
    # compiled at first use, not at import: 0.6 ms of `wirepool run`'s start-up
    if keep_newlines:  # a newline passes: for whole lines of output already laid out
        return re.compile(f"[\\x00-\\x09\\x0b-\\x1f{_OTHERS}]")
    return re.compile(f"[\\x00-\\x1f{_OTHERS}]")


def _code(match: re.Match[str]) -> str:
    o = ord(match.group())
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character that is not plainly visible replaced
    by its escape.  The result contains only visible characters (and, with
    ``keep_newlines``, newlines), so escaping it again changes nothing."""
    return _unsafe(keep_newlines).sub(_code, text)


class EscapingStream(io.TextIOBase):
    """A text stream that escapes what is written to it before passing it
    on: newlines pass (lines are the output's own structure), nothing else
    that a terminal would act on does."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self._inner = inner

    @property
    def inner(self) -> TextIO:
        return self._inner

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self._inner.errors

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._inner.write(escape(text, keep_newlines=True))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()


def install() -> None:
    """Escape everything the process writes to stdout and stderr from now on
    (idempotent).  For the ``wirepool`` command, which owns its streams; a
    library embedding a pool keeps its own."""
    if not isinstance(sys.stdout, EscapingStream):
        sys.stdout = EscapingStream(sys.stdout)
    if not isinstance(sys.stderr, EscapingStream):
        sys.stderr = EscapingStream(sys.stderr)
