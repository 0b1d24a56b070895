"""Write shield_addon/actions/aws_operations.json.gz from botocore's bundled service models.

The proxy must know every AWS operation, not a hand-kept list, and must not import
botocore at run time (it is a test dependency only). So the facts the parser needs are
copied once from botocore's `service-2` models into a small, committed, gzip'd JSON:
per service its protocol(s), signing name, endpoint prefix, JSON target prefix, and per
operation (REST protocols only) the HTTP method, request URI template and the query
parameters and headers the operation requires. Classification is code
(shield_addon/actions/aws_families.py), not data, so it can change without regenerating.

    python scripts/aws_catalogue.py [OUT]     # default: the committed file

The output depends only on the botocore version (recorded in the file): sorted keys,
fixed gzip mtime, so the same botocore gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "shield_addon" / "actions" / "aws_operations.json.gz"
REST = ("rest-json", "rest-xml")


def required_members(model: dict[str, Any], op: dict[str, Any], location: str) -> list[str]:
    """Wire names of the input members bound to `location` that the operation requires."""
    shape_name = (op.get("input") or {}).get("shape")
    shape = model["shapes"].get(shape_name, {}) if shape_name else {}
    required = set(shape.get("required", ()))
    names = []
    for member, spec in shape.get("members", {}).items():
        if member in required and spec.get("location") == location:
            names.append(spec.get("locationName", member).lower() if location == "header" else spec.get("locationName", member))
    return sorted(names)


def service_entry(model: dict[str, Any]) -> dict[str, Any]:
    meta = model["metadata"]
    protocols = list(meta.get("protocols") or [meta["protocol"]])
    entry: dict[str, Any] = {
        "protocols": protocols,
        "signing": meta.get("signingName", meta["endpointPrefix"]),
        "prefix": meta["endpointPrefix"],
    }
    if meta.get("targetPrefix"):
        entry["target"] = meta["targetPrefix"]
    deprecated = sorted(name for name, op in model["operations"].items() if op.get("deprecated"))
    if deprecated:  # two operations may share a route: the current one names it
        entry["deprecated"] = deprecated
    if any(p in REST for p in protocols):
        ops: dict[str, list[Any]] = {}
        for name, op in model["operations"].items():
            http = op.get("http", {})
            row: list[Any] = [http.get("method", "POST"), http.get("requestUri", "/")]
            query, headers = required_members(model, op, "querystring"), required_members(model, op, "header")
            if query or headers:
                row += [query, headers]
            ops[name] = row
        entry["ops"] = ops
    else:
        entry["ops"] = sorted(model["operations"])
    return entry


def build() -> dict[str, Any]:
    import botocore
    import botocore.session

    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    services = {}
    for name in sorted(session.get_available_services()):
        services[name] = service_entry(loader.load_service_model(name, "service-2"))
    return {"source": "botocore service-2 models", "botocore": botocore.__version__, "services": services}


def write(catalogue: dict[str, Any], out: Path) -> None:
    raw = json.dumps(catalogue, sort_keys=True, separators=(",", ":")).encode()
    out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUT
    catalogue = build()
    write(catalogue, out)
    ops = sum(len(s["ops"]) for s in catalogue["services"].values())
    print(f"{out}: botocore {catalogue['botocore']}, {len(catalogue['services'])} services, "
          f"{ops} operations, {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
