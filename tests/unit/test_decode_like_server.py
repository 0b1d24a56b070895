"""Bodies, queries and forms read the way the server reads them: each attack next to its benign twin,
against the pure functions and through the rule engine (bundled packs and small rule sets)."""

from __future__ import annotations

import codecs
import json
import textwrap
import time
from typing import Any

import pytest

from shield_addon import paths, rules, ruletest
from shield_addon.actions import common, request_view
from shield_addon.actions.yamlbody import expanded_size
from shield_addon.rules import jsonpath


def view(body: bytes | str, content_type: str | None = "application/json", method: str = "POST",
         url: str = "https://api.example.com/x") -> Any:
    headers = [("content-type", content_type)] if content_type is not None else []
    return request_view(method, url, headers, body)


def ruleset(text: str) -> rules.RuleSet:
    return rules.parse_text(textwrap.dedent(text), "t.yaml")


@pytest.fixture(scope="module")
def bundled() -> rules.RuleSet:
    return rules.load_path(paths.bundled_rules())


def explain(rs: rules.RuleSet, method: str, url: str, body: str | bytes, content_type: str | None) -> rules.Verdict:
    headers = {"content-type": content_type} if content_type else {}
    return ruletest.explain(rs, {"method": method, "url": url, "body": body, "headers": headers})


DEPLOY = "https://k8s.internal/apis/apps/v1/namespaces/shop/deployments/web"
SCALE_TO_ZERO = ruleset("""
    version: 1
    rules:
      - {id: zero, match: {json: {"$.spec.replicas": "^0$"}}, action: hold}
""")


# --- 1. YAML bodies -----------------------------------------------------------------------

YAML_TYPES = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "application/apply-patch+yaml", "application/merge-patch+yaml", "application/vnd.foo+yaml; charset=utf-8"]


@pytest.mark.parametrize("ctype", YAML_TYPES)
def test_a_yaml_body_is_the_same_data_as_its_json(ctype: str) -> None:
    doc = common.json_body(view("spec:\n  replicas: 0\n  name: web\n", ctype))
    assert doc == {"spec": {"replicas": 0, "name": "web"}}


def test_yaml_is_not_read_from_a_body_that_does_not_say_yaml() -> None:
    # A YAML text sent as text/plain is text to the server too.
    assert common.json_body(view("spec:\n  replicas: 0\n", "text/plain")) is None


def test_server_side_apply_scale_to_zero_is_held_by_the_bundled_pack(bundled: rules.RuleSet) -> None:
    body = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 0\n"
    v = explain(bundled, "PATCH", DEPLOY + "?fieldManager=agent", body, "application/apply-patch+yaml")
    assert (v.verdict, v.rule.id if v.rule else None) == ("hold", "k8s-scale-to-zero")
    twin = explain(bundled, "PATCH", DEPLOY + "?fieldManager=agent", body.replace("0", "3"), "application/apply-patch+yaml")
    assert twin.verdict == "allow"


@pytest.mark.parametrize("spelling", ["0", "0x0", "00", "-0", "0.0", "0e5", "+0", "0_0", "-.0", "0."])
def test_yaml_zero_in_any_spelling_a_yaml_1_1_server_reads_as_zero(spelling: str) -> None:
    v = explain(SCALE_TO_ZERO, "PUT", DEPLOY, f"spec:\n  replicas: {spelling}\n", "application/yaml")
    assert v.verdict == "hold", spelling


@pytest.mark.parametrize("spelling", ["'0'", "3", "0.5", "zero", "null", "010"])
def test_yaml_values_that_are_not_the_number_zero_are_not_taken_for_it(spelling: str) -> None:
    # '0' is a string (a server wanting an int refuses it); 010 is octal 8 in YAML 1.1.
    v = explain(SCALE_TO_ZERO, "PUT", DEPLOY, f"spec:\n  replicas: {spelling}\n", "application/yaml")
    assert v.verdict == "allow" if spelling != "'0'" else v.verdict == "hold", spelling


