"""Every protocol shape an agent may use goes through the real proxy and is recorded as it
was: HTTP/1.1 keep-alive and pipelining, HTTP/2 streams, chunked and compressed request
bodies, WebSocket, huge downloads and uploads, binary bodies, odd URLs and headers, IPv6,
upstream failures, and request-smuggling shapes sent byte by byte."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import json
import os
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mitmproxy.net import encoding
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from shield_addon.record import VALUE_LIMIT
from shield_addon.record.redaction import cut_mark
from tests.e2e.harness import HERE, Proxy, make_cert, rss_mib, start_proxy, wait_for
from tests.e2e.protocols.clients import H2Conn, HTTP1Conn, WsClient, proxy_auth, raw_exchange, responses
from tests.e2e.protocols.servers import BINARY, MIB, H2Upstream, HTTPUpstream, WsEcho, pattern_sha256, tls_context

pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)

EXTRA_RULES = """\
version: 1
rules:
  - id: deny-wire-body
    match: {body: wire_transfer}
    action: deny
    message: Wire transfers are never made by agents
  - id: deny-sudo-header
    match: {header: {x-sudo: "."}}
    action: deny
    message: No sudo header
"""


class Servers:
    def __init__(self, tmp: Path):
        (tmp / "good").mkdir()
        (tmp / "bad").mkdir()
        self.cert, self.key = make_cert(tmp / "good")
        bad_cert, bad_key = make_cert(tmp / "bad")  # a self-signed cert nobody told the proxy to trust
        self.plain = HTTPUpstream().start()
        self.untrusted = HTTPUpstream(tls=tls_context(bad_cert, bad_key)).start()
        self.h2 = H2Upstream(tls_context(self.cert, self.key, ["h2"])).start()
        self.ws = WsEcho().start()
        self.all = [self.plain, self.untrusted, self.h2, self.ws]

    def stop(self) -> None:
        for s in self.all:
            s.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    s = Servers(tmp_path_factory.mktemp("protocol-upstreams"))
    yield s
    s.stop()


def rules_dir(tmp: Path) -> Path:
    """The e2e rules plus two of this module's own (a body rule and a header rule)."""
    d = tmp / "rules"
    d.mkdir()
    shutil.copy(HERE / "rules" / "test.yaml", d / "test.yaml")
    (d / "zz-protocols.yaml").write_text(EXTRA_RULES)
    return d


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, servers: Servers) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("protocol-proxy")
    p = start_proxy(tmp, "--set", f"shield_rules={rules_dir(tmp)}", "--set", "proxyauth=any", upstream_ca=servers.cert)
    yield p
    p.stop()


def client(proxy: Proxy, agent: str = "agent-proto", timeout: float = 30, **kw) -> httpx.Client:
    return httpx.Client(proxy=proxy.url(agent), verify=ssl.create_default_context(cafile=str(proxy.ca)),
                        trust_env=False, timeout=timeout, **kw)


