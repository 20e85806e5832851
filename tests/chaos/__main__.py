"""``python -m tests.chaos --duration SECONDS --seed N --sessions N``."""

import sys

from tests.chaos.chaos_driver import main

sys.exit(main())
