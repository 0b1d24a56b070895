"""Notifications on holds through a real mitmdump and real apprise, to a real HTTP receiver on
loopback (apprise's `json://` target): a hold is announced within a second and carries no secret
of the request, escalation after a short `after`, decisions announced, and a receiver that
fails (a 500, a closed port, one slower than the timeout) changes nothing for the flow.
And the console's terminal bell, observed through tmux's bell flag."""

from __future__ import annotations

import concurrent.futures
import json
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import client
from tests.e2e.fake_server import FakeHandler, serve
from tests.e2e.harness import SHIELD, Proxy, Upstream, free_port, start_proxy, wait_for
from tests.e2e.test_console import Console, agent_curl, held_on_screen

RULES = """\
version: 1
default: allow
rules:
  - id: notify-hold
    match: {path: "^/notify/"}
    action: hold
    severity: high
    message: Held to test notifications
    hold: {timeout: 60s}
  - id: escalating-hold
    match: {path: "^/escalate/"}
    action: hold
    severity: critical
    notify: [team]
    escalate: {after: 1s, notify: [oncall]}
  - id: failing-targets
    match: {path: "^/failing/"}
    action: hold
    notify: [broken, slow, closed]
  - id: short-hold
    match: {path: "^/short-notify/"}
    action: hold
    hold: {timeout: 1s, on_timeout: deny}
  - id: retry-hold
    match: {path: "^/retry-notify/"}
    action: hold
    hold: {mode: retry, retry_after: 1}
"""

BEARER = "sk-proj-NotifyTestSecret0123456789abcdef"
AWS_KEY = "AKIAIOSFODNN7NOTIFYX"
BODY_SECRET = "hunter2-body-password-never-leaves"


@dataclass
class Received:
    path: str
    doc: dict[str, Any]
    raw: bytes
    at: float


@dataclass
class Receiver:
    """A webhook receiver: /fail answers 500, /slow answers only after `release` (past the
    proxy's one-second notification timeout), anything else 200."""

    port: int = 0
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def to(self, path: str, hold_id: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path and (hold_id is None or hold_id in r.doc["message"])]

    def wait(self, path: str, hold_id: str | None = None, n: int = 1, timeout: float = 10) -> list[Received]:
        return wait_for(lambda: len(self.to(path, hold_id)) >= n and self.to(path, hold_id), timeout,
                        f"{n} notification(s) to {path}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec, stop = start_receiver()
    yield rec
    stop()


def start_receiver() -> tuple[Receiver, Any]:
    rec = Receiver()

    class Handler(FakeHandler):
        def do_POST(self) -> None:
            raw = self.body()
            with rec.lock:
                rec.got.append(Received(self.path, json.loads(raw), raw, time.time()))
            if self.path == "/slow":
                rec.release.wait(20)
            self.answer(500 if self.path == "/fail" else 200)

    rec.port, stop_serving = serve(Handler)

    def stop() -> None:
        rec.release.set()
        stop_serving()

    return rec, stop


@pytest.fixture(scope="module")
def nproxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, receiver: Receiver) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("notify")
    (tmp / "rules.yaml").write_text(RULES)
    closed = free_port()  # nothing listens there
    targets = ", ".join([receiver.url("/all"), f"team={receiver.url('/team')}", f"oncall={receiver.url('/oncall')}",
                         f"broken={receiver.url('/fail')}", f"slow={receiver.url('/slow')}",
                         f"closed=json://127.0.0.1:{closed}/"])
    p = start_proxy(tmp, "--set", f"shield_rules={tmp / 'rules.yaml'}", "--set", "proxyauth=any",
                    "--set", f"shield_notify={targets}", "--set", "shield_notify_decisions=true",
                    "--set", "shield_notify_timeout=1", upstream_ca=upstream.ca_file)
    yield p
    p.stop()


def send(proxy: Proxy, url: str, agent: str = "agent-notify", **kw: Any) -> httpx.Response:
    with client(proxy, agent, timeout=30) as c:
        return c.post(url, **kw)


def in_background(fn: Any, *args: Any, **kw: Any) -> concurrent.futures.Future:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fut = pool.submit(fn, *args, **kw)
    pool.shutdown(wait=False)
    return fut