def flow(proxy: Proxy, flow_id: str, stages: tuple[str, ...] = ("request", "response"), timeout: float = 15) -> dict[str, dict]:
    """The events of one flow by stage, once all `stages` are there."""

    def get() -> dict[str, dict] | None:
        by_stage = {e["stage"]: e for e in proxy.events(f"flow_id = '{flow_id}'")}
        return by_stage if all(s in by_stage for s in stages) else None

    return wait_for(get, timeout, f"{stages} events of flow {flow_id}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_names(recorded: str) -> set[str]:
    return {k.lower() for k, _ in json.loads(recorded)}


# ---------------------------------------------------------------- HTTP/1.1


def test_keep_alive_requests_on_one_connection_are_each_recorded(proxy: Proxy, servers: Servers) -> None:
    conn = HTTP1Conn(proxy.port, "agent-keepalive")
    try:
        answers = [conn.request("GET", servers.plain.url(f"/keepalive/{i}")) for i in range(4)]
        answers.append(conn.request("POST", servers.plain.url("/deny/keepalive"), b"{}"))
        answers.append(conn.request("POST", servers.plain.url("/keepalive/after-deny"), b"x" * 1000))
    finally:
        conn.close()
    assert [status for status, _, _ in answers] == [200, 200, 200, 200, 403, 200]
    flow_ids = [h["x-shield-flow-id"] for _, h, _ in answers]
    assert len(set(flow_ids)) == 6, "each request on the connection is its own flow"
    for fid, path in zip(flow_ids, [*(f"/keepalive/{i}" for i in range(4)), "/deny/keepalive", "/keepalive/after-deny"]):
        ev = flow(proxy, fid)
        assert ev["request"]["path"] == path and ev["request"]["agent"] == "agent-keepalive"
        assert ev["response"]["outcome"] == ("refused" if path.startswith("/deny/") else "forwarded")
    assert flow(proxy, flow_ids[-1])["request"]["request_sha256"] == sha(b"x" * 1000)
    assert servers.plain.hits_for("/deny/keepalive") == [] and len(servers.plain.hits_for("/keepalive/")) == 5


def test_pipelined_requests_are_answered_in_order_and_each_recorded(proxy: Proxy, servers: Servers) -> None:
    host = f"127.0.0.1:{servers.plain.port}"
    auth = proxy_auth("agent-pipeline")
    paths = ["/pipe/1", "/deny/pipe-2", "/pipe/3", "/pipe/4"]
    data = b"".join(f"GET http://{host}{p} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\n\r\n".encode()
                    for p in paths)
    out = responses(raw_exchange(proxy.port, data, timeout=15, responses_wanted=len(paths)))
    assert [s for s, _ in out] == [200, 403, 200, 200]
    assert [json.loads(b)["path"] for s, b in out if s == 200] == ["/pipe/1", "/pipe/3", "/pipe/4"]
    assert servers.plain.hits_for("/deny/pipe") == []
    recorded = proxy.flow_events("pipe", "response", n=4)
    assert [e["path"] for e in recorded] == paths and {e["agent"] for e in recorded} == {"agent-pipeline"}
    assert [e["status_code"] for e in recorded] == [200, 403, 200, 200]


# ---------------------------------------------------------------- HTTP/2


async def test_http2_streams_on_one_connection_one_held_while_the_others_complete(proxy: Proxy, servers: Servers) -> None:
    h2 = servers.h2
    ctx = ssl.create_default_context(cafile=str(proxy.ca))
    async with httpx.AsyncClient(http2=True, proxy=proxy.url("agent-h2"), verify=ctx, trust_env=False, timeout=30) as c:
        warm = await c.get(h2.url("/h2/warm-up"))
        held = asyncio.create_task(c.post(h2.url("/hold/h2-held"), json={"n": 1}))
        await asyncio.to_thread(proxy.wait_held, "~u /hold/h2-held")
        others = await asyncio.gather(*(c.get(h2.url(f"/h2/stream-{i}")) for i in range(3)))
        assert not held.done(), "the held stream must wait for its reviewer"
        assert h2.hits_for("/hold/h2-held") == []
        await asyncio.to_thread(proxy.command, "shield.approve", "~u /hold/h2-held")
        approved = await asyncio.wait_for(held, 15)
        answers = [warm, *others, approved]
        local = {r.extensions["network_stream"].get_extra_info("client_addr") for r in answers}
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in answers)
    assert len(local) == 1, f"all streams shared one client connection: {local}"
    assert len({r.extensions["stream_id"] for r in answers}) == len(answers)
    assert len(h2.hits_for("/hold/h2-held")) == 1
    order = [h.path for h in h2.hits]
    assert order.index("/hold/h2-held") > max(order.index(f"/h2/stream-{i}") for i in range(3))
    for r in answers:
        ev = flow(proxy, r.headers["x-shield-flow-id"])
        assert ev["response"]["status_code"] == 200 and ev["request"]["agent"] == "agent-h2"
    held_flow = flow(proxy, approved.headers["x-shield-flow-id"], ("request", "decision", "response"))
    assert held_flow["decision"]["decision"] == "approved" and held_flow["request"]["request_sha256"] == sha(b'{"n":1}')


@pytest.mark.parametrize(("method", "target", "rule"), [
    ("GET", "https://localhost:{port}/deny/h2-absolute", "deny-refunds"),
    ("GET", "HTTPS://LOCALHOST:{port}/deny/h2-absolute-upper", "deny-refunds"),
    ("GET", "deny/h2-no-slash", "deny-refunds"),
    ("DELETE", "https://localhost:{port}/apis/apps/v1/namespaces/prod/deployments/h2-k8s-absolute", "k8s-delete"),
    ("DELETE", "https://localhost:{port}//apis/apps/v1/namespaces/prod/./deployments/h2-dots", "k8s-delete"),
    ("GET", "https://elsewhere.example/h2/absolute-elsewhere", "builtin:destination-mismatch"),
    ("GET", "https://localhost:1/h2/absolute-other-port", "builtin:destination-mismatch"),
])
def test_an_http2_path_in_absolute_form_is_judged_by_the_path_the_server_routes(
        proxy: Proxy, servers: Servers, method: str, target: str, rule: str) -> None:
    """Go's HTTP/2 server routes `:path https://host/api/...` by its path: the rules judge that
    path, and an authority naming another server is refused like a Host that does."""
    h2 = servers.h2
    target = target.format(port=h2.port)
    marker = target.rsplit("/", 1)[1]
    conn = H2Conn(proxy.port, "agent-h2-absolute", "localhost", h2.port, str(proxy.ca))
    try:
        stream = conn.send([(":method", method), (":scheme", "https"), (":authority", f"localhost:{h2.port}"),
                            (":path", target)])
        if rule == "k8s-delete":  # held until a reviewer decides
            proxy.wait_held(f"~u {marker}")
            proxy.command("shield.deny", f"~u {marker}", "not", "today")
        status, body = conn.response(stream, timeout=15)
    finally:
        conn.close()
    assert h2.hits_for(marker) == []
    assert status == 403 and json.loads(body)["rule"] == rule
    ev = proxy.flow_events(marker, "request")[0]
    assert ev["rule_id"] == rule and ev["path"].endswith(marker) and "://" not in ev["path"]


def test_http2_responses_do_not_fill_the_log_with_header_warnings(proxy: Proxy, servers: Servers) -> None:
    """Regression: the addon set `X-Shield-Flow-Id` with capitals; mitmproxy lower-cased it
    for HTTP/2 and logged one warning line per HTTP/2 response."""
    with client(proxy, "agent-h2-log", http2=True) as c:
        r = c.get(servers.h2.url("/h2/log-check"))
    assert r.http_version == "HTTP/2"
    flow(proxy, r.headers["x-shield-flow-id"])
    assert "Lowercased 'X-Shield-Flow-Id'" not in proxy.log.read_text()


