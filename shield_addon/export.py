"""`shield export`: the trail for data lakes (Parquet), pipelines (JSONL) and SIEMs (OCSF),
each with a manifest carrying the files' SHA-256 and the chain range they cover."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shield_addon import __version__
from shield_addon.core.model import NOT_FORWARDED, AuditDir

if TYPE_CHECKING:
    from shield_addon.reader import EventSelection

FORMATS = ("parquet", "jsonl", "ocsf")
OCSF_VERSION = "1.3.0"


def export(rows: EventSelection, fmt: str, out: Path, layout: AuditDir, filters: dict[str, Any]) -> dict[str, Any]:
    """Write the export and its manifest; return the manifest. `filters`: as the user gave them."""
    seq_min, seq_max, count, chains = rows.range()
    if fmt == "parquet":
        files = write_parquet(rows, out, layout)
        manifest_path = out / "manifest.json"
    elif fmt == "jsonl":
        write_lines(out, rows.events())
        files, manifest_path = [out], out.with_name(out.name + ".manifest.json")
    else:
        write_lines(out, (ocsf_event(f) for f in rows.flows()))
        files, manifest_path = [out], out.with_name(out.name + ".manifest.json")
    base = out if fmt == "parquet" else out.parent
    manifest = {
        "format": fmt if fmt != "ocsf" else f"ocsf-{OCSF_VERSION}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "producer": f"agent-shield {__version__}",
        "chain_ids": chains,
        "seq_min": seq_min, "seq_max": seq_max, "events": count,
        "filters": {k: v for k, v in filters.items() if v is not None},
        "files": [{"path": str(f.relative_to(base)), "bytes": f.stat().st_size, "sha256": file_sha256(f)}
                  for f in sorted(files)],
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_parquet(rows: EventSelection, out: Path, layout: AuditDir) -> list[Path]:
    """Hive-partitioned by date, file names carrying the chain id, so exports of many
    proxies can share one bucket; the signed checkpoint log travels with them."""
    out.mkdir(parents=True, exist_ok=True)
    chain = (rows.chain_id() or "chain").replace("'", "")
    rows.write_parquet(out, chain)  # a fleet's selection writes each chain's checkpoint log itself
    if layout.checkpoints.exists():
        (out / "checkpoints").mkdir(exist_ok=True)
        shutil.copyfile(layout.checkpoints, out / "checkpoints" / f"{chain}.log")
    return sorted(out.rglob("*.parquet")) + sorted((out / "checkpoints").glob("*.log"))


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
def ocsf_event(f: dict[str, Any]) -> dict[str, Any]:
    api = f["service"] != f["host"]  # the rest parser names the host as service
    refused = f["decision"] in NOT_FORWARDED or f["outcome"] == "refused"
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

