"""Rules that remember: `limit:` (core/limits.py, addons/limits.py), `secrets:` (the redaction
detectors by kind), `when:` (core/windows.py), and how tests, explain and replay set their state.
The clock is always an argument."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shield_addon import actions, rules, ruletest
from shield_addon.addons.limits import LimitBook
from shield_addon.core import limits, windows
from shield_addon.core.context import Context
from shield_addon.core.decide import decide
from shield_addon.record.redaction import Redactor, secret_kinds
from shield_addon.rules import RuleError, parse_text

T0 = datetime(2026, 12, 4, 17, 0, tzinfo=UTC).timestamp()  # a Friday, 18:00 in Berlin
T1 = T0 - 7 * 3600  # the same Friday, 11:00 in Berlin: outside the freeze

RULES = parse_text("""
version: 1
rules:
  - id: delete-burst
    action: hold
    match: {method: DELETE, limit: {count: 3, per: 10m, by: agent+action}}
  - id: aws-key-leaving
    action: deny
    match: {secrets: [aws], not: {host: ["*.amazonaws.com"]}}
  - id: friday-freeze
    action: hold
    match: {method: [POST, PUT, PATCH, DELETE], when: {between: "16:00-24:00", days: [fri], tz: Europe/Berlin}}
""")
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def judged(ruleset: rules.RuleSet, request: dict[str, Any], state: rules.State | None) -> rules.Verdict:
    return ruletest.explain(ruleset, request, state=state)


# ------------------------------------------------------------------ limit: the memory


def test_a_sliding_window_counts_what_is_inside_it_to_the_instant() -> None:
    c = limits.Counts()
    for t in (0.0, 100.0, 200.0):
        c.add("r", "k", T1 + t, keep=3)
    assert c.count("r", "k", 600, T1 + 200) == 3
    assert c.count("r", "k", 600, T1 + 599.999) == 3
    assert c.count("r", "k", 600, T1 + 600) == 2  # (now - per, now]: the first one just left
    assert c.count("r", "k", 600, T1 + 800) == 0
    assert c.count("r", "other", 600, T1 + 200) == 0
    assert c.count("other", "k", 600, T1 + 200) == 0


def test_only_the_newest_count_times_are_kept_per_key_and_keys_are_capped() -> None:
    c = limits.Counts(cap=2)
    for t in range(10):
        c.add("r", "a", T1 + t, keep=3)
    assert [t - T1 for _, t in c] == [7, 8, 9]
    c.add("r", "b", T1, keep=3)
    c.count("r", "a", 600, T1 + 10)  # used: "b" is now the oldest
    c.add("r", "c", T1, keep=3)
    assert len(c) == 2 and c.count("r", "b", 600, T1) == 0  # forgotten: counts from zero


def test_lines_round_trip_and_load_keeps_only_live_rules_inside_their_window() -> None:
    lines = [limits.line("r", '["bot"]', T1), limits.line("r", '["bot"]', T1 + 500), "torn{", "\n",
             limits.line("gone", '["bot"]', T1 + 500), '{"rule": "r", "key": "k", "ts": true}']
    c = limits.Counts()
    assert c.load(lines, {"r": (5, 600.0)}, now=T1 + 700) == 2
    assert [(k, t - T1) for k, t in c] == [(("r", '["bot"]'), 500.0)]  # T1 is outside (T1+100, T1+700]


def test_the_addon_counts_only_what_the_rules_counted_and_a_restart_keeps_it(tmp_path: Path) -> None:
    class Book:  # what LimitBook asks of the rulebook
        ruleset = RULES

    book = LimitBook(None, Book())  # type: ignore[arg-type]
    book.open(tmp_path / limits.FILE)
    delete = {"method": "DELETE", "url": "https://k8s.example:6443/api/v1/namespaces/a/pods/p", "agent": "bot"}
    verdicts = []
    for i in range(4):
        context = book.fill(RULES, Context(agent="bot"), now=T1 + i)
        subjects = ruletest.subjects_for(RULES, delete, state=context.state)
        verdicts.append(decide([actions.Reading(s.request, s.action) for s in subjects], RULES, context).enforced)
        book.settle(context)
    assert verdicts == ["allow", "allow", "allow", "hold"]
    again = LimitBook(None, Book())  # type: ignore[arg-type]
    again.open(tmp_path / limits.FILE, now=T1 + 10)
    context = again.fill(RULES, Context(agent="bot"), now=T1 + 10)
    assert judged(RULES, delete, context.state).enforced == "hold"
    # ten minutes after the second delete only the last two are inside the window
    assert judged(RULES, delete, again.fill(RULES, Context(agent="bot"), now=T1 + 601).state).enforced == "allow"


def test_a_rule_set_without_limit_or_when_gets_no_state_and_writes_nothing(tmp_path: Path) -> None:
    plain = parse_text("version: 1\nrules:\n  - {id: d, match: {method: DELETE}, action: hold}\n")
    book = LimitBook(None, None)
    book.open(tmp_path / limits.FILE)
    ctx = Context(agent="bot")
    assert book.fill(plain, ctx) is ctx
    book.settle(ctx)
    assert not (tmp_path / limits.FILE).exists()


def test_limit_counts_per_key_and_only_requests_matching_the_rest_of_the_rule() -> None:
    counts = limits.Counts()

    def run(method: str, url: str, agent: str) -> str:
        state = rules.State(now=T1, counts=counts.count)
        v = judged(RULES, {"method": method, "url": url, "agent": agent}, state)
        for (rule, key), keep in state.counted.items():
            counts.add(rule, key, T1, keep)
        return v.enforced

    pod = "https://k8s.example:6443/api/v1/namespaces/a/pods/p"
    assert [run("DELETE", pod, "bot") for _ in range(3)] == ["allow"] * 3
    assert run("GET", pod, "bot") == "allow"  # not a DELETE: not counted, not held
    assert run("DELETE", pod, "other-bot") == "allow"  # the neighbour has a count of its own
    assert run("DELETE", pod, "bot") == "hold"


def test_a_request_read_twice_counts_once() -> None:
    state = rules.State(now=T1, counts=lambda *a: 0)
    req = {"method": "POST", "url": "https://k8s.example:6443/api/v1/namespaces/a/pods/p",
           "headers": {"X-HTTP-Method-Override": "DELETE"}, "agent": "bot"}
    override = parse_text("version: 1\nrules:\n  - {id: d, action: hold, match: {limit: {count: 1, per: 1m}}}\n")
    judged(override, req, state)
    assert list(state.counted) == [("d", '["bot"]')]


def test_limit_without_a_memory_never_matches() -> None:
    v = judged(RULES, {"method": "DELETE", "url": "https://x.example/a"}, None)
    assert v.enforced == "allow"


@pytest.mark.parametrize("match, reason", [
    ("{limit: {count: 0, per: 10m}}", "at least 1"),
    ("{limit: {count: 5}}", "per: required"),
    ("{limit: {count: 5, per: soon}}", "duration"),
    ("{limit: {count: 5, per: 10m, by: agent+colour}}", "dimensions"),
    ("{limit: {count: 5, per: 10m, every: 1}}", "unknown key"),
    ("{not: {limit: {count: 5, per: 10m}}}", "only at the top"),
])
def test_a_bad_limit_is_a_rule_error_with_its_place(match: str, reason: str) -> None:
    with pytest.raises(RuleError) as e:
        parse_text(f"version: 1\nrules:\n  - id: r\n    action: hold\n    match: {match}\n", "f.yaml")
    assert reason in str(e.value) and str(e.value).startswith("f.yaml:5:")


# ------------------------------------------------------------------ secrets:


@pytest.mark.parametrize("text, kind", [
    (AWS_KEY, "aws"), ("ghp_" + "a" * 36, "github"), ("xoxb-1234567890-abcdef", "slack"),
    ("sk_live_" + "a" * 24, "stripe"), ("sk-proj-" + "a" * 40, "openai"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "private_key"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    ("Authorization: Bearer " + "ghp_" + "b" * 36, "github"),  # a bearer counts by its token's shape
])
def test_each_shape_the_redaction_detectors_know_has_its_kind(text: str, kind: str) -> None:
    assert secret_kinds(text) == {kind}
    assert "[redacted:" in Redactor(b"k").text(text)  # the trail hides what the rule saw


def test_a_bearer_of_no_known_shape_and_ordinary_text_have_no_kind() -> None:
    assert secret_kinds("Authorization: Bearer abcdefghijklmnop") == set()
    assert secret_kinds("AKIA is how AWS keys start; sk- is how OpenAI's do") == set()


@pytest.mark.parametrize("where", ["url", "header", "body", "form"])
def test_secrets_are_seen_in_the_url_headers_and_body(where: str) -> None:
    req: dict[str, Any] = {"method": "POST", "url": "https://paste.example/new"}
    if where == "url":
        req["url"] += f"?k={AWS_KEY}"
    elif where == "header":
        req["headers"] = {"X-Note": f"key {AWS_KEY}"}
    elif where == "body":
        req["body"] = {"env": {"AWS_ACCESS_KEY_ID": AWS_KEY}}
    else:
        req["headers"] = {"content-type": "application/x-www-form-urlencoded"}
        req["body"] = f"k=%41KIA{AWS_KEY[4:]}"  # the server decodes %41 to A
    v = judged(RULES, req, None)
    assert (v.enforced, v.rule.id if v.rule else None) == ("deny", "aws-key-leaving")


def test_a_key_sent_to_its_own_provider_or_of_another_kind_does_not_match() -> None:
    assert judged(RULES, {"method": "GET", "url": f"https://sts.amazonaws.com/?AccessKeyId={AWS_KEY}"}, None).enforced \
        == "allow"
    assert judged(RULES, {"method": "POST", "url": "https://paste.example/", "body": "ghp_" + "c" * 36},
                  None).enforced == "allow"
    any_kind = parse_text("version: 1\nrules:\n  - {id: s, action: deny, match: {secrets: [any]}}\n")
    assert judged(any_kind, {"method": "POST", "url": "https://paste.example/", "body": "ghp_" + "c" * 36},
                  None).enforced == "deny"


def test_an_unknown_secret_kind_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match=r"f.yaml:3:.*secrets.*a list from"):
        parse_text("version: 1\nrules:\n  - {id: s, action: deny, match: {secrets: [aws, passwords]}}\n", "f.yaml")


# ------------------------------------------------------------------ when:


def test_a_window_is_local_to_its_zone_and_its_days() -> None:
    berlin = windows.Window(16 * 60, 24 * 60, True, windows.parse_days(["fri"]), windows.zone("Europe/Berlin"))
    assert berlin.active(T0)  # Friday 18:00 in Berlin
    assert berlin.active(T0 - 2 * 3600)  # 16:00: the start is inside
    assert not berlin.active(T0 - 2 * 3600 - 1)  # 15:59:59
    assert not berlin.active(T0 + 6 * 3600)  # Saturday 00:00: the end is outside
    outside = windows.Window(9 * 60, 17 * 60, False, tz=windows.zone("Europe/Berlin"))
    assert outside.active(T0) and not outside.active(T0 - 4 * 3600)  # not_between: 18:00 yes, 14:00 no


def test_a_range_past_midnight_wraps() -> None:
    night = windows.Window(*windows.parse_range("22:00-06:00"))
    midnight = datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    assert night.active(midnight) and night.active(midnight - 3600) and night.active(midnight + 5 * 3600 + 3599)
    assert not night.active(midnight + 6 * 3600) and not night.active(midnight - 2 * 3600 - 1)


@pytest.mark.parametrize("bad", ["9-17", "09:00-09:00", "25:00-26:00", "09:60-10:00", 9])
def test_bad_ranges_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        windows.parse_range(bad)


def test_when_judges_the_moment_given_and_never_the_wall_clock() -> None:
    post = {"method": "POST", "url": "https://deploy.example/run"}
    assert judged(RULES, post, rules.State(now=T0)).enforced == "hold"
    assert judged(RULES, post, rules.State(now=T0 + 6 * 3600)).enforced == "allow"  # Saturday
    assert judged(RULES, post, None).enforced == "allow"  # no clock: quiet


def test_when_may_list_windows_and_any_one_applies() -> None:
    rs = parse_text("""
