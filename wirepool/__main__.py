"""``python -m wirepool`` is the ``wirepool`` command."""

from wirepool.cli import entry

entry()
