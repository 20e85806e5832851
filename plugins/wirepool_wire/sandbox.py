"""``python -m wirepool_wire.sandbox DIR``: a wire box to try the plugin on,
without wire installed.

It builds ``DIR/sessions`` -- a sessions root with a few real sessions among
many idle homes and husks, the shape of the 147-homes box of wire #212 --
and installs the fake ``wire`` binary as ``DIR/bin/wire``, then prints the
commands to run.  Nothing is started.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from wirepool_wire.fake_wire import install_fake_wire
from wirepool_wire.fixtures import make_box


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wirepool_wire.sandbox")
    parser.add_argument("dir", type=Path, help="where to build the box (created)")
    parser.add_argument("--homes", type=int, default=30, help="session homes in all")
    parser.add_argument("--real", type=int, default=4, help="of which real sessions")
    args = parser.parse_args(argv)
    base = args.dir.absolute()
    root = base / "sessions"
    if root.exists():
        print(f"{root} exists already; pick an empty directory", file=sys.stderr)
        return 1
    root.mkdir(parents=True)
    box = make_box(root, n_homes=args.homes, n_real=args.real)
    wire = install_fake_wire(base / "bin")
    opts = f"--sessions-root {shlex.quote(str(root))} --wire-bin {shlex.quote(str(wire))}"
    print(
        f"built {root}: {len(box.real)} real sessions, {len(box.idle)} idle homes, "
        f"{len(box.husks)} husks; fake wire at {wire}"
    )
    print("\ntry:")
    print(f"  wirepool status wire {opts}          # before: reasons, no supervisor")
    print(f"  wirepool run wire {opts} --json      # supervise (Ctrl-C leaves daemons up)")
    print(f"  wirepool status wire {opts}          # from another terminal")
    print(f"  wirepool stop wire {opts} --children # stop the supervisor and daemons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