version: 1
rules:
  - id: weekend
    action: hold
    match:
      when: [{days: [sat, sun], tz: Europe/Berlin}, {between: "18:00-24:00", days: fri, tz: Europe/Berlin}]
""")
    sat = T0 + 12 * 3600
    assert [judged(rs, {"url": "https://x.example/"}, rules.State(now=t)).enforced for t in (T0, sat, T0 - 3600)] \
        == ["hold", "hold", "allow"]


@pytest.mark.parametrize("when, where, reason", [
    ('{tz: Mars/Olympus}', "7:14", "unknown time zone"),
    ('{between: "9-17"}', "7:14", "range of times"),
    ('{days: [friyay]}', "7:14", "not a day"),
    ('{between: "09:00-17:00", not_between: "10:00-11:00"}', "7:38", "not both"),
])
def test_a_bad_when_is_a_rule_error_at_file_line_column(when: str, where: str, reason: str) -> None:
    text = f"version: 1\nrules:\n  - id: w\n    action: hold\n    match:\n      method: POST\n      when: {when}\n"
    with pytest.raises(RuleError) as e:
        parse_text(text, "f.yaml")
    assert str(e.value).startswith(f"f.yaml:{where}:") and reason in str(e.value)


# ------------------------------------------------------------------ tests, explain, replay


def test_rule_file_tests_set_count_seen_hosts_and_now() -> None:
    rs = parse_text("""
