"""``python -m wirepool`` is the ``wirepool`` command."""

from wirepool._main import entry

entry()
