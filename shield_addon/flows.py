"""The edge between mitmproxy flows and the pure core: views, identities, events, answers."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from shield_addon import record
from shield_addon.actions import Action, RequestView
from shield_addon.actions.common import normal_path, split_target
from shield_addon.core.decoding import Decoded, decode_body, decode_text, text_encoding
from shield_addon.core.hosts import canonical_host
from shield_addon.rules import Rule, Verdict

ANONYMOUS = "anonymous@{ip}"
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps's, built once
# An agent calls a few hosts again and again: each is folded (IDNA, IP spellings) once.

Pairs = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Sent:
    """What a request carries, read out of mitmproxy once for the view, the rules and the record
    (each read decodes every header, or parses the query, again)."""

    headers: Pairs  # names as sent, in order
    query: Pairs
    content_type: str | None  # every content-type value joined, as Headers.get gives it


def sent_of(req: http.Request) -> Sent:
    headers = tuple(req.headers.items(multi=True))
    return Sent(headers, tuple(req.query.items(multi=True)), header_of(headers, "content-type"))


def header_of(headers: Pairs, name: str) -> str | None:
    """mitmproxy's Headers.get: every value under the name, in any case, joined by ", "."""
    values = [v for k, v in headers if k.lower() == name]
    return ", ".join(values) if values else None


def agent_of(flow: http.HTTPFlow) -> str:
    """The authenticated proxy user, never anything the request says about itself."""
    auth = flow.metadata.get("proxyauth")
    if auth and auth[0]:
        return str(auth[0])
    peer = flow.client_conn.peername
    return ANONYMOUS.format(ip=peer[0] if peer else "unknown")


def forget_password(flow: http.HTTPFlow) -> None:
    """proxyauth leaves (user, password) in the flow's metadata, which the console shows
    and saved flows keep. ProxyAuth has its own copy, so authentication is unaffected."""
    auth = flow.metadata.get("proxyauth")
    if auth and len(auth) == 2 and auth[1] != "<redacted>":
        flow.metadata["proxyauth"] = (auth[0], "<redacted>")


def decoded_body(req: http.Request) -> Decoded:
    """The body with its content codings undone, every stacked one, as the server will."""
    if not req.raw_content:
        return Decoded(req.raw_content)
    return decode_body(req.raw_content, req.headers.get("content-encoding"))


def as_utf8(body: bytes, content_type: str | None) -> bytes:
    """Text in another encoding (a BOM, a charset, UTF-16 JSON) as UTF-8, for the parsers:
    the server decodes it before it reads it."""
    if not body or text_encoding(body, content_type) in ("utf-8", "ascii", "us-ascii"):
        return body
    text = decode_text(body, content_type)
    return body if text is None else text.encode("utf-8", "surrogatepass")


def request_body(req: http.Request) -> bytes | None:
    """The decoded body (what rules and parsers read); raw bytes if decoding fails."""
    if req.raw_content is None:
        return None
    decoded = decoded_body(req)
    return decoded.body if decoded.body is not None else req.raw_content


def view_of(flow: http.HTTPFlow, body: bytes | None = None, sent: Sent | None = None) -> RequestView:
    req = flow.request
    if body is None:
        body = request_body(req)
    if sent is None:
        sent = sent_of(req)
    body = as_utf8(body or b"", sent.content_type)
    return RequestView(
        method=req.method.upper(),
        scheme=req.scheme,
        host=canonical_host(req.host),  # 0x7f000001 and 127.0.0.1 are one host to every rule
        port=req.port,
        path=normal_path(target_path(req.path)),  # /v1/%72efunds is /v1/refunds to the server
        query=sent.query,
        headers=tuple((k.lower(), v) for k, v in sent.headers),
        body=body or b"",
    )


def target_path(target: str) -> str:
    """The path of a request target, in origin or absolute form, without its query."""
    return split_target(target.split("?", 1)[0])[1]


def judged_flow(flow: http.HTTPFlow, view: RequestView) -> http.HTTPFlow:
    """The flow as `filter:` expressions see it: with the view's canonical host and path, so
    `~d "^api\\.github\\.com$"` also matches `api.github.com.` and `~u /v1/refunds` matches
    `/v1/%72efunds`. A copy only when they differ (a hostile spelling): the real flow is sent
    as the agent wrote it."""
    req = flow.request
    path, _, query = req.path.partition("?")
    if req.host == view.host and path == view.path:
        return flow
    judged = flow.copy()
    judged.request.host = view.host
    judged.request.path = view.path + ("?" + query if query else "")
    return judged