# ---------------------------------------------------------------- request bodies


def test_chunked_request_body_is_recorded_whole_and_forwarded(proxy: Proxy, servers: Servers) -> None:
    parts = [b"first part, ", b"second part, ", b"x" * 70000, b" end"]
    with client(proxy, "agent-chunked") as c:
        r = c.post(servers.plain.url("/chunked/upload"), content=iter(parts))
    body = b"".join(parts)
    assert r.status_code == 200 and r.json()["sha256"] == sha(body)
    [hit] = servers.plain.hits_for("/chunked/upload")
    assert hit.body == body
    req = flow(proxy, r.headers["x-shield-flow-id"])["request"]
    assert req["request_body_size"] == len(body) and req["request_sha256"] == sha(body)
    assert ["Transfer-Encoding", "chunked"] in json.loads(req["request_headers"])
    assert req["request_body"].startswith("first part, second part, xxx") and "[cut at 65536 bytes]" in req["request_body"]


@pytest.mark.parametrize("enc", ["gzip", "br", "zstd", "deflate"])
def test_compressed_request_bodies_are_decoded_for_the_rules(proxy: Proxy, servers: Servers, enc: str) -> None:
    plain = json.dumps({"query": "DROP TABLE users"}).encode()
    drop = encoding.encode(plain, enc)
    assert drop != plain and encoding.decode(drop, enc) == plain
    path = f"/v1/query/{enc}"

    def post() -> httpx.Response:
        with client(proxy, "agent-enc") as c:
            return c.post(servers.plain.url(path), content=drop,
                          headers={"content-encoding": enc, "content-type": "application/json"})

    fut = pool.submit(post)
    proxy.wait_held(f"~u {path}")  # the sql rule read the decoded body
    assert servers.plain.hits_for(path) == []
    proxy.command("shield.deny", f"~u {path}", "no", "drops")
    assert fut.result(15).status_code == 403
    [req] = proxy.flow_events(path, "request")
    assert req["rule_id"] == "sql-drop" and req["service"] == "sql" and req["tables"] == ["users"]
    assert req["request_body"] == '{"query":"DROP TABLE users"}'  # stored decoded ...
    assert req["request_sha256"] == sha(drop) and req["request_body_size"] == len(drop)  # ... digested as sent
    assert [k for k, v in json.loads(req["request_headers"]) if k.lower() == "content-encoding" and v == enc]

    wire = encoding.encode(json.dumps({"op": "wire_transfer", "amount": 10}).encode(), enc)
    with client(proxy, "agent-enc") as c:
        r = c.post(servers.plain.url(f"/pay/{enc}"), content=wire, headers={"content-encoding": enc})
    assert r.status_code == 403 and r.json()["rule"] == "deny-wire-body"
    assert servers.plain.hits_for(f"/pay/{enc}") == []


@pytest.mark.parametrize(("name", "codec", "content_type", "coding"), [
    ("utf16-bom", "utf-16", "application/json", None),
    ("utf32-bom", "utf-32", "application/json", None),
    ("utf16le-charset", "utf-16-le", "application/json; charset=UTF-16LE", None),
    ("utf8-bom-x-gzip", "utf-8-sig", "application/json", "identity, X-GZIP"),
    ("multipart-utf16-part", "utf-16", "multipart/form-data; boundary=B0und", None),
])
def test_text_in_any_encoding_the_server_decodes_is_judged_as_that_text(
        proxy: Proxy, servers: Servers, name: str, codec: str, content_type: str, coding: str | None) -> None:
    """Python servers decode JSON in UTF-16/32 by its BOM or charset; the rules read the same text.
    The upstream would get the bytes as sent (the record keeps their digest)."""
    plain = json.dumps({"query": "DROP TABLE users"})
    sent = plain.encode(codec)
    if content_type.startswith("multipart/"):
        sent = (b'--B0und\r\nContent-Disposition: form-data; name="q"\r\nContent-Type: application/json\r\n\r\n'
                + sent + b"\r\n--B0und--\r\n")
    if coding:
        sent = encoding.encode(sent, "gzip")
    path = f"/v1/query/text-{name}"
    headers = {"content-type": content_type, **({"content-encoding": coding} if coding else {})}

    def post() -> httpx.Response:
        with client(proxy, "agent-text") as c:
            return c.post(servers.plain.url(path), content=sent, headers=headers)

    fut = pool.submit(post)
    proxy.wait_held(f"~u {path}")  # held by the sql rule: it read the statement
    proxy.command("shield.deny", f"~u {path}", "no", "drops")
    assert fut.result(15).status_code == 403 and servers.plain.hits_for(path) == []
    [req] = proxy.flow_events(path, "request")
    assert (req["rule_id"], req["service"], req["request_sha256"]) == ("sql-drop", "sql", sha(sent))


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-16-be"])
def test_an_mcp_call_in_utf16_or_utf32_is_read_as_the_tool_call_it_is(proxy: Proxy, servers: Servers, codec: str) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send_email", "arguments": {"to": "x"}}}
    sent = json.dumps(call).encode(codec)
    path = f"/mcp/text-{codec}"
    with client(proxy, "agent-text") as c:
        assert c.post(servers.plain.url(path), content=sent, headers={"content-type": "application/json"}).status_code == 200
    [req] = proxy.flow_events(path, "request")
    assert (req["service"], req["operation"], req["request_sha256"]) == ("mcp", "tools/call send_email", sha(sent))
    assert servers.plain.hits_for(path)[0].body == sent  # forwarded as the agent sent it


