"""One grammar for durations, used by rule files and by the CLI's --since/--until.

'90' or 90 (seconds), '30s', '10m', '2h', '1d', '1w', and sums such as '1h30m'.
"""

from __future__ import annotations

import re
from typing import Any

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+|\d+(?:\.\d+)?")
HINT = "a duration like 30s, 10m, 2h, 1d or 1h30m"


def parse_duration(value: Any) -> float:
    """Seconds in `value`; ValueError naming the accepted forms otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {HINT}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration must not be negative")
        return float(value)
    text = str(value).strip().lower()
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not {HINT}")
    if not text[-1].isalpha():
        return float(text)
    return sum(float(n) * UNITS[u] for n, u in _PART.findall(text))
