"""The pure parts of agents, export and report, which only end-to-end tests covered."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from pathlib import Path

import bcrypt
import pytest

from shield_addon import agents, export, report


def test_an_agent_token_is_shown_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    token = agents.add(tmp_path, "deploy-bot")
    text = agents.htpasswd_path(tmp_path).read_text()
    assert token not in text
    name, digest = text.strip().split(":", 1)
    assert name == "deploy-bot" and bcrypt.checkpw(token.encode(), digest.encode())
    assert agents.list_agents(tmp_path) == ["deploy-bot"]


def test_rotation_replaces_the_token_and_removal_forgets_the_agent(tmp_path: Path) -> None:
    old = agents.add(tmp_path, "a")
    new = agents.rotate(tmp_path, "a")
    digest = agents.htpasswd_path(tmp_path).read_text().strip().split(":", 1)[1].encode()
    assert new != old and bcrypt.checkpw(new.encode(), digest) and not bcrypt.checkpw(old.encode(), digest)
    agents.remove(tmp_path, "a")
    assert agents.list_agents(tmp_path) == []
    with pytest.raises(agents.AgentError):
        agents.remove(tmp_path, "a")


@pytest.mark.parametrize("name", ["bad name", "a:b", "", "x" * 65, "-rf"])
def test_names_that_cannot_be_proxy_users_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(agents.AgentError):
        agents.add(tmp_path, name)


def test_env_lines_quote_what_the_shell_would_otherwise_read() -> None:
    pairs = agents.env_vars("bot", "to'ken$x", "127.0.0.1", 8080, Path("/ca.pem"))
    [line] = [x for x in agents.env_lines(pairs, "bash") if x.startswith("export HTTPS_PROXY=")]
    assert shlex.split(line.removeprefix("export "))[0] == "HTTPS_PROXY=http://bot:to%27ken%24x@127.0.0.1:8080"
    assert any(x.startswith("$env:SSL_CERT_FILE = '/ca.pem'") for x in agents.env_lines(pairs, "powershell"))
    assert any(x.startswith("set -gx NO_PROXY ''") for x in agents.env_lines(pairs, "fish"))


def flow(**over: object) -> dict:
    base = {k: None for k in ("ts", "flow_id", "agent", "client_ip", "method", "scheme", "host", "port", "path", "url",
                              "service", "action_type", "operation", "resource_type", "namespace", "resource_name",
                              "tables", "rule_id", "verdict", "matched_rules", "mode", "ruleset_sha256", "severity",
                              "decision", "reviewer", "decided_at", "reviewer_comment", "edited", "status_code",
                              "outcome", "duration_ms", "request_sha256", "chain_id", "request_seq", "last_seq",
                              "request_row_hash")}
    base.update(ts=datetime(2026, 12, 5, 12), method="GET", host="api.example.com", service="api.example.com",
                decision="allowed", outcome="forwarded")
    base.update(over)
    return base


def test_ocsf_a_plain_request_is_http_activity_and_an_api_action_is_api_activity() -> None:
    plain = export.ocsf_event(flow(status_code=200))
    assert (plain["class_uid"], plain["status"], plain["http_response"]["code"]) == (4002, "Success", 200)
    api = export.ocsf_event(flow(service="kubernetes", action_type="delete", namespace="prod", resource_name="web",
                                 decision="denied", outcome="refused", severity="critical"))
    assert (api["class_uid"], api["activity_name"], api["status"]) == (6003, "Delete", "Failure")
    assert api["resources"] == [{"name": "web", "namespace": "prod"}]


@pytest.mark.parametrize("decision", ["denied", "blocked", "killed", "timed_out", "abandoned"])
def test_ocsf_every_refused_or_lapsed_decision_is_a_failure(decision: str) -> None:
    assert export.ocsf_event(flow(decision=decision))["status"] == "Failure"


def test_report_buckets_grow_with_the_time_span_and_escape_what_they_show() -> None:
    start = datetime(2026, 12, 5, 12)
    small, _ = report.choose_bucket(start, start + timedelta(minutes=5))
    large, _ = report.choose_bucket(start, start + timedelta(days=30))
    assert small < large
    assert report.esc('<script>"\x1b[2J') == "&lt;script&gt;&quot;\\x1b[2J"
