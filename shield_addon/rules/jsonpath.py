"""The JSON-path subset of `json:` match fields: $.a.b, $.a[0], $.a[*] and $.a.*"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from shield_addon.actions import RequestView
from shield_addon.actions.common import json_documents

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
    """Every value the steps reach; none when a step does not fit the document.

    A key also reaches the keys equal to it but for case: Go's encoding/json sets `replicas`
    from `"Replicas"` or `"REPLICAS"`, so a rule on `$.spec.replicas` must see them too."""
    nodes = [doc]
    for key, index, star in steps:
        nxt: list[Any] = []
        for n in nodes:
            if key is not None and isinstance(n, dict):
                nxt.extend(_values(n, key))
            elif index is not None and isinstance(n, list) and int(index) < len(n):
                nxt.append(n[int(index)])
            elif star is not None:
                nxt.extend(n.values() if isinstance(n, dict) else n if isinstance(n, list) else [])
        nodes = nxt
    return nodes


def _values(obj: dict[str, Any], key: str) -> list[Any]:
    exact = [obj[key]] if key in obj else []
    if len(obj) <= len(exact):  # the only key is the exact one: no scan
        return exact
    folded = key.casefold()
    return exact + [v for k, v in obj.items() if k != key and isinstance(k, str) and k.casefold() == folded]


def scalar(v: Any) -> str:
    """A value as the text a regex is matched against: strings as they are, numbers by their
    value (0.0, -0, 0e5 and 0 are all "0"; 1e2 is "100"), the rest as compact JSON. A server
    that reads the field as a number sees the value, not its spelling."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None:
        return "true" if v is True else "false" if v is False else "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isfinite(v) and v == int(v) and abs(v) < 1e21:
            return str(int(v))  # ints beyond 1e21 print as 1e+21 in JS: keep the float's spelling
        return repr(v) if math.isfinite(v) else json.dumps(v)
    try:
        return json.dumps(v, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(v)


def documents(req: RequestView) -> tuple[Any, ...]:
    """Every document of the body as a server reads it: JSON, or each document of a YAML body."""
    return json_documents(req)


def body_json(req: RequestView) -> Any:
    """The request body decoded (the first document of a YAML stream), or NO_JSON when it is
    not JSON or YAML."""
    docs = json_documents(req)
    return docs[0] if docs else NO_JSON
