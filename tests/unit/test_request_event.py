"""The request event is built from what the view already read (headers, query, content type,
the decoded body), and stores what reading them all again stored."""

from __future__ import annotations

import gzip
import hashlib
import json

from mitmproxy import http
from mitmproxy.test import tflow

from shield_addon import flows
from shield_addon.record import Redactor

R = Redactor(b"k" * 32)


def flow(headers: list[tuple[bytes, bytes]], body: bytes = b"", url: str = "https://api.example.com/v1/x?a=1&api_key=s3cr3t&a=2"):
    f = tflow.tflow(req=http.Request.make("POST", url, body, headers))
    f.client_conn.peername = ("10.0.0.7", 40000)
    return f


HEADERS = [(b"Content-Type", b"Application/JSON"), (b"X-Trace", b"t-1"), (b"content-type", b"charset=utf-8"),
           (b"Authorization", b"Bearer abcdefghijklmnopqrstuvwxyz"), (b"X-Bin", b"caf\xc3\xa9 \xff")]


def test_sent_reads_what_mitmproxy_gives_for_headers_query_and_content_type() -> None:
    req = flow(HEADERS).request
    sent = flows.sent_of(req)
    assert sent.headers == tuple(req.headers.items(multi=True))
    assert sent.query == tuple(req.query.items(multi=True))
    assert sent.content_type == req.headers.get("content-type") == "Application/JSON, charset=utf-8"
    assert flows.sent_of(flow([(b"X-A", b"1")]).request).content_type is None


def test_columns_from_the_shared_reading_equal_columns_read_afresh() -> None:
    f = flow(HEADERS, b'{"password": "hunter2", "n": 1}')
    sent = flows.sent_of(f.request)
    assert flows.base_columns(f, "a", R, sent) == flows.base_columns(f, "a", R)
    assert flows.request_columns(f.request, R, 1000, None, sent) == flows.request_columns(f.request, R, 1000)
    assert flows.view_of(f, None, sent) == flows.view_of(f)
    assert "s3cr3t" not in flows.base_columns(f, "a", R, sent)["url"]


def test_digest_and_size_are_of_the_body_as_sent_the_stored_text_of_it_decoded() -> None:
    raw = json.dumps({"token": "abc", "text": "x" * 5000}).encode()
    sent_body = gzip.compress(raw)
    f = flow([(b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip")])
    f.request.raw_content = sent_body  # as it came off the wire (setting .content would encode it)
    cols = flows.request_columns(f.request, R, 100, flows.request_body(f.request))
    assert cols["request_sha256"] == hashlib.sha256(sent_body).hexdigest()
    assert cols["request_body_size"] == len(sent_body)
    assert cols["request_body"].startswith('{"token":"[redacted:') and cols["request_body"].endswith("…[cut at 100 bytes]")


def test_flow_state_has_no_per_instance_dict() -> None:
    state = flows.FlowState("a", {})
    assert not hasattr(state, "__dict__")
