"""Impact previews: the server's own dry run of a held request, for the reviewer. Pure: which
requests have a dry-run form, what that form is, and what its answer says in one line.

Only APIs with a native dry run are asked, so a preview can never do what the request
would: the Kubernetes API server's `dryRun=All` runs admission and validation and answers
with the object as it would be (or the Status of a refusal) without persisting anything.
EC2's `DryRun=true` is not offered: EC2 requests are signed by the agent (SigV4) over their
parameters, and the proxy cannot re-sign a changed request without the agent's secret key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers of the agent's request that the dry run does not carry: the proxy's, hop-by-hop,
# and the body's length (recomputed by the client).
DROPPED = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive", "te", "trailer",
                     "transfer-encoding", "upgrade", "content-length", "host", "expect",
                     "accept-encoding"})  # the answer is read as it comes: no compression
SUMMARY_LIMIT = 300  # characters of a preview line


def dry_run(service: str | None, method: str, url: str,
            headers: Iterable[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]] | None:
    """The dry-run form of a request (URL and headers; the body is the request's own), or
    None when its API has none. Any dryRun the agent sent is replaced by All."""
    if service != "kubernetes" or method.upper() not in MUTATING:
        return None
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "dryrun"]
    query.append(("dryRun", "All"))
    kept = [(k, v) for k, v in headers if k.lower() not in DROPPED]
    return urlunsplit(parts._replace(query=urlencode(query))), kept


def summary(method: str, status: int, body: bytes) -> str:
    """One line: what the server says the request would do, or why it would refuse it."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return _cut(f"dry run answered {status}, not a Kubernetes object")
    if doc.get("kind") == "Status":
        if doc.get("status") == "Success":
            d = doc.get("details") or {}
            return _cut(f"dry run: {_verb(method)} {d.get('kind') or 'object'} {d.get('name') or ''}".rstrip())
        return _cut(f"dry run refused: {status} {doc.get('reason') or ''}: {doc.get('message') or ''}")
    if not 200 <= status < 300:
        return _cut(f"dry run answered {status}")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if isinstance(doc.get("items"), list):
        names = [i.get("metadata", {}).get("name") for i in doc["items"] if isinstance(i, dict)]
        shown = ", ".join(str(n) for n in names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "")
        return _cut(f"dry run: {_verb(method)} {len(names)} {doc.get('kind', 'items').removesuffix('List')}: {shown}")
    name = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x)
    text = f"dry run: {_verb(method)} {doc.get('kind') or 'object'} {name}".rstrip()
    details = _details(doc)
    return _cut(f"{text} ({details})" if details else text)


def _verb(method: str) -> str:
    return {"DELETE": "would delete", "POST": "would create", "PUT": "would replace",
            "PATCH": "would change"}.get(method.upper(), "would touch")


def _details(doc: dict) -> str:
    """What a reviewer wants to know of the object as it would be."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    status = doc.get("status") if isinstance(doc.get("status"), dict) else {}
    found = []
    if "replicas" in spec:
        found.append(f"replicas {spec['replicas']}")
    if "readyReplicas" in status:
        found.append(f"ready now {status['readyReplicas']}")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if meta.get("deletionTimestamp"):
        found.append("deletion pending")
    if meta.get("finalizers"):
        found.append(f"finalizers {', '.join(map(str, meta['finalizers']))}")
    return ", ".join(found)


def _cut(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"
