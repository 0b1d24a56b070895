"""WebSocket messages read by the same parsers as requests."""

from __future__ import annotations

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
