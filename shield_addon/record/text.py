"""Text for people and for the chain: fixed-width UTC times, terminal-safe strings.

Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


def utc_text(t: float) -> str:
    """Fixed-width UTC text: what the journal stores and the canonical form hashes."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")



# C0 and C1 controls, bidi embeddings, overrides and isolates, the implicit bidi marks (LRM,
# RLM, ALM: they reorder what follows them too) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe_text(text: Any, newlines: bool = False) -> str:
    """Text that cannot move a terminal's cursor or change its colours: control characters
    (ESC included), bidi controls and line separators become visible `\\xNN` escapes."""
    s = "" if text is None else str(text)
    if not newlines:
        s = s.replace("\n", "\\n").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", s)