version: 1
rules:
  - {id: burst, action: hold, match: {method: DELETE, limit: {count: 5, per: 10m}}}
  - {id: new-host, action: hold, match: {first_contact: true}}
  - {id: freeze, action: hold, match: {method: POST, when: {between: "18:00-20:00", tz: Europe/Berlin}}}
tests:
  - {request: {method: DELETE, url: "https://a.example/x"}, state: {count: 5}, expect: {rule: burst}}
  - {request: {method: DELETE, url: "https://a.example/x"}, state: {count: 4}, expect: {action: allow}}
  - {request: {url: "https://a.example/x"}, state: {seen_hosts: [b.example]}, expect: {rule: new-host}}
  - {request: {url: "https://a.example/x"}, state: {seen_hosts: [a.example]}, expect: {action: allow}}
  - {request: {method: POST, url: "https://a.example/x"}, state: {now: "2026-12-04T18:00:00+01:00"},
     expect: {rule: freeze}}
  - {request: {method: POST, url: "https://a.example/x"}, state: {now: 2026-12-04T17:59:59+01:00},
     expect: {action: allow}}
  - {request: {url: "https://a.example/x"}, state: {now: "2026-12-04T18:00:00"}, expect: {action: allow}}
  - {request: {url: "https://a.example/x"}, state: {hosts: []}, expect: {action: allow}}