def fields(r: Received) -> dict[str, str]:
    """The notice's `Name: value` lines."""
    return dict(line.split(": ", 1) for line in r.doc["message"].splitlines() if ": " in line)


def test_a_hold_notifies_the_receiver_within_a_second_and_carries_no_secret(nproxy: Proxy, upstream: Upstream,
                                                                            receiver: Receiver) -> None:
    url = upstream.url(f"/notify/keys?AWSAccessKeyId={AWS_KEY}&page=2", tls=True)
    started = time.time()
    agent = in_background(send, nproxy, url, headers={"authorization": f"Bearer {BEARER}"},
                          json={"password": BODY_SECRET, "name": "x"})
    [got] = receiver.wait("/all", timeout=5)
    assert got.at - started < 1.0, f"notified after {got.at - started:.2f}s"
    nproxy.wait_held("~u /notify/keys")
    f = fields(got)
    assert got.doc["type"] == "info" and got.doc["title"].startswith("Held on ")
    assert f["Agent"] == "`agent-notify`"
    assert f["Rule"] == "notify-hold (high): Held to test notifications"
    assert f["Request"].startswith("`POST https://localhost:") and "/notify/keys?AWSAccessKeyId=[redacted:" in f["Request"]
    assert f["Deadline"].startswith("deny at ") and "unless decided" in f["Deadline"]
    assert "on the console of proxy " in f["Decide"]
    for secret in (BEARER, AWS_KEY, BODY_SECRET, "hunter2", "authorization", "Bearer"):
        assert secret not in got.raw.decode(), secret
    nproxy.command("shield.approve", "~u /notify/keys & ~marker hourglass")
    r = agent.result(timeout=20)
    assert r.status_code == 200
    hold_id = r.headers["x-shield-flow-id"]
    assert f["Hold"] == hold_id
    [decided] = receiver.wait("/all", hold_id, n=2)[1:]
    assert decided.doc["type"] == "success" and decided.doc["title"].startswith("Hold approved by test-reviewer")
    assert fields(decided)["Decision"] == "approved by test-reviewer (shield.approve)"
    assert BEARER not in decided.raw.decode() and AWS_KEY not in decided.raw.decode()
    assert len(receiver.to("/all", hold_id)) == 2  # one notice of the hold, one of its decision
    sent = wait_for(lambda: (n := nproxy.events(f"stage = 'notice' AND hold_id = '{hold_id}'")) and len(n) >= 2 and n,
                    15, "the notice events")
    assert [(n["operation"], n["outcome"], n["error"]) for n in sent] == [("hold", "sent", None), ("decision", "sent", None)]
    # the target: scheme and host, and for its path (often a webhook's secret) a fingerprint
    assert re.fullmatch(r"json://127\.0\.0\.1:\d+/\[redacted:[0-9a-f]{12}\]", sent[0]["url"]) and "/all" not in sent[0]["url"]
    assert sent[1]["url"] == sent[0]["url"]


def test_what_the_agent_chose_reaches_the_chat_as_text_not_as_links_or_mentions(nproxy: Proxy, upstream: Upstream,
                                                                              receiver: Receiver) -> None:
    path = "/notify/[Approve%20here](https/evil.example)/x"
    agent = in_background(send, nproxy, upstream.url(path), agent="@everyone")
    got = wait_for(lambda: next((r for r in receiver.to("/all") if "evil.example" in r.doc["message"]), None), 10,
                   "the notice")
    f = fields(got)
    assert f["Agent"] == "`@\u200beveryone`" and "@\u200beveryone`" in got.doc["title"]
    assert f["Request"].startswith("`POST http://127.0.0.1:") and f["Request"].endswith("(https/evil.example)/x`")
    nproxy.command("shield.deny", "~u evil.example & ~marker hourglass")
    assert agent.result(timeout=20).status_code == 403


