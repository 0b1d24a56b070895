"""The requests of the in-process figures as mitmproxy test flows: the load's own requests,
the 256 KiB JSON POST, and a realistic mix of allowed requests (one per service)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from mitmproxy import http
from mitmproxy.test import tflow

from scripts.bench import pipeline
from scripts.bench.load import BODY_PATH, HEADERS, PATHS, TOKEN, UPSTREAM_BODY, body_bytes, request_bytes


def make_flow(method: str, url: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
              response: bool = True) -> http.HTTPFlow:
    req = http.Request.make(method, url, body, [(k.encode(), v.encode()) for k, v in headers])
    resp = http.Response.make(200, UPSTREAM_BODY.encode(), {
        "Server": "nginx/1.22.1", "Date": "Fri, 27 Nov 2026 10:00:00 GMT", "Content-Type": "application/json",
        "Connection": "keep-alive"}) if response else False
    f = tflow.tflow(req=req, resp=resp)
    f.client_conn.peername = ("127.0.0.1", 51234)
    return f


def load_flows(port: int = 8080) -> list[http.HTTPFlow]:
    """The requests of the load, as mitmproxy flows (plain HTTP, through the proxy)."""
    res = []
    for n in range(len(PATHS)):
        raw = request_bytes("127.0.0.1", port, True, n).decode()
        first, *hdrs = raw.strip().split("\r\n")
        method, url, _ = first.split(" ")
        res.append(make_flow(method, url, [tuple(h.split(": ", 1)) for h in hdrs]))  # type: ignore[misc]
    return res


def body_flow(port: int = 8080) -> http.HTTPFlow:
    hdrs = [("Host", f"127.0.0.1:{port}"), *[(k, v.format(n=0)) for k, v in HEADERS], ("Content-Type", "application/json")]
    return make_flow("POST", f"http://127.0.0.1:{port}{BODY_PATH}", hdrs, body_bytes())


def realistic_flows() -> list[tuple[str, http.HTTPFlow]]:
    """Allowed requests of an agent's day, one per service, for the rule and parser figures."""
    auth = [("Authorization", TOKEN), ("User-Agent", "python-httpx/0.27.0"), ("Accept", "application/json")]
    js = [*auth, ("Content-Type", "application/json")]
    chat = json.dumps({"model": "gpt-4o", "messages": [{"role": "system", "content": "You are an SRE assistant."},
                                                        {"role": "user", "content": "Summarise the last incident " * 20}],
                       "temperature": 0.2}).encode()
    mcp = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "search_docs", "arguments": {"query": "rollback runbook"}}}).encode()
    items = [
        ("rest github", make_flow("GET", "https://api.github.com/repos/acme/api/pulls?state=open&per_page=30", auth)),
        ("llm openai", make_flow("POST", "https://api.openai.com/v1/chat/completions", js, chat)),
        ("kubernetes", make_flow("GET", "https://k8s.acme.internal/api/v1/namespaces/prod-a/pods?limit=100", auth)),
        ("rest stripe", make_flow("GET", "https://api.stripe.com/v1/charges?limit=10", auth)),
        ("sql", make_flow("POST", "https://db-proxy.acme.internal/query", js,
                          b'{"sql": "SELECT id, total FROM orders WHERE customer_id = 42 ORDER BY id LIMIT 10"}')),
        ("aws", make_flow("GET", "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15", auth)),
        ("mcp", make_flow("POST", "https://mcp.acme.internal/mcp", js, mcp)),
        ("graphql", make_flow("POST", "https://api.github.com/graphql", js, b'{"query": "query { viewer { login name } }"}')),
        ("postgrest", make_flow("GET", "https://acme.supabase.co/rest/v1/orders?select=*&limit=10", auth)),
    ]
    return items + [(f"load {i}", f) for i, f in enumerate(load_flows())]


def subject_of(f: http.HTTPFlow, rs: pipeline.RuleSet) -> pipeline.Subject:
    view = pipeline.view_of(f)
    pipeline.clear_caches()
    return pipeline.Subject(view, pipeline.action(view, rs), f, pipeline.agent_of(f))


def check_allowed(rule_sets: dict[str, pipeline.RuleSet], port: int) -> None:
    """Every request of the load must be on the allow path, or the benchmark measures refusals."""
    for name, rs in rule_sets.items():
        for f in [*load_flows(port), body_flow(port)]:
            v = pipeline.evaluate(rs, subject_of(f, rs))
            if v.enforced != "allow" or v.verdict != "allow":
                raise SystemExit(f"the load is not on the allow path with {name}: {f.request.method} {f.request.url} -> "
                                 f"{v.verdict} ({v.rule.id if v.rule else 'default'})")
