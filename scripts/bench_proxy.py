#!/usr/bin/env python3
"""Throughput and overhead of agent-shield against bare mitmproxy (not a timed test).

The entry point of scripts/bench/ (see scripts/bench/cli.py, or --help): the same flags as
always, plus --smoke.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts` and shield_addon

from scripts.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
