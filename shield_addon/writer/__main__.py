import sys

from shield_addon.writer.process import main

sys.exit(main())
