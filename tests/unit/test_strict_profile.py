"""The strict profile (rules/profiles/strict/): its rules with the packs, the `unmatched:`,
`first_contact:` and `flag:` match keys, `shield run --profile`, and the gate's memory."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.test import taddons

from shield_addon import paths, rules, ruletest
from shield_addon.actions import RequestView, readings
from shield_addon.cli import proxy
from shield_addon.cli.parser import build_parser, profiles
from shield_addon.core import contacts
from shield_addon.core.context import Context
from shield_addon.core.decide import decide
from tests.unit.test_addon import Shield, events, flow, until

PACKS = paths.bundled_rules()
PROFILE = PACKS / "profiles" / "strict"
BOTH = f"{PACKS}{os.pathsep}{PROFILE}"
STRICT = rules.load_path(BOTH)
ALONE = rules.load_path(PACKS)


def explain(rs: rules.RuleSet, request: Mapping[str, Any]) -> rules.Verdict:
    return ruletest.explain(rs, request)


def ruleset(body: str) -> rules.RuleSet:
    return rules.parse_text(textwrap.dedent(body))


# ---------------------------------------------------------------- loading


def test_the_packs_folder_does_not_pick_up_the_profile() -> None:
    assert all(Path(f).parent == PACKS for f in ALONE.files)
    assert not any(r.id.startswith("strict-") for r in ALONE.rules)


def test_a_path_list_is_one_rule_set_read_in_the_order_given() -> None:
    files = [Path(f) for f in STRICT.files]
    assert files[:-1] == rules.rule_files(PACKS) and files[-1] == PROFILE / "strict.yaml"
    assert [r.id for r in STRICT.rules][-4:] == ["strict-first-contact", "strict-unparsed", "strict-known-host-read",
                                                 "strict-unnamed"]
    with pytest.raises(rules.RuleError, match="no such file"):
        rules.load_path(f"{PACKS}{os.pathsep}{PROFILE / 'missing'}")


def test_the_profile_defaults_to_allow_and_its_tests_pass_with_the_packs() -> None:
    assert STRICT.default == "allow"
    mine = [t for t in STRICT.tests if Path(t[0]).parent == PROFILE]
    assert len(mine) >= 10
    failures = [r for r in ruletest.run_tests(dataclasses.replace(STRICT, tests=tuple(mine))) if r[2] is not None]
    assert failures == []


@pytest.mark.parametrize("first", [False, True], ids=["known-host", "first-contact"])
def test_the_profile_is_stricter_only_on_every_pack_test(first: bool) -> None:
    weaker = []
    for file, line, test in ALONE.tests:
        request = {**test["request"], "first_contact": first}
        alone, strict = explain(ALONE, request), explain(STRICT, request)
        if rules.strictness(strict.enforced) < rules.strictness(alone.enforced):
            weaker.append(f"{file}:{line}: {alone.enforced} -> {strict.enforced}")
        if alone.enforced != "allow":  # a pack's hold or deny stays that rule's
            assert strict.enforced == alone.enforced and strict.enforced_rule.id == alone.enforced_rule.id, f"{file}:{line}"
    assert weaker == []


def test_what_strict_holds_the_packs_alone_allow() -> None:
    cases = [
        ({"method": "GET", "url": "https://new.example.com/", "first_contact": True}, "strict-first-contact"),
        ({"method": "POST", "url": "https://api.example.com/v1/x", "body": {"a": 1}}, "strict-unnamed"),
        ({"method": "GET", "url": "https://api.example.com/v1/x", "body": "q=1"}, "strict-unnamed"),
        ({"method": "POST", "url": "https://api.github.com/graphql", "body": {"query": "{ viewer { login"}},
         "strict-unparsed"),
    ]
    for request, rule in cases:
        assert explain(ALONE, request).enforced == "allow", request
        v = explain(STRICT, request)
        assert (v.enforced, v.enforced_rule.id) == ("hold", rule), request


def test_a_plain_read_of_a_known_host_does_not_lift_a_builtin_refusal() -> None:
    # An explicit allow lifts builtin:unreadable; the profile's read rule must not be one for
    # a body the proxy could not decode (it is not empty, so it is not a plain read).
    view = RequestView("GET", "https", "api.example.com", 443, "/", headers=(("content-encoding", "zstd"),),
                       body=b"\x28\xb5\x2f\xfd garbage")
    v = decide(readings(view), STRICT, Context(agent="a", unreadable="zstd: not a frame"))
    assert (v.enforced, v.enforced_rule.id) == ("deny", "builtin:unreadable")
    plain = dataclasses.replace(view, headers=(), body=b"")
    v = decide(readings(plain), STRICT, Context(agent="a"))
    assert (v.enforced, v.enforced_rule.id) == ("allow", "strict-known-host-read")


# ---------------------------------------------------------------- unmatched / first_contact / flag


UNNAMED = """
    version: 1
    rules:
      - {id: catch-all, match: {unmatched: true}, action: hold}
      - {id: ok-reads, match: {method: GET}, action: allow}
      - {id: watch-posts, match: {method: POST}, action: deny, mode: shadow}
      - {id: hold-puts, match: {method: PUT}, action: hold}