def test_an_undecided_hold_escalates_after_its_after(nproxy: Proxy, upstream: Upstream, receiver: Receiver) -> None:
    agent = in_background(send, nproxy, upstream.url("/escalate/db", tls=True))
    [first] = receiver.wait("/team")
    hold_id = fields(first)["Hold"]
    assert [fields(x)["Hold"] for x in receiver.to("/all")].count(hold_id) == 1  # the defaults hear of it too
    assert receiver.to("/oncall", hold_id) == []  # not yet: only after a second undecided
    [esc] = receiver.wait("/oncall", hold_id)
    assert 1.0 <= esc.at - first.at < 2.5, esc.at - first.at
    assert esc.doc["type"] == "warning" and esc.doc["title"].startswith("Still undecided after 1s")
    assert fields(esc)["Rule"].startswith("escalating-hold (critical)")
    nproxy.command("shield.deny", "~u /escalate/db & ~marker hourglass", "not", "now")
    assert agent.result(timeout=20).status_code == 403
    # The decision reaches everyone who heard of the hold, the escalation's target included.
    for path in ("/all", "/team", "/oncall"):
        decided = receiver.wait(path, hold_id, n=2)[-1]  # the first notice (or escalation), then the decision
        assert fields(decided)["Decision"] == "denied by test-reviewer (shield.deny)"
        assert fields(decided)["Comment"] == "not now"


def test_failing_receivers_change_nothing_for_the_flow(nproxy: Proxy, upstream: Upstream, receiver: Receiver) -> None:
    path = "/failing/delete"
    agent = in_background(send, nproxy, upstream.url(path, tls=True))
    nproxy.wait_held(f"~u {path}")
    receiver.wait("/fail")
    receiver.wait("/slow")  # answers only after the proxy's timeout has passed
    log = wait_for(lambda: (text := nproxy.log.read_text()).count(" failed: ") >= 3 and text, 15,
                   "three failures logged")
    failed = [line for line in log.splitlines() if "notification of hold" in line and " failed: " in line]
    assert len(failed) == 3, failed
    # Each failure names its target (scheme and host, a fingerprint for the rest) and why.
    assert len({re.search(r"to (json://127\.0\.0\.1:\d+/\[redacted:[0-9a-f]{12}\]) failed", line).group(1)  # type: ignore[union-attr]
                for line in failed}) == 3, failed
    assert any("error=500" in line for line in failed), failed
    assert any("Read timed out" in line for line in failed), failed
    assert any("Connection refused" in line for line in failed), failed
    assert nproxy.held(f"~u {path}") == 1 and upstream.hits_for(path) == []  # still held, nothing sent
    nproxy.command("shield.approve", f"~u {path} & ~marker hourglass")
    r = agent.result(timeout=20)
    assert r.status_code == 200 and len(upstream.hits_for(path)) == 1
    [d] = nproxy.events(f"stage = 'decision' AND path = '{path}'")
    assert (d["decision"], d["reviewer"]) == ("approved", "test-reviewer")
    counts = notification_counts(nproxy)
    assert re.search(r"\d+ sent, [3-9] failed", counts) and "last failure:" in counts, counts
    # ... and each one is in the trail, against the hold: what, to which target, why
    hold_id = r.headers["x-shield-flow-id"]  # a wait-mode hold is its flow
    notes = wait_for(lambda: (n := nproxy.events(f"stage = 'notice' AND hold_id = '{hold_id}'")) and len(n) >= 3 and n,
                     15, "the hold's notice events")
    failures = [n for n in notes if n["operation"] == "hold" and n["outcome"] == "failed"]
    assert len({n["url"] for n in failures}) == 3  # three targets, told apart by their fingerprints
    assert any("error=500" in n["error"] for n in failures) and any("Read timed out" in n["error"] for n in failures)
    assert [n["outcome"] for n in notes if "Connection refused" in (n["error"] or "") and n["operation"] == "hold"] \
        == ["failed"]
    assert {n["agent"] for n in notes} == {"agent-notify"} and all(n["flow_id"] is None for n in notes)
    assert all(n["rule_id"] == "failing-targets" for n in notes)
    receiver.release.set()


def notification_counts(proxy: Proxy) -> str:
    """What `shield.notifications` writes to the event log now."""
    before = len(proxy.log.read_text())
    with socket.create_connection(("127.0.0.1", int(proxy.control_file.read_text())), timeout=10) as s:
        s.sendall(json.dumps({"cmd": "shield.notifications", "flows": False}).encode() + b"\n")
        assert json.loads(s.makefile().readline())["ok"]
    return wait_for(lambda: next((x for x in proxy.log.read_text()[before:].splitlines()
                                  if "shield: notifications: " in x), None), 10, "the counts in the event log")


