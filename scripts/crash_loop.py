#!/usr/bin/env python3
"""The entry point of scripts/reliability/crash_loop.py (its docstring, or --help, says what it does)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts`, `tests` and shield_addon

from scripts.reliability.crash_loop import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
