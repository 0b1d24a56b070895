"""`shield export`: the trail for data lakes (Parquet), pipelines (JSONL) and SIEMs (OCSF),
each with a manifest carrying the files' SHA-256 and the chain range they cover."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from shield_addon import __version__, store

FORMATS = ("parquet", "jsonl", "ocsf")
OCSF_VERSION = "1.3.0"


def select_events(con: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> str:
    """Events of the flows the timeline filter selects; every event when there is no filter
    (rule loads included). Only the flow ids are materialised, never the events."""
    if not where:
        return "SELECT * FROM events"
    con.execute(f"CREATE TEMP TABLE export_flows AS SELECT flow_id FROM timeline{where}", params)
    return "SELECT e.* FROM events e SEMI JOIN export_flows f USING (flow_id)"


def export(con: duckdb.DuckDBPyConnection, fmt: str, out: Path, where: str, params: list[Any],
           audit_dir: Path, filters: dict[str, Any]) -> dict[str, Any]:
    """Write the export and its manifest; return the manifest."""
    # A view, not a copy: at 10 M events a temporary table passed 12 GiB (scripts/bench_queries.py).
    con.execute(f"CREATE TEMP VIEW export_rows AS {select_events(con, where, params)}")
    seq_min, seq_max, count, chains = con.execute(
        "SELECT min(seq), max(seq), count(*), list(DISTINCT chain_id) FROM export_rows").fetchone()
    if fmt == "parquet":
        files = write_parquet(con, out, audit_dir)
        manifest_path = out / "manifest.json"
    elif fmt == "jsonl":
        write_jsonl(con, out)
        files, manifest_path = [out], out.with_name(out.name + ".manifest.json")
    else:
        write_lines(out, ocsf_events(con))
        files, manifest_path = [out], out.with_name(out.name + ".manifest.json")
    base = out if fmt == "parquet" else out.parent
    manifest = {
        "format": fmt if fmt != "ocsf" else f"ocsf-{OCSF_VERSION}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": f"agent-shield {__version__}",
        "chain_ids": sorted(c for c in chains or [] if c),
        "seq_min": seq_min, "seq_max": seq_max, "events": count,
        "filters": {k: v for k, v in filters.items() if v is not None},
        "files": [{"path": str(f.relative_to(base)), "bytes": f.stat().st_size, "sha256": file_sha256(f)}
                  for f in sorted(files)],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_parquet(con: duckdb.DuckDBPyConnection, out: Path, audit_dir: Path) -> list[Path]:
    """Hive-partitioned by date, file names carrying the chain id, so exports of many
    proxies can share one bucket; the signed checkpoint log travels with them."""
    out.mkdir(parents=True, exist_ok=True)
    chain = (con.execute("SELECT any_value(chain_id) FROM export_rows").fetchone()[0] or "chain").replace("'", "")
    # Bounded memory: by default DuckDB may take 80 % of RAM and buffers 524,288 rows per open
    # partition; no ORDER BY, which would sort every row (readers order by seq).
    con.execute(f"SET memory_limit = '{store.memory_limit(0.5, 4 << 30)}'")
    con.execute("SET partitioned_write_flush_threshold = 100000")
    con.execute(
        f"COPY (SELECT *, strftime(ts, '%Y-%m-%d') AS date FROM export_rows) TO {store.sql_str(str(out))} "
        f"(FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd, OVERWRITE_OR_IGNORE, "
        f"FILENAME_PATTERN 'events-{chain}-{{i}}')")
    files = sorted(out.rglob("*.parquet"))
    log = audit_dir / store.CHECKPOINT_LOG
    if log.exists():
        (out / "checkpoints").mkdir(exist_ok=True)
        target = out / "checkpoints" / f"{chain}.log"
        shutil.copyfile(log, target)
        files.append(target)
    return files


def write_jsonl(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cur = con.execute("SELECT * FROM export_rows ORDER BY seq")
    names = [d[0] for d in cur.description]
    write_lines(out, (dict(zip(names, row)) for row in iter_rows(cur)))


def iter_rows(cur: duckdb.DuckDBPyConnection, size: int = 10_000) -> Iterator[tuple]:
    while rows := cur.fetchmany(size):
        yield from rows


def write_lines(out: Path, docs: Iterator[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps(doc, default=_json_default, ensure_ascii=False) + "\n")


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- OCSF

SEVERITY_ID = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
HTTP_ACTIVITY = {"CONNECT": 1, "DELETE": 2, "GET": 3, "HEAD": 4, "OPTIONS": 5, "POST": 6, "PUT": 7, "TRACE": 8}
API_ACTIVITY = {"create": 1, "read": 2, "update": 3, "delete": 4}
REFUSED = ("denied", "blocked", "timed_out", "killed", "abandoned")

FLOW_SQL = """
SELECT t.*, r.seq AS request_seq, r.row_hash AS request_row_hash, r.chain_id, r.client_ip, r.port, r.url, r.scheme,
       r.resource_type, r.matched_rules, r.mode, r.ruleset_sha256, r.severity, r.request_sha256,
       d.reviewer_comment, d.edited, last.seq AS last_seq
