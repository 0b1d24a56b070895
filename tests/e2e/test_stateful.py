"""Rules that remember, through a real mitmdump: a `limit:` holds the request past the limit and
not the neighbour's, before and after a restart; `secrets:` denies an AWS key sent anywhere but
the host it belongs to; `when:` holds inside its window and not outside it.

The upstream answers on 127.0.0.1 (plain) and as `localhost` (TLS): in these rules `localhost`
plays the AWS host, the one place an AWS key may go."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shield_addon.core import limits
from tests.e2e.conftest import client
from tests.e2e.harness import Proxy, Upstream, start_proxy

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def hhmm(t: datetime) -> str:
    return f"{t:%H:%M}"


def rules_file(tmp: Path) -> Path:
    """The freeze windows are computed from now: one around it, one that starts later."""
    now = datetime.now(UTC)
    around = f"{hhmm(now - timedelta(hours=1))}-{hhmm(now + timedelta(hours=1))}"
    later = f"{hhmm(now + timedelta(hours=2))}-{hhmm(now + timedelta(hours=3))}"
    path = tmp / "stateful.yaml"
    path.write_text(f"""
version: 1
rules:
  - id: delete-burst
    action: hold
    match: {{method: DELETE, limit: {{count: 2, per: 10m, by: agent}}}}
  - id: aws-key-leaving
    action: deny
    match: {{secrets: [aws], not: {{host: [localhost, "*.amazonaws.com"]}}}}
  - id: freeze-now
    action: hold
    match: {{method: POST, path: "^/frozen/", when: {{between: "{around}", tz: UTC}}}}
  - id: freeze-later
    action: hold
    match: {{method: POST, path: "^/thawed/", when: {{between: "{later}", tz: UTC}}}}
""")
    return path


def stateful_proxy(tmp: Path, upstream: Upstream) -> Proxy:
    (tmp / "control-port").unlink(missing_ok=True)  # a restart must wait for the new control addon
    return start_proxy(tmp, "--set", f"shield_rules={tmp / 'stateful.yaml'}", "--set", "proxyauth=any",
                       upstream_ca=upstream.ca_file)


def send(proxy: Proxy, agent: str, method: str, url: str, **kw: object) -> int:
    with client(proxy, agent) as c:
        return c.request(method, url, **kw).status_code  # type: ignore[arg-type]


def held_then_denied(proxy: Proxy, agent: str, method: str, url: str, path: str) -> int:
    """Send a request that must be held, deny it, and return what the agent got."""
    result: dict[str, int] = {}

    def go() -> None:
        result["status"] = send(proxy, agent, method, url)

    t = threading.Thread(target=go)
    t.start()
    proxy.wait_held(f"~u {path}")
    proxy.command("shield.deny", f"~u {path}", "burst")
    t.join(30)
    return result["status"]


def test_a_limit_holds_past_its_count_not_the_neighbour_and_remembers_across_a_restart(
        tmp_path: Path, upstream: Upstream) -> None:
    rules_file(tmp_path)
    proxy = stateful_proxy(tmp_path, upstream)
    try:
        assert send(proxy, "alice", "DELETE", upstream.url("/limit/a1")) == 200
        assert send(proxy, "alice", "DELETE", upstream.url("/limit/a2")) == 200
        assert send(proxy, "bob", "DELETE", upstream.url("/limit/b1")) == 200  # the neighbour: a count of its own
        assert send(proxy, "alice", "GET", upstream.url("/limit/a-read")) == 200  # not a DELETE: not counted
        assert held_then_denied(proxy, "alice", "DELETE", upstream.url("/limit/a3"), "/limit/a3") == 403
        assert upstream.hits_for("/limit/a3") == []
    finally:
        assert proxy.stop() == 0

    lines = [json.loads(x) for x in (proxy.audit_dir / limits.FILE).read_text().splitlines()]
    assert [(d["rule"], d["key"]) for d in lines] == [("delete-burst", '["alice"]')] * 2 + \
        [("delete-burst", '["bob"]'), ("delete-burst", '["alice"]')]

    proxy = stateful_proxy(tmp_path, upstream)  # the same audit directory
    try:
        assert held_then_denied(proxy, "alice", "DELETE", upstream.url("/limit/a4"), "/limit/a4") == 403
        assert send(proxy, "bob", "DELETE", upstream.url("/limit/b2")) == 200  # bob's second: within
        assert held_then_denied(proxy, "bob", "DELETE", upstream.url("/limit/b3"), "/limit/b3") == 403
        proxy.flow_events("/limit/b3", "request")
        decided = {e["path"]: e["rule_id"] for e in proxy.events("stage = 'request' AND path LIKE '/limit/%'")}
        assert decided == {"/limit/a1": None, "/limit/a2": None, "/limit/b1": None, "/limit/a-read": None,
                           "/limit/a3": "delete-burst", "/limit/a4": "delete-burst", "/limit/b2": None,
                           "/limit/b3": "delete-burst"}
        # Replayed oldest first, each at its recorded time, the same rules decide the same way.
        replay = proxy.shield("rules", "replay", str(tmp_path / "stateful.yaml"))
        assert "8 recorded requests: 8 unchanged, 0 changed" in replay.stderr, replay.stderr
    finally:
        proxy.stop()


def test_secrets_deny_an_aws_key_leaving_and_allow_it_to_its_own_host_and_when_holds_only_inside_its_window(
        tmp_path: Path, upstream: Upstream) -> None:
    rules_file(tmp_path)
    proxy = stateful_proxy(tmp_path, upstream)
    try:
        assert send(proxy, "alice", "POST", upstream.url("/leak/body"), json={"aws_key": AWS_KEY}) == 403
        assert send(proxy, "alice", "GET", upstream.url(f"/leak/url?k={AWS_KEY}")) == 403
        assert send(proxy, "alice", "GET", upstream.url("/leak/header"), headers={"x-note": AWS_KEY}) == 403
        assert upstream.hits_for("/leak/") == []
        assert send(proxy, "alice", "POST", upstream.url("/own/body", tls=True), json={"aws_key": AWS_KEY}) == 200
        assert send(proxy, "alice", "POST", upstream.url("/leak/clean"), json={"note": "no key"}) == 200

        assert held_then_denied(proxy, "alice", "POST", upstream.url("/frozen/deploy"), "/frozen/deploy") == 403
        assert send(proxy, "alice", "POST", upstream.url("/thawed/deploy")) == 200  # its window is later
        assert send(proxy, "alice", "GET", upstream.url("/frozen/status")) == 200  # the neighbour: a read

        proxy.flow_events("/frozen/status", "request")
        rows = {e["path"]: e for e in proxy.events("stage = 'request'")}
        assert rows["/leak/body"]["rule_id"] == "aws-key-leaving"
        assert rows["/own/body"]["rule_id"] is None
        assert rows["/frozen/deploy"]["rule_id"] == "freeze-now"
        assert rows["/thawed/deploy"]["rule_id"] is None
        assert AWS_KEY not in json.dumps(list(rows.values()))  # the rule saw it; the trail did not keep it
    finally:
        proxy.stop()

