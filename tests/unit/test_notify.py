"""What a notification says and who it goes to (core.notices), and the rule keys `notify:` and
`escalate:` (rules.loader). The sending itself, through apprise to a real receiver, is in
tests/e2e/test_notify.py."""

from __future__ import annotations

import re

import pytest

from shield_addon import rules
from shield_addon.core import notices

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def facts(**kw: object) -> notices.HoldFacts:
    base = dict(proxy="edge-1", hold_id="f00d-1234", agent="deploy-bot", method="DELETE",
                url="https://k8s.example:6443/apis/apps/v1/namespaces/prod/deployments/web?token=[redacted:0123456789ab]",
                action="kubernetes delete deployments/web in prod", rule_id="k8s-delete-in-prod", severity="critical",
                rule_message="Deleting in prod needs SRE approval", created=NOW, deadline=NOW + 300, on_timeout="deny",
                mode="wait", fleet=False)
    base.update(kw)
    return notices.HoldFacts(**base)  # type: ignore[arg-type]


def lines(n: notices.Notice) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in n.body.splitlines())


# ---------------------------------------------------------------- targets


def test_targets_split_at_commas_and_spaces_only_where_a_new_target_begins() -> None:
    t = notices.parse_targets(["json://a/x, ntfy://topic  oncall=pagerduty://k@i/s",
                               "mailto://u:p@mail.example?to=a@x.example,b@y.example team=slack://T/B/C"])
    assert t.every == ("json://a/x", "ntfy://topic", "mailto://u:p@mail.example?to=a@x.example,b@y.example")
    assert t.named == {"oncall": ("pagerduty://k@i/s",), "team": ("slack://T/B/C",)}


def test_a_name_may_stand_for_several_targets_and_each_is_sent_once() -> None:
    t = notices.parse_targets(["json://a/", "ops=json://b/", "ops=json://c/"])
    urls, unknown = t.resolve(["ops", "json://a/", "nobody", "ops"])
    assert notices.unique([*t.every, *urls]) == ["json://a/", "json://b/", "json://c/"]
    assert unknown == ["nobody"]


@pytest.mark.parametrize("bad", ["slack", "oncall=", "=json://x/", "not a url"])
def test_an_entry_that_is_neither_a_url_nor_name_equals_url_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an apprise URL"):
        notices.parse_targets([bad])


def test_an_empty_option_means_no_targets() -> None:
    assert notices.parse_targets([]) == notices.Targets() and notices.parse_targets(["  "]) == notices.Targets()


# ---------------------------------------------------------------- what a notice says


def test_a_hold_notice_names_proxy_agent_action_rule_deadline_hold_and_how_to_decide() -> None:
    n = notices.hold_notice(facts(), NOW + 60)
    assert n.kind == notices.HOLD
    assert n.title == "Held on edge-1: agent `deploy-bot` wants `kubernetes delete deployments/web in prod`"
    f = lines(n)
    assert f["Proxy"] == "edge-1" and f["Agent"] == "`deploy-bot`" and f["Hold"] == "f00d-1234"
    assert f["Action"] == "`kubernetes delete deployments/web in prod`"
    assert f["Rule"] == "k8s-delete-in-prod (critical): Deleting in prod needs SRE approval"
    assert f["Deadline"] == "deny at 2027-01-15 08:05:00 UTC (in 4m) unless decided"
    assert f["Request"].startswith("`DELETE https://k8s.example:6443/") and "[redacted:" in f["Request"]
    assert f["Decide"] == "on the console of proxy edge-1: y approves, N denies (mitmproxy's X kills)"


def test_in_a_fleet_the_notice_points_to_shield_review() -> None:
    assert lines(notices.hold_notice(facts(fleet=True), NOW))["Decide"].startswith("with `shield review --fleet`")