def test_yaml_1_1_booleans_keys_and_timestamps_become_json_like_data() -> None:
    doc = common.json_body(view("force: yes\non: push\n1: one\nwhen: 2001-12-14\nraw: !!binary aGk=\n", "application/yaml"))
    assert doc == {"force": True, "true": "push", "1": "one", "when": "2001-12-14", "raw": "aGk="}
    rs = ruleset("""
        version: 1
        rules:
          - {id: force, match: {json: {"$.force": "^true$"}}, action: hold}
    """)
    assert explain(rs, "PATCH", "https://api.example.com/x", "force: on\n", "application/yaml").verdict == "hold"
    assert explain(rs, "PATCH", "https://api.example.com/x", "force: off\n", "application/yaml").verdict == "allow"


def test_yaml_with_python_tags_is_refused_not_executed() -> None:
    req = view("a: !!python/object/apply:os.system ['true']\n", "application/yaml")
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)


def test_json_text_in_a_yaml_body_is_read_at_json_speed_and_the_same() -> None:
    req = view('{"spec": {"replicas": 0}}', "application/apply-patch+yaml")
    assert common.json_body(req) == {"spec": {"replicas": 0}}
    assert common.body_flags(req) == frozenset()


# --- 1b. hostile YAML -----------------------------------------------------------------------

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def test_billion_laughs_is_refused_quickly_and_flagged() -> None:
    req = view(LAUGHS, "application/yaml")
    start = time.perf_counter()
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)
    assert time.perf_counter() - start < 2


def test_a_few_aliases_are_fine() -> None:
    body = "base: &b {image: nginx, port: 80}\none: *b\ntwo: *b\n"
    assert common.json_body(view(body, "application/yaml")) == {
        "base": {"image": "nginx", "port": 80}, "one": {"image": "nginx", "port": 80}, "two": {"image": "nginx", "port": 80}}


def test_a_recursive_alias_is_refused() -> None:
    req = view("a: &a [1, *a]\n", "application/yaml")
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)


def test_expanded_size_counts_shared_nodes_once_per_place() -> None:
    leaf = [1, 2]
    assert expanded_size({"x": leaf, "y": leaf}, 100) == 1 + 2 * 3
    assert expanded_size([leaf] * 50, 100) is None


def test_deep_yaml_nesting_is_refused_not_raised() -> None:
    req = view("[" * 50_000 + "]" * 50_000, "application/yaml")
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)


