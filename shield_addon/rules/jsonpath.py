"""The JSON-path subset of `json:` match fields: $.a.b, $.a[0], $.a[*] and $.a.*"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from shield_addon.actions import RequestView

# One step: (key, index, star), exactly one of them set.
Step = tuple[str | None, str | None, str | None]

_PATH = re.compile(r"\$((?:\.[A-Za-z_][\w-]*|\[\d+\]|\[\*\]|\.\*)*)$")
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|(\[\*\]|\.\*)")
# What body_json returns for a body that is not a JSON object or array.
NO_JSON = object()


def parse(path: Any) -> list[Step] | None:
    """The steps of a path, or None when it is not a path of the subset."""
    if not isinstance(path, str) or not _PATH.match(path):
        return None
    return [(m.group(1), m.group(2), m.group(3)) for m in _STEP.finditer(path[1:])]


def walk(doc: Any, steps: list[Step]) -> Iterable[Any]:
    """Every value the steps reach; none when a step does not fit the document."""
    nodes = [doc]
    for key, index, star in steps:
        nxt = []
        for n in nodes:
            if key is not None and isinstance(n, dict) and key in n:
                nxt.append(n[key])
            elif index is not None and isinstance(n, list) and int(index) < len(n):
                nxt.append(n[int(index)])
            elif star is not None:
                nxt.extend(n.values() if isinstance(n, dict) else n if isinstance(n, list) else [])
        nodes = nxt
    return nodes


def scalar(v: Any) -> str:
    """A value as the text a regex is matched against: strings as they are, the rest as compact JSON."""
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def body_json(req: RequestView) -> Any:
    """The request body decoded, or NO_JSON when it is not a JSON object or array."""
    if not req.body or req.body.lstrip()[:1] not in (b"{", b"["):
        return NO_JSON
    try:
        return json.loads(req.body)
    except (ValueError, RecursionError):
        return NO_JSON