def test_a_hold_without_deadline_rule_or_action_still_says_what_it_can() -> None:
    n = notices.hold_notice(facts(deadline=None, rule_id=None, severity=None, rule_message="", action=""), NOW)
    f = lines(n)
    assert f["Deadline"] == "none: it waits until someone decides"
    assert f["Rule"] == "the rule set's default verdict"
    assert n.title.startswith("Held on edge-1: agent `deploy-bot`: `DELETE https://k8s.example")


def test_what_the_agent_chose_cannot_carry_control_characters_or_a_huge_url() -> None:
    n = notices.hold_notice(facts(url="https://x.example/" + "a" * 5000, action="delete \x1b[2Jweb\nFAKE: line"), NOW)
    assert "\x1b" not in n.title + n.body and "\\x1b" in n.body
    assert len(lines(n)["Request"]) <= len("``DELETE ") + notices.URL_SHOWN
    assert not any(line.startswith("FAKE") for line in n.body.splitlines())  # a newline cannot forge a field
    assert len(n.title) <= 250


def test_what_the_agent_chose_is_shown_by_a_chat_or_mail_reader_and_never_acted_on() -> None:
    """Markdown renders links, images and mentions: in a code span they stay text."""
    link = "/v1/[Approve in the console](https://evil.example/approve)/![x](https://evil.example/p.png)"
    n = notices.hold_notice(facts(agent="@everyone`[hi](https://evil.example)`", url="https://api.example" + link,
                                  action="delete <b>web</b> `@here`"), NOW)
    for text in (n.title, *n.body.splitlines()):
        spans = text.split("`")
        assert len(spans) % 2, text  # every span closed
        outside = "".join(spans[0::2])  # what a Markdown reader would render as markup
        assert "](" not in outside and "@" not in outside and "<b>" not in outside, text
    f = lines(n)
    assert f["Agent"] == "`@\u200beveryone'[hi](https://evil.example)'`"
    assert f["Request"] == f"`DELETE https://api.example{link}`"
    assert "@\u200bhere" in f["Action"]


def test_a_title_cut_inside_a_code_span_closes_it() -> None:
    n = notices.hold_notice(facts(action="x" * 300 + " [a](https://evil.example)"), NOW)
    assert len(n.title) <= 251 and n.title.count("`") % 2 == 0 and n.title.endswith("…`")


def test_an_escalation_says_how_long_the_hold_waited() -> None:
    n = notices.escalation_notice(facts(), NOW + 15 * 60)
    assert n.kind == notices.ESCALATION and n.title.startswith("Still undecided after 15m on edge-1")
    assert lines(n)["Deadline"].startswith("deny at")


def test_a_two_person_hold_says_so_and_its_escalation_names_who_approved_already() -> None:
    two = facts(needed=2)
    assert lines(notices.hold_notice(two, NOW))["Approvals"] == "2 distinct reviewers must approve"
    assert "Approvals" not in lines(notices.hold_notice(facts(), NOW))
    assert lines(notices.escalation_notice(two, NOW + 60, ["alice"]))["Approved so far by"] == "alice"
    assert "Approved so far by" not in lines(notices.escalation_notice(two, NOW + 60))


def test_a_decision_notice_says_who_decided_how_and_why() -> None:
    n = notices.decision_notice(facts(), "denied", "alice", "shield.deny", "wrong cluster", NOW + 90)
    f = lines(n)
    assert n.kind == notices.DECISION and n.title.startswith("Hold denied by alice on edge-1")
    assert f["Decision"] == "denied by alice (shield.deny)" and f["Comment"] == "wrong cluster"
    assert f["Decided"] == "2027-01-15 08:01:30 UTC, 90s after the hold" and "Deadline" not in f
    timed_out = lines(notices.decision_notice(facts(), "timed_out", None, "timeout", None, NOW + 300))
    assert timed_out["Decision"] == "timed_out (timeout)" and "Comment" not in timed_out


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.6, "60s"), (119, "119s"), (120, "2m"), (7199, "119m"),
                                          (7200, "2h00m"), (90061, "25h01m"), (-5, "0s")])
def test_spans_read_like_a_person_would_say_them(seconds: float, text: str) -> None:
    assert notices.span(seconds) == text


