"""parse(): the order parsers are tried in, pinned hosts, the REST fallback, cost, and
hostile input. Each service's own behaviour is in test_actions_<service>.py."""

from __future__ import annotations

import json

import graphql
import pytest
import sqlglot

from shield_addon import actions
from shield_addon.actions import (
    ACTION_TYPES,
    SERVICES,
    Action,
    RequestView,
    common,
    parse,
    pinned_service,
    request_view,
)

JSON = [("Content-Type", "application/json")]


def post_json(url: str, doc: object) -> RequestView:
    return request_view("POST", url, JSON, json.dumps(doc))


# --- the REST fallback ---------------------------------------------------------------


def test_plain_get_is_a_read_of_the_host_service() -> None:
    action = parse(request_view("GET", "https://api.example.com/v2/things?page=2"))
    assert action == Action(service="api.example.com", action_type="read", operation="get")


@pytest.mark.parametrize(
    ("method", "action_type"),
    [
        ("GET", "read"),
        ("HEAD", "read"),
        ("OPTIONS", "read"),
        ("POST", "create"),
        ("PUT", "update"),
        ("PATCH", "update"),
        ("DELETE", "delete"),
        ("TRACE", "other"),
        ("PROPFIND", "other"),
    ],
)
def test_rest_action_type_follows_the_method(method: str, action_type: str) -> None:
    action = parse(request_view(method, "https://api.example.com/things/1"))
    assert (action.service, action.action_type, action.operation) == (
        "api.example.com",
        action_type,
        method.lower(),
    )


def test_json_body_without_sql_or_graphql_fields_stays_rest() -> None:
    action = parse(post_json("https://api.example.com/things", {"name": "x", "tags": ["a"]}))
    assert (action.service, action.action_type) == ("api.example.com", "create")


def test_search_box_query_field_is_not_sql() -> None:
    action = parse(post_json("https://shop.example.com/search", {"query": "red shoes size 10"}))
    assert (action.service, action.action_type) == ("shop.example.com", "create")


def test_generic_api_v1_path_is_not_taken_for_kubernetes() -> None:
    action = parse(request_view("DELETE", "https://api.example.com/api/v1/users/5"))
    assert action.service == "api.example.com"


# --- the order parsers are tried in -------------------------------------------------


def test_parsers_are_tried_in_the_documented_order() -> None:
    assert list(actions.PARSERS) == ["kubernetes", "mcp", "graphql", "sql", "aws", "postgrest"]
    assert SERVICES[-1] == "rest"


def test_graphql_document_in_query_field_is_graphql_not_sql() -> None:
    action = parse(post_json("https://api.example.com/q", {"query": "{ viewer { login } }"}))
    assert action.service == "graphql"


def test_sql_in_query_field_is_sql_not_graphql() -> None:
    action = parse(post_json("https://api.example.com/q", {"query": "DROP TABLE users"}))
    assert action.service == "sql"


def test_sql_sent_to_an_aws_data_api_is_read_as_sql() -> None:
    req = request_view(
        "POST",
        "https://rds-data.us-east-1.amazonaws.com/Execute",
        JSON,
        json.dumps({"resourceArn": "arn:x", "sql": "TRUNCATE TABLE orders"}),
    )
    action = parse(req)
    assert (action.service, action.action_type, action.tables) == ("sql", "delete", ("orders",))


def test_sql_in_a_postgrest_rpc_body_is_read_as_sql() -> None:
    req = post_json("https://x.supabase.co/rest/v1/rpc/exec_sql", {"query": "DROP TABLE t"})
    assert parse(req).operation == "DROP"


def test_the_mcp_envelope_and_the_sql_inside_it_are_both_read() -> None:
    doc = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "query", "arguments": {"sql": "DROP TABLE users"}},
    }
    found = actions.parse_all(post_json("https://mcp.example.com/mcp", doc))
    assert [(a.service, a.statements) for a in found] == [("mcp", ("drop",)), ("sql", ("drop",))]


# --- pinned hosts -----------------------------------------------------------------------


PINS = {"kubernetes": ["*.k8s.internal"], "sql": ["db.example.com"], "aws": ["minio.local"]}


def test_pinned_host_uses_that_parser_even_without_its_usual_signs() -> None:
    # /api/v1/widgets is no core Kubernetes resource: unpinned, it would be REST.
    req = request_view("DELETE", "https://a.k8s.internal/api/v1/namespaces/prod/widgets/w1")
    action = parse(req, PINS)
    assert (action.service, action.operation, action.namespace) == ("kubernetes", "delete", "prod")


def test_pin_globs_match_case_insensitively() -> None:
    assert pinned_service("A.K8S.Internal", {"kubernetes": ["*.K8s.INTERNAL"]}) == "kubernetes"