"""


def test_unmatched_applies_only_when_no_enforce_rule_matched() -> None:
    rs = ruleset(UNNAMED)
    get = explain(rs, {"method": "GET", "url": "https://a.example/"})
    assert (get.enforced, get.rule.id, get.matched) == ("allow", "ok-reads", ("ok-reads",))
    other = explain(rs, {"method": "PATCH", "url": "https://a.example/"})
    assert (other.enforced, other.rule.id, other.matched) == ("hold", "catch-all", ("catch-all",))
    # A shadow rule names nothing: what is enforced must not depend on it.
    post = explain(rs, {"method": "POST", "url": "https://a.example/"})
    assert (post.enforced, post.enforced_rule.id) == ("hold", "catch-all")
    assert (post.verdict, post.rule.id, post.matched) == ("deny", "watch-posts", ("catch-all", "watch-posts"))
    # Among equals the first in file order is the rule, as everywhere.
    put = explain(rs, {"method": "PUT", "url": "https://a.example/"})
    assert (put.enforced, put.rule.id, put.matched) == ("hold", "hold-puts", ("hold-puts",))


def test_unmatched_rules_do_not_name_each_other() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: a, match: {unmatched: true, method: DELETE}, action: deny}
          - {id: b, match: {unmatched: true}, action: hold}
    """)
    v = explain(rs, {"method": "DELETE", "url": "https://a.example/"})
    assert (v.enforced, v.rule.id, v.matched) == ("deny", "a", ("a", "b"))


def test_a_file_default_is_still_a_floor_for_every_verdict() -> None:
    rs = ruleset("""
        version: 1
        default: hold
        rules:
          - {id: ok, match: {method: GET}, action: allow}
    """)
    assert explain(rs, {"method": "GET", "url": "https://a.example/"}).enforced == "hold"


def test_first_contact_and_flag_match() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: new, match: {first_contact: true}, action: hold}
          - {id: known-deletes, match: {first_contact: false, method: DELETE}, action: deny}
          - {id: bad-sql, match: {flag: ["unpars*"]}, action: deny}
    """)
    get = {"method": "GET", "url": "https://a.example/"}
    assert explain(rs, {**get, "first_contact": True}).rule.id == "new"
    assert explain(rs, get).rule is None
    assert explain(rs, {"method": "DELETE", "url": "https://a.example/"}).rule.id == "known-deletes"
    sql = {"method": "POST", "url": "https://db.example/q", "headers": {"content-type": "application/sql"}, "body": "FROB x"}
    assert explain(rs, sql).rule.id == "bad-sql"


@pytest.mark.parametrize("match, reason", [
    ("{unmatched: false}", "must be true"),
    ("{unmatched: yes please}", "must be true"),
    ("{first_contact: 'true'}", "must be true or false"),
    ("{flag: '[unparsed'}", ""),
])
def test_bad_values_are_refused_with_their_line(match: str, reason: str) -> None:
    with pytest.raises(rules.RuleError, match=f"t.yaml:4.*{reason}"):
        rules.parse_text(f"version: 1\nrules:\n  - id: r\n    match: {match}\n    action: hold\n", "t.yaml")


# ---------------------------------------------------------------- shield run --profile


def test_profile_joins_the_rule_set_in_force_and_replaces_its_option() -> None:
    assert "strict" in profiles()
    args = build_parser().parse_args(["run", "--profile", "strict"])
    assert args.profile == "strict"
    assert proxy.with_profile(["--set", "x=1"], None) == ["--set", "x=1"]
    assert proxy.with_profile(["--set", "x=1"], "strict") == ["--set", "x=1", "--set", f"shield_rules={BOTH}"]
    given = ["--set", "shield_rules=/my/rules", "-v", "--set=shield_rules=/other"]
    assert proxy.with_profile(given, "strict") == ["-v", "--set", f"shield_rules=/other{os.pathsep}{PROFILE}"]
    assert proxy.rules_problem(proxy.with_profile([], "strict")) is None


def test_an_unknown_profile_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["run", "--profile", "lenient"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


# ---------------------------------------------------------------- the gate remembers


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[tuple[Shield, taddons.context]]:
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=BOTH, shield_reviewer="bob",
                       shield_dir=str(tmp_path / "audit"))
        yield s, tctx
        s.done()


async def send(s: Shield, user: str) -> http.HTTPFlow:
    """A GET to the tflow's host (address:22), answered as upstream would if it is let through."""
    f = flow("GET", "/status", user)
    f.request.content = b""  # a plain read: tflow's request carries a body
    task = asyncio.create_task(s.request(f))
    await until(lambda: f.intercepted or task.done())
    return f, task


