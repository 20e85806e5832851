"""``python -m wirepool`` is the ``wirepool`` command."""

from wirepool.cli import main

main(prog_name="wirepool")
