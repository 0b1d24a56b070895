"""`shield run --web`: a reviewer decides held flows in the real mitmweb page, driven in
headless Chromium (the system's, through Playwright); the agent gets its answer and the
audit trail records the decision."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import curl
from tests.e2e.harness import HERE, SHIELD, Upstream, free_port, stop_process, wait_for

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@dataclass
class Web:
    proc: subprocess.Popen
    proxy_port: int
    web_port: int
    url: str  # the UI's address, with mitmweb 12's token when it has one (11.0.2 has none)
    conf: Path
    audit: Path
    tmp: Path

    def sql(self, query: str) -> list[dict[str, Any]]:
        cp = subprocess.run([*SHIELD, "sql", query, "--json", "--dir", str(self.audit)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]

    def decision(self, path: str) -> dict[str, Any]:
        rows = wait_for(lambda: self.sql("SELECT decision, operation, reviewer FROM events "
                                         f"WHERE stage = 'decision' AND path = '{path}'"),
                        10, f"the decision on {path} in the audit store")
        assert len(rows) == 1, rows
        return rows[0]


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Web]:
    tmp = tmp_path_factory.mktemp("web")
    proxy_port, web_port = free_port(), free_port()
    log = tmp / "mitmweb.log"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*SHIELD, "run", "--web", "--confdir", str(tmp / "conf"), "--listen-host", "127.0.0.1",
             "--listen-port", str(proxy_port), "--set", f"web_port={web_port}", "--set", "web_open_browser=false",
             "--set", f"shield_dir={tmp / 'audit'}", "--set", f"shield_rules={HERE / 'rules'}",
             "--set", "shield_reviewer=web-reviewer", "--set", "proxyauth=any",
             "--set", f"ssl_verify_upstream_trusted_ca={upstream.ca_file}"],
            stdout=out, stderr=subprocess.STDOUT, env={**env, "PYTHONUNBUFFERED": "1"}, cwd=tmp)

    def ui_url() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"shield run --web exited {proc.returncode}:\n{log.read_text()}")
        text = log.read_text()
        m = re.search(r"Web server listening at (http://\S+)", text)  # 12: ".../?token=…"; 11.0.2: no token
        return m.group(1) if m and "proxy listening at" in text else None

    w = Web(proc, proxy_port, web_port, wait_for(ui_url, 30, "mitmweb to listen"), tmp / "conf", tmp / "audit", tmp)
    assert f":{web_port}/" in w.url, w.url
    yield w
    stop_process(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install playwright (it drives the system Chromium: "
                    "apt-get install -y chromium; no `playwright install` needed)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.fail("chromium is not installed: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any, web: Web) -> Iterator[Any]:
    """A fresh mitmweb tab, as a reviewer opens it from the URL in the log."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.goto(web.url)
    yield pg
    context.close()


