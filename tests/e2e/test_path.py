"""The whole path through a real mitmdump: rules, holds, reviewer commands, the audit files."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import subprocess

import httpx
import pytest

from tests.e2e.conftest import client, curl
from tests.e2e.harness import Proxy, Upstream, wait_for
from tests.e2e.protocols.clients import connect_tunnel, proxy_auth, raw_exchange, responses

pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)


def send(proxy: Proxy, method: str, url: str, agent: str = "agent-httpx", **kw) -> concurrent.futures.Future:
    """Send in the background: a held request blocks its client until someone decides."""

    def go() -> httpx.Response:
        with client(proxy, agent) as c:
            return c.request(method, url, **kw)

    return pool.submit(go)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_allowed_flow_is_forwarded_and_recorded_with_status(proxy: Proxy, upstream: Upstream, tls: bool) -> None:
    path = f"/allowed/httpx-{tls}"
    with client(proxy) as c:
        r = c.get(upstream.url(path, tls))
    assert r.status_code == 200 and r.json()["path"] == path
    assert r.headers["x-shield-flow-id"]
    assert len(upstream.hits_for(path)) == 1
    events = proxy.flow_events(path, "response")
    request = proxy.events(f"flow_id = '{r.headers['x-shield-flow-id']}' AND stage = 'request'")[0]
    assert request["decision"] == "allowed" and request["verdict"] == "allow"
    assert request["agent"] == "agent-httpx" and request["scheme"] == ("https" if tls else "http")
    assert events[0]["status_code"] == 200 and events[0]["outcome"] == "forwarded"


def test_curl_through_https_is_recorded(proxy: Proxy, upstream: Upstream) -> None:
    path = "/allowed/curl"
    cp = subprocess.run(
        [curl(), "-sS", "--proxy", proxy.url("agent-curl"), "--cacert", str(proxy.ca), upstream.url(path, tls=True)],
        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["path"] == path
    ev = proxy.flow_events(path, "response")[0]
    assert ev["agent"] == "agent-curl" and ev["status_code"] == 200


def test_denied_flow_gets_403_json_and_never_reaches_upstream(proxy: Proxy, upstream: Upstream) -> None:
    path = "/deny/refund-1"
    with client(proxy) as c:
        r = c.post(upstream.url(path, tls=True), json={"amount": 100})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-shield-decision"] == "blocked"
    body = r.json()
    assert body["decision"] == "blocked" and body["rule"] == "deny-refunds"
    assert body["message"] == "Refunds are never made by agents" and body["flow_id"]
    assert upstream.hits_for(path) == []
    [tl] = [t for t in proxy.timeline("--decision", "blocked") if t["flow_id"] == body["flow_id"]]
    assert tl["outcome"] == "refused" and tl["rule_id"] == "deny-refunds"


def test_held_flow_approved_with_flow_resume_reaches_upstream_once(proxy: Proxy, upstream: Upstream) -> None:
    path = "/hold/resume-1"
    fut = send(proxy, "DELETE", upstream.url(path, tls=True))
    proxy.wait_held("~u /hold/resume-1")
    assert upstream.hits_for(path) == [], "a held flow must not reach upstream"
    proxy.command("flow.resume", "~u /hold/resume-1")
    r = fut.result(15)
    assert r.status_code == 200
    assert len(upstream.hits_for(path)) == 1
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "approved" and d["reviewer"] == "test-reviewer" and d["decided_at"]
    assert d["operation"] == "flow.resume" and d["edited"] is False


def test_held_flow_approved_with_shield_approve_reaches_upstream_once(proxy: Proxy, upstream: Upstream) -> None:
    path = "/hold/approve-1"
    fut = send(proxy, "POST", upstream.url(path), json={"x": 1})
    proxy.wait_held("~u /hold/approve-1")
    proxy.command("shield.approve", "~u /hold/approve-1")
    proxy.command("shield.approve", "~u /hold/approve-1")  # a second approval changes nothing
    assert fut.result(15).status_code == 200
    assert len(upstream.hits_for(path)) == 1
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "approved" and d["operation"] == "shield.approve"
    [tl] = proxy.timeline("--decision", "approved", "--agent", "agent-httpx", "--flow", d["flow_id"])
    assert tl["status_code"] == 200 and tl["outcome"] == "forwarded" and tl["reviewer"] == "test-reviewer"


def test_held_flow_denied_gets_403_with_reason_and_never_reaches_upstream(proxy: Proxy, upstream: Upstream) -> None:
    path = "/hold/deny-1"
    fut = send(proxy, "DELETE", upstream.url(path, tls=True))
    proxy.wait_held("~u /hold/deny-1")
    proxy.command("shield.deny", "~u /hold/deny-1", "not", "in", "prod")
    r = fut.result(15)
    assert r.status_code == 403 and r.headers["x-shield-decision"] == "denied"
    assert r.json()["reviewer_comment"] == "not in prod" and r.json()["rule"] == "hold-path"
    assert upstream.hits_for(path) == []
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "denied" and d["reviewer_comment"] == "not in prod"


def test_held_flow_killed_ends_at_once_and_never_reaches_upstream(proxy: Proxy, upstream: Upstream) -> None:
    path = "/hold/kill-1"
    fut = send(proxy, "DELETE", upstream.url(path))
    proxy.wait_held("~u /hold/kill-1")
    proxy.command("flow.kill", "~u /hold/kill-1")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError, httpx.ProxyError)):
        fut.result(10)  # the kill bug would leave the agent hanging until its own timeout (30 s)
    assert upstream.hits_for(path) == []
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "killed" and d["operation"] == "flow.kill"
    [e] = proxy.flow_events(path, "error")
    assert e["outcome"] == "refused"


def test_held_flow_times_out_to_403_and_never_reaches_upstream(proxy: Proxy, upstream: Upstream) -> None:
    path = "/short/timeout-1"
    with client(proxy) as c:
        r = c.delete(upstream.url(path))
    assert r.status_code == 403 and r.json()["decision"] == "timed_out"
    assert upstream.hits_for(path) == []
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "timed_out" and d["reviewer"] is None


def test_agent_that_disconnects_while_held_is_abandoned_and_never_forwarded(proxy: Proxy, upstream: Upstream) -> None:
    path = "/hold/abandon-1"
    cp = subprocess.Popen([curl(), "-sS", "--proxy", proxy.url("agent-gone"), "-X", "DELETE", upstream.url(path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy.wait_held("~u /hold/abandon-1")
    cp.kill()
    cp.wait()
    [d] = proxy.flow_events(path, "decision")
    assert d["decision"] == "abandoned"
    proxy.command("flow.resume", "~u /hold/abandon-1")  # too late: it must stay unsent
    proxy.command("shield.approve", "~u /hold/abandon-1")
    assert upstream.hits_for(path) == []
    assert [e["decision"] for e in proxy.events(f"flow_id = '{d['flow_id']}' AND stage = 'decision'")] == ["abandoned"]


def test_a_held_flow_does_not_block_other_flows(proxy: Proxy, upstream: Upstream) -> None:
    fut = send(proxy, "DELETE", upstream.url("/hold/blocker-1"))
    proxy.wait_held("~u /hold/blocker-1")
    with client(proxy) as c:
        assert c.get(upstream.url("/allowed/while-held"), timeout=5).status_code == 200
    proxy.command("shield.approve", "~u /hold/blocker-1")
    assert fut.result(15).status_code == 200


def test_kubernetes_delete_and_sql_drop_are_held_as_parsed_actions(proxy: Proxy, upstream: Upstream) -> None:
    k8s = "/api/v1/namespaces/prod-a/pods/web-1"
    f1 = send(proxy, "DELETE", upstream.url(k8s, tls=True))
    f2 = send(proxy, "POST", upstream.url("/v1/query"), json={"query": "/* hi */ DrOp TABLE users"})
    proxy.wait_held(f"~u {k8s}")
    proxy.wait_held("~u /v1/query")
    proxy.command("shield.deny", "~u /v1/query", "no")
    proxy.command("shield.approve", f"~u {k8s}")
    assert f1.result(15).status_code == 200 and f2.result(15).status_code == 403
    [req] = proxy.flow_events(k8s, "request")
    assert (req["service"], req["action_type"], req["namespace"], req["resource_name"]) == ("kubernetes", "delete", "prod-a", "web-1")
    assert req["rule_id"] == "k8s-delete"
    [sql] = proxy.flow_events("/v1/query", "request")
    assert sql["service"] == "sql" and sql["tables"] == ["users"] and sql["rule_id"] == "sql-drop"
    [tl] = proxy.timeline("--namespace", "prod*", "--action-type", "delete")
    assert tl["path"] == k8s and tl["decision"] == "approved" and tl["namespace"] == "prod-a"
    assert [t["path"] for t in proxy.timeline("--table", "users", "--decision", "denied")] == ["/v1/query"]


def test_a_decoy_field_does_not_hide_the_operation_and_every_action_is_recorded(proxy: Proxy, upstream: Upstream) -> None:
    # DESIGN: every parser runs; `actions` on the request event lists them; the action columns hold the decider
    headers = {"X-Amz-Target": "DynamoDB_20120810.DeleteTable", "Content-Type": "application/x-amz-json-1.0"}
    held = send(proxy, "POST", upstream.url("/decoy"), headers=headers, content=b'{"TableName":"orders","query":"SELECT 1"}')
    proxy.wait_held("~u /decoy")
    proxy.command("shield.deny", "~u /decoy", "no")
    assert held.result(15).status_code == 403
    [req] = proxy.flow_events("/decoy", "request")
    assert (req["service"], req["operation"], req["rule_id"]) == ("aws:dynamodb", "DeleteTable", "aws-delete")
    assert [(a["service"], a["operation"]) for a in json.loads(req["actions"])] == [("sql", "SELECT"), ("aws:dynamodb", "DeleteTable")]
    rows = json.loads(proxy.shield("sql", "SELECT actions->>'$[1].operation' AS op FROM events WHERE path = '/decoy' "
                                   "AND stage = 'request'", "--json").stdout)
    assert rows["op"] == "DeleteTable"


def test_timeline_and_sql_see_events_at_once_while_running(proxy: Proxy, upstream: Upstream) -> None:
    with client(proxy, "agent-fresh") as c:
        assert c.get(upstream.url("/allowed/fresh")).status_code == 200
    rows = wait_for(lambda: proxy.timeline("--agent", "agent-fresh", "--since", "5m"), 3, "a fresh timeline row")
    assert rows[0]["path"] == "/allowed/fresh"
    cp = proxy.shield("sql", "SELECT count(*) AS n FROM events WHERE agent = 'agent-fresh'", "--json")
    assert json.loads(cp.stdout)["n"] >= 2


def test_every_event_is_chained_and_verify_passes(proxy: Proxy, upstream: Upstream) -> None:
    with client(proxy) as c:
        c.get(upstream.url("/allowed/chain"))
    proxy.flow_events("/allowed/chain", "response")
    events = proxy.events()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["row_hash"] for a, b in zip(events, events[1:]))
    cp = proxy.shield("verify", "--confdir", str(proxy.confdir))
    assert cp.stdout.startswith("OK")


DESIGN_EVENT_COLUMNS = (
    "seq chain_id prev_hash row_hash ts stage flow_id agent client_ip method scheme host port path url request_headers "
    "request_body request_body_size request_sha256 service action_type operation resource_type namespace resource_name "
    "tables rule_id verdict matched_rules mode ruleset_sha256 severity decision reviewer decided_at reviewer_comment edited "
    "forwarded_request status_code response_headers response_body response_body_size response_sha256 outcome error duration_ms"
).split()
DESIGN_TIMELINE_COLUMNS = (
    "ts flow_id agent method host path service action_type operation namespace resource_name tables rule_id verdict "
    "decision reviewer decided_at status_code outcome duration_ms"
).split()


def test_a_plain_duckdb_client_reads_the_audit_file_while_the_proxy_runs(proxy: Proxy, upstream: Upstream) -> None:
    import duckdb

    with client(proxy, "agent-duck") as c:
        assert c.get(upstream.url("/allowed/duck")).status_code == 200
    db = proxy.audit_dir / "audit.duckdb"

    def read() -> list | None:
        try:  # between ingest batches; the ingester holds the file only while it appends
            con = duckdb.connect(str(db), read_only=True)
        except duckdb.Error:
            return None
        try:
            rows = con.execute("SELECT path FROM timeline WHERE agent = 'agent-duck'").fetchall()
            events = [d[0] for d in con.execute("SELECT * FROM events LIMIT 0").description]
            timeline = [d[0] for d in con.execute("SELECT * FROM timeline LIMIT 0").description]
            return [rows, events, timeline] if rows else None
        finally:
            con.close()

    rows, events, timeline = wait_for(read, 15, "the flow in audit.duckdb")
    assert rows == [("/allowed/duck",)]
    # DESIGN's columns, in order, then ours for retry-mode holds (README: "Table events")
    assert events == [*DESIGN_EVENT_COLUMNS, "hold_id", "hold_key", "actions", "preview"]
    assert timeline == [*DESIGN_TIMELINE_COLUMNS, "hold_id"]


def test_replay_shows_what_candidate_rules_would_change(proxy: Proxy, upstream: Upstream, tmp_path) -> None:
    with client(proxy, "agent-replay") as c:
        assert c.get(upstream.url("/allowed/replay-me?page=1")).status_code == 200
        assert c.get(upstream.url("/allowed/replay-other")).status_code == 200
    proxy.flow_events("/allowed/replay-other", "response")
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text("version: 1\nrules:\n  - {id: no-replay-me, match: {path: replay-me}, action: deny}\n")
    cp = proxy.shield("rules", "replay", str(candidate), "--agent", "agent-replay", "--json")
    changed = [json.loads(line) for line in cp.stdout.splitlines()]
    assert len(changed) == 1
    assert changed[0]["recorded"] == "allow (default)" and changed[0]["candidate"] == "deny (no-replay-me)"
    assert "2 recorded requests: 1 unchanged, 1 changed (1 newly held or denied)" in cp.stderr


def test_requests_to_the_proxy_itself_are_refused(proxy: Proxy) -> None:
    with client(proxy, "agent-loop") as c:
        r = c.get(f"http://127.0.0.1:{proxy.port}/")
    assert r.status_code == 403 and r.json()["rule"] == "builtin:proxy-itself"
    [ev] = proxy.events("agent = 'agent-loop' AND stage = 'request'")
    assert (ev["decision"], ev["rule_id"]) == ("blocked", "builtin:proxy-itself")


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "0xa9fea9fe", "[::ffff:a9fe:a9fe]", "[fd00:ec2::254]",
                                  "metadata.google.internal", "169.254.170.2"])
def test_the_cloud_metadata_service_is_refused_however_spelled(proxy: Proxy, host: str) -> None:
    """Through the proxy it would answer as the proxy's machine: its instance role's keys."""
    agent = f"agent-imds-{hashlib.sha256(host.encode()).hexdigest()[:8]}"
    # Raw bytes: httpx writes an IPv6 literal into the request line without its brackets.
    data = (f"GET http://{host}/latest/meta-data/iam/security-credentials/ HTTP/1.1\r\nHost: {host}\r\n"
            f"Proxy-Authorization: {proxy_auth(agent)}\r\nConnection: close\r\n\r\n").encode()
    [(status, body)] = responses(raw_exchange(proxy.port, data, responses_wanted=1))
    assert status == 403 and json.loads(body)["rule"] == "builtin:cloud-metadata"
    [ev] = proxy.events(f"agent = '{agent}' AND stage = 'request'")
    assert (ev["decision"], ev["rule_id"], ev["severity"]) == ("blocked", "builtin:cloud-metadata", "critical")


def test_a_tunnel_to_the_cloud_metadata_service_is_refused(proxy: Proxy) -> None:
    s, head = connect_tunnel(proxy.port, "169.254.169.254:443", "agent-imds-tunnel")
    s.close()
    assert head.startswith(b"HTTP/1.1 403"), head
    [ev] = proxy.events("agent = 'agent-imds-tunnel'")
    assert (ev["decision"], ev["rule_id"]) == ("blocked", "builtin:cloud-metadata")


def test_server_sent_events_stream_to_the_agent_and_are_recorded(proxy: Proxy, upstream: Upstream) -> None:
    """The second event is sent only after the agent got the first: a buffering proxy would deadlock."""
    upstream.sse_release.clear()
    with client(proxy, "agent-sse") as c, c.stream("GET", upstream.url("/sse/chat", tls=True)) as r:
        chunks = r.iter_bytes()
        first = next(chunks)
        assert first.startswith(b"data: first")
        upstream.sse_release.set()
        rest = b"".join(chunks)
    assert b"data: second" in first + rest
    [ev] = proxy.flow_events("/sse/chat", "response")
    body = b"data: first\n\ndata: second\n\n"
    assert ev["status_code"] == 200 and ev["response_body_size"] == len(body)
    assert ev["response_sha256"] == hashlib.sha256(body).hexdigest() and ev["response_body"].startswith("data: first")