""")
    results = [r for _, _, r in ruletest.run_tests(rs)]
    assert results[:6] == [None] * 6
    assert "needs its offset" in (results[6] or "")
    assert "state.hosts" in (results[7] or "")


def test_replay_judges_each_request_at_its_time_with_the_history_before_it() -> None:
    rs = parse_text("""
version: 1
rules:
  - {id: burst, action: hold, match: {method: DELETE, limit: {count: 2, per: 1m}}}
  - {id: new-host, action: hold, match: {first_contact: true, method: GET}}
""")
    history = ruletest.History()

    def row(method: str, ts: str, host: str = "a.example") -> dict[str, Any]:
        return {"method": method, "url": f"https://{host}/x", "request_headers": "[]", "request_body": "",
                "agent": "bot", "host": host, "port": 443, "ts": datetime.fromisoformat(ts)}

    got = [history.judge(rs, row(*r)).enforced for r in [
        ("DELETE", "2026-12-04 10:00:00"), ("DELETE", "2026-12-04 10:00:10"), ("DELETE", "2026-12-04 10:00:20"),
        ("DELETE", "2026-12-04 10:01:15"),  # the first two left the window, the third is still in it
        ("GET", "2026-12-04 10:02:00"), ("GET", "2026-12-04 10:02:01", "b.example")]]
    # the first DELETE reached a.example, so its GET is no first contact; b.example's is
    assert got == ["allow", "allow", "hold", "allow", "allow", "hold"]


# ------------------------------------------------------------------ the bundled packs


def test_the_commented_freeze_example_of_the_generic_pack_works_once_uncommented() -> None:
    from shield_addon import paths

    text = (paths.bundled_rules() / "99-generic.yaml").read_text()
    start = text.index("  # - id: change-freeze")
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("  # "):
            break
        lines.append("  " + line[4:])
    rs = parse_text("version: 1\nrules:\n" + "\n".join(lines) + "\n", "freeze.yaml")
    post = {"method": "POST", "url": "https://deploy.example/run"}
    at = {"fri 18:00": T0, "fri 11:00": T1, "sun 23:59": T0 + 2 * 86400 + 5 * 3600 + 59 * 60,
          "mon 00:00": T0 + 3 * 86400 + 6 * 3600}
    assert {k: judged(rs, post, rules.State(now=t)).enforced for k, t in at.items()} == \
        {"fri 18:00": "hold", "fri 11:00": "allow", "sun 23:59": "hold", "mon 00:00": "allow"}
    assert judged(rs, {"method": "GET", "url": "https://deploy.example/run"}, rules.State(now=T0)).enforced == "allow"


def test_rules_explain_prints_what_each_stateful_field_saw(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "r.yaml").write_text("""
version: 1
rules:
  - {id: burst, action: hold, match: {method: DELETE, limit: {count: 2, per: 10m}}}
  - {id: leak, action: deny, match: {secrets: [any]}}
  - {id: freeze, action: hold, match: {when: {between: "18:00-20:00", tz: Europe/Berlin}}}
  - {id: new-host, action: hold, match: {first_contact: true}}
""")
    out = subprocess.run([sys.executable, "-m", "shield_addon.cli", "rules", "explain", "DELETE",
                          "https://a.example/x", "--rules", str(tmp_path / "r.yaml"), "--agent", "bot", "--count", "2",
                          "--now", "2026-12-04T18:30:00+01:00", "--seen-host", "b.example",
                          "--header", "X-Note:ghp_" + "d" * 36], capture_output=True, text=True, check=True).stdout
    assert 'saw limit: 2 counted before this one for ["bot"] (limit 2 per 10m by agent)' in out
    assert "saw secrets: github found" in out
    assert "saw when: fri 2026-12-04 18:30 Europe/Berlin is inside" in out
    assert "saw first_contact: a first request of agent 'bot' to a.example:443" in out
    assert "verdict  deny by leak" in out