def test_pinned_host_keeps_its_service_when_the_parser_finds_nothing() -> None:
    action = parse(request_view("GET", "https://a.k8s.internal/healthz"), PINS)
    assert (action.service, action.action_type, action.operation) == ("kubernetes", "read", "get")


def test_pinned_sql_host_reports_any_body_it_cannot_parse() -> None:
    req = request_view("POST", "https://db.example.com/run", body=b"hello there")
    action = parse(req, PINS)
    assert (action.service, action.operation, action.flags) == ("sql", "UNPARSED", {"unparsed"})


def test_pinned_aws_host_reads_path_style_s3() -> None:
    action = parse(request_view("DELETE", "http://minio.local:9000/backups/db.dump"), PINS)
    assert (action.service, action.operation, action.namespace) == ("aws:s3", "DeleteObject", "backups")


def test_pin_to_rest_turns_guessing_off() -> None:
    req = post_json("https://notes.example.com/save", {"query": "DROP TABLE users"})
    action = parse(req, {"rest": ["notes.example.com"]})
    assert (action.service, action.action_type) == ("notes.example.com", "create")


def test_pins_leave_other_hosts_to_the_usual_order() -> None:
    req = post_json("https://other.example.com/q", {"query": "DROP TABLE users"})
    assert parse(req, PINS).service == "sql"


def test_a_lone_glob_string_is_one_glob_not_its_characters() -> None:
    # Iterating "*.k8s.internal" would yield "*", which matches every host.
    assert pinned_service("api.example.com", {"kubernetes": "*.k8s.internal"}) is None
    assert pinned_service("a.k8s.internal", {"kubernetes": "*.k8s.internal"}) == "kubernetes"


def test_pin_precedence_is_the_parser_order_not_the_mapping_order() -> None:
    pins = {"postgrest": ["*.example.com"], "kubernetes": ["*.example.com"]}
    assert pinned_service("a.example.com", pins) == "kubernetes"


def test_unknown_pinned_service_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="kubernetse"):
        parse(request_view("GET", "https://a.example.com/"), {"kubernetse": ["*"]})


def test_empty_pins_change_nothing() -> None:
    req = request_view("GET", "https://api.example.com/")
    assert parse(req, {}) == parse(req) == parse(req, {"kubernetes": []})


# --- failure containment --------------------------------------------------------------


def test_a_parser_bug_is_reported_as_unparsed_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(req: RequestView, pinned: bool) -> Action | None:
        raise KeyError("bug")

    monkeypatch.setitem(actions.PARSERS, "graphql", broken)
    action = parse(request_view("GET", "https://api.example.com/"))
    assert (action.service, action.action_type, action.operation) == ("graphql", "other", "UNPARSED")
    assert action.flags == {"unparsed", "parser_error"}


# --- cost ---------------------------------------------------------------------------------


def _forbid(*_: object, **__: object) -> object:
    raise AssertionError("expensive parsing on a request that cannot need it")


def test_plain_get_decodes_and_parses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json, "loads", _forbid)
    monkeypatch.setattr(sqlglot, "parse", _forbid)
    monkeypatch.setattr(graphql, "parse", _forbid)
    req = request_view("GET", "https://api.example.com/v2/things?page=2", [("Accept", "*/*")])
    assert parse(req).action_type == "read"


def test_non_json_body_is_never_json_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json, "loads", _forbid)
    req = request_view("PUT", "https://files.example.com/a.png", [("Content-Type", "image/png")], b"\x89PNG")
    assert parse(req).action_type == "update"


def test_json_body_without_query_fields_is_never_sql_or_graphql_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlglot, "parse", _forbid)
    monkeypatch.setattr(graphql, "parse", _forbid)
    assert parse(post_json("https://api.example.com/x", {"name": "n"})).action_type == "create"


def test_json_body_is_decoded_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_loads = json.loads

    def counting_loads(data: bytes, **kw: object) -> object:
        calls.append(data)
        return real_loads(data, **kw)

    common._decode_json.cache_clear()
    monkeypatch.setattr(json, "loads", counting_loads)
    parse(post_json("https://api.example.com/x", {"name": "a unique body"}))
    assert len(calls) == 1


# --- hostile input ----------------------------------------------------------------------

