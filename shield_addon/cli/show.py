"""`shield show`: the story of one flow, then every event with its chain status."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from shield_addon import record
from shield_addon.cli.parser import EXIT_OK, reader_of
from shield_addon.cli.render import json_default, plain


def cmd_show(args: argparse.Namespace) -> int:
    with reader_of(args) as reader:
        flow = reader.flow(args.flow_id)
    rows, chain = flow.events, flow.chain
    if args.json:
        for r in rows:
            print(json.dumps({**r, "hash_ok": chain[r["seq"]][0], "link_ok": chain[r["seq"]][1]},
                             default=json_default, ensure_ascii=False))
        return EXIT_OK
    for label, text in flow_summary(rows, chain):
        print(f"{label:9} {record.safe_text(text)}")
    for i, r in enumerate(rows):
        ok = "✓" if all(chain[r["seq"]]) else "✗ " + ("row_hash" if not chain[r["seq"]][0] else "link")
        print(f"\n--- seq {r['seq']}  {r['stage']}  {plain(r['ts'])}  chain {ok}")
        for k, v in r.items():
            if v is None or v == [] or k in ("seq", "stage", "ts") or (i and k in REPEATED):
                continue
            text = record.safe_text(pretty(k, v), newlines=True).replace("\n", "\n" + " " * 21)
            print(f"  {k:18} {text}")
    return EXIT_OK


# Columns every event of a flow repeats: shown once, with the first event.
REPEATED = {"chain_id", "flow_id", "agent", "client_ip", "method", "scheme", "host", "port", "path", "url", "proxy"}


def flow_summary(rows: Sequence[dict[str, Any]], chain: dict[int, tuple[bool, bool]]) -> list[tuple[str, str]]:
    """The story of one flow in a few lines, before its events."""
    first = rows[0]
    by_stage = {r["stage"]: r for r in rows}
    req, dec = by_stage.get("request", first), by_stage.get("decision")
    end = by_stage.get("response") or by_stage.get("error")
    on = f"  on proxy {first['proxy']}" if first.get("proxy") else ""  # the fleet's trail
    out = [("flow", f"{first['flow_id']}  agent {first['agent']}  from {first['client_ip']}{on}"),
           ("request", f"{first['method']} {first['url']}  ({req.get('request_body_size') or 0} bytes, "
                       f"sha256 {(req.get('request_sha256') or '-')[:16]})")]
    if req.get("service"):
        target = "/".join(x for x in (req["resource_type"], req["resource_name"]) if x)
        where = f" in {req['namespace']}" if req["namespace"] else ""
        tables = f" tables {','.join(req['tables'])}" if req["tables"] else ""
        out.append(("action", f"{req['service']} {req['operation']} {target}{where}{tables} ({req['action_type']})"))
        matched = ", ".join(req["matched_rules"] or []) or "none"
        out.append(("rules", f"verdict {req['verdict']} by {req['rule_id'] or 'the default'} (matched: {matched}; "
                             f"mode {req['mode']}, ruleset {(req['ruleset_sha256'] or '')[:12]})"))
    if dec:
        comment = f' "{dec["reviewer_comment"]}"' if dec["reviewer_comment"] else ""
        out.append(("decision", f"{dec['decision']} by {dec['reviewer'] or '-'} at {plain(dec['decided_at'])} "
                                f"via {dec['operation']}{comment}"))
        if dec["edited"]:
            out.append(("edited", "yes: the reviewer changed the request; forwarded_request below has what was sent"))
    elif req.get("decision"):
        out.append(("decision", f"{req['decision']} by the rules"))
    if end:
        status = end["status_code"] if end["status_code"] is not None else end["error"]
        out.append(("outcome", f"{end['outcome']}: {status}, {end['response_body_size'] or 0} bytes, {end['duration_ms']} ms"))
    bad = [seq for seq, (h, link) in chain.items() if not (h and link)]
    seqs = sorted(chain)
    out.append(("chain", f"{len(rows)} events, seq {seqs[0]}..{seqs[-1]}: " +
                ("every row hash and link verifies" if not bad else f"BROKEN at seq {', '.join(map(str, bad))}")))
    return out


def pretty(key: str, value: Any) -> str:
    """Headers one per line, JSON bodies indented; everything else as it is."""
    if key in ("request_headers", "response_headers") and isinstance(value, str):
        return "\n".join(f"{k}: {v}" for k, v in json.loads(value))
    if key in ("forwarded_request", "request_body", "response_body") and isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return plain(value)


