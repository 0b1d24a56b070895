"""In-process figures, in CPU time: rule evaluation by rule count, action parsing per parser, and
the proxy's per-request work step by step. Every step is a call of the proxy's own function
through pipeline.py (never a copy of it), on mitmproxy test flows."""

from __future__ import annotations

import collections
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from scripts.bench import pipeline
from scripts.bench.testflows import body_flow, load_flows, realistic_flows, subject_of

Step = tuple[str, Callable[[], Any], Callable[[], Any] | None]  # (label, the call, what runs before it untimed-ish)
MIN_BATCHES = 5  # a median of at least this many ~1 ms batches per figure (--smoke: 1)


def ns_median(fn: Callable[[], Any], budget: float = 0.3, min_n: int = 30, setup: Callable[[], Any] | None = None) -> float:
    """ns of CPU per call, this thread's CPU time (time the scheduler gives to other processes does
    not count): calls run in batches of about 1 ms; the median batch, less the setup's own cost."""
    if MIN_BATCHES == 1:
        min_n = 1

    def per_call(f: Callable[[], Any]) -> float:
        def batch(k: int) -> float:
            t = time.thread_time_ns()
            for _ in range(k):
                if setup:
                    setup()
                f()
            return time.thread_time_ns() - t

        k = 1
        while (dt := batch(k)) < 1_000_000 and k < 1 << 16:
            k = max(k * 2, int(k * 1_200_000 / max(dt, 1)))
        per = [dt / k]
        end = time.perf_counter() + budget
        while len(per) < max(MIN_BATCHES, min_n // k) or time.perf_counter() < end:
            per.append(batch(k) / k)
        return statistics.median(per)

    t = per_call(fn)
    return max(0.0, t - per_call(lambda: None)) if setup else t


def bench_rules(sets: dict[str, pipeline.RuleSet], budget: float) -> dict[str, dict[str, float]]:
    res = {}
    items = realistic_flows()
    for name, rs in sets.items():
        subjects = [subject_of(f, rs) for _, f in items]
        per = [ns_median(lambda s=s, rs=rs: pipeline.evaluate(rs, s), budget / len(subjects)) for s in subjects]
        res[name] = {"rules": len(rs.rules), "median_us": statistics.median(per) / 1000, "max_us": max(per) / 1000,
                     "per_rule_ns": statistics.median(per) / max(1, len(rs.rules))}
    return res


def rule_cost_by_check(rs: pipeline.RuleSet, budget: float, limit: int | None = None) -> list[tuple[str, int, float, float]]:
    """Per rule (the first `limit`), the cost of rejecting an allowed request, grouped by its
    first check: (first check, rules, median ns per rule, share of the set's time)."""
    subjects = [subject_of(f, rs) for _, f in realistic_flows()]
    by: dict[str, list[float]] = collections.defaultdict(list)
    for rule in rs.rules[:limit]:
        first = rule.predicate.checks[0][0] if rule.predicate.checks else "(empty)"
        t = statistics.median(ns_median(lambda s=s, r=rule: r.matches(s), budget, min_n=20) for s in subjects[:6])
        by[first].append(t)
    total = sum(sum(v) for v in by.values())
    return sorted(((k, len(v), statistics.median(v), sum(v) / total) for k, v in by.items()), key=lambda x: -x[3])


def index_potential(rs: pipeline.RuleSet) -> tuple[float, float]:
    """How many rules a host/method/service index would leave to evaluate for the realistic
    requests (median and max): rules with none of those fields, plus those whose fields match."""
    left = []
    for _, f in realistic_flows():
        s = subject_of(f, rs)
        n = 0
        for rule in rs.rules:
            keyed = [(k, p) for k, p in rule.predicate.checks if k in ("method", "host", "service")]
            if not keyed or all(p(s, {}) for _, p in keyed):
                n += 1
        left.append(n)
    return statistics.median(left), max(left)


def bench_parsers(budget: float) -> list[tuple[str, float, float, float]]:
    """(parser, µs on its own request, µs declining a plain GET, µs declining the 256 KiB JSON POST)."""
    own = {"kubernetes": "kubernetes", "mcp": "mcp", "graphql": "graphql", "sql": "sql", "aws": "aws", "postgrest": "postgrest",
           "rest": "rest github"}
    flows_by = dict(realistic_flows())
    plain = [pipeline.view_of(f) for f in load_flows()]
    heavy = pipeline.view_of(body_flow())
    clear = pipeline.clear_caches
    res = []
    for name, parser in pipeline.PARSERS.items():
        mine = pipeline.view_of(flows_by[own[name]])
        t_own = ns_median(lambda p=parser, v=mine: p(v, False), budget, setup=clear)
        t_plain = statistics.median(ns_median(lambda p=parser, v=v: p(v, False), budget / len(plain), setup=clear) for v in plain)
        t_heavy = ns_median(lambda p=parser: p(heavy, False), budget, min_n=10, setup=clear)
        res.append((name, t_own / 1000, t_plain / 1000, t_heavy / 1000))
    return res


def bench_parse_total(rs: pipeline.RuleSet, budget: float) -> tuple[float, float, float]:
    plain = [pipeline.view_of(f) for f in load_flows()]
    real = [pipeline.view_of(f) for _, f in realistic_flows()]
    heavy = pipeline.view_of(body_flow())
    clear = pipeline.clear_caches
    t_plain = statistics.median(ns_median(lambda v=v: pipeline.parse(v, rs), budget / 8, setup=clear) for v in plain)
    t_real = statistics.median(ns_median(lambda v=v: pipeline.parse(v, rs), budget / len(real), setup=clear) for v in real)
    t_heavy = ns_median(lambda: pipeline.parse(heavy, rs), budget, min_n=10, setup=clear)
    return t_plain / 1000, t_real / 1000, t_heavy / 1000



class Request:
    """One request taken through the pipeline once, so each step can be timed on its own inputs."""

    def __init__(self, f: http.HTTPFlow, rs: pipeline.RuleSet, redactor: Any, listen_port: int):
        self.f, self.rs, self.redactor = f, rs, redactor
        self.agent = pipeline.agent_of(f)
        self.sent = pipeline.sent_of(f.request)
        self.base = pipeline.base_columns(f, self.agent, redactor, self.sent)
        self.body = pipeline.body_of(f)
        self.view = pipeline.view_of(f, self.body, self.sent)
        pipeline.clear_caches()
        self.readings = pipeline.parse(self.view, rs)
        self.subject = pipeline.Subject(self.view, self.readings[0].action, f, self.agent)
        self.own = frozenset({("127.0.0.1", listen_port)})
        self.context = pipeline.Context(agent=self.agent, flow=f, own=self.own)
        self.verdict = pipeline.decide(self.readings, rs, self.context)
        self.event = self.request_event()
        self.row = pipeline.seal({**self.event, "ts": NOW}, 1, CHAIN, pipeline.GENESIS)
        self.resp_event = {**self.base, "stage": "response", "outcome": "forwarded", **pipeline.response_columns(f, redactor, LIMIT)}
        self.resp_row = pipeline.seal({**self.resp_event, "ts": NOW}, 2, CHAIN, self.row["row_hash"])

    def request_event(self) -> dict[str, Any]:
        return pipeline.request_event(self.base, self.f.request, self.body, self.verdict, self.redactor, self.rs.sha256, LIMIT,
                                      sent=self.sent)

    def whole(self) -> bytes:
        """Everything the proxy's event loop does for an allowed request before it awaits the
        writer, in order: the event ends as the line sent to the writer process."""
        agent = pipeline.agent_of(self.f)
        sent = pipeline.sent_of(self.f.request)
        base = pipeline.base_columns(self.f, agent, self.redactor, sent)
        body = pipeline.body_of(self.f)
        view = pipeline.view_of(self.f, body, sent)
        verdict = pipeline.decide(pipeline.parse(view, self.rs), self.rs, pipeline.Context(agent=agent, flow=self.f, own=self.own))
        event = pipeline.request_event(base, self.f.request, body, verdict, self.redactor, self.rs.sha256, LIMIT, sent=sent)
        return pipeline.wire_line(event)


NOW = "2026-11-27T10:00:00.000000Z"
CHAIN = "5f0c2d1e-7a3b-4c9d-8e1f-2a3b4c5d6e7f"
LIMIT = 65536  # shield_body_limit's default
LISTEN_PORT = 3128  # the proxy's, as the gate knows it: not the flows' upstream port (8080), or the built-in rule refuses them


def request_steps(r: Request) -> list[Step]:
    req, redactor, clear = r.f.request, r.redactor, pipeline.clear_caches
    path = req.path.split("?", 1)[0]
    headers = list(req.headers.items(multi=True))
    ct = req.headers.get("content-type", "").lower()
    text = (r.body or b"").decode("utf-8", "replace")
    big = [("    body: json.loads + json.dumps only", lambda: json.dumps(json.loads(text), ensure_ascii=False,
                                                                          separators=(",", ":")), None),
           ("    body: the secret-value scan over the whole text", lambda: pipeline.SECRET_VALUE.sub("", text), None),
           ("    body: the key=value scan over the whole text", lambda: pipeline.SECRET_PAIR.sub("", text), None)]
    return [
        ("request: agent_of", lambda: pipeline.agent_of(r.f), None),
        ("request: sent_of (headers, query, content type)", lambda: pipeline.sent_of(req), None),
        ("request: base_columns (url+path redaction)", lambda: pipeline.base_columns(r.f, r.agent, redactor, r.sent), None),
        ("  of which redact_url", lambda: pipeline.redact_url(redactor, req.scheme, req.host, req.port, redactor.text(path),
                                                               req.query.items(multi=True)), None),
        ("request: body_of (decoding)", lambda: pipeline.body_of(r.f), None),
        ("request: view_of", lambda: pipeline.view_of(r.f, r.body, r.sent), None),
        ("request: actions.parse (all parsers)", lambda: pipeline.parse(r.view, r.rs), clear),
        ("request: decide (rules + built-in rules)", lambda: pipeline.decide(r.readings, r.rs, r.context), None),
        ("  of which rules.evaluate", lambda: pipeline.evaluate(r.rs, r.subject), None),
        ("  of which the proxy-itself check", lambda: pipeline.own_address(r.view.host, r.view.port, r.own), None),
        ("request: request_event (request + action columns)", r.request_event, None),
        ("  of which header redaction", lambda: redactor.headers(headers), None),
        ("  of which body redaction", lambda: redactor.body(r.body, ct, LIMIT), None),
        ("  of which sha256 of the body", lambda: pipeline.sha256(req.raw_content), None),
        *(big if len(text) > LIMIT else []),
        ("request: wire_line (the event as sent to the writer)", lambda: pipeline.wire_line(r.event), None),
        ("writer process: seal request event (canonical + sha256)",
         lambda: pipeline.seal({**r.event, "ts": NOW}, 1, "c", pipeline.GENESIS), None),
        ("writer process: journal_line of the request row", lambda: pipeline.journal_line(r.row), None),
    ]


def response_steps(r: Request) -> list[Step]:
    return [
        ("update hook x4 (after each flow hook): reviewer lookup", lambda: [pipeline.default_reviewer() for _ in range(4)], None),
        ("response: responseheaders (header + should_stream)", lambda: pipeline.responseheaders(r.f), None),
        ("response: response_columns", lambda: pipeline.response_columns(r.f, r.redactor, LIMIT), None),
        ("response: wire_line", lambda: pipeline.wire_line(r.resp_event), None),
        ("writer process: seal response event", lambda: pipeline.seal({**r.resp_event, "ts": NOW}, 2, "c", r.row["row_hash"]), None),
        ("writer process: journal_line of the response row", lambda: pipeline.journal_line(r.resp_row), None),
    ]


def gate_steps(f: http.HTTPFlow, rs: pipeline.RuleSet, redactor: Any, budget: float, listen_port: int = LISTEN_PORT
               ) -> list[tuple[str, float]]:
    """The proxy's per-request work, step by step, with its own functions (µs, median); the last
    line times the request steps in one call (no setup between them)."""
    r = Request(f, rs, redactor, listen_port)
    whole = ("= request path on the loop in one call (to the line sent to the writer)", r.whole, pipeline.clear_caches)
    steps = [*request_steps(r), *response_steps(r), whole]
    res = []
    for name, fn, setup in steps:
        try:
            res.append((name, ns_median(fn, budget, setup=setup) / 1000))
        except Exception as e:  # noqa: BLE001 - the pipeline moves; say which step broke and go on
            res.append((f"{name} (failed: {e!r:.60})", float("nan")))
    return res
