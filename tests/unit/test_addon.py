"""The addon's hooks and commands with mitmproxy's own taddons/tflow: no sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from shield_addon.addons.fleet import Fleet
from shield_addon.addons.gate import Gate
from shield_addon.addons.review import Review
from shield_addon.addons.rulebook import Rulebook
from shield_addon.addons.trail import Trail
from shield_addon.journal import read_rows

RULES = Path(__file__).resolve().parent.parent / "e2e" / "rules"


class Shield:
    """The addons composed as shield_addon/addon.py composes them, with their hooks at hand."""

    def __init__(self) -> None:
        self.trail = Trail()
        self.fleet = Fleet()
        self.rulebook = Rulebook(self.trail)
        self.review = Review(self.trail, self.rulebook, self.fleet)
        self.gate = Gate(self.trail, self.rulebook, self.review)
        self.addons = [self.fleet, self.rulebook, self.trail, self.review, self.gate]
        self.request, self.requestheaders, self.websocket_message = self.gate.request, self.gate.requestheaders, \
            self.gate.websocket_message
        self.client_disconnected, self.load_rules = self.review.client_disconnected, self.rulebook.reload

    @property
    def ruleset(self):  # noqa: ANN201
        return self.rulebook.ruleset

    def done(self) -> None:
        for addon in self.addons:  # in mitmproxy's order
            getattr(addon, "done", lambda: None)()


@pytest.fixture
def shield(tmp_path: Path) -> Iterator[tuple[Shield, taddons.context]]:
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=str(RULES), shield_reviewer="bob",
                       shield_dir=str(tmp_path / "audit"))
        yield s, tctx
        s.done()


def events(tmp_path: Path, stage: str | None = None) -> list[dict]:
    rows = read_rows(tmp_path / "audit" / "journal")
    return [r for r in rows if stage is None or r["stage"] == stage]


def flow(method: str = "GET", path: str = "/x", user: str | None = "agent-1"):
    f = tflow.tflow()
    f.request.method, f.request.path = method, path
    if user:
        f.metadata["proxyauth"] = (user, "pa55word")
    return f


async def held(s: Shield, method: str, path: str):
    """Send a request that the rules hold; return it and the hook's task once it waits."""
    f = flow(method, path)
    task = asyncio.create_task(s.request(f))
    await until(lambda: f.intercepted)
    return f, task