def test_a_timeout_is_announced(nproxy: Proxy, upstream: Upstream, receiver: Receiver) -> None:
    r = send(nproxy, upstream.url("/short-notify/x", tls=True))
    assert r.status_code == 403
    hold_id = r.headers["x-shield-flow-id"]
    decided = receiver.wait("/all", hold_id, n=2)[-1]
    assert decided.doc["type"] == "success" and fields(decided)["Decision"] == "timed_out (timeout)"


def test_a_retry_mode_hold_is_announced_once_however_often_the_agent_retries(nproxy: Proxy, upstream: Upstream,
                                                                            receiver: Receiver) -> None:
    url = upstream.url("/retry-notify/scale", tls=True)
    first = send(nproxy, url)
    assert first.status_code == 409
    hold_id = first.json()["hold_id"]
    receiver.wait("/all", hold_id)
    assert send(nproxy, url).json()["hold_id"] == hold_id
    nproxy.command("shield.approve", "~u /retry-notify/scale & ~marker hourglass")
    decided = receiver.wait("/all", hold_id, n=2)[-1]
    assert fields(decided)["Decision"].startswith("approved by test-reviewer")
    assert send(nproxy, url).status_code == 200
    assert len(receiver.to("/all", hold_id)) == 2  # the hold and its decision; the retries announced nothing


# ---------------------------------------------------------------- the bell


def bell_flag(console: Console) -> str:
    cp = subprocess.run(["tmux", "display", "-p", "-t", console.session, "#{window_bell_flag}"],
                        capture_output=True, text=True, check=True)
    return cp.stdout.strip()


def bell_console(tmp: Path, upstream: Upstream, bell: bool) -> Console:
    (tmp / "conf").mkdir()
    (tmp / "conf" / "config.yaml").write_text(f"shield_bell: {str(bell).lower()}\n")  # mitmproxy reads it at start
    return Console(tmp, upstream)


@pytest.mark.console
def test_the_console_rings_the_bell_on_a_new_hold(tmp_path: Path, upstream: Upstream) -> None:
    console = bell_console(tmp_path, upstream, True)
    try:
        # tmux raises a window's bell flag when a BEL reaches it while no client is attached.
        assert bell_flag(console) == "0"  # starting the console rang nothing
        agent = agent_curl(console, upstream, "/hold/bell-on")
        held_on_screen(console, "/hold/bell-on")
        wait_for(lambda: bell_flag(console) == "1", 5, "the bell flag")
        console.keys("y")
        out, _ = agent.communicate(timeout=20)
        assert out.strip().endswith("200")  # the bell changed nothing for the flow
    finally:
        console.close()


@pytest.mark.console
def test_shield_bell_false_keeps_the_console_quiet(tmp_path: Path, upstream: Upstream) -> None:
    console = bell_console(tmp_path, upstream, False)
    try:
        agent = agent_curl(console, upstream, "/hold/bell-off")
        held_on_screen(console, "/hold/bell-off")  # the bell would have rung before the hold was shown
        console.keys("y")
        out, _ = agent.communicate(timeout=20)
        assert out.strip().endswith("200")
        assert bell_flag(console) == "0"
    finally:
        console.close()