def test_yaml_past_the_limit_is_not_read_but_flagged() -> None:
    body = "items:\n" + "- x\n" * (common.YAML_LIMIT // 4 + 1)
    req = view(body, "application/yaml")
    start = time.perf_counter()
    assert common.json_body(req) is None
    assert {"body_too_large", "body_unparsed"} <= common.body_flags(req)
    assert time.perf_counter() - start < 0.5
    small = view("items:\n" + "- x\n" * 100, "application/yaml")
    assert len(common.json_body(small)["items"]) == 100
    assert common.body_flags(small) == frozenset()


# --- 1c. several YAML documents -------------------------------------------------------------

STREAM = "kind: ConfigMap\nmetadata: {name: harmless}\n---\n---\nkind: Deployment\nspec:\n  replicas: 0\n"


def test_every_document_of_a_stream_is_read_and_the_first_is_the_body() -> None:
    req = view(STREAM, "application/yaml")
    assert common.json_body(req) == {"kind": "ConfigMap", "metadata": {"name": "harmless"}}
    assert [d["kind"] for d in common.json_documents(req)] == ["ConfigMap", "Deployment"]
    assert "multi_document" in common.body_flags(req)
    assert "multi_document" not in common.body_flags(view("---\nkind: A\n", "application/yaml"))


def test_a_json_rule_sees_a_document_behind_a_benign_one() -> None:
    assert explain(SCALE_TO_ZERO, "PUT", DEPLOY, STREAM, "application/yaml").verdict == "hold"
    assert explain(SCALE_TO_ZERO, "PUT", DEPLOY, STREAM.replace("replicas: 0", "replicas: 2"), "application/yaml").verdict == "allow"


def test_the_checks_of_a_json_rule_hold_in_one_document() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: r, match: {json: {"$.kind": "^Deployment$", "$.spec.replicas": "^0$"}}, action: hold}
    """)
    split = "kind: Deployment\nspec: {replicas: 2}\n---\nkind: Other\nspec: {replicas: 0}\n"
    assert explain(rs, "PUT", DEPLOY, split, "application/yaml").verdict == "allow"
    assert explain(rs, "PUT", DEPLOY, split.replace("Other", "Deployment"), "application/yaml").verdict == "hold"


# --- 2. numbers by value ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "canonical"), [
    ("0", "0"), ("0.0", "0"), ("-0", "0"), ("-0.0", "0"), ("0e5", "0"), ("0E0", "0"), ("1.0", "1"), ("1e2", "100"),
    ("-3.50", "-3.5"), ("12345678901234567890123", "12345678901234567890123"), ("true", "true"), ("false", "false"),
    ("null", "null"), ('"0"', "0"), ('"0.0"', "0.0"), ("1e400", "Infinity"),
])
def test_json_numbers_are_matched_by_value_and_strings_as_written(text: str, canonical: str) -> None:
    assert jsonpath.scalar(json.loads(text)) == canonical


@pytest.mark.parametrize("spelling", ["0.0", "-0", "0e5", "0E0", "-0.0", "0.000"])
def test_bundled_scale_to_zero_catches_zero_in_any_json_spelling(bundled: rules.RuleSet, spelling: str) -> None:
    v = explain(bundled, "PATCH", DEPLOY, f'{{"spec": {{"replicas": {spelling}}}}}', "application/merge-patch+json")
    assert (v.verdict, v.rule.id if v.rule else None) == ("hold", "k8s-scale-to-zero")


@pytest.mark.parametrize("spelling", ["0.5", "1e0", "10"])
def test_numbers_that_are_not_zero_stay_allowed(bundled: rules.RuleSet, spelling: str) -> None:
    v = explain(bundled, "PATCH", DEPLOY, f'{{"spec": {{"replicas": {spelling}}}}}', "application/merge-patch+json")
    assert v.verdict == "allow"


def test_invalid_json_numbers_are_not_json_and_flagged_when_declared() -> None:
    req = view('{"replicas": 00}')
    assert common.json_body(req) is None
    assert common.body_flags(req) == frozenset({"body_unparsed"})
    assert common.body_flags(view("not json at all", "text/plain")) == frozenset()


# --- 3. duplicate keys ------------------------------------------------------------------------

def test_duplicate_keys_read_last_and_are_flagged() -> None:
    req = view('{"spec": {"replicas": 0, "replicas": 3}}')
    assert common.json_body(req) == {"spec": {"replicas": 3}}
    assert common.json_duplicates(req)
    assert "duplicate_keys" in common.body_flags(req)
    assert not common.json_duplicates(view('{"spec": {"replicas": 0, "paused": false}, "replicas": 1}'))


def test_keys_equal_but_for_case_are_flagged_and_seen_by_rules() -> None:
    # Go's encoding/json sets Replicas from "REPLICAS" (the last such key wins).
    req = view('{"spec": {"replicas": 3, "REPLICAS": 0}}')
    assert common.json_duplicates(req)
    assert explain(SCALE_TO_ZERO, "PUT", DEPLOY, '{"spec": {"replicas": 3, "REPLICAS": 0}}', "application/json").verdict == "hold"
    assert explain(SCALE_TO_ZERO, "PUT", DEPLOY, '{"Spec": {"Replicas": 0}}', "application/json").verdict == "hold"
    assert explain(SCALE_TO_ZERO, "PUT", DEPLOY, '{"Spec": {"Replicas": 1}}', "application/json").verdict == "allow"


def test_go_case_folding_of_special_letters_is_seen() -> None:
    # Go folds the Kelvin sign to k and the long s to s: "ſpec" sets Spec.
    assert jsonpath.walk({"\u017fpec": 5}, jsonpath.parse("$.spec")) == [5]
    assert common.json_duplicates(view('{"kind": 1, "\u212aind": 2}'))


def test_yaml_duplicate_keys_read_last_and_are_flagged() -> None:
    req = view("spec:\n  replicas: 0\n  replicas: 3\n", "application/yaml")
    assert common.json_body(req) == {"spec": {"replicas": 3}}
    assert common.json_duplicates(req)
    assert common.json_duplicates(view("spec: {Replicas: 0, replicas: 3}\n", "application/yaml"))
    assert not common.json_duplicates(view("spec: {replicas: 3}\n", "application/yaml"))


# --- 4. percent-decoded query and form ---------------------------------------------------------

def test_query_names_and_values_are_decoded_once() -> None:
    assert request_view("GET", "https://h/?%41ction=Terminate%49nstances&a+b=c+d").query == (
        ("Action", "TerminateInstances"), ("a b", "c d"))
    assert request_view("GET", "https://h/?%2541ction=x").query == (("%41ction", "x"),)


def test_query_rules_match_decoded_names_through_the_proxy_view() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: q, match: {query: {Action: "^Terminate"}}, action: hold}
    """)
    assert explain(rs, "GET", "https://ec2.amazonaws.com/?%41ction=%54erminateInstances", "", None).verdict == "hold"
    assert explain(rs, "GET", "https://ec2.amazonaws.com/?%2541ction=TerminateInstances", "", None).verdict == "allow"
    assert explain(rs, "GET", "https://ec2.amazonaws.com/?Action=DescribeInstances", "", None).verdict == "allow"


