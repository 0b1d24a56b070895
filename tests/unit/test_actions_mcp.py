"""MCP over HTTP: JSON-RPC methods, tool calls, batches, and SQL carried by tools."""

from __future__ import annotations

import json

import pytest

from shield_addon.actions import Action, parse, parse_all, request_view

URL = "https://mcp.example.com/mcp"


def rpc(method: str, params: object = None, **extra: object) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "id": 1, "method": method, **extra}
    if params is not None:
        message["params"] = params
    return message


def send(body: object) -> Action:
    """The MCP parser's reading (every parser reads the request; the others are tested elsewhere)."""
    found = parse_all(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps(body)))
    return next((a for a in found if a.service == "mcp"), found[0])


def test_tool_call_names_the_tool() -> None:
    action = send(rpc("tools/call", {"name": "send_email", "arguments": {"to": "a@b.c"}}))
    assert (action.service, action.action_type, action.operation) == ("mcp", "execute", "tools/call send_email")
    assert (action.resource_type, action.resource_name) == ("tool", "send_email")


@pytest.mark.parametrize(
    ("method", "action_type"),
    [
        ("tools/list", "read"),
        ("resources/list", "read"),
        ("prompts/list", "read"),
        ("ping", "read"),
        ("initialize", "other"),
        ("notifications/initialized", "other"),
        ("logging/setLevel", "update"),
        ("vendor/custom", "other"),
    ],
)
def test_other_methods(method: str, action_type: str) -> None:
    action = send(rpc(method, {}))
    assert (action.service, action.action_type, action.operation) == ("mcp", action_type, method)


def test_resource_read_names_the_resource() -> None:
    action = send(rpc("resources/read", {"uri": "file:///etc/passwd"}))
    assert (action.action_type, action.resource_type, action.resource_name) == ("read", "resource", "file:///etc/passwd")


def test_prompt_get_names_the_prompt() -> None:
    action = send(rpc("prompts/get", {"name": "summarise"}))
    assert (action.operation, action.resource_type) == ("prompts/get summarise", "prompt")


def test_notification_without_id_is_still_a_message() -> None:
    assert send({"jsonrpc": "2.0", "method": "notifications/cancelled"}).service == "mcp"


def test_batch_lists_every_call_and_takes_the_strictest_type() -> None:
    batch = [rpc("tools/list"), rpc("tools/call", {"name": "delete_file"}), rpc("tools/call", {"name": "send_email"})]
    action = send(batch)
    assert action.operation == "tools/list;tools/call delete_file;tools/call send_email"
    assert (action.action_type, action.resource_name, action.resource_type) == ("execute", "delete_file,send_email", "tool")
    assert action.flags == {"batch"}


def test_batch_of_different_resource_kinds_names_no_single_kind() -> None:
    action = send([rpc("tools/call", {"name": "t"}), rpc("resources/read", {"uri": "u"})])
    assert (action.resource_type, action.resource_name) == (None, "t,u")


def test_tool_call_without_a_name_is_still_execute() -> None:
    action = send(rpc("tools/call", {"name": 42}))
    assert (action.action_type, action.operation, action.resource_name) == ("execute", "tools/call", None)


def test_params_that_are_not_an_object_are_ignored() -> None:
    assert send(rpc("tools/call", ["send_email"])).operation == "tools/call"


def test_replies_from_the_client_are_not_mcp_actions() -> None:
    action = send({"jsonrpc": "2.0", "id": 7, "result": {"content": []}})
    assert action.service == "mcp.example.com"


def test_other_json_rpc_versions_are_not_mcp() -> None:
    assert send({"jsonrpc": "1.0", "method": "tools/call", "params": {"name": "x"}}).service == "mcp.example.com"


def test_sql_in_tool_arguments_is_classified() -> None:
    action = send(rpc("tools/call", {"name": "query", "arguments": {"sql": "DELETE FROM users"}}))
    assert (action.action_type, action.resource_name) == ("execute", "query")
    assert (action.statements, action.tables) == (("delete",), ("users",))
    assert action.flags == {"sql", "delete_without_where"}


def test_search_text_in_tool_arguments_is_not_sql() -> None:
    action = send(rpc("tools/call", {"name": "web_search", "arguments": {"query": "weather in Paris"}}))
    assert (action.statements, action.flags) == ((), frozenset())


def test_sql_in_non_tool_methods_is_not_the_mcp_readings_but_still_read_as_sql() -> None:
    body = rpc("prompts/get", {"name": "p", "arguments": {"sql": "DROP TABLE t"}})
    assert send(body).statements == ()
    found = parse_all(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps(body)))
    assert [(a.service, a.statements) for a in found] == [("mcp", ()), ("sql", ("drop",))]


def test_mcp_get_stream_is_rest_unpinned_and_mcp_pinned() -> None:
    req = request_view("GET", URL, [("Accept", "text/event-stream")])
    assert parse(req).service == "mcp.example.com"
    assert (parse(req, {"mcp": ["mcp.example.com"]}).service, parse(req).action_type) == ("mcp", "read")
