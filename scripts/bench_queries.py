#!/usr/bin/env python3
"""Query benchmark for the audit store: synthetic events, then the `shield` commands an analyst runs.

The entry point of scripts/bench/queries.py (its docstring, or --help, says what it does).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts` and shield_addon

from scripts.bench.queries import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