FORM = "application/x-www-form-urlencoded"


def test_body_rules_match_a_form_as_the_server_decodes_it() -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: b, match: {body: "Action=TerminateInstances"}, action: hold}
          - {id: s, match: {body: "note=drop all"}, action: hold}
    """)
    assert explain(rs, "POST", "https://ec2.amazonaws.com/", "%41ction=Terminate%49nstances", FORM).verdict == "hold"
    assert explain(rs, "POST", "https://ec2.amazonaws.com/", "Action=TerminateInstances", FORM).verdict == "hold"
    assert explain(rs, "POST", "https://ec2.amazonaws.com/", "%2541ction=TerminateInstances", FORM).verdict == "allow"
    assert explain(rs, "POST", "https://ec2.amazonaws.com/", "Action=DescribeInstances", FORM).verdict == "allow"
    assert explain(rs, "POST", "https://x.example.com/", "note=drop+all", FORM).verdict == "hold"
    # Text that is not a form is matched as sent: a JSON string's %41 is not decoded by its server.
    assert explain(rs, "POST", "https://x.example.com/", '{"a": "%41ction=TerminateInstances"}', "application/json").verdict == "allow"


def test_bundled_aws_pack_holds_a_percent_encoded_form_action(bundled: rules.RuleSet) -> None:
    v = explain(bundled, "POST", "https://ec2.us-east-1.amazonaws.com/", "%41ction=TerminateInstances&Version=2016-11-15", FORM)
    assert (v.verdict, v.action.operation) == ("hold", "TerminateInstances")


# --- 5. other encodings the server reads --------------------------------------------------------

DOC = {"query": "DROP TABLE users"}


@pytest.mark.parametrize(("body", "ctype"), [
    (codecs.BOM_UTF8 + json.dumps(DOC).encode(), "application/json"),
    (json.dumps(DOC).encode("utf-16"), "application/json"),
    (json.dumps(DOC).encode("utf-16-le"), "application/json; charset=utf-16le"),
    (json.dumps(DOC).encode("utf-16-be"), "application/json"),
    (json.dumps(DOC).encode("utf-32"), "application/json"),
    (json.dumps(DOC).encode(), "text/plain"),
    (json.dumps(DOC).encode(), None),
    (json.dumps(DOC).encode(), "application/vnd.api+json"),
    (json.dumps(DOC).encode(), "application/merge-patch+json"),
    (b"  \r\n" + json.dumps(DOC).encode(), "application/json-patch+json"),
])
def test_json_is_read_in_every_encoding_and_type_a_server_accepts(body: bytes, ctype: str | None) -> None:
    assert common.json_body(view(body, ctype)) == DOC


@pytest.mark.parametrize(("body", "ctype"), [
    (codecs.BOM_UTF8 + json.dumps(DOC).encode(), "application/json"),
    (json.dumps(DOC).encode("utf-16"), "application/json"),
    (json.dumps(DOC).encode(), "text/plain"),
    (json.dumps(DOC).encode(), None),
])
def test_json_rules_read_the_same_bodies_through_the_proxy_view(body: bytes, ctype: str | None) -> None:
    rs = ruleset("""
        version: 1
        rules:
          - {id: j, match: {json: {"$.query": "(?i)drop"}}, action: hold}
    """)
    assert explain(rs, "POST", "https://db.example.com/q", body, ctype).verdict == "hold"
    benign = body.replace(b"DROP", b"SHOW") if b"DROP" in body else body.replace("DROP".encode("utf-16-le"), "SHOW".encode("utf-16-le"))
    assert explain(rs, "POST", "https://db.example.com/q", benign, ctype).verdict == "allow"


def test_json_with_comments_is_read_as_lenient_servers_read_it_and_still_flagged() -> None:
    # Json.NET and JSON5 servers skip the comment; strict ones refuse the body: both are facts.
    req = view('{"a": 1 /* c */}')
    assert common.json_body(req) == {"a": 1}
    assert "body_unparsed" in common.body_flags(req)


MERGE_BOMB = "a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8}\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} {{<<: [{', '.join(['*' + chr(97 + i)] * 9)}], own{i}: 1}}\n" for i in range(8))


def test_a_merge_key_bomb_is_refused_quickly() -> None:
    req = view(MERGE_BOMB, "application/yaml")
    start = time.perf_counter()
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)
    assert time.perf_counter() - start < 2


def test_merge_keys_read_as_go_yaml_reads_them_own_keys_winning() -> None:
    req = view("base: &b {replicas: 3, image: nginx}\nspec:\n  <<: *b\n  replicas: 0\n", "application/yaml")
    assert common.json_body(req)["spec"] == {"replicas": 0, "image": "nginx"}
    assert "duplicate_keys" not in common.body_flags(req)


def test_many_deep_flow_collections_cannot_stall_the_parser() -> None:
    # ruamel's scanner is quadratic in flow depth: nesting just short of Python's recursion limit,
    # repeated up to the size limit, would cost a minute without the depth guard.
    one = "[" * 900 + "]" * 900
    req = view("- " + "\n- ".join([one] * 100), "application/yaml")
    start = time.perf_counter()
    assert common.json_body(req) is None
    assert "body_unparsed" in common.body_flags(req)
    assert time.perf_counter() - start < 0.5
    assert common.json_body(view("a: [[[[1]]]]\nb: {c: [{d: 1}]}\n", "application/yaml")) == {"a": [[[[1]]]], "b": {"c": [{"d": 1}]}}


def test_json_and_yaml_scalars_are_read_but_give_no_object() -> None:
    for body, ctype in (('"DROP TABLE t"', "application/json"), ("42", "application/json"), ("hello\n", "application/yaml")):
        req = view(body, ctype)
        assert (common.json_body(req), common.body_flags(req)) == (None, frozenset()), body
    assert common.json_documents(view("hello\n---\na: 1\n", "application/yaml")) == ({"a": 1},)


# --- multipart/form-data: its text fields are form fields to every framework -------------------

def multipart(*parts: str, boundary: str = "zz", nl: str = "\r\n") -> bytes:
    return ("".join(f"--{boundary}{nl}{p}" for p in parts) + f"--{boundary}--{nl}").encode()


def field(name: str, value: str, head: str = "", nl: str = "\r\n") -> str:
    return f'Content-Disposition: form-data; name="{name}"{nl}{head}{nl}{value}{nl}'


def test_multipart_text_fields_are_read_as_form_pairs_and_files_are_not() -> None:
    body = multipart(field("query", "DROP TABLE users"), field("a", "x\r\ny"),
                     'Content-Disposition: form-data; name="up"; filename="u.sql"\r\n\r\nDROP TABLE t\r\n')
    assert common.form_body(view(body, "multipart/form-data; boundary=zz")) == [("query", "DROP TABLE users"), ("a", "x\r\ny")]


@pytest.mark.parametrize(("head", "sent", "read"), [
    ("Content-Transfer-Encoding: quoted-printable\r\n", "DR=4FP", "DROP"),
    ("Content-Transfer-Encoding: base64\r\n", "RFJPUA==", "DROP"),
    ("", "DR=4FP", "DR=4FP"),  # no transfer encoding: the bytes as sent
])
def test_a_parts_transfer_encoding_is_undone(head: str, sent: str, read: str) -> None:
    body = multipart(field("sql", sent, head))
    assert common.form_body(view(body, "multipart/form-data; boundary=zz")) == [("sql", read)]


@pytest.mark.parametrize(("content_type", "nl"), [
    ('multipart/form-data; boundary="zz"', "\r\n"),
    ("multipart/form-data; charset=utf-8; BOUNDARY=zz", "\r\n"),
    ("multipart/form-data; boundary=zz", "\n"),  # bare LF line ends
])
def test_multipart_spellings_servers_accept_are_read(content_type: str, nl: str) -> None:
    body = multipart(field("_method", "DELETE", nl=nl), nl=nl)
    assert common.form_body(view(body, content_type)) == [("_method", "DELETE")]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=other"])
def test_multipart_without_its_boundary_has_no_fields(content_type: str) -> None:
    assert common.form_body(view(multipart(field("q", "DROP TABLE t")), content_type)) == []


def test_multipart_fields_are_bounded() -> None:
    body = multipart(*(field(f"f{i}", "v") for i in range(common.MULTIPART_FIELDS + 50)))
    assert len(common.form_body(view(body, "multipart/form-data; boundary=zz"))) == common.MULTIPART_FIELDS


def test_multipart_sql_field_is_held_by_the_bundled_packs(bundled) -> None:
    request = {"method": "POST", "url": "https://db.example.com/v1/query",
               "headers": {"content-type": "multipart/form-data; boundary=zz"},
               "body": multipart(field("query", "DROP TABLE users")).decode()}
    assert ruletest.explain(bundled, request).verdict == "hold"
    request["body"] = multipart(field("query", "SELECT 1")).decode()
    assert ruletest.explain(bundled, request).verdict == "allow"


# --- JSON strict parsers refuse and lenient servers read ------------------------------------

@pytest.mark.parametrize(("body", "docs"), [
    (b'{"force": true} trailing', ({"force": True},)),  # Go's json.Decoder reads the first value
    (b'{"a": 1}\n{"a": 2}\n', ({"a": 1}, {"a": 2})),  # NDJSON: every value is a document
    (b'{"a": 1}\x00\x00', ({"a": 1},)),
    (b'{"a": /* c */ 1, // d\n "b": [1, 2,],}', ({"a": 1, "b": [1, 2]},)),  # Json.NET, JSON5
    (b'{"u": "http://x/*y*/", "v": "// z",}', ({"u": "http://x/*y*/", "v": "// z"},)),  # strings kept
])
def test_json_lenient_servers_read_is_read_and_flagged(body: bytes, docs: tuple) -> None:
    read = common.read_body(view(body))
    assert read.documents == docs
    assert "body_unparsed" in read.flags  # strict servers refuse it: a rule may still hold on that


@pytest.mark.parametrize("body", [b'{"a": 1}\n', b'[1, "/* not a comment */"]'])
def test_strict_json_is_read_without_the_lenient_flag(body: bytes) -> None:
    assert common.read_body(view(body)).flags == frozenset()


@pytest.mark.parametrize("body", [b"{oops", b"/* only a comment */", b'{"a": 1 "b": 2}'])
def test_json_no_server_reads_stays_unread_and_flagged(body: bytes) -> None:
    read = common.read_body(view(body))
    assert (read.documents, read.flags) == ((), frozenset({"body_unparsed"}))


def test_lenient_json_values_are_bounded() -> None:
    body = b"{}" * (common.LENIENT_VALUES + 10) + b" x"
    assert len(common.read_body(view(body)).documents) == common.LENIENT_VALUES


def test_comments_in_a_body_past_the_lenient_limit_are_not_rewritten() -> None:
    body = b'{"a": 1, /* c */ "pad": "' + b"x" * common.LENIENT_LIMIT + b'"}'
    assert common.read_body(view(body)) == common.Body(flags=frozenset({"body_unparsed"}))


@pytest.mark.parametrize(("body", "content_type", "docs", "flags"), [
    (b'/* c */ {"a": 1}', "application/json", ({"a": 1},), {"body_unparsed"}),
    (b'// c\n{"a": 1}', "text/plain", ({"a": 1},), {"body_unparsed"}),
    (b"// just a comment", "application/json", (), {"body_unparsed"}),
    (b"//path/to/file", "text/plain", (), set()),
])
def test_a_comment_before_the_json_document_is_skipped(body: bytes, content_type: str, docs: tuple, flags: set) -> None:
    read = common.read_body(view(body, content_type))
    assert (read.documents, read.flags) == (docs, frozenset(flags))


@pytest.mark.parametrize(("url", "body"), [
    ("https://db.example.com/v1/run?job=%7B%22sql%22%3A%22DROP%20TABLE%20users%22%7D", ""),
    ("https://db.example.com/v1/run", "payload=%7B%22sql%22%3A%22DROP%20TABLE%20users%22%7D"),
])
def test_sql_in_a_json_document_carried_by_a_query_or_form_value_is_found(bundled, url: str, body: str) -> None:
    request = {"method": "POST", "url": url, "headers": {"content-type": "application/x-www-form-urlencoded"}, "body": body}
    assert ruletest.explain(bundled, request).verdict == "hold"
    benign = {**request, "url": url.replace("DROP%20TABLE", "SELECT%20*%20FROM"), "body": body.replace("DROP%20TABLE", "SELECT%20*%20FROM")}
    assert ruletest.explain(bundled, benign).verdict == "allow"


@pytest.mark.parametrize(("disposition", "name"), [
    ("form-data; name*=UTF-8''%5Fmethod", "_method"),
    ("form-data; name=\"x\"; name*=utf-8''%5Fmethod", "_method"),  # the extended form wins, as in Go
    ("form-data; name*=''sql", "sql"),
])
def test_a_multipart_field_name_in_rfc2231_form_is_decoded(disposition: str, name: str) -> None:
    body = f"--zz\r\nContent-Disposition: {disposition}\r\n\r\nDELETE\r\n--zz--\r\n"
    assert common.form_body(view(body, "multipart/form-data; boundary=zz")) == [(name, "DELETE")]


def test_a_yaml_stream_starting_with_a_json_document_is_read_as_yaml() -> None:
    # Lenient JSON would stop after the first value; the API server reads the whole stream.
    read = common.read_body(view('{"spec": {"replicas": 3}}\n---\nspec: {replicas: 0}\n', "application/yaml"))
    assert read.documents == ({"spec": {"replicas": 3}}, {"spec": {"replicas": 0}})


def test_repeated_keys_in_a_leniently_read_body_are_read_every_way() -> None:
    read = common.read_body(view(b'{"force": true, /* c */ "force": false}'))
    assert {d["force"] for d in read.documents} == {True, False}
    assert read.flags == frozenset({"body_unparsed", "duplicate_keys"})
