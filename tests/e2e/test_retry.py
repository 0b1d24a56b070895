"""Retry-mode holds through a real mitmdump: approval bound to the request, forwarded once."""

from __future__ import annotations

import concurrent.futures
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import client
from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, wait_for


@pytest.fixture
def rproxy(tmp_path: Path, upstream: Upstream) -> Iterator[Proxy]:
    p = start_proxy(tmp_path, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                    upstream_ca=upstream.ca_file)
    yield p
    p.stop()


def send(proxy: Proxy, path_url: str, body: bytes = b'{"replicas": 0}', agent: str = "agent-retry",
         headers: dict[str, str] | None = None) -> httpx.Response:
    with client(proxy, agent, timeout=5) as c:  # an impatient agent: 5 s, like httpx's default
        return c.post(path_url, content=body, headers={"content-type": "application/json", **(headers or {})})


def approve(proxy: Proxy, path: str) -> None:
    proxy.command("shield.approve", f"~u {path} & ~marker hourglass")


def test_held_at_once_then_the_approved_retry_goes_through_exactly_once(rproxy: Proxy, upstream: Upstream) -> None:
    url = upstream.url("/retry/scale-1", tls=True)
    r = send(rproxy, url)
    assert r.status_code == 409 and r.headers["retry-after"] == "2"
    first = r.json()
    assert first["decision"] == "pending" and first["hold_id"] and first["retry_after"] == 2
    assert send(rproxy, url).json()["hold_id"] == first["hold_id"]  # still pending: the same hold, not a new one
    assert upstream.hits_for("/retry/scale-1") == []
    approve(rproxy, "/retry/scale-1")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{first['hold_id']}'"), 10, "the approval")
    assert send(rproxy, url).status_code == 200
    assert len(upstream.hits_for("/retry/scale-1")) == 1
    third = send(rproxy, url)  # the approval was used: a new hold
    assert third.status_code == 409 and third.json()["hold_id"] != first["hold_id"]
    assert len(upstream.hits_for("/retry/scale-1")) == 1
    story = rproxy.events(f"hold_id = '{first['hold_id']}'")
    assert [(e["stage"], e["decision"]) for e in story if e["stage"] != "response"] == [
        ("request", None), ("request", None), ("decision", "approved"), ("request", "approved")]
    story_rows = rproxy.timeline("--hold", first["hold_id"][:8])
    assert [(t["status_code"], t["decision"]) for t in story_rows] == [(409, "approved"), (409, None), (200, "approved")]
    [h] = [x for x in rproxy.shield_json("SELECT * FROM holds") if x["hold_id"] == first["hold_id"]]
    assert (h["attempts"], h["decision"], h["approval"]) == (3, "approved", "used")


def test_a_different_body_or_agent_is_a_new_hold(rproxy: Proxy, upstream: Upstream) -> None:
    url = upstream.url("/retry/bind-1")
    hold = send(rproxy, url).json()["hold_id"]
    approve(rproxy, "/retry/bind-1")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the approval")
    other_body = send(rproxy, url, body=b'{"replicas": 100}')
    other_agent = send(rproxy, url, agent="agent-other")
    assert other_body.status_code == other_agent.status_code == 409
    assert len({hold, other_body.json()["hold_id"], other_agent.json()["hold_id"]}) == 3
    assert upstream.hits_for("/retry/bind-1") == []
    assert send(rproxy, url).status_code == 200  # the reviewed request itself is still approved


def test_an_approval_is_bound_to_the_headers_that_change_meaning_not_to_volatile_ones(rproxy: Proxy, upstream: Upstream) -> None:
    # An approved CloudTrail StopLogging must not be usable by a retry whose X-Amz-Target says DeleteTrail.
    url = upstream.url("/retry/trail-1")
    target = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
    stop = {"x-amz-target": target + "StopLogging", "content-type": "application/x-amz-json-1.1",
            "x-amz-date": "20261205T180000Z", "amz-sdk-invocation-id": "a1"}
    body = b'{"Name": "org-trail"}'
    hold = send(rproxy, url, body, headers=stop).json()["hold_id"]
    approve(rproxy, "/retry/trail-1")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the approval")
    for twin in ({**stop, "x-amz-target": target + "DeleteTrail"}, {**stop, "x-http-method-override": "DELETE"},
                 {**stop, "content-type": "application/x-www-form-urlencoded"}):
        r = send(rproxy, url, body, headers=twin)
        assert r.status_code == 409 and r.json()["hold_id"] != hold, twin
    assert upstream.hits_for("/retry/trail-1") == []
    # the same request, re-signed at another time by another SDK attempt: the approval covers it
    again = send(rproxy, url, body, headers={**stop, "x-amz-date": "20261205T180107Z", "amz-sdk-invocation-id": "b2"})
    assert again.status_code == 200 and len(upstream.hits_for("/retry/trail-1")) == 1