def test_binary_and_non_utf8_bodies_are_stored_as_base64_with_their_digest(proxy: Proxy, servers: Servers) -> None:
    latin1 = "café naïve, Straße".encode("latin-1")
    with client(proxy, "agent-binary") as c:
        up = c.post(servers.plain.url("/binary/upload"), content=BINARY, headers={"content-type": "application/octet-stream"})
        text = c.post(servers.plain.url("/latin1/upload"), content=latin1, headers={"content-type": "text/plain; charset=latin-1"})
    assert up.status_code == 200 and up.content == BINARY and text.status_code == 200
    ev = flow(proxy, up.headers["x-shield-flow-id"])
    assert ev["request"]["request_body"] == "base64:" + base64.b64encode(BINARY).decode()
    assert ev["request"]["request_sha256"] == sha(BINARY) and ev["request"]["request_body_size"] == len(BINARY)
    assert base64.b64decode(ev["response"]["response_body"].removeprefix("base64:")) == BINARY
    assert ev["response"]["response_sha256"] == sha(BINARY)
    req = flow(proxy, text.headers["x-shield-flow-id"])["request"]
    assert base64.b64decode(req["request_body"].removeprefix("base64:")) == latin1 and req["request_sha256"] == sha(latin1)
    assert proxy.shield("verify", "--confdir", str(proxy.confdir), check=False).returncode == 0


# ---------------------------------------------------------------- WebSocket


def test_websocket_handshake_is_a_flow_and_messages_are_recorded_with_direction_and_size(proxy: Proxy, servers: Servers) -> None:
    ws = WsClient(proxy.port, "127.0.0.1", servers.ws.port, "/ws/echo", "agent-ws")
    try:
        assert ws.accepted is True and ws.flow_id
        ws.send("hello over ws")
        assert ws.recv() == "echo:hello over ws"
        ws.send(b"\x00\x01\xfe\xff" * 10)
        assert ws.recv() == (b"\x00\x01\xfe\xff" * 10)[::-1]
        ws.send("token=ghp_" + "a" * 36)
        assert ws.recv().startswith("echo:token=")
    finally:
        ws.close()
    assert servers.ws.handshakes.count("/ws/echo") >= 1
    events = wait_for(lambda: (lambda ev: ev if len(ev) >= 8 else None)(proxy.events(f"flow_id = '{ws.flow_id}'")),
                      15, "the handshake and six messages")
    assert [e["stage"] for e in events[:2]] == ["request", "response"]
    assert events[0]["decision"] == "allowed" and events[1]["status_code"] == 101
    messages = [e for e in events if e["stage"] == "message"]
    assert [(m["operation"], m["resource_type"]) for m in messages] == [
        ("client->server", "websocket-text"), ("server->client", "websocket-text"),
        ("client->server", "websocket-binary"), ("server->client", "websocket-binary"),
        ("client->server", "websocket-text"), ("server->client", "websocket-text")]
    c1, s1, c2, s2, c3, _ = messages
    assert (c1["request_body"], c1["request_body_size"], c1["request_sha256"]) == ("hello over ws", 13, sha(b"hello over ws"))
    assert c1["response_body"] is None and s1["request_body"] is None
    assert (s1["response_body"], s1["response_body_size"]) == ("echo:hello over ws", 18)
    assert c2["request_body_size"] == 40 and c2["request_body"].startswith("base64:")
    assert s2["response_sha256"] == sha((b"\x00\x01\xfe\xff" * 10)[::-1])
    assert "ghp_" not in c3["request_body"] and "[redacted:" in c3["request_body"], "secrets in messages are redacted"
    assert {m["agent"] for m in messages} == {"agent-ws"}


def test_a_rule_denies_a_websocket_upgrade_before_it_reaches_upstream(proxy: Proxy, servers: Servers) -> None:
    ws = WsClient(proxy.port, "127.0.0.1", servers.ws.port, "/deny/ws-upgrade", "agent-ws-deny")
    body = json.loads(ws.read_reject_body())
    assert ws.accepted == 403 and body["rule"] == "deny-refunds" and body["decision"] == "blocked"
    assert "/deny/ws-upgrade" not in servers.ws.handshakes
    ev = flow(proxy, ws.flow_id)
    assert ev["request"]["decision"] == "blocked" and ev["response"]["outcome"] == "refused"
    assert ("upgrade", "websocket") in {(k.lower(), v.lower()) for k, v in json.loads(ev["request"]["request_headers"])}


# ---------------------------------------------------------------- large bodies


