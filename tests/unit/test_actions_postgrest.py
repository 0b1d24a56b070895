"""PostgREST / Supabase: tables, RPC, upserts and unfiltered writes."""

from __future__ import annotations

import pytest

from shield_addon.actions import Action, parse, request_view

BASE = "https://abc.supabase.co/rest/v1"


def rest(method: str, path: str, headers: list[tuple[str, str]] | None = None, body: str = "") -> Action:
    return parse(request_view(method, BASE + path, headers or [], body))


@pytest.mark.parametrize(
    ("method", "action_type"),
    [("GET", "read"), ("HEAD", "read"), ("POST", "create"), ("PATCH", "update"), ("PUT", "update"), ("DELETE", "delete")],
)
def test_table_request_action_type_follows_the_method(method: str, action_type: str) -> None:
    action = rest(method, "/orders?id=eq.1")
    assert (action.service, action.action_type, action.operation) == ("postgrest", action_type, method.lower())
    assert (action.tables, action.resource_type, action.resource_name) == (("orders",), "table", "orders")


def test_delete_without_a_filter_is_flagged() -> None:
    action = rest("DELETE", "/orders")
    assert (action.action_type, action.flags) == ("delete", {"no_filter"})


def test_delete_with_a_filter_is_not_flagged() -> None:
    assert rest("DELETE", "/orders?status=eq.cancelled").flags == frozenset()


def test_logical_operators_are_filters() -> None:
    assert rest("PATCH", "/orders?or=(a.eq.1,b.eq.2)").flags == frozenset()


def test_shaping_parameters_are_not_filters() -> None:
    assert rest("PATCH", "/orders?select=id&order=id&limit=10&offset=5&columns=a").flags == {"no_filter"}


def test_the_supabase_key_in_the_query_is_not_a_filter() -> None:
    # Supabase's gateway reads ?apikey= as the key; it selects no rows
    assert rest("PATCH", "/users?apikey=EXAMPLE").flags == {"no_filter"}


def test_get_without_a_filter_is_not_flagged() -> None:
    assert rest("GET", "/orders").flags == frozenset()


def test_upsert_with_merge_duplicates_is_an_update() -> None:
    action = rest("POST", "/orders", [("Prefer", "return=minimal, resolution=merge-duplicates")], "[]")
    assert (action.action_type, action.operation, action.flags) == ("update", "post", {"upsert"})


def test_insert_ignoring_duplicates_is_a_create() -> None:
    assert rest("POST", "/orders", [("Prefer", "resolution=ignore-duplicates")], "[]").action_type == "create"


def test_rpc_is_execute() -> None:
    action = rest("POST", "/rpc/close_month", body='{"month": 5}')
    assert (action.action_type, action.operation, action.resource_type, action.resource_name, action.tables) == (
        "execute",
        "rpc close_month",
        "function",
        "close_month",
        (),
    )


def test_rpc_over_get_is_still_execute() -> None:
    assert rest("GET", "/rpc/stats?x=1").action_type == "execute"


def test_schema_profile_header_is_the_namespace() -> None:
    assert rest("GET", "/orders", [("Accept-Profile", "billing")]).namespace == "billing"
    assert rest("DELETE", "/orders?id=eq.1", [("Content-Profile", "billing")]).namespace == "billing"


def test_table_name_is_percent_decoded_and_lower_cased_in_tables() -> None:
    action = rest("GET", "/Order%20Items")
    assert (action.tables, action.resource_name) == (("order items",), "Order Items")


def test_nested_paths_under_rest_v1_are_not_tables() -> None:
    assert parse(request_view("GET", BASE + "/orders/1")).service == "abc.supabase.co"


def test_root_level_table_is_not_postgrest_unpinned() -> None:
    assert parse(request_view("DELETE", "https://api.example.com/orders")).service == "api.example.com"


def test_pinned_plain_postgrest_serves_tables_from_the_root() -> None:
    action = parse(request_view("DELETE", "https://pg.internal/orders"), {"postgrest": ["pg.internal"]})
    assert (action.service, action.tables, action.flags) == ("postgrest", ("orders",), {"no_filter"})


def test_pinned_plain_postgrest_rpc() -> None:
    action = parse(request_view("POST", "https://pg.internal/rpc/reset"), {"postgrest": ["pg.internal"]})
    assert action.operation == "rpc reset"


@pytest.mark.parametrize(
    ("function", "action_type"),
    [("delete_all_users", "delete"), ("purge_old_logs", "delete"), ("list_deleted_users", "execute"),
     ("search_orders", "execute")],
)
def test_rpc_named_for_a_delete_is_a_delete(function: str, action_type: str) -> None:
    action = rest("POST", f"/rpc/{function}", [("Content-Type", "application/json")], "{}")
    assert (action.resource_type, action.resource_name, action.action_type) == ("function", function, action_type)


@pytest.mark.parametrize("query", [
    "id=gte.0", "id=gt.0", "id=gt.-5", "id=gte.1", "id=not.is.null", "id=neq.-1", "id=neq.0", "id=not.eq.0",
    "id=neq.00000000-0000-0000-0000-000000000000", "id=lt.9999999999", "email=like.*", "name=ilike.%25",
    "or=(id.gt.0,id.lte.0)", "or=(status.eq.x,status.neq.x)", "or=(note.is.null,note.not.is.null)",
    "or=(id.gte.0,status.eq.open)", "and=(id.gt.0,id.not.is.null)", "order_id=gt.0", "select=id&id=gte.0",
])
def test_a_filter_every_row_passes_is_flagged(query: str) -> None:
    assert rest("PATCH", f"/orders?{query}").flags == {"always_true_filter"}


@pytest.mark.parametrize("query", [
    "id=eq.0", "id=gte.1000", "id=gt.5", "id=neq.42", "deleted_at=not.is.null", "amount=gt.0", "status=neq.paid",
    "customer_id=gt.0", "or=(status.eq.open,status.eq.pending)", "or=(id.gt.5,id.lte.2)",
    "id=gte.0&customer_id=eq.7", "email=like.*@example.com", "not.or=(id.gt.0,id.lte.0)",
    "or=(and(id.gt.0,id.lte.0),id.eq.3)",
])
def test_a_real_filter_is_not_flagged(query: str) -> None:
    assert rest("PATCH", f"/orders?{query}").flags == frozenset()


@pytest.mark.parametrize(("query", "flagged"), [("id=isdistinct.null", True), ("id=not.in.(-1,0)", True),
                                                ("id=not.in.(4,5)", False), ("note=isdistinct.null", False)])
def test_key_tautologies_by_other_operators(query: str, flagged: bool) -> None:
    assert ("always_true_filter" in rest("PATCH", f"/orders?{query}").flags) is flagged