async def finish(s: Shield, f: http.HTTPFlow, task: asyncio.Task) -> None:
    await asyncio.wait_for(task, 5)
    if f.response is None:  # forwarded: the upstream answers
        f.response = http.Response.make(200, b"ok")
    s.gate.response(f)


async def test_first_contact_is_held_once_then_remembered_per_agent_across_restarts(strict, tmp_path: Path) -> None:
    s, tctx = strict
    f, task = await send(s, "agent-1")
    assert f.intercepted and "strict-first-contact" in f.comment
    tctx.master.commands.call("shield.deny", [f], "not", "yet")
    await finish(s, f, task)
    assert f.response.status_code == 403

    f, task = await send(s, "agent-1")  # the denial taught nothing
    assert f.intercepted
    tctx.master.commands.call("shield.approve", [f])
    await finish(s, f, task)
    assert f.response.status_code == 200

    f, task = await send(s, "agent-1")
    assert not f.intercepted
    await finish(s, f, task)
    assert f.response.status_code == 200

    f, task = await send(s, "agent-2")  # another agent: its own first contact
    assert f.intercepted
    tctx.master.commands.call("shield.deny", [f], "no")
    await finish(s, f, task)

    rules_of = [(e["agent"], e["rule_id"]) for e in events(tmp_path, "request")]
    assert rules_of == [("agent-1", "strict-first-contact"), ("agent-1", "strict-first-contact"),
                        ("agent-1", "strict-known-host-read"), ("agent-2", "strict-first-contact")]
    lines = (tmp_path / "audit" / contacts.FILE).read_text().splitlines()
    assert [contacts.parse_line(x) for x in lines] == [("agent-1", "address", 22)]

    s.done()
    s2 = Shield()  # a restart on the same audit directory
    with taddons.context(*s2.addons) as tctx2:
        tctx2.configure(s2.trail, confdir=str(tmp_path / "conf"), shield_rules=BOTH, shield_dir=str(tmp_path / "audit"))
        f, task = await send(s2, "agent-1")
        assert not f.intercepted
        await finish(s2, f, task)
        f, task = await send(s2, "agent-2")
        assert f.intercepted
        tctx2.master.commands.call("shield.deny", [f], "no")
        await finish(s2, f, task)
        s2.done()


async def test_without_the_profile_no_memory_is_kept(tmp_path: Path) -> None:
    s = Shield()
    with taddons.context(*s.addons) as tctx:
        tctx.configure(s.trail, confdir=str(tmp_path / "conf"), shield_rules=str(PACKS), shield_dir=str(tmp_path / "audit"))
        f, task = await send(s, "agent-1")
        assert not f.intercepted
        await finish(s, f, task)
        s.done()
    assert not (tmp_path / "audit" / contacts.FILE).exists()


def test_explain_shows_the_unmatched_rule_as_the_evaluation_saw_it(capsys: pytest.CaptureFixture[str]) -> None:
    from shield_addon import cli

    assert cli.main(["rules", "explain", "POST", "https://api.example.com/x", "--body", "{}", "--rules", BOTH]) == 0
    out = capsys.readouterr().out
    assert "MATCH strict-unnamed" in out and "unmatched ✓" in out and "verdict  hold by strict-unnamed" in out
    assert cli.main(["rules", "explain", "GET", "https://api.example.com/x", "--rules", BOTH]) == 0
    out = capsys.readouterr().out
    assert "unmatched ✗" in out and "verdict  allow by strict-known-host-read" in out
