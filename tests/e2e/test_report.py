"""The HTML incident report, rendered by a real headless Chromium from a real trail.

The trail is written through the journal (hash chain, fsync) and ingested like the proxy
does; it holds hostile values an agent or a server could plant (markup, an ESC sequence,
a quote that would end an attribute, URLs that would fetch), and the page must show
them as text, run nothing and fetch nothing."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from shield_addon import record, report, store
from shield_addon.journal import Journal
from shield_addon.reader import Filters, Reader

HOSTILE_AGENT = 'evil"onmouseover=alert(2) x="'
SCRIPT_PATH = "/<script>alert(1)</script>"
ESC_PATH = "/x\x1b[2J\x1b]0;pwned\x07"
REVIEWER_COMMENT = "<b>no</b> \x1b[31mred\x1b[0m \u202eevil"


# ---------------------------------------------------------------- a real trail


class Trail:
    """Flows written the way the addon writes them: request, decision (held flows), response."""

    def __init__(self, audit: Path):
        self.audit = audit
        self.journal = Journal(audit / "journal")
        self.journal.open()
        self.n = 0
        self.pending: list[Any] = []

    def flow(self, agent: str, method: str, host: str, path: str, *, verdict: str = "allow", rule: str | None = None,
             decision: str | None = None, reviewer: str | None = None, comment: str | None = None,
             status: int | None = 200, service: str | None = None, operation: str | None = None,
             namespace: str | None = None, name: str | None = None, tables: list[str] | None = None) -> str:
        self.n += 1
        fid = f"{self.n:08x}-flow-{agent[:4]}"
        base = {"flow_id": fid, "agent": agent, "client_ip": "10.0.0.7", "method": method, "scheme": "https",
                "host": host, "port": 443, "path": path, "url": f"https://{host}{path}"}
        held = verdict == "hold"
        first = "blocked" if verdict == "deny" else None if held else "allowed"
        (self.journal.write if held else self.submit)({**base, "stage": "request", "service": service or host, "action_type": "other",
                     "operation": operation, "namespace": namespace, "resource_name": name, "tables": tables or [],
                     "rule_id": rule, "verdict": verdict, "matched_rules": [rule] if rule else [], "mode": "enforce",
                     "severity": "high" if rule else None, "decision": first})
        if held and decision:
            self.submit({**base, "stage": "decision", "decision": decision, "reviewer": reviewer,
                         "decided_at": record.utc_text(time.time()), "reviewer_comment": comment, "edited": False})
        if not held or decision:
            forwarded = decision in (None, "approved") and verdict != "deny"
            self.submit({**base, "stage": "response" if forwarded else "error", "outcome": "forwarded" if forwarded else "refused",
                         "status_code": status if forwarded else 403, "duration_ms": 12.5 * self.n})
        return fid

    def submit(self, event: dict[str, Any]) -> None:
        self.pending.append(self.journal.submit(event))  # group commit: many events, few fsyncs

    def close(self) -> Path:
        for f in self.pending:
            f.result(30)
        self.journal.close()
        store.ingest(self.audit)
        return self.audit


class Trap:
    """A local HTTP server that records every request: the page must never reach it."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.server.shutdown()


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory, trap: Trap) -> Path:
    t = Trail(tmp_path_factory.mktemp("report") / "audit")
    k8s = {"service": "kubernetes"}
    t.flow("ops-bot", "GET", "k8s.internal", "/api/v1/namespaces/prod-a/pods", operation="list", namespace="prod-a", **k8s)
    t.flow("ops-bot", "DELETE", "k8s.internal", "/api/v1/namespaces/prod-a/pods/web-1", verdict="hold",
           rule="k8s-delete-in-prod", decision="approved", reviewer="alice", comment="planned restart",
           operation="delete", namespace="prod-a", name="web-1", **k8s)
    t.journal.submit({"stage": "ruleset", "ruleset_sha256": "ab" * 32}).result(10)  # not a flow: not in the report
    time.sleep(1.1)  # a second time bucket for the chart
    t.flow("ops-bot", "DELETE", "k8s.internal", "/api/v1/namespaces/prod-b/pods/db-0", verdict="hold",
           rule="k8s-delete-in-prod", decision="denied", reviewer="bob", comment=REVIEWER_COMMENT,
           operation="delete", namespace="prod-b", name="db-0", **k8s)
    t.flow("data-bot", "POST", "db.internal", "/query", verdict="deny", rule="sql-drop", service="sql",
           operation="drop", tables=["users"])
    t.flow("data-bot", "POST", "db.internal", "/query", verdict="hold", rule="sql-delete-no-where", decision="timed_out",
           service="sql", operation="delete", tables=["orders"])
    t.flow("data-bot", "POST", "db.internal", "/query", verdict="hold", rule="sql-delete-no-where", decision="killed",
           reviewer="alice", service="sql", operation="delete", tables=["orders"])
    time.sleep(1.1)
    t.flow("data-bot", "POST", "db.internal", "/query", verdict="hold", rule="sql-delete-no-where",
           service="sql", operation="delete", tables=["payments"])  # still held: no decision yet
    t.flow(HOSTILE_AGENT, "GET", "evil.example", SCRIPT_PATH)
    t.flow(HOSTILE_AGENT, "GET", "evil.example", ESC_PATH, status=404)
    # Values that would fetch from the trap if they ever became markup.
    t.flow(HOSTILE_AGENT, "GET", "evil.example", f'/<img src="{trap.url}/img.png" onerror=alert(3)>',
           verdict="deny", rule=f'r"><svg onload=alert(4)><link rel=stylesheet href={trap.url}/s.css>')
    t.flow(HOSTILE_AGENT, "GET", "evil.example", f"/<iframe src={trap.url}/frame></iframe><style>@import '{trap.url}/i.css'</style>")
    return t.close()