HOSTILE_BODIES = {
    "empty": b"",
    "binary garbage": bytes(range(256)) * 8,
    "nul bytes": b"\x00" * 4096,
    "invalid utf-8 json": b'{"query": "\xff\xfe\xfd DROP TABLE users"}',
    "invalid utf-8 text": b"DROP TABLE \xff\xfe users",
    "deep json arrays": b"[" * 200_000,
    "deep json objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep sql parens": json.dumps({"query": "SELECT " + "(" * 20_000 + "1" + ")" * 20_000}).encode(),
    "deep graphql": json.dumps({"query": "{a" * 50_000 + "}" * 50_000}).encode(),
    "deep graphql fragments": json.dumps(
        {"query": "mutation { " + "... on Mutation { " * 3000 + "deleteAll" + " }" * 3000 + " }"}
    ).encode(),
    "unterminated sql comment": b'{"sql": "/* DROP TABLE users"}',
    "unterminated sql string": b"{\"sql\": \"SELECT 'abc\"}",
    "only comments": b'{"sql": "-- nothing\\n/* here */"}',
    "only semicolons": b'{"sql": ";;;;"}',
    "huge integer": b'{"query": ' + b"9" * 10_000 + b"}",
    "wrong json types": b'{"query": 5, "sql": null, "statement": {"a": 1}, "jsonrpc": 2, "method": []}',
    "query list of junk": b'{"sql": [1, null, {"x": "DROP TABLE t"}, ["DROP TABLE u"]]}',
    "json-rpc junk": b'[{"jsonrpc": "2.0", "method": "tools/call", "params": "nope"}, 1, null]',
    "json-rpc batch of nothing": b"[]",
    "spaces": b" " * 100_000,
    "explain garbage": b'{"sql": "EXPLAIN ANALYZE (((((("}',
    "form junk": b"Action=&Action=%ff%fe&&&==&InstanceId.x=1",
    "bom json": b'\xef\xbb\xbf{"query": "DELETE FROM t"}',
}
HOSTILE_CONTENT_TYPES = [
    "application/json",
    "application/sql",
    "application/graphql",
    "text/plain",
    "application/x-www-form-urlencoded",
    "",
]
HOSTILE_URLS = [
    "https://api.example.com/x",
    "https://api.example.com/graphql",
    "https://x.supabase.co/rest/v1/users",
    "https://k8s.example.com:6443/api/v1/namespaces/%ff%00/pods/%2F..%2F",
    "https://bucket.s3.amazonaws.com/%ff%fe",
    "https://mcp.example.com/mcp?query={&operationName=",
]
ALL_PINNED = {name: ["*.pinned.test"] for name in SERVICES}


def _assert_sane(action: Action) -> None:
    assert isinstance(action, Action)
    assert action.action_type in ACTION_TYPES
    assert "parser_error" not in action.flags  # the parser coped; the safety net was idle


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
@pytest.mark.parametrize("content_type", HOSTILE_CONTENT_TYPES)
def test_hostile_bodies_never_raise(body: bytes, content_type: str) -> None:
    for url in HOSTILE_URLS:
        headers = [("Content-Type", content_type), ("X-Amz-Target", "DynamoDB_20120810.DeleteTable")]
        _assert_sane(parse(request_view("POST", url, headers, body)))
        _assert_sane(parse(request_view("GET", url, [("Content-Type", content_type)], body)))


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_bodies_never_raise_on_pinned_hosts(service: str, body: bytes) -> None:
    req = request_view("PATCH", f"https://{service}.pinned.test/rest/v1/x?Action=", JSON, body)
    action = parse(req, {service: ["*.pinned.test"]})
    _assert_sane(action)


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "AWS4-HMAC-SHA256 Credential=")],
        [("Authorization", "AWS4-HMAC-SHA256 Credential=////")],
        [("Authorization", "AWS4-HMAC-SHA256")],
        [("X-Amz-Target", "")],
        [("X-Amz-Target", "....")],
        [("Prefer", "resolution=merge-duplicates"), ("Content-Profile", "")],
        [("Content-Type", "application/json; charset=\xff")],
    ],
)
def test_hostile_headers_never_raise(headers: list[tuple[str, str]]) -> None:
    for url in HOSTILE_URLS + ["https://example.com/?X-Amz-Credential=a/b&watch=true&Action"]:
        _assert_sane(parse(request_view("DELETE", url, headers, b"{}")))


@pytest.mark.parametrize(
    "path",
    ["", "/", "//", "/api", "/api/v1", "/apis", "/apis//", "/api/v1/namespaces", "/api/v1/watch",
     "/api/v1/namespaces//pods//exec", "/rest/v1/", "/rest/v1/rpc/", "/%", "/%zz%", "/" * 10_000],
)
def test_odd_paths_never_raise(path: str) -> None:
    for host in ("k8s.example.com", "bucket.s3.amazonaws.com", "x.supabase.co"):
        for method in ("GET", "DELETE", "POST"):
            req = RequestView(method=method, scheme="https", host=host, port=6443, path=path)
            _assert_sane(parse(req))
            _assert_sane(parse(req, ALL_PINNED | {"kubernetes": [host]}))


def test_request_view_builds_what_parsers_read() -> None:
    req = request_view("delete", "HTTP://API.Example.com/a%20b?x=1&y=", [("X-Key", "v")], "body")
    assert req == RequestView(
        method="DELETE",
        scheme="http",
        host="api.example.com",
        port=80,
        path="/a%20b",
        query=(("x", "1"), ("y", "")),
        headers=(("x-key", "v"),),
        body=b"body",
    )
