"""Reading the end of a log (placeholder until the log work lands)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["follow", "last_lines"]


def last_lines(path: Path, n: int, *, max_bytes: int = 64 << 10) -> list[str]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]
    return lines[-n:] if n > 0 else []


def follow(path: Path, *, lines: int = 10) -> Iterator[str]:
    """Placeholder: the last lines, then each new one (polling)."""
    import time

    yield from last_lines(path, lines)
    offset = os.stat(path).st_size
    while True:
        size = os.stat(path).st_size
        if size < offset:
            offset = 0
        if size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size - offset)
            offset = size
            yield from data.decode("utf-8", "replace").splitlines()
        time.sleep(0.2)