def test_a_100_mb_download_streams_through_without_growing_the_proxy(proxy: Proxy, servers: Servers) -> None:
    size = 100 * MIB
    base, peak, done = rss_mib(proxy.proc.pid), [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(proxy.proc.pid))
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    got, digest = 0, hashlib.sha256()
    try:
        with client(proxy, "agent-download") as c, c.stream("GET", servers.plain.url(f"/big/{size}")) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                got += len(chunk)
                digest.update(chunk)
    finally:
        done.set()
        watcher.join()
    expected = pattern_sha256(size)
    assert got == size and digest.hexdigest() == expected
    growth = peak[0] - base
    assert growth < 50, f"the proxy's RSS grew {growth:.0f} MiB for a 100 MiB download: it buffered"
    resp = flow(proxy, r.headers["x-shield-flow-id"])["response"]
    assert resp["response_body_size"] == size and resp["response_sha256"] == expected
    assert resp["response_body"].startswith("base64:") and resp["outcome"] == "forwarded"


def test_a_20_mb_upload_is_forwarded_and_recorded_with_size_and_digest(proxy: Proxy, servers: Servers) -> None:
    body = os.urandom(20 * MIB)
    with client(proxy, "agent-upload", timeout=60) as c:
        r = c.put(servers.plain.url("/upload/20mb"), content=body)
    assert r.status_code == 200 and r.json()["size"] == len(body) and r.json()["sha256"] == sha(body)
    req = flow(proxy, r.headers["x-shield-flow-id"])["request"]
    assert req["request_body_size"] == len(body) and req["request_sha256"] == sha(body)
    assert len(req["request_body"]) < 100_000, "the stored body is cut at shield_body_limit"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, servers: Servers) -> Iterator[Proxy]:
    """A proxy with mitmproxy's body_size_limit, the bound the addon asks for instead of
    stream_large_bodies."""
    p = start_proxy(tmp_path_factory.mktemp("limited"), "--set", "proxyauth=any", "--set", "body_size_limit=5m",
                    control=False)
    yield p
    p.stop()


def test_body_size_limit_refuses_a_larger_upload_and_records_the_refusal(limited: Proxy, servers: Servers) -> None:
    host = f"127.0.0.1:{servers.plain.port}"
    head = (f"POST http://{host}/limit/declared HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: "
            f"{proxy_auth('agent-limit')}\r\nContent-Length: {6 * MIB}\r\n\r\n").encode()
    [(status, _)] = responses(raw_exchange(limited.port, head + b"x" * 100_000, timeout=10, responses_wanted=1))
    assert status == 413
    with httpx.Client(proxy=limited.url("agent-limit"), trust_env=False, timeout=30) as c:
        chunked = c.post(servers.plain.url("/limit/chunked"), content=iter([b"y" * MIB] * 6))  # no length: caught late
        small = c.post(servers.plain.url("/limit/small"), content=b"z" * (4 * MIB))
    assert chunked.status_code == 413 and small.status_code == 200
    assert servers.plain.hits_for("/limit/declared") == [] and servers.plain.hits_for("/limit/chunked") == []
    errors = limited.flow_events("/limit/", "error", n=2)
    assert {e["path"] for e in errors} == {"/limit/declared", "/limit/chunked"}
    assert all(e["outcome"] == "error" and "body_size_limit" in e["error"] for e in errors)
    assert [e["request_body_size"] for e in limited.flow_events("/limit/small", "request")] == [4 * MIB]


def test_body_size_limit_also_refuses_larger_downloads(limited: Proxy, servers: Servers) -> None:
    """Documented interaction: mitmproxy's body_size_limit applies to responses too, before
    the addon could stream them, so it caps downloads as well."""
    with httpx.Client(proxy=limited.url("agent-limit"), trust_env=False, timeout=30) as c:
        r = c.get(servers.plain.url(f"/big/{6 * MIB}"))
    assert r.status_code == 502
    [e] = limited.flow_events(f"/big/{6 * MIB}", "error")
    assert e["outcome"] == "error" and "Response body exceeds" in e["error"]


# ---------------------------------------------------------------- odd URLs and headers


ODD_PATHS = [
    "/odd/%2F%2e%2e%2Fetc%2Fpasswd%00?q=%E2%9C%93&x=a%26b&empty=",
    "/odd/%C3%BCn%C3%AFc%C3%B8d%C3%A9/%E6%97%A5%E6%9C%AC?k=%E2%9C%93",
    "/odd/sp%20ace/semi;colon/@at/%25percent",
    "/odd/long-" + "a" * 16000,
]


@pytest.mark.parametrize("path", ODD_PATHS, ids=["encoded", "unicode", "reserved", "long"])
def test_odd_urls_are_recorded_as_forwarded(proxy: Proxy, servers: Servers, path: str) -> None:
    conn = HTTP1Conn(proxy.port, "agent-odd-url")
    try:
        status, headers, _ = conn.request("GET", servers.plain.url(path))
    finally:
        conn.close()
    assert status == 200
    [hit] = [h for h in servers.plain.hits if h.path == path]
    req = flow(proxy, headers["x-shield-flow-id"])["request"]
    assert hit.path == path
    url = f"http://127.0.0.1:{servers.plain.port}{path}"
    if len(url) > VALUE_LIMIT:  # stored up to the cap, then its size and digest (docs/trail.md, Bounded)
        assert req["path"] == path[:VALUE_LIMIT] + cut_mark(VALUE_LIMIT, path.encode())
        assert req["url"] == url[:VALUE_LIMIT] + cut_mark(VALUE_LIMIT, url.encode())
        return
    assert req["path"] == path.split("?")[0], "the recorded path is the one upstream received"
    assert req["url"] == url