@dataclass(slots=True)
class FlowState:
    """What the addon knows about one live flow, between its hooks."""

    agent: str
    base: dict[str, Any]  # the columns every event of this flow repeats
    action: Action | None = None
    verdict: Verdict | None = None
    refused: bool = False
    decided: dict[str, Any] = field(default_factory=dict)
    sent: Sent | None = None  # the request as read at its first hook, until it is judged


def base_columns(flow: http.HTTPFlow, agent: str, redactor: record.Redactor, sent: Sent | None = None,
                 limit: int = record.VALUE_LIMIT) -> dict[str, Any]:
    """The columns every event of a flow repeats: each value the agent chose is at most
    `limit` bytes (then cut and marked), so a huge URL is not written again and again. The
    agent's name is cut at VALUE_LIMIT whatever `limit` says: its budget is kept under it."""
    req = flow.request
    peer = flow.client_conn.peername
    query = sent.query if sent is not None else tuple(req.query.items(multi=True))
    raw_path = target_path(req.path)  # HTTP/2's absolute form: the path the server routes
    path = redactor.window(raw_path, limit)
    return {
        "flow_id": flow.id,
        "agent": record.cut(agent, record.VALUE_LIMIT, agent),
        "client_ip": peer[0] if peer else None,
        "method": record.cut(req.method, limit, req.method),
        "scheme": req.scheme,
        "host": record.cut(req.host, limit, req.host),
        "port": req.port,
        "path": record.cut(path, limit, raw_path),
        "url": record.stored_url(redactor, req.scheme, req.host, req.port, req.path, query, limit, path),
    }


def request_columns(req: http.Request, redactor: record.Redactor, body_limit: int,
                    decoded: bytes | None = None, sent: Sent | None = None) -> dict[str, Any]:
    """`decoded`: the body view_of already decoded, so a gzip body is not inflated twice;
    `sent`: the headers as they are now (with the gate's own), read once."""
    if sent is None:
        sent = sent_of(req)
    content_type = (sent.content_type or "").lower()
    body = None if req.raw_content is None else decoded if decoded is not None else request_body(req)
    return {
        # digest and size are of the body as it travels, before decoding and redaction
        "request_headers": _COMPACT.encode(redactor.headers(sent.headers)),
        "request_body": redactor.body(body, content_type, body_limit),
        "request_body_size": None if req.raw_content is None else len(req.raw_content),
        "request_sha256": record.sha256(req.raw_content),
    }


def action_columns(action: Action, verdict: Verdict, mode: str, ruleset_sha256: str) -> dict[str, Any]:
    a = verdict.action
    rule: Rule | None = verdict.rule
    return {
        "service": a.service,
        "action_type": a.action_type,
        "operation": a.operation,
        "resource_type": a.resource_type,
        "namespace": a.namespace,
        "resource_name": a.resource_name,
        "tables": list(a.tables),
        "rule_id": rule.id if rule else None,
        "verdict": verdict.verdict,
        "matched_rules": list(verdict.matched),
        # shadow: what `verdict` says was not enforced (global shadow mode, or a shadow rule)
        "mode": "shadow" if mode == "shadow" or verdict.shadowed else "enforce",
        "ruleset_sha256": ruleset_sha256,
        "severity": rule.severity if rule else None,
        "actions": actions_json(verdict),
    }


def actions_json(verdict: Verdict) -> str | None:
    """Every reading the rules judged, as a JSON list; the method only where an override
    made it differ from the request's. None when the verdict came from no reading."""
    if not verdict.actions:
        return None
    sent = verdict.actions[0][0]
    out = []
    for method, a in verdict.actions:
        item: dict[str, Any] = {"service": a.service, "action_type": a.action_type, "operation": a.operation}
        if method != sent:
            item["method"] = method
        for key in ("resource_type", "namespace", "resource_name"):
            if getattr(a, key):
                item[key] = getattr(a, key)
        for key in ("tables", "statements"):
            if getattr(a, key):
                item[key] = list(getattr(a, key))
        if a.flags:
            item["flags"] = sorted(a.flags)
        out.append(item)
    return _COMPACT.encode(out)


STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/stream+json")
STREAM_ABOVE = 8 * 1024 * 1024  # bytes: larger responses are relayed as they come, not held in memory


def should_stream(resp: http.Response) -> bool:
    """Server-sent events must reach the agent as they are sent; huge downloads must not
    sit in the proxy's memory. (Requests never stream: the rules must see them first.)"""
    if resp.headers.get("content-type", "").split(";")[0].strip().lower() in STREAM_TYPES:
        return True
    try:
        return int(resp.headers.get("content-length", "0")) > STREAM_ABOVE
    except ValueError:
        return False


class Tap:
    """mitmproxy's response stream callback: passes every chunk on unchanged while
    counting, hashing and keeping the first `limit` bytes for the record."""

    def __init__(self, limit: int):
        self.limit, self.size, self.head = limit, 0, bytearray()
        self.hash = hashlib.sha256()

    def __call__(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        self.hash.update(chunk)
        if len(self.head) < self.limit:
            self.head += chunk[: self.limit - len(self.head)]
        return chunk


def response_columns(flow: http.HTTPFlow, redactor: record.Redactor, body_limit: int, tap: Tap | None = None) -> dict[str, Any]:
    resp = flow.response
    assert resp is not None
    headers = tuple(resp.headers.items(multi=True))
    content_type = (header_of(headers, "content-type") or "").lower()
    if tap is not None:  # streamed: the body went by in chunks; the tap saw them (still encoded)
        body, size, digest = bytes(tap.head), tap.size, tap.hash.hexdigest()
    else:
        try:
            body = resp.get_content(strict=False) if resp.raw_content is not None else None
        except ValueError:
            body = resp.raw_content
        size = None if resp.raw_content is None else len(resp.raw_content)
        digest = record.sha256(resp.raw_content)
    return {
        "status_code": resp.status_code,
        "response_headers": _COMPACT.encode(redactor.headers(headers)),
        "response_body": redactor.body(body, content_type, body_limit),
        "response_body_size": size,
        "response_sha256": digest,
        "duration_ms": duration_ms(flow),
    }


def message_columns(msg: Any, redactor: record.Redactor, body_limit: int) -> dict[str, Any]:
    """A WebSocket message: client messages fill the request_* columns, server messages
    the response_* ones; operation says the direction."""
    side = "request" if msg.from_client else "response"
    content = msg.content
    return {
        "operation": "client->server" if msg.from_client else "server->client",
        "resource_type": "websocket-text" if msg.is_text else "websocket-binary",
        f"{side}_body": redactor.body(content, "text/plain" if msg.is_text else "application/octet-stream", body_limit),
        f"{side}_body_size": len(content),
        f"{side}_sha256": record.sha256(content),
    }


def duration_ms(flow: http.HTTPFlow) -> float:
    end = (flow.response and flow.response.timestamp_end) or time.time()
    return round((end - flow.request.timestamp_start) * 1000, 3)


def snapshot(req: http.Request) -> tuple[str, str, tuple[tuple[str, str], ...], str | None]:
    """What the reviewer could change: compared before and after a hold."""
    return (req.method, req.url, tuple(req.headers.items(multi=True)), record.sha256(req.raw_content))


def forwarded_request(req: http.Request, redactor: record.Redactor, body_limit: int) -> str:
    cols = request_columns(req, redactor, body_limit)
    return json.dumps(
        {
            "method": req.method,
            "url": record.stored_url(redactor, req.scheme, req.host, req.port, req.path, tuple(req.query.items(multi=True))),
            "headers": json.loads(cols["request_headers"]),
            "body": cols["request_body"],
            "body_sha256": cols["request_sha256"],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def refuse(flow: http.HTTPFlow, status: int, decision: str, error: str, rule: Rule | None = None,
           message: str = "", comment: str | None = None, extra: dict[str, Any] | None = None) -> None:
    """Answer the agent ourselves with a small, stable JSON body; upstream is never contacted."""
    body = {
        "error": error,
        "decision": decision,
        "flow_id": flow.id,
        "rule": rule.id if rule else None,
        "message": message or (rule.message if rule else ""),
        "reviewer_comment": comment,
        **(extra or {}),
    }
    flow.response = http.Response.make(
        status,
        json.dumps(body).encode(),
        {"content-type": "application/json", "x-shield-decision": decision, "x-shield-flow-id": flow.id},
    )