# ---------------------------------------------------------------- Chromium


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install -y chromium); the report tests need it")
    return path


def run_chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp / 'chromium-profile'}", *args, page.as_uri()]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert cp.returncode == 0, cp.stderr[-2000:]
    return cp


class Dom(HTMLParser):
    """Every element with its attributes, and the visible text, of a dumped DOM."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def names(self) -> set[str]:
        return {t for t, _ in self.tags}


def assert_fetches_nothing(dom: Dom, markup: str) -> None:
    assert not {"script", "img", "link", "iframe", "object", "embed", "image", "use", "a", "form", "base"} & dom.names()
    for tag, attrs in dom.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}=…>: an event handler"
            assert name not in ("src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data"), (tag, name)
            if name != "xmlns":
                assert not re.search(r"(?i)https?:|//", value or ""), f"<{tag} {name}={value!r}>: a URL"
    style = "".join(re.findall(r"(?s)<style>(.*?)</style>", markup))
    assert "url(" not in style and "@import" not in style


def render_page(trail: Path, tmp: Path, filters: Filters = Filters(), **kw: Any) -> Path:  # noqa: B008 - frozen
    with Reader(trail) as reader:
        page = reader.report(filters, generated_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC), **kw)
    out = tmp / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


# ---------------------------------------------------------------- tests


def test_report_renders_in_chromium_and_hostile_values_stay_text(trail: Path, trap: Trap, tmp_path: Path) -> None:
    page = render_page(trail, tmp_path, filter_text="all flows (hostile test)")
    markup = page.read_text()
    dom_text = run_chromium(page, tmp_path, "--dump-dom").stdout
    shot = tmp_path / "report.png"
    run_chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,1600", "--hide-scrollbars")

    dom = Dom(dom_text)
    text = "".join(dom.text)
    assert "<title>agent-shield incident report</title>" in dom_text
    assert "all flows (hostile test)" in text and "2030-01-02 03:04:05 UTC" in text

    # Header counts: 11 flows; 5 held (approved, denied, timed out, killed, still held);
    # 1 approved; denied 1 + blocked 2; killed 1 + timed out 1.
    counts = {label: int(n.replace(",", "")) for n, label in re.findall(r"<li><b>([\d,]+)</b>([^<]+)</li>", dom_text)}
    assert counts == {"flows": 11, "held": 5, "approved": 1, "denied / blocked": 3,
                      "killed / timed out / abandoned": 2, "held, no decision yet": 1}
    for heading in ("By decision", "By agent", "By rule", "Flows and holds over time", "Held flows and their decisions (5)",
                    "Timeline (11 flows)"):
        assert heading in text

    # Hostile values: visible as text, never elements or attributes, and nothing ran or fetched.
    assert "<script" not in dom_text and "script" not in dom.names()
    assert SCRIPT_PATH in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom_text
    assert HOSTILE_AGENT in text
    assert not re.search(r"<[a-z][^<>]*\sonmouseover=", dom_text)
    assert "/x\\x1b[2J\\x1b]0;pwned\\x07" in text and "\x1b" not in dom_text and "\x07" not in dom_text
    assert "<b>no</b> \\x1b[31mred\\x1b[0m \\x202eevil" in text
    assert "\u202e" not in dom_text
    assert f'r"><svg onload=alert(4)><link rel=stylesheet href={trap.url}/s.css>' in text
    assert_fetches_nothing(dom, dom_text)
    assert_fetches_nothing(Dom(markup), markup)
    assert 'http-equiv="Content-Security-Policy"' in dom_text and "default-src 'none'" in dom_text
    assert trap.hits == [], f"the page fetched {trap.hits}"

    # The timeline: one row per flow, in order, decisions coloured by class.
    rows = re.findall(r'(?s)<table class="timeline"><thead><tr><th>time \(UTC\)</th>.*?<tbody>(.*?)</tbody>', dom_text)
    assert rows and rows[0].count("<tr>") == 11
    order = re.findall(r'<td class="t" title="([0-9a-f]{8}-flow-[^"]*)">', rows[0])
    assert order == sorted(order) and len(order) == 11
    assert '<td class="d d-denied">denied</td>' in rows[0] and '<td class="d d-approved">approved</td>' in rows[0]
    assert '<td class="d d-pending">pending</td>' in rows[0] and "kubernetes delete prod-b/db-0" in rows[0]
    assert "sql drop users" in rows[0] and "planned restart" in text

    # The chart: an SVG with flow bars and hold bars in at least two time buckets, and axis labels.
    svg = [attrs for tag, attrs in dom.tags if tag == "svg"]
    assert len(svg) == 1 and svg[0]["class"] == "chart"
    bars = [attrs for tag, attrs in dom.tags if tag == "rect" and (attrs.get("class") or "").startswith("bar")]
    flows = [b for b in bars if b["class"] == "bar flows"]
    holds = [b for b in bars if b["class"] == "bar holds"]
    assert len(flows) >= 2 and holds and all(float(b["height"] or 0) > 0 for b in bars)
    assert sum(float(b["height"] or 0) for b in flows) > sum(float(b["height"] or 0) for b in holds)
    assert "time (UTC), one bar per second" in text and "holds" in text

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_filter_is_bound_not_pasted_and_said_in_words(trail: Path, tmp_path: Path) -> None:
    where, params = Filters(agent="data-*").where()
    assert "data-" not in where and params == ["data-*"]
    page = render_page(trail, tmp_path, Filters(agent="data-*"), filter_text="--agent data-*").read_text()
    assert "<dd>--agent data-*</dd>" in page
    assert "<li><b>4</b>flows</li>" in page and "<li><b>3</b>held</li>" in page
    assert "ops-bot" not in page and "onmouseover" not in page

    hostile = Filters(agent="x' OR 1=1 --")
    assert "OR 1=1" not in hostile.where()[0]
    page = render_page(trail, tmp_path, hostile, filter_text="--agent \"x' OR 1=1 --\"").read_text()
    assert "<li><b>0</b>flows</li>" in page and "No flows match." in page and "no flows match" in page
    assert "--agent &quot;x&#x27; OR 1=1 --&quot;" in page


def test_long_timelines_are_cut_with_a_note(trail: Path, tmp_path: Path) -> None:
    page = render_page(trail, tmp_path, max_rows=3).read_text()
    body = page.split("<h2>Timeline (11 flows)</h2>", 1)[1]
    assert "Showing the first 3 of 11 rows" in body
    assert body.count("<tr>") == 1 + 3  # the header row and three flows
    assert "<li><b>11</b>flows</li>" in page  # the counts still cover every flow


@pytest.mark.parametrize(("span_s", "unit"), [
    (0, "second"), (45, "second"), (10 * 60, "15 seconds"), (50 * 60, "minute"), (3 * 3600, "5 minutes"),
    (20 * 3600, "30 minutes"), (2 * 86400, "hour"), (10 * 86400, "6 hours"), (45 * 86400, "day"), (3 * 365 * 86400, "week"),
])
def test_chart_bucket_follows_the_range(span_s: int, unit: str) -> None:
    first = datetime(2025, 3, 1, 0, 0, 0)
    last = datetime.fromtimestamp(first.replace(tzinfo=UTC).timestamp() + span_s, UTC).replace(tzinfo=None)
    assert report.choose_bucket(first, last)[1] == unit


def test_ten_thousand_flows_render_quickly(tmp_path: Path) -> None:
    t = Trail(tmp_path / "audit")
    decisions = ["approved", "denied", "killed", "timed_out", None]
    for i in range(10_000):
        if i % 10 == 0:
            t.flow(f"bot-{i % 7}", "DELETE", "k8s.internal", f"/api/v1/namespaces/prod/pods/p{i}", verdict="hold",
                   rule="k8s-delete-in-prod", decision=decisions[i // 10 % 5], reviewer="alice", service="kubernetes")
        else:
            t.flow(f"bot-{i % 7}", "GET", "api.internal", f"/v1/items/{i}", rule="reads" if i % 3 else None)
    audit = t.close()
    with Reader(audit) as reader:
        flows = reader.flows()  # the session opens here, before the clock starts
        started = time.perf_counter()
        page = report.render_report(flows, filter_text="all flows")
        took = time.perf_counter() - started
    assert "<li><b>10,000</b>flows</li>" in page and "<li><b>1,000</b>held</li>" in page
    assert "Showing the first 5,000 of 10,000 rows" in page and "Showing the first 1,000" not in page
    assert took < 10, f"rendering 10,000 flows took {took:.1f} s"