def test_mitmdump_never_rings(tmp_path: Path, upstream: Upstream) -> None:
    """The same hold under a headless proxy in tmux: no BEL reaches its terminal."""
    session = f"shield-bell-{tmp_path.name}"
    log = tmp_path / "out.log"
    proxy_tmp = tmp_path / "p"
    proxy_tmp.mkdir()
    (proxy_tmp / "rules.yaml").write_text(RULES)
    # The proxy's output goes both to tmux's terminal (where a BEL would raise the flag) and a log.
    script = tmp_path / "run.sh"
    args = shlex.join([*SHIELD, "run", "--headless", "--confdir", str(proxy_tmp / "conf"), "--listen-port", "0",
                     "--listen-host", "127.0.0.1", "--set", f"shield_dir={proxy_tmp / 'audit'}",
                     "--set", f"shield_rules={proxy_tmp / 'rules.yaml'}", "--set", "proxyauth=any",
                     "--set", f"ssl_verify_upstream_trusted_ca={upstream.ca_file}", "--set", "shield_bell=true"])
    script.write_text(f"{args} 2>&1 | tee {shlex.quote(str(log))}\n")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", f"sh {script}"], check=True)
    try:
        port = wait_for(lambda: log.exists() and (m := re.search(r"listening at .*?:(\d+)", log.read_text()))
                        and int(m.group(1)), 30, "the proxy to listen")
        with httpx.Client(proxy=f"http://agent-bell:x@127.0.0.1:{port}", trust_env=False, timeout=30) as c:
            r = c.get(f"http://127.0.0.1:{upstream.http_port}/short-notify/bell")  # held, then timed out
        assert r.status_code == 403 and r.json()["decision"] == "timed_out"
        assert bell_flag_of(session) == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def bell_flag_of(session: str) -> str:
    cp = subprocess.run(["tmux", "display", "-p", "-t", session, "#{window_bell_flag}"],
                        capture_output=True, text=True, check=True)
    return cp.stdout.strip()


def test_a_failed_sends_reason_does_not_carry_the_targets_token(tmp_path: Path, upstream: Upstream) -> None:
    """requests' errors quote the URL's path (`Max retries exceeded with url: /hooks/<token>`):
    the token apprise's masked form hides must not come back through the reason, into the
    trail's notice event, the event log or the console's counts."""
    token = "pjh5k3s1e7ygfmxw4nrj8oqzha"  # a Mattermost webhook key: posted to /hooks/<key>
    (tmp_path / "rules.yaml").write_text(RULES)
    p = start_proxy(tmp_path, "--set", f"shield_rules={tmp_path / 'rules.yaml'}", "--set", "proxyauth=any",
                    "--set", f"shield_notify=mmost://127.0.0.1:{free_port()}/{token}",
                    "--set", "shield_notify_timeout=1", upstream_ca=upstream.ca_file)
    try:
        path = "/notify/token-leak"
        agent = in_background(send, p, upstream.url(path, tls=True))
        p.wait_held(f"~u {path}")
        [note] = wait_for(lambda: p.events("stage = 'notice'"), 15, "the notice event")
        assert note["outcome"] == "failed" and "Connection refused" in note["error"], note
        counts = notification_counts(p)
        p.command("shield.deny", f"~u {path}", held=True)
        assert agent.result(timeout=20).status_code == 403
    finally:
        p.stop()
    assert token not in note["error"] and token not in note["url"]
    assert token not in counts and token not in p.log.read_text()
    trail = b"".join(f.read_bytes() for f in p.audit_dir.rglob("*") if f.is_file())
    assert token.encode() not in trail


def test_one_agents_flood_of_holds_cannot_crowd_out_another_agents_notice(tmp_path: Path, upstream: Upstream) -> None:
    """At most half the notification queue is one agent's: past it that agent's notices are
    dropped (and recorded so), while another agent's hold is still announced."""
    rec, stop = start_receiver()
    (tmp_path / "rules.yaml").write_text(RULES)
    p = start_proxy(tmp_path, "--set", f"shield_rules={tmp_path / 'rules.yaml'}", "--set", "proxyauth=any",
                    "--set", f"shield_notify={rec.url('/slow')}", "--set", "shield_notify_timeout=10",
                    upstream_ca=upstream.ca_file)
    try:
        with client(p, "flooder", timeout=30) as c:  # retry mode: each is held and answered 409 at once
            assert {c.post(upstream.url(f"/retry-notify/{i}", tls=True)).status_code for i in range(33)} == {409}
        dropped = wait_for(lambda: p.events("stage = 'notice' AND outcome = 'failed'"), 15, "the flooder's dropped notice")
        assert [(n["agent"], n["error"]) for n in dropped] == \
            [("flooder", "32 of this agent's notifications already under way: dropped")]
        with client(p, "innocent", timeout=30) as c:
            assert c.post(upstream.url("/retry-notify/mine", tls=True)).status_code == 409
        rec.release.set()
        [mine] = wait_for(lambda: p.events("stage = 'notice' AND agent = 'innocent'"), 30, "the innocent's notice")
        assert (mine["outcome"], mine["error"]) == ("sent", None)
    finally:
        p.stop()
        stop()