# ---------------------------------------------------------------- rule keys


RULE = """\
version: 1
rules:
  - id: r
    match: {{}}
    action: hold
{extra}
"""


def rule(extra: str) -> rules.Rule:
    return rules.parse_text(RULE.format(extra=extra), "t.yaml").rules[0]


def test_a_rule_names_targets_and_an_escalation() -> None:
    r = rule('    notify: [team, "json://127.0.0.1:9/"]\n    escalate: {after: 15m, notify: oncall}')
    assert r.notify == ("team", "json://127.0.0.1:9/")
    assert r.escalate == rules.model.Escalation(900.0, ("oncall",))
    assert rule("").notify == () and rule("").escalate is None


@pytest.mark.parametrize("extra,where", [
    ("    notify: []", "t.yaml:6:5: rule r: notify: must name at least one target"),
    ("    notify: [team, 'two words']", "t.yaml:6:20: rule r: notify: each must be an apprise URL"),
    ("    notify: 5", "t.yaml:6:5: rule r: notify: each must be"),
    ("    escalate: 15m", "t.yaml:6:5: rule r: escalate: must be a mapping"),
    ("    escalate: {after: 15m}", "t.yaml:6:5: rule r: escalate.notify: required"),
    ("    escalate: {notify: x}", "t.yaml:6:5: rule r: escalate.after: required"),
    ("    escalate: {after: soon, notify: x}", "t.yaml:6:16: rule r: escalate.after: 'soon' is not a duration"),
    ("    escalate: {after: 0s, notify: x}", "t.yaml:6:16: rule r: escalate.after: must be longer than 0s"),
    ("    escalate: {after: 1m, notify: x, to: y}", "t.yaml:6:38: rule r: escalate.to: unknown key"),
])
def test_a_wrong_notify_or_escalate_says_where(extra: str, where: str) -> None:
    with pytest.raises(rules.RuleError, match=re.escape(where)):
        rule(extra)


def test_a_failed_sends_reason_loses_what_the_masked_target_hides() -> None:
    url = "slack://T1234ABCD/B5678EFGH/SeCrEtToKeN1234567890abc"
    shown = "slack://T...D/B...H/S...c//?image=yes&footer=yes"
    reason = ("A Connection error occurred posting to Slack. - Socket Exception: HTTPSConnectionPool(host='hooks.slack.com', "
              "port=443): Max retries exceeded with url: /services/T1234ABCD/B5678EFGH/SeCrEtToKeN1234567890abc "
              "(Caused by NameResolutionError(...))")
    hidden = notices.without_secrets(reason, url, shown)
    assert "SeCrEt" not in hidden and "T1234ABCD" not in hidden and "B5678EFGH" not in hidden
    assert "Max retries exceeded with url: … (Caused by NameResolutionError" in hidden and "hooks.slack.com" in hidden
    # the parts the masked form shows stay: where it went, and why it failed
    assert notices.without_secrets("error=500 from 127.0.0.1:8080/hook-path", "json://127.0.0.1:8080/hook-path",
                                   "json://127.0.0.1:8080/hook-path?method=POST") == "error=500 from 127.0.0.1:8080/hook-path"
    assert notices.without_secrets("login failed for p@ss/word!", "ntfy://me:p%40ss%2Fword!@host/topic",
                                   "ntfy://me:****@host/topic") == "login failed for …"


def test_a_target_is_kept_as_its_scheme_and_host_and_a_fingerprint_of_the_rest() -> None:
    mark = "[redacted:0123456789ab]"
    assert notices.target_shown("json://hooks.example.com:8443/T0K3N/x?method=POST", mark) == \
        f"json://hooks.example.com:8443/{mark}"
    assert notices.target_shown("ntfy://ntfy.sh/", mark) == "ntfy://ntfy.sh"
    assert notices.target_shown("ntfy://ntfy.sh", mark) == "ntfy://ntfy.sh"
    assert notices.target_shown("mailto://u:****@example.com?to=x", mark) == f"mailto://u:****@example.com/{mark}"