def test_a_raw_utf8_request_target_is_refused_before_it_becomes_a_flow(proxy: Proxy, servers: Servers) -> None:
    """Unencoded UTF-8 in the request line: mitmproxy answers 400 "Bad HTTP request line"
    before any flow exists, so no flow hook runs; the attempt is recorded all the same, from
    mitmproxy's log record of it, under the client's address. Nothing reaches upstream. (If
    mitmproxy ever accepts it, the flow must be recorded with the path upstream received.)"""
    host = f"127.0.0.1:{servers.plain.port}"
    data = (f"GET http://{host}/odd/raw-ü-日本 HTTP/1.1\r\nHost: {host}\r\n"
            f"Proxy-Authorization: {proxy_auth('agent-raw-utf8')}\r\n\r\n").encode()
    [(status, body)] = responses(raw_exchange(proxy.port, data, responses_wanted=1))
    if status == 200:
        [hit] = servers.plain.hits_for("/odd/raw-")
        [req] = proxy.flow_events("/odd/raw-", "request")
        assert req["path"] in (hit.path, hit.path.encode("latin-1").decode("utf-8"))
    else:
        assert status == 400 and b"Bad HTTP request line" in body
        assert servers.plain.hits_for("/odd/raw-") == []
        wait_for(lambda: "Bad HTTP request line" in proxy.log.read_text(), 10, "the refusal in the proxy log")
        [ev] = wait_for(lambda: proxy.events("stage = 'error' AND error LIKE '%raw-%' AND flow_id IS NULL"), 10,
                        "the refused request's event")
        assert (ev["outcome"], ev["client_ip"], ev["agent"]) == ("refused", "127.0.0.1", "anonymous@127.0.0.1")
        assert ev["error"].startswith("mitmproxy refused a request it could not read (400): Bad HTTP request line")