def jwt(sub: str) -> str:
    import base64
    import json

    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'none'})}.{part({'sub': sub})}.c2ln"


def test_an_approval_is_bound_to_the_credential_it_was_asked_with(rproxy: Proxy, upstream: Upstream) -> None:
    """A DELETE held with a read-only token and approved must not go through with an admin
    token, another signing key or impersonation headers: each is a new hold. The reviewer sees
    which credential they approve."""
    url = upstream.url("/retry/cred-1", tls=True)
    reader = {"authorization": f"Bearer {jwt('system:serviceaccount:ci:reader')}"}
    hold = send(rproxy, url, headers=reader).json()["hold_id"]
    [comment] = rproxy.command("comments", "~u /retry/cred-1")["comments"]
    assert "as authorization [redacted:" in comment and "(sub system:serviceaccount:ci:reader)" in comment
    approve(rproxy, "/retry/cred-1")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the approval")
    sigv4 = "AWS4-HMAC-SHA256 Credential=AKIAADMIN/20261205/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"
    for twin in ({"authorization": f"Bearer {jwt('system:admin')}"}, {"authorization": sigv4}, {},
                 {**reader, "impersonate-user": "system:admin"}, {**reader, "impersonate-group": "system:masters"},
                 {**reader, "x-amz-security-token": "session-of-admin"}, {**reader, "authorization": "Basic YWRtaW46eA=="}):
        r = send(rproxy, url, headers=twin)
        assert r.status_code == 409 and r.json()["hold_id"] != hold, twin
    assert upstream.hits_for("/retry/cred-1") == []
    assert send(rproxy, url, headers=reader).status_code == 200
    assert len(upstream.hits_for("/retry/cred-1")) == 1


def test_a_denial_is_answered_on_the_retry_then_the_agent_may_ask_again(rproxy: Proxy, upstream: Upstream) -> None:
    url = upstream.url("/retry/deny-1")
    hold = send(rproxy, url).json()["hold_id"]
    rproxy.command("shield.deny", "~u /retry/deny-1 & ~marker hourglass", "not", "now")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the denial")
    r = send(rproxy, url)
    assert r.status_code == 403 and r.json()["decision"] == "denied" and r.json()["reviewer_comment"] == "not now"
    again = send(rproxy, url)
    assert again.status_code == 409 and again.json()["hold_id"] != hold
    assert upstream.hits_for("/retry/deny-1") == []


def test_an_unused_approval_expires_and_is_recorded(rproxy: Proxy, upstream: Upstream) -> None:
    url = upstream.url("/retry-short/expire-1")
    hold = send(rproxy, url).json()["hold_id"]
    approve(rproxy, "/retry-short/expire-1")
    wait_for(lambda: [e for e in rproxy.events(f"hold_id = '{hold}' AND stage = 'decision'") if e["decision"] == "expired"],
             10, "the expiry to be recorded")
    r = send(rproxy, url)
    assert r.status_code == 409 and r.json()["hold_id"] != hold
    assert upstream.hits_for("/retry-short/expire-1") == []


def test_two_identical_retries_at_once_forward_exactly_one(rproxy: Proxy, upstream: Upstream) -> None:
    url = upstream.url("/retry/race-1", tls=True)
    hold = send(rproxy, url).json()["hold_id"]
    approve(rproxy, "/retry/race-1")
    wait_for(lambda: rproxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the approval")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: send(rproxy, url), range(2)))
    assert codes == [200, 409]
    assert len(upstream.hits_for("/retry/race-1")) == 1


def test_an_approval_survives_a_kill_9_and_is_used_once(tmp_path: Path, upstream: Upstream) -> None:
    args = ("--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any")
    proxy = start_proxy(tmp_path, *args, upstream_ca=upstream.ca_file)
    url = upstream.url("/retry/crash-1")
    hold = send(proxy, url).json()["hold_id"]
    approve(proxy, "/retry/crash-1")
    wait_for(lambda: proxy.events(f"stage = 'decision' AND hold_id = '{hold}'"), 10, "the approval")
    os.kill(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait(10)
    proxy = start_proxy(tmp_path, *args, upstream_ca=upstream.ca_file)
    try:
        assert send(proxy, url).status_code == 200
        assert send(proxy, url).status_code == 409
        assert len(upstream.hits_for("/retry/crash-1")) == 1
    finally:
        proxy.stop()
