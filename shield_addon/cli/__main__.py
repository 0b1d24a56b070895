"""`python -m shield_addon.cli`: the `shield` command without its console script."""

import sys

from shield_addon.cli import main

sys.exit(main())