def test_odd_header_values_are_recorded_and_the_chain_still_verifies(proxy: Proxy, servers: Servers) -> None:
    host = f"127.0.0.1:{servers.plain.port}"
    head = (f"GET http://{host}/odd/headers HTTP/1.1\r\nHost: {host}\r\n"
            f"Proxy-Authorization: {proxy_auth('agent-odd-header')}\r\n").encode()
    head += "X-Utf8: värde ☃\r\n".encode()
    head += b"X-Latin1: \xe9\xff\r\n"
    head += b"X-Empty:\r\n"
    head += b"X-Tab: a\tb\r\n"
    head += b"X-Long: " + b"v" * 12000 + b"\r\n"
    head += b"X-Escape: \x1b[31mred\r\n"
    head += b"X-Dup: 1\r\nX-Dup: 2\r\n\r\n"
    [(status, _)] = responses(raw_exchange(proxy.port, head, responses_wanted=1))
    assert status == 200
    [hit] = servers.plain.hits_for("/odd/headers")
    [req] = proxy.flow_events("/odd/headers", "request")
    recorded = json.loads(req["request_headers"])
    assert ["X-Utf8", "värde ☃"] in recorded
    [latin1] = [v for k, v in recorded if k == "X-Latin1"]
    assert latin1 and set(latin1) == {"\ufffd"}, "undecodable bytes become U+FFFD, never a broken row"
    assert ["X-Empty", ""] in recorded and ["X-Tab", "a\tb"] in recorded
    long = "v" * 12000  # past the cap of a header value: its start, then its size and digest
    assert ["X-Long", long[:VALUE_LIMIT] + cut_mark(VALUE_LIMIT, long.encode())] in recorded
    assert ["X-Escape", "\x1b[31mred"] in recorded and ["X-Dup", "1"] in recorded and ["X-Dup", "2"] in recorded
    assert {k.lower() for k, _ in hit.headers} <= header_names(req["request_headers"])
    out = proxy.shield("verify", "--confdir", str(proxy.confdir), check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def ingested_through(proxy: Proxy, seq: int) -> bool:
    import duckdb

    try:  # between ingest batches only
        con = duckdb.connect(str(proxy.audit_dir / "audit.duckdb"), read_only=True)
    except duckdb.Error:
        return False
    try:
        return (con.execute("SELECT max(seq) FROM events").fetchone()[0] or 0) >= seq
    finally:
        con.close()


def test_an_agent_chosen_control_character_in_a_table_name_does_not_break_verify(tmp_path: Path, servers: Servers) -> None:
    """The table name `us<ESC>ers` is recorded in `tables`; DuckDB's to_json writes the ESC as
    \\u001B where Python writes \\u001b. (Regression: once ingested, `shield verify` reported
    the untouched row as "edited in audit.duckdb": any agent could make the trail fail to
    verify.) Its own proxy, so a broken trail cannot fail the other tests' verify."""
    proxy = start_proxy(tmp_path, "--set", "proxyauth=any", control=False)
    try:
        with client(proxy, "agent-ctl-table") as c:
            r = c.get(servers.plain.url("/rest/v1/us%1Bers"))
        assert r.status_code == 200
        req = flow(proxy, r.headers["x-shield-flow-id"])["request"]
        assert req["service"] == "postgrest" and req["tables"] == ["us\x1bers"]
        wait_for(lambda: ingested_through(proxy, req["seq"]), 15, "the row in audit.duckdb")
        out = proxy.shield("verify", "--confdir", str(proxy.confdir), check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        proxy.stop()


# ---------------------------------------------------------------- IPv6


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_an_ipv6_upstream_is_reached_and_recorded(proxy: Proxy) -> None:
    # Raw requests: httpx 0.28 writes `GET http://::1:port/` (no brackets) to a proxy, a 400.
    up = HTTPUpstream(host="::1").start()
    conn = HTTP1Conn(proxy.port, "agent-ipv6")
    try:
        ok_status, ok_headers, ok_body = conn.request("GET", up.url("/ipv6/get?x=1"))
        denied, _, _ = conn.request("DELETE", up.url("/deny/ipv6"))
    finally:
        conn.close()
        up.stop()
    assert ok_status == 200 and json.loads(ok_body)["path"] == "/ipv6/get?x=1" and denied == 403
    assert up.hits_for("/deny/") == [] and up.hits[0].conn[0] == "::1"
    req = flow(proxy, ok_headers["x-shield-flow-id"])["request"]
    assert req["host"] == "::1" and req["port"] == up.port
    assert req["url"] == f"http://[::1]:{up.port}/ipv6/get?x=1"


# ---------------------------------------------------------------- upstream failures


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["refused", "reset", "tls"])
def test_upstream_failures_are_recorded_as_errors(proxy: Proxy, servers: Servers, kind: str) -> None:
    url, text = {
        "refused": (f"http://127.0.0.1:{closed_port()}/fail/refused", "Connect call failed"),
        "reset": (servers.plain.url("/reset/fail"), "peer closed connection without sending complete message body"),
        "tls": (servers.untrusted.url("/fail/tls"), "Certificate verify failed"),
    }[kind]
    with client(proxy, f"agent-fail-{kind}") as c:
        r = c.get(url)
    assert r.status_code == 502, "mitmproxy answers an upstream failure with 502"
    [req] = proxy.events(f"agent = 'agent-fail-{kind}' AND stage = 'request'")
    assert req["decision"] == "allowed"
    [err] = proxy.flow_events(req["path"], "error")
    assert err["flow_id"] == req["flow_id"] and err["outcome"] == "error" and text in err["error"]
    assert not proxy.events(f"flow_id = '{req['flow_id']}' AND stage = 'response'")


def test_an_upstream_that_never_answers_is_recorded_when_the_agent_gives_up(proxy: Proxy, servers: Servers) -> None:
    t0 = time.monotonic()
    with pytest.raises(httpx.ReadTimeout), client(proxy, "agent-silent", timeout=2) as c:
        c.get(servers.plain.url("/silent/client-timeout"))
    assert time.monotonic() - t0 < 10
    [err] = proxy.flow_events("/silent/client-timeout", "error")
    assert err["outcome"] == "error" and err["error"] == "Client disconnected."
    assert len(servers.plain.hits_for("/silent/client-timeout")) == 1


@pytest.mark.skipif(int(MITMPROXY_VERSION.split(".")[0]) < 12, reason="mitmproxy 11 has no tcp_timeout option")
def test_mitmproxy_tcp_timeout_ends_a_silent_upstream_and_is_recorded(tmp_path: Path, servers: Servers) -> None:
    p = start_proxy(tmp_path, "--set", "proxyauth=any", "--set", "tcp_timeout=2", control=False)
    try:
        t0 = time.monotonic()
        with pytest.raises(httpx.RemoteProtocolError), httpx.Client(proxy=p.url("agent-tcp-timeout"), trust_env=False,
                                                                    timeout=30) as c:
            c.get(servers.plain.url("/silent/tcp-timeout"))
        assert time.monotonic() - t0 < 15
        [err] = p.flow_events("/silent/tcp-timeout", "error")
        assert err["outcome"] == "error" and err["error"]
        assert "Closing connection due to inactivity" in p.log.read_text()
    finally:
        p.stop()


# ---------------------------------------------------------------- request smuggling shapes


def raw_request(host: str, path: str, agent: str, extra: bytes, body: bytes = b"", method: str = "POST") -> bytes:
    return (f"{method} http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {proxy_auth(agent)}\r\n"
            ).encode() + extra + b"\r\n" + body


REFUSED_SHAPES = {
    "cl-and-te": (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /smuggle/hidden HTTP/1.1\r\n\r\n"),
    "two-cl": (b"Content-Length: 4\r\nContent-Length: 40\r\n", b"abcdGET /smuggle/hidden HTTP/1.1\r\n\r\n"),
    "two-te": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"),
    "unknown-te": (b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "cl-plus-sign": (b"Content-Length: +4\r\n", b"abcd"),
    "space-before-colon": (b"Content-Length : 4\r\n", b"abcd"),
}


@pytest.mark.parametrize("shape", list(REFUSED_SHAPES))
def test_smuggling_shapes_are_refused_and_recorded_and_never_reach_upstream(proxy: Proxy, servers: Servers, shape: str) -> None:
    host = f"127.0.0.1:{servers.plain.port}"
    extra, body = REFUSED_SHAPES[shape]
    out = raw_exchange(proxy.port, raw_request(host, f"/smuggle/{shape}", "agent-smuggler", extra, body), timeout=10)
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    assert servers.plain.hits_for(f"/smuggle/{shape}") == [] and servers.plain.hits_for("/smuggle/hidden") == []
    [err] = proxy.flow_events(f"/smuggle/{shape}", "error")
    assert err["outcome"] == "error" and ("smuggling" in err["error"] or "invalid" in err["error"])


PASSED_SHAPES = {
    "lf-in-value": b"X-A: a\nX-Injected: yes\r\n",
    "obs-fold": b"X-A: a\r\n folded: x\r\n",
    "nul-in-value": b"X-A: a\x00b\r\n",
    "body-looks-like-a-request": b"Content-Length: 35\r\n",  # the body below, whole
}


@pytest.mark.parametrize("shape", list(PASSED_SHAPES))
def test_odd_header_shapes_that_pass_reach_upstream_only_as_recorded(proxy: Proxy, servers: Servers, shape: str) -> None:
    host = f"127.0.0.1:{servers.plain.port}"
    body = b"GET /smuggle/hidden2 HTTP/1.1\r\n\r\n.." if shape == "body-looks-like-a-request" else b""
    raw_exchange(proxy.port, raw_request(host, f"/smuggle/{shape}", "agent-smuggler", PASSED_SHAPES[shape], body),
                 timeout=10, responses_wanted=1)
    assert_forwarded_only_as_recorded(proxy, servers, f"/smuggle/{shape}")
    assert servers.plain.hits_for("/smuggle/hidden2") == []


def assert_forwarded_only_as_recorded(proxy: Proxy, servers: Servers, path: str) -> None:
    """Whatever reached upstream has its request event, with the body and every header
    upstream parsed; what did not reach upstream was refused, and the trail says so."""
    reqs = proxy.flow_events(path, "request")
    hits = servers.plain.hits_for(path)
    assert len(hits) <= 1 and len(reqs) == 1, f"{len(hits)} upstream hit(s), {len(reqs)} request event(s)"
    [req] = reqs
    if not hits:
        [end] = [e for e in proxy.flow_events(path) if e["stage"] in ("response", "error")] or [None]
        assert end and end["outcome"] == "refused", f"not forwarded, yet the trail says {end}"
        return
    [hit] = hits
    assert hit.path == req["path"] and sha(hit.body) == req["request_sha256"]
    unseen = {k.lower() for k, _ in hit.headers} - header_names(req["request_headers"])
    assert not unseen, f"upstream received header(s) {unseen} that the rules never saw: {req['request_headers']}"


def test_a_header_hidden_behind_a_bare_cr_does_not_slip_past_the_rules(proxy: Proxy, servers: Servers) -> None:
    """mitmproxy accepts a bare CR inside a header value and forwards it unchanged; an
    upstream that treats CR as a line end then sees a header the rules never saw (RFC 9110
    §5.5: reject such a value or replace the CR by a space). Regression: the guard recorded
    one header `X-A: a\\rX-Sudo: yes`, its `x-sudo` rule did not match, and the upstream got
    `X-Sudo: yes` - a rule bypass."""
    host = f"127.0.0.1:{servers.plain.port}"
    sudo = raw_exchange(proxy.port, raw_request(host, "/smuggle/sudo-plain", "agent-smuggler", b"X-Sudo: yes\r\n", b"",
                                                "GET"), timeout=10, responses_wanted=1)
    assert sudo.startswith(b"HTTP/1.1 403"), "the header rule denies X-Sudo when it is sent plainly"
    raw_exchange(proxy.port, raw_request(host, "/smuggle/sudo-cr", "agent-smuggler", b"X-A: a\rX-Sudo: yes\r\n", b"", "GET"),
                 timeout=10, responses_wanted=1)
    assert_forwarded_only_as_recorded(proxy, servers, "/smuggle/sudo-cr")


# ---------------------------------------------------------------- proxy authentication


def test_a_request_refused_407_by_proxyauth_is_not_recorded_as_forwarded(proxy: Proxy, servers: Servers) -> None:
    """With proxyauth on, a plain-HTTP request without credentials gets mitmproxy's 407.
    Regression: the trail said decision=allowed, outcome=forwarded; it was never forwarded."""
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", trust_env=False, timeout=10) as c:
        r = c.get(servers.plain.url("/noauth/get"))
    assert r.status_code == 407 and servers.plain.hits_for("/noauth/get") == []
    [resp] = proxy.flow_events("/noauth/get", "response")
    assert resp["status_code"] == 407
    assert resp["outcome"] != "forwarded", "the proxy answered 407 itself: nothing was forwarded"


def test_an_unauthenticated_request_is_not_held_for_a_reviewer(proxy: Proxy, servers: Servers) -> None:
    """Regression: the rules ran before the 407 was sent, so an unauthenticated request
    matching a hold rule waited for a reviewer (300 s by default) only to get a 407."""
    with httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", trust_env=False, timeout=5) as c:
        try:
            r = c.delete(servers.plain.url("/hold/noauth"))
        except httpx.ReadTimeout:
            r = None
    proxy.command("shield.deny", "~u /hold/noauth", "cleanup")
    assert r is not None and r.status_code == 407, "an unauthenticated agent gets its 407 at once"
    assert servers.plain.hits_for("/hold/noauth") == []
