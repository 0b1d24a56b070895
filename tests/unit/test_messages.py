"""WebSocket messages read by the same parsers as requests."""

from __future__ import annotations

import gzip
import json

import pytest

from shield_addon import actions
from shield_addon.actions import RequestView
from shield_addon.actions.messages import message_view

HANDSHAKE = RequestView("GET", "https", "api.example.com", 443, "/graphql",
                        headers=(("upgrade", "websocket"), ("sec-websocket-protocol", "graphql-transport-ws")))
SOCKET = RequestView("GET", "https", "agent-tools.example.com", 443, "/ws")


def parsed(view: RequestView, message: object) -> actions.Action:
    return actions.parse(message_view(view, message if isinstance(message, str) else json.dumps(message)))


@pytest.mark.parametrize("envelope", ["subscribe", "start"])
def test_a_graphql_mutation_inside_a_subscription_envelope_is_a_graphql_delete(envelope: str) -> None:
    a = parsed(HANDSHAKE, {"id": "1", "type": envelope,
                           "payload": {"query": 'mutation { deleteRepository(input: {repositoryId: "R_1"}) { clientMutationId } }'}})
    assert a.service == "graphql" and a.action_type == "delete" and "deleteRepository" in a.operation


def test_an_mcp_tool_call_over_a_websocket_is_an_mcp_call() -> None:
    a = parsed(SOCKET, {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "send_email", "arguments": {"to": "all@example.com"}}})
    assert a.service == "mcp" and a.operation == "tools/call send_email"


def test_sql_in_a_json_message_is_sql() -> None:
    a = parsed(SOCKET, {"sql": "DROP TABLE users"})
    assert a.service == "sql" and "drop" in a.statements and a.tables == ("users",)


@pytest.mark.parametrize("message", [
    {"id": "2", "type": "subscribe", "payload": {"query": "subscription { repositoryUpdated { id } }"}},
    {"type": "ping"},
    {"type": "connection_init", "payload": {}},
    "hello",
])
def test_harmless_messages_stay_harmless(message: object) -> None:
    assert parsed(HANDSHAKE, message).action_type not in ("delete", "execute")


def test_the_message_is_a_post_to_the_handshake_url_with_the_message_as_body() -> None:
    v = message_view(SOCKET, '{"sql": "SELECT 1"}')
    assert (v.method, v.host, v.path, v.content_type) == ("POST", "agent-tools.example.com", "/ws", "application/json")
    assert v.body == b'{"sql": "SELECT 1"}'


DELETE_REPO = 'mutation Drop { deleteRepository(input: {repositoryId: "R_1"}) { clientMutationId } }'


@pytest.mark.parametrize("view, message, service, action_type", [
    (HANDSHAKE, {"query": DELETE_REPO}, "graphql", "delete"),  # no envelope at all
    (HANDSHAKE, {"id": "1", "type": "subscribe", "payload": {"query": "query Q { viewer { login } } " + DELETE_REPO,
                                                             "operationName": "Drop"}}, "graphql", "delete"),
    (HANDSHAKE, "  " + json.dumps({"type": "start", "id": "3", "payload": {"query": DELETE_REPO}}), "graphql", "delete"),
    (SOCKET, [{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "drop_db", "arguments": {}}}],
     "mcp", "delete"),  # a JSON-RPC batch; drop_db deletes by its name
    (SOCKET, {"query": "DROP TABLE users"}, "sql", "delete"),
    (SOCKET, {"statement": "drop table users; -- bye"}, "sql", "delete"),
    (SOCKET, "DROP TABLE users", "sql", "delete"),  # a text message that is SQL itself
])
def test_destructive_messages_in_other_shapes_are_recognised(view: RequestView, message: object, service: str,
                                                             action_type: str) -> None:
    a = parsed(view, message)
    assert (a.service, a.action_type) == (service, action_type)


@pytest.mark.parametrize("message", [
    {"type": "pong"},
    {"id": "2", "type": "complete"},
    {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    "",
    "not json {",
])
def test_protocol_chatter_is_not_destructive(message: object) -> None:
    assert parsed(SOCKET, message).action_type not in ("delete", "execute")


def test_a_message_replaces_the_handshake_body_headers_and_method() -> None:
    handshake = RequestView("GET", "https", "api.example.com", 443, "/graphql", headers=(
        ("content-type", "text/html"), ("content-encoding", "gzip"), ("authorization", "Bearer x")))
    v = message_view(handshake, '{"type": "ping"}')
    assert v.method == "POST" and v.content_type == "application/json"
    assert ("content-encoding", "gzip") not in v.headers and ("authorization", "Bearer x") in v.headers
    assert message_view(handshake, "hello").content_type == "text/plain"


def test_a_binary_message_is_a_post_of_its_bytes() -> None:
    from shield_addon.actions.messages import binary_message_view

    v = binary_message_view(SOCKET, b"\x00\x01DROP")
    assert (v.method, v.content_type, v.body) == ("POST", "application/octet-stream", b"\x00\x01DROP")


@pytest.mark.parametrize("data", [
    '{"query": "DROP TABLE users"}'.encode("utf-16"),
    '{"query": "DROP TABLE users"}'.encode("utf-32-le"),
    gzip.compress(b'{"query": "DROP TABLE users"}'),
    gzip.compress('{"query": "DROP TABLE users"}'.encode("utf-16")),
])
def test_a_binary_message_holding_json_in_another_encoding_or_gzip_is_read_as_that_json(data: bytes) -> None:
    from shield_addon.actions.messages import binary_message_view

    v = binary_message_view(SOCKET, data)
    assert (v.content_type, json.loads(v.body)) == ("application/json", {"query": "DROP TABLE users"})
    assert actions.parse(v).service == "sql"
