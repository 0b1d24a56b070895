"""Where bundled files live, in a checkout and in an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ADDON = PACKAGE / "addon.py"
DEMO = PACKAGE / "demo.py"


def bundled_rules() -> Path:
    # In a wheel the rules are packaged as shield_addon/bundled_rules; in a checkout
    # (editable install) they are the repository's rules/ folder.
    packaged = PACKAGE / "bundled_rules"
    return packaged if packaged.is_dir() else PACKAGE.parent / "rules"


def default_confdir() -> Path:
    return Path("~/.mitmproxy").expanduser()