def agent_delete(web: Web, upstream: Upstream, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [curl(), "-sS", "--max-time", "60", "-w", "\n%{http_code}", "--proxy", f"http://agent-web:pw@127.0.0.1:{web.proxy_port}",
         "--cacert", str(web.conf / "mitmproxy-ca-cert.pem"), "-X", "DELETE", upstream.url(path, tls=True)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def held_row(page: Any, path: str) -> Any:
    """The flow's row once it is held: mitmweb marks it intercepted, and shield's ⌛ marker is on it."""
    from playwright.sync_api import expect

    row = page.locator(".flow-table tr.intercepted", has_text=path)
    expect(row).to_have_count(1, timeout=20_000)
    expect(row.locator(".marker")).to_have_text("⌛")
    return row


def interception_button(page: Any, name: str) -> Any:
    """mitmweb's Flow tab, 'Interception' group: 'Resume' ([a]ccept) and 'Abort' (kill [x]), in 11 and 12."""
    return page.get_by_role("button", name=re.compile(rf"^\W*{name}$"))


def answer(agent: subprocess.Popen, timeout: float, after: str) -> tuple[str, str]:
    try:
        return agent.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the agent was left waiting {timeout}s after {after}") from None


def stop(agent: subprocess.Popen) -> None:
    if agent.poll() is None:
        agent.kill()
        agent.communicate()


def test_reviewer_resumes_a_held_delete_in_mitmweb_and_it_is_recorded_as_approved(
        web: Web, page: Any, upstream: Upstream) -> None:
    from playwright.sync_api import expect

    path = "/hold/web-approve"
    agent = agent_delete(web, upstream, path)
    try:
        row = held_row(page, path)
        assert upstream.hits_for(path) == [], "a held flow must not reach upstream"
        row.click()
        resume = interception_button(page, "Resume")
        expect(resume).to_be_enabled()
        page.screenshot(path=str(web.tmp / "web-approve-selected.png"))
        resume.click()
        out, err = answer(agent, 20, "Resume")
    finally:
        stop(agent)
    body, status = out.strip().rsplit("\n", 1)
    assert status == "200", (out, err)
    assert json.loads(body)["path"] == path
    assert len(upstream.hits_for(path)) == 1
    d = web.decision(path)
    assert (d["decision"], d["operation"], d["reviewer"]) == ("approved", "flow.resume", "web-reviewer")
    # The page follows: the row is no longer held and shows the upstream's 200.
    done = page.locator(".flow-table tr", has_text=path)
    expect(done).not_to_have_class(re.compile(r"\bintercepted\b"))
    expect(done.locator(".col-status")).to_have_text("200")


def test_reviewer_aborts_a_held_flow_in_mitmweb_and_the_agent_is_not_left_hanging(
        web: Web, page: Any, upstream: Upstream) -> None:
    from playwright.sync_api import expect

    path = "/hold/web-kill"
    agent = agent_delete(web, upstream, path)
    try:
        held_row(page, path).click()
        abort = interception_button(page, "Abort")
        expect(abort).to_be_enabled()
        page.screenshot(path=str(web.tmp / "web-kill-selected.png"))
        abort.click()
        out, err = answer(agent, 10, "Abort")  # the kill bug would leave it waiting for its own timeout (60 s)
    finally:
        stop(agent)
    assert agent.returncode != 0, (agent.returncode, out, err)
    assert upstream.hits_for(path) == []
    d = web.decision(path)
    assert (d["decision"], d["operation"], d["reviewer"]) == ("killed", "flow.kill", "web-reviewer")
    assert upstream.hits_for(path) == [], "a killed flow stays unsent"


def api(web: Web, path: str) -> str:
    """A mitmweb API address, with mitmweb 12's token: only shield's refusal, not mitmweb's own auth, may stop the agent."""
    token = web.url.partition("?")[2]
    return f"http://127.0.0.1:{web.web_port}{path}" + (f"?{token}" if token else "")


def assert_refused_by_shield(r: httpx.Response) -> None:
    said = f"{r.request.method} {r.request.url.path} through the proxy reached mitmweb: {r.status_code} {r.text[:200]!r}"
    assert r.status_code == 403, said
    assert r.headers.get("x-shield-decision") == "blocked" and r.json()["decision"] == "blocked", said


def test_an_agent_cannot_reach_the_mitmweb_api_through_the_proxy(web: Web) -> None:
    with httpx.Client(proxy=f"http://agent-sneaky:pw@127.0.0.1:{web.proxy_port}", trust_env=False, timeout=10) as c:
        r = c.get(api(web, "/flows"))
    assert_refused_by_shield(r)
    rows = wait_for(lambda: web.sql("SELECT decision, port, path FROM events "
                                    "WHERE agent = 'agent-sneaky' AND stage = 'request'"), 10, "the blocked request event")
    assert [(x["decision"], x["port"], x["path"]) for x in rows] == [("blocked", web.web_port, "/flows")]


def test_an_agent_cannot_resume_its_own_held_flow_through_the_mitmweb_api(web: Web, upstream: Upstream) -> None:
    path = "/hold/web-self-approve"
    agent = agent_delete(web, upstream, path)

    def held_id() -> str | None:  # the reviewer's view of the flow list, not through the proxy
        flows = httpx.get(api(web, "/flows"), trust_env=False, timeout=10).json()
        return next((f["id"] for f in flows if f["request"]["path"] == path and f["intercepted"]), None)

    try:
        flow_id = wait_for(held_id, 20, "the held flow in mitmweb's flow list")
        # tornado's XSRF check is a double-submit cookie: a client picks both halves itself.
        xsrf = "5e1f" * 8
        with httpx.Client(proxy=f"http://agent-web:pw@127.0.0.1:{web.proxy_port}", trust_env=False, timeout=10,
                          cookies={"_xsrf": xsrf, "_mitmproxy_xsrf": xsrf}) as c:
            r = c.post(api(web, f"/flows/{flow_id}/resume"), headers={"X-XSRFToken": xsrf})
        assert_refused_by_shield(r)
        assert held_id() == flow_id and upstream.hits_for(path) == [], "the flow must still be held"
    finally:
        stop(agent)
    assert upstream.hits_for(path) == []
    assert web.decision(path)["decision"] == "abandoned"