async def until(pred, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_allowed_request_is_journaled_before_it_goes_on(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = flow()
    await s.request(f)
    assert f.response is None and not f.intercepted
    [ev] = events(tmp_path, "request")  # on disk when the hook returned
    assert (ev["decision"], ev["verdict"], ev["agent"], ev["flow_id"]) == ("allowed", "allow", "agent-1", f.id)


async def test_denied_request_gets_403_json(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = flow("POST", "/deny/1")
    await s.request(f)
    assert f.response.status_code == 403
    body = json.loads(f.response.content)
    assert body["decision"] == "blocked" and body["rule"] == "deny-refunds" and body["flow_id"] == f.id
    assert events(tmp_path, "request")[0]["decision"] == "blocked"


async def test_hold_then_shield_approve_records_the_reviewer(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/1")
    assert f.marked == ":hourglass:" and "hold-path" in f.comment and "agent-1" in f.comment
    tctx.master.commands.call("shield.approve", [f])
    await asyncio.wait_for(task, 5)
    assert not f.intercepted and f.response is None
    [d] = events(tmp_path, "decision")
    assert (d["decision"], d["reviewer"], d["operation"], d["edited"]) == ("approved", "bob", "shield.approve", False)


async def test_native_resume_is_recorded_as_approved(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/2")
    tctx.master.commands.call("flow.resume", [f])
    await asyncio.wait_for(task, 5)
    assert events(tmp_path, "decision")[0]["decision"] == "approved"


async def test_native_kill_ends_the_hold_at_once(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/3")
    tctx.master.commands.call("flow.kill", [f])
    await asyncio.wait_for(task, 2)
    assert events(tmp_path, "decision")[0]["decision"] == "killed"


async def test_kill_without_update_hook_is_noticed(shield, tmp_path: Path) -> None:
    """The console's `d` kills a flow without telling addons; the hold must still end."""
    s, _ = shield
    f, task = await held(s, "DELETE", "/hold/4")
    f.kill()
    await asyncio.wait_for(task, 2)
    assert events(tmp_path, "decision")[0]["decision"] == "killed"


async def test_deny_with_reason_answers_403_with_the_comment(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/5")
    tctx.master.commands.call("shield.deny", [f], "too", "risky")
    await asyncio.wait_for(task, 5)
    assert f.response.status_code == 403 and f.response.headers["X-Shield-Decision"] == "denied"
    assert json.loads(f.response.content)["reviewer_comment"] == "too risky"
    assert events(tmp_path, "decision")[0]["reviewer_comment"] == "too risky"


async def test_only_the_first_decision_counts(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/6")
    tctx.master.commands.call("shield.deny", [f], "no")
    tctx.master.commands.call("shield.approve", [f])
    await asyncio.wait_for(task, 5)
    assert [d["decision"] for d in events(tmp_path, "decision")] == ["denied"]
    assert f.response.status_code == 403


async def test_timeout_denies_by_default(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = flow("DELETE", "/short/1")
    await asyncio.wait_for(s.request(f), 5)
    assert f.response.status_code == 403
    assert events(tmp_path, "decision")[0]["decision"] == "timed_out"


async def test_client_disconnect_abandons_and_kills_the_hold(shield, tmp_path: Path) -> None:
    s, _ = shield
    f, task = await held(s, "DELETE", "/hold/7")
    s.client_disconnected(f.client_conn)
    await asyncio.wait_for(task, 2)
    assert events(tmp_path, "decision")[0]["decision"] == "abandoned"
    assert f.error and f.error.msg == "Connection killed." and not f.intercepted


async def test_reviewer_edit_is_recorded_with_the_forwarded_request(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/hold/8")
    f.request.path = "/hold/8-safer"
    tctx.master.commands.call("flow.resume", [f])
    await asyncio.wait_for(task, 5)
    [d] = events(tmp_path, "decision")
    assert d["edited"] is True and "/hold/8-safer" in json.loads(d["forwarded_request"])["url"]
    assert events(tmp_path, "request")[0]["path"] == "/hold/8"


async def test_proxyauth_password_is_forgotten(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = flow()
    s.requestheaders(f)
    await s.request(f)
    assert f.metadata["proxyauth"] == ("agent-1", "<redacted>")
    assert "pa55word" not in (tmp_path / "audit" / "journal").joinpath(
        sorted(p.name for p in (tmp_path / "audit" / "journal").iterdir())[0]).read_text()


async def test_agent_without_proxyauth_is_anonymous_at_client_ip(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = flow(user=None)
    f.request.headers["X-Agent"] = "admin"  # an agent never names itself
    await s.request(f)
    assert events(tmp_path, "request")[0]["agent"] == f"anonymous@{f.client_conn.peername[0]}"


async def test_shadow_mode_forwards_but_records_the_verdict(shield, tmp_path: Path) -> None:
    s, tctx = shield
    tctx.configure(s.trail, shield_mode="shadow")
    f = flow("POST", "/deny/2")
    await s.request(f)
    assert f.response is None
    ev = events(tmp_path, "request")[0]
    assert (ev["verdict"], ev["decision"], ev["mode"]) == ("deny", "allowed", "shadow")


async def test_journal_failure_refuses_the_flow_with_503(shield, tmp_path: Path) -> None:
    s, _ = shield
    os.kill(s.trail.link.pid, signal.SIGKILL)  # the writer is gone, whatever it was doing
    f = flow()
    await s.request(f)
    assert f.response.status_code == 503
    assert json.loads(f.response.content)["decision"] == "refused"
    assert events(tmp_path, "request") == []
    await until(lambda: s.trail.link.down is None)  # a new writer: flows go on
    g = flow()
    await s.request(g)
    assert g.response is None
    assert [e["flow_id"] for e in events(tmp_path, "request")] == [g.id]


def test_bad_rules_stop_the_proxy_from_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    match: {path: '('}\n    action: deny\n")
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        with pytest.raises(exceptions.OptionsError, match="bad.yaml:4"):
            tctx.configure(s.trail, shield_rules=str(bad))


def test_streaming_request_bodies_are_refused(tmp_path: Path) -> None:
    from mitmproxy.addons.proxyserver import Proxyserver

    s = Shield()
    with taddons.context(*s.addons, Proxyserver()) as tctx:
        with pytest.raises(exceptions.OptionsError, match="stream_large_bodies"):
            tctx.configure(s.trail, stream_large_bodies="1m")


def test_a_bad_edit_while_running_keeps_the_old_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rules_file = tmp_path / "r.yaml"
    rules_file.write_text("version: 1\nrules:\n  - {id: d, match: {method: DELETE}, action: deny}\n")
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=str(rules_file), shield_dir=str(tmp_path / "audit"))
        good = s.ruleset.sha256
        rules_file.write_text("version: 1\nrules:\n  - {id: d, match: {method: DELETE}, action: nope}\n")
        s.load_rules()
        assert s.ruleset.sha256 == good and s.ruleset.rules[0].action == "deny"
        assert "rule change refused, keeping the old rules" in caplog.text and "r.yaml:3" in caplog.text
        rules_file.write_text("version: 1\nrules:\n  - {id: d, match: {method: DELETE}, action: hold}\n")
        s.load_rules()
        assert s.ruleset.rules[0].action == "hold"
        s.done()
    loads = events(tmp_path, "ruleset")
    assert any(e["error"] and "r.yaml:3" in e["error"] and e["ruleset_sha256"] == good for e in loads)
    assert loads[-1]["ruleset_sha256"] == s.ruleset.sha256 and loads[-1]["error"] is None


async def test_a_shadow_rule_is_recorded_but_the_enforced_rule_acts(tmp_path: Path) -> None:
    rules_file = tmp_path / "r.yaml"
    rules_file.write_text("version: 1\nrules:\n  - {id: new-deny, match: {method: POST}, action: deny, mode: shadow}\n")
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=str(rules_file), shield_dir=str(tmp_path / "audit"))
        f = flow("POST", "/x")
        await s.request(f)
        s.done()
    assert f.response is None
    ev = events(tmp_path, "request")[0]
    assert (ev["verdict"], ev["rule_id"], ev["decision"], ev["mode"]) == ("deny", "new-deny", "allowed", "shadow")


async def test_the_hold_comment_speaks_in_actions(shield, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/apis/apps/v1/namespaces/prod/deployments/web")
    assert f.comment.startswith("agent agent-1 wants kubernetes delete deployments/web in prod | rule k8s-delete (high): ")
    assert re.search(r"\| deny at \d\d:\d\d:\d\d unless decided$", f.comment)
    tctx.master.commands.call("shield.pending")
    assert "1 held flow(s)" in caplog.text and "/apis/apps/v1/namespaces/prod/deployments/web" in caplog.text
    tctx.master.commands.call("shield.deny", [f])
    await asyncio.wait_for(task, 5)


async def test_the_hold_comment_names_the_credential_the_request_acts_with(shield) -> None:
    s, tctx = shield
    f = flow("DELETE", "/apis/apps/v1/namespaces/prod/deployments/web")
    f.request.headers["authorization"] = "Basic " + base64.b64encode(b"reader:pw").decode()
    task = asyncio.create_task(s.request(f))
    await until(lambda: f.intercepted)
    assert re.match(r"agent agent-1 as authorization \[redacted:[0-9a-f]{12}\] \(reader\) wants kubernetes delete", f.comment)
    assert "pw" not in f.comment
    tctx.master.commands.call("shield.deny", [f])
    await asyncio.wait_for(task, 5)


async def test_websocket_messages_are_recorded_with_direction_and_size(shield, tmp_path: Path) -> None:
    s, _ = shield
    f = tflow.twebsocketflow()
    await s.websocket_message(f)
    s.done()
    [ev] = events(tmp_path, "message")
    last = f.websocket.messages[-1]
    side = "request" if last.from_client else "response"
    assert ev["operation"] == ("client->server" if last.from_client else "server->client")
    assert ev[f"{side}_body_size"] == len(last.content) and ev["flow_id"] == f.id


async def test_a_replayed_flow_is_a_new_attempt_in_the_trail(shield, tmp_path: Path) -> None:
    """mitmproxy replays the same flow object (same id); the trail gives the replay its own
    flow_id, so each flow_id has exactly one request event, its first."""
    s, _ = shield
    f = flow()
    await s.request(f)
    f.is_replay = "request"
    await s.request(f)
    first, again = events(tmp_path, "request")
    assert first["flow_id"] == f.id and again["flow_id"].startswith(f.id + "-replay-")
    assert again["decision"] == "allowed"


async def test_a_request_that_comes_back_through_the_proxy_is_refused(shield, tmp_path: Path) -> None:
    s, _ = shield
    first = flow("GET", "/loop")
    await s.request(first)
    assert first.response is None  # allowed: it leaves stamped with this proxy's mark
    back = flow("GET", "/loop")
    back.request.headers["x-shield-via"] = first.request.headers["x-shield-via"]
    await s.request(back)
    assert back.response.status_code == 403
    [ev] = [e for e in events(tmp_path, "request") if e["flow_id"] == back.id]
    assert ev["rule_id"] == "builtin:proxy-itself"
    # the mark is recorded with the request: upstream receives no header the trail lacks
    assert "x-shield-via" in json.dumps([e["request_headers"] for e in events(tmp_path, "request")
                                         if e["flow_id"] == first.id])


async def test_an_ip_in_any_spelling_is_one_host_to_the_rules(shield, tmp_path: Path) -> None:
    from shield_addon.flows import view_of

    f = flow()
    f.request.host = "0x7f000001"
    assert view_of(f).host == "127.0.0.1"


UPGRADE_RULES = """\
version: 1
default: allow
rules:
  - id: allow-raw-tcp
    match: {method: TCP}
    action: allow
"""


async def test_an_allowed_upgrade_to_a_raw_stream_waits_for_its_event_or_is_refused(tmp_path: Path) -> None:
    """After a 101 mitmproxy relays bytes no hook sees: the stream's verdict is its request
    event, on disk before the 101 goes on, like any request's."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(UPGRADE_RULES)
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=str(rules), shield_dir=str(tmp_path / "audit"))
        try:
            for writer_up in (True, False):
                f = flow("GET", f"/upgrade-{writer_up}")
                await s.request(f)
                f.response = tflow.tresp(status_code=101)
                f.response.headers["upgrade"] = "raw-db"
                if not writer_up:
                    os.kill(s.trail.link.pid, signal.SIGKILL)
                answered = s.gate.response(f)
                assert answered is not None  # a coroutine mitmproxy awaits before the 101 goes on
                await answered
                tcp = [e for e in events(tmp_path, "tcp") if e["flow_id"] == f.id]
                if writer_up:
                    assert f.response.status_code == 101 and [e["decision"] for e in tcp] == ["allowed"]
                else:
                    assert f.response.status_code == 503 and tcp == []
            plain = flow("GET", "/plain")
            plain.response = tflow.tresp()
            assert s.gate.response(plain) is None  # every other response: a plain call
        finally:
            s.done()


async def test_an_event_that_cannot_be_sent_refuses_its_flow_not_only_a_journal_error(shield, tmp_path: Path) -> None:
    """A bug that raises something else than JournalError must not let the flow through unrecorded."""
    s, _ = shield
    assert await s.trail.write({"stage": "request", "flow_id": "odd", "path": object()}) is False
    assert await s.trail.write({"stage": "request", "flow_id": "fine", "path": "/"}) is True


async def test_an_agent_past_its_trail_budget_is_refused_429_and_recorded_small(shield, tmp_path: Path) -> None:
    s, tctx = shield
    tctx.configure(s.trail, shield_agent_budget=10_000)
    f = flow("GET", "/x/" + "a" * 30_000)  # one request event (~17 KB of path and URL) spends it
    await s.request(f)
    assert f.response is None
    f = flow("GET", "/x/" + "b" * 30_000)
    await s.request(f)
    assert f.response.status_code == 429 and int(f.response.headers["retry-after"]) >= 1
    body = json.loads(f.response.content)
    assert (body["decision"], body["rule"]) == ("blocked", "builtin:trail-budget")
    refused = events(tmp_path, "request")[-1]
    assert (refused["flow_id"], refused["rule_id"], refused["decision"]) == (f.id, "builtin:trail-budget", "blocked")
    assert refused["request_headers"] is None and len(refused["path"]) < 400 and "…[cut at 256 of" in refused["url"]
    other = flow("GET", "/x/1", user="agent-2")
    await s.request(other)
    assert other.response is None, "another agent is not refused"


async def test_a_two_person_hold_is_released_by_the_second_distinct_reviewer(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/two/1")
    assert "needs 2 reviewers' approvals" in f.comment
    tctx.master.commands.call("shield.approve", [f])
    tctx.master.commands.call("shield.approve", [f])  # bob again: counted once
    tctx.master.commands.call("flow.resume", [f])  # and his `a` too
    await asyncio.sleep(0.3)
    assert not task.done() and f.intercepted and "1 of 2" in f.comment
    tctx.configure(s.review, shield_reviewer="carol")
    tctx.master.commands.call("shield.approve", [f])
    await asyncio.wait_for(task, 5)
    assert not f.intercepted and f.response is None
    decisions = [(d["decision"], d["reviewer"], d["reviewer_comment"]) for d in events(tmp_path, "decision")]
    assert decisions == [("approved", "bob", "approval 1 of 2"), ("approved", "carol", None)]


async def test_one_denial_ends_a_two_person_hold(shield, tmp_path: Path) -> None:
    s, tctx = shield
    f, task = await held(s, "DELETE", "/two/2")
    tctx.master.commands.call("shield.approve", [f])
    tctx.configure(s.review, shield_reviewer="carol")
    tctx.master.commands.call("shield.deny", [f], "no")
    await asyncio.wait_for(task, 5)
    assert f.response.status_code == 403
    assert [d["decision"] for d in events(tmp_path, "decision")] == ["approved", "denied"]