FROM timeline t
JOIN (SELECT * FROM export_rows WHERE stage = 'request') r USING (flow_id)
LEFT JOIN (SELECT * FROM export_rows WHERE stage = 'decision') d USING (flow_id)
LEFT JOIN (SELECT flow_id, max(seq) AS seq FROM export_rows GROUP BY flow_id) last USING (flow_id)
ORDER BY r.seq
"""


def ocsf_events(con: duckdb.DuckDBPyConnection) -> Iterator[dict[str, Any]]:
    """One OCSF event per flow: API Activity (6003) when a parser understood the request,
    HTTP Activity (4002) for plain REST; the human decision and the chain in `unmapped`."""
    cur = con.execute(FLOW_SQL)
    names = [d[0] for d in cur.description]
    for row in iter_rows(cur):
        yield ocsf_event(dict(zip(names, row)))


def ocsf_event(f: dict[str, Any]) -> dict[str, Any]:
    api = f["service"] != f["host"]  # the rest parser names the host as service
    refused = f["decision"] in REFUSED or f["outcome"] == "refused"
    if api:
        class_uid, class_name, category_uid, category_name = 6003, "API Activity", 6, "Application Activity"
        activity_id = API_ACTIVITY.get(f["action_type"] or "", 99)
        activity_name = (f["action_type"] or "other").capitalize() if activity_id != 99 else "Other"
    else:
        class_uid, class_name, category_uid, category_name = 4002, "HTTP Activity", 4, "Network Activity"
        activity_id = HTTP_ACTIVITY.get((f["method"] or "").upper(), 99)
        activity_name = (f["method"] or "Other").capitalize() if activity_id != 99 else "Other"
    event: dict[str, Any] = {
        "class_uid": class_uid, "class_name": class_name, "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity_id, "activity_name": activity_name, "type_uid": class_uid * 100 + activity_id,
        "time": int(f["ts"].replace(tzinfo=UTC).timestamp() * 1000) if f["ts"] else None,
        "severity_id": SEVERITY_ID.get(f["severity"] or "", 1),
        "status_id": 2 if refused or f["outcome"] == "error" else 1,
        "status": "Failure" if refused or f["outcome"] == "error" else "Success",
        "status_detail": f["decision"],
        "duration": int(f["duration_ms"]) if f["duration_ms"] is not None else None,
        "metadata": {"version": OCSF_VERSION, "uid": f["flow_id"], "log_name": "agent-shield",
                     "product": {"name": "agent-shield", "vendor_name": "agent-shield", "version": __version__}},
        "actor": {"user": {"name": f["agent"], "type": "Service"}},
        "src_endpoint": {"ip": f["client_ip"]},
        "dst_endpoint": {"hostname": f["host"], "port": f["port"]},
        "http_request": {"http_method": f["method"], "url": {"url_string": f["url"], "hostname": f["host"],
                                                               "path": f["path"], "port": f["port"], "scheme": f["scheme"]}},
        "unmapped": {
            "decision": f["decision"], "reviewer": f["reviewer"],
            "decided_at": f["decided_at"].isoformat() if f["decided_at"] else None,
            "reviewer_comment": f["reviewer_comment"], "edited": f["edited"], "verdict": f["verdict"],
            "rule_id": f["rule_id"], "matched_rules": f["matched_rules"], "mode": f["mode"],
            "ruleset_sha256": f["ruleset_sha256"], "outcome": f["outcome"], "request_sha256": f["request_sha256"],
            "chain_id": f["chain_id"], "seq": f["request_seq"], "last_seq": f["last_seq"],
            "row_hash": f["request_row_hash"],
        },
    }
    if f["status_code"] is not None:
        event["http_response"] = {"code": f["status_code"]}
    if api:
        event["api"] = {"operation": f["operation"], "service": {"name": f["service"]}}
        resource = {k: v for k, v in (("name", f["resource_name"]), ("type", f["resource_type"]),
                                      ("namespace", f["namespace"])) if v}
        event["resources"] = [resource] if resource else [{"name": t, "type": "table"} for t in f["tables"] or []]
    return event


def describe(manifest: dict[str, Any], out: Path) -> str:
    n = len(manifest["files"])
    return (f"exported {manifest['events']} events (seq {manifest['seq_min']}..{manifest['seq_max']}) as "
            f"{manifest['format']} to {out} ({n} file{'s' if n != 1 else ''}, manifest with SHA-256)")

