"""GraphQL: operation type, top-level fields, and what a mutation does."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from shield_addon.actions import Action, parse, request_view
from shield_addon.actions import graphql as graphql_parser

ENDPOINT = "https://api.github.com/graphql"


def gql(query: str, url: str = ENDPOINT, **extra: object) -> Action:
    body = json.dumps({"query": query, **extra})
    return parse(request_view("POST", url, [("Content-Type", "application/json")], body))


def test_mutation_with_a_delete_field() -> None:
    action = gql('mutation { deleteRepository(input: {repositoryId: "R_1"}) { clientMutationId } }')
    assert (action.service, action.action_type, action.operation) == ("graphql", "delete", "mutation deleteRepository")
    assert action.statements == ("deleteRepository",)


def test_query_is_a_read() -> None:
    action = gql("query { viewer { login } }")
    assert (action.action_type, action.operation, action.statements) == ("read", "query viewer", ("viewer",))


def test_anonymous_shorthand_query_is_a_read() -> None:
    assert gql("{ viewer { login } repository(name: \"x\") { id } }").operation == "query viewer,repository"


def test_subscription_is_a_read() -> None:
    action = gql("subscription { issueUpdated { id } }")
    assert (action.action_type, action.operation) == ("read", "subscription issueUpdated")


@pytest.mark.parametrize(
    ("field", "action_type"),
    [
        ("deleteRepository", "delete"),
        ("removeLabel", "delete"),
        ("destroy_session", "delete"),
        ("dropIndex", "delete"),
        ("purgeCache", "delete"),
        ("createIssue", "create"),
        ("addComment", "create"),
        ("insert_users", "create"),
        ("updateIssue", "update"),
        ("setStatus", "update"),
        ("editPost", "update"),
        ("patchConfig", "update"),
        ("mergePullRequest", "update"),
        ("productDelete", "delete"),  # Shopify puts the verb last
        ("customerCreate", "create"),
        ("addressUpdate", "update"),  # "address" is no "add"
        ("settingsReset", "execute"),  # "settings" is no "set"
        ("sendEmail", "execute"),
        ("DELETE_ALL", "delete"),
    ],
)
def test_mutation_field_verbs(field: str, action_type: str) -> None:
    assert gql(f"mutation {{ {field}(id: 1) {{ id }} }}").action_type == action_type


def test_mutation_type_is_the_strictest_field() -> None:
    action = gql("mutation { addComment(id: 1) { id } deleteIssue(id: 2) { id } }")
    assert (action.action_type, action.operation) == ("delete", "mutation addComment,deleteIssue")


def test_an_alias_does_not_hide_the_field() -> None:
    action = gql("mutation { harmless: deleteRepository(id: 1) { id } }")
    assert (action.action_type, action.statements) == ("delete", ("deleteRepository",))


def test_top_level_fragment_spreads_are_followed() -> None:
    action = gql("mutation M { ...F } fragment F on Mutation { deleteRepository(id: 1) { id } }")
    assert (action.action_type, action.statements) == ("delete", ("deleteRepository",))


def test_inline_fragments_are_followed() -> None:
    assert gql("mutation { ... on Mutation { removeMember(id: 1) { id } } }").action_type == "delete"


def test_fragment_cycles_terminate() -> None:
    action = gql("mutation { ...A } fragment A on Mutation { ...B addStar(id: 1) { id } } fragment B on Mutation { ...A }")
    assert action.statements == ("addStar",)


def test_operation_name_selects_the_operation_run() -> None:
    doc = "query Q { viewer { id } } mutation M { deleteRepository(id: 1) { id } }"
    action = gql(doc, operationName="Q")
    assert (action.action_type, action.operation, action.flags) == ("read", "query viewer", frozenset())


def test_without_operation_name_every_operation_counts() -> None:
    action = gql("query Q { viewer { id } } mutation M { deleteRepository(id: 1) { id } }")
    assert (action.action_type, action.operation) == ("delete", "query viewer;mutation deleteRepository")
    assert "multi_operation" in action.flags


def test_unknown_operation_name_counts_every_operation() -> None:
    action = gql("query Q { a } mutation M { deleteAll }", operationName="Nope")
    assert action.action_type == "delete"


def test_graphql_over_get() -> None:
    query = quote("query { viewer { login } }")
    action = parse(request_view("GET", f"{ENDPOINT}?query={query}"))
    assert (action.service, action.operation) == ("graphql", "query viewer")


def test_graphql_over_get_respects_operation_name() -> None:
    query = quote("query A { a } mutation B { deleteB }")
    assert parse(request_view("GET", f"{ENDPOINT}?query={query}&operationName=A")).action_type == "read"


def test_application_graphql_body() -> None:
    req = request_view("POST", "https://x.example.com/api", [("Content-Type", "application/graphql")], "mutation { createUser { id } }")
    assert (parse(req).service, parse(req).action_type) == ("graphql", "create")


def test_apollo_batch_counts_every_document() -> None:
    body = json.dumps([{"query": "{ viewer { id } }"}, {"query": "mutation { deleteRepository(id: 1) { id } }"}])
    action = parse(request_view("POST", ENDPOINT, [("Content-Type", "application/json")], body))
    assert (action.action_type, action.statements) == ("delete", ("viewer", "deleteRepository"))


def test_graphql_document_outside_a_graphql_path_is_recognised() -> None:
    assert gql("mutation { purgeAll }", url="https://api.example.com/v1/q").service == "graphql"


def test_search_query_outside_a_graphql_path_is_not_graphql() -> None:
    assert gql("red shoes", url="https://api.example.com/search").service == "api.example.com"


def test_broken_document_at_a_graphql_endpoint_is_unparsed() -> None:
    action = gql("mutation { deleteRepository(id: ")
    assert (action.service, action.action_type, action.operation, action.flags) == ("graphql", "other", "UNPARSED", {"unparsed"})


def test_broken_graphql_looking_document_elsewhere_is_unparsed() -> None:
    assert gql("mutation { deleteAll(", url="https://api.example.com/x").operation == "UNPARSED"


def test_schema_text_is_not_an_operation() -> None:
    assert gql("type Query { a: Int }").flags == {"unparsed"}


def test_documents_past_the_token_limit_are_unparsed() -> None:
    many_tokens = "[]" * (graphql_parser.MAX_TOKENS // 2 + 100)  # two tokens in two characters
    assert len(many_tokens) < graphql_parser.MAX_CHARS
    action = gql("mutation { deleteAll(x: [" + many_tokens + "]) }")
    assert (action.operation, action.action_type, action.flags) == ("UNPARSED", "other", {"unparsed"})


def test_documents_past_the_size_limit_are_too_large() -> None:
    action = gql("mutation { deleteAll }" + " " * graphql_parser.MAX_CHARS)
    assert (action.operation, action.flags) == ("UNPARSED", {"unparsed", "too_large"})


def test_a_batch_shares_one_size_budget() -> None:
    doc = "mutation { addStar }" + " " * (graphql_parser.MAX_CHARS // 2)
    body = json.dumps([{"query": doc}] * 3)
    action = parse(request_view("POST", ENDPOINT, [("Content-Type", "application/json")], body))
    assert (action.action_type, "too_large" in action.flags) == ("create", True)


def test_graphql_path_without_a_document_is_rest() -> None:
    action = parse(request_view("GET", ENDPOINT))
    assert (action.service, action.action_type) == ("api.github.com", "read")


@pytest.mark.parametrize("text", ["{ a }", "  # comment\n query { a }", ",,mutation{a}", "subscription S { a }", "fragment F on Q { a }"])
def test_looks_like_graphql(text: str) -> None:
    assert graphql_parser.looks_like_graphql(text)


@pytest.mark.parametrize("text", ["", "queryX { a }", "SELECT 1", "red shoes", "# { a }"])
def test_does_not_look_like_graphql(text: str) -> None:
    assert not graphql_parser.looks_like_graphql(text)


# --- where else servers take a document, and persisted queries without one

DELETE_USER = "mutation { deleteUser(id: 1) { id } }"


def _post(url: str, body: str, ct: str = "application/json") -> Action:
    return parse(request_view("POST", url, [("Content-Type", ct)], body))


def test_a_form_body_carries_the_document() -> None:
    action = _post("https://api.example.com/graphql", "query=" + quote(DELETE_USER), "application/x-www-form-urlencoded")
    assert (action.service, action.action_type) == ("graphql", "delete")


def test_a_double_encoded_json_body_is_unwrapped_once() -> None:
    action = _post("https://api.example.com/graphql", json.dumps(json.dumps({"query": DELETE_USER})))
    assert (action.service, action.action_type) == ("graphql", "delete")


def test_the_url_operation_name_picks_the_operation_when_the_body_names_none() -> None:
    doc = "query Safe { me { id } } " + DELETE_USER.replace("mutation", "mutation Danger")
    assert _post(f"{ENDPOINT}?operationName=Danger", json.dumps({"query": doc})).action_type == "delete"
    assert _post(f"{ENDPOINT}?operationName=Safe", json.dumps({"query": doc})).action_type == "read"


@pytest.mark.parametrize(("body", "action_type"), [
    ({"operationName": "DeleteUser", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}, "delete"),
    ({"doc_id": "123", "operationName": "RemoveRepositoryMutation", "variables": {}}, "delete"),
    ({"operationName": "GetViewer", "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}, "other"),
])
def test_persisted_queries_are_judged_by_their_operation_name(body: object, action_type: str) -> None:
    action = _post("https://api.example.com/graphql", json.dumps(body))
    assert (action.service, action.action_type, "persisted" in action.flags) == ("graphql", action_type, True)


def test_a_persisted_query_over_get() -> None:
    ext = quote(json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "ab"}}))
    action = parse(request_view("GET", f"https://api.example.com/graphql?operationName=DeleteUser&extensions={ext}"))
    assert (action.service, action.action_type, action.operation) == ("graphql", "delete", "persisted DeleteUser")


def test_a_rest_body_with_an_id_is_not_a_persisted_query() -> None:
    assert _post("https://api.example.com/v1/items", json.dumps({"id": 5, "name": "delete me"})).service != "graphql"


@pytest.mark.parametrize("field", ["eraseCustomerData", "wipeAllData", "productDelete", "destroySnippet"])
def test_delete_verbs(field: str) -> None:
    assert gql(f"mutation {{ {field}(id: 1) {{ ok }} }}").action_type == "delete"


@pytest.mark.parametrize(("field", "action_type"), [
    ("bulkDeleteProducts", "delete"), ("userDeleteMany", "delete"), ("deleteUserById", "delete"),
    ("batchRemoveMembers", "delete"), ("bulkCreateProducts", "create"), ("forceUpdateUser", "update"),
    ("bulkImport", "execute"),
])
def test_a_modifier_does_not_hide_the_verb(field: str, action_type: str) -> None:
    assert gql(f"mutation {{ {field}(ids: [1]) {{ count }} }}").action_type == action_type


def _graphql_request(body: object, url: str = ENDPOINT) -> Action:
    req = request_view("POST", url, [("Content-Type", "application/json")], json.dumps(body))
    return graphql_parser.parse(req) or parse(req)


@pytest.mark.parametrize("kind", ["subscribe", "start"])
def test_a_websocket_message_payload_is_the_operation(kind: str) -> None:
    # graphql-ws and subscriptions-transport-ws; a server runs a mutation sent this way
    action = _graphql_request({"id": "1", "type": kind, "payload": {"query": "mutation { deleteUser(id: 1) { id } }"}},
                              "https://api.example.com/subscriptions")
    assert (action.service, action.action_type, action.statements) == ("graphql", "delete", ("deleteUser",))
    ack = _graphql_request({"type": "connection_init", "payload": {"authorization": "Bearer x"}})
    assert ack.action_type != "delete"


def test_the_multipart_upload_operations_field_is_the_document() -> None:
    body = ("--XyZ\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n"
            "{\"query\":\"mutation ($f: Upload!) { deleteProject(id: 7) { id } }\"}\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{}\r\n--XyZ--\r\n")
    req = request_view("POST", ENDPOINT, [("Content-Type", "multipart/form-data; boundary=XyZ")], body)
    action = graphql_parser.parse(req)
    assert action is not None and (action.action_type, action.statements) == ("delete", ("deleteProject",))
    upload = body.replace("deleteProject", "uploadAvatar")
    read = graphql_parser.parse(request_view("POST", ENDPOINT, [("Content-Type", "multipart/form-data; boundary=XyZ")], upload))
    assert read is not None and read.action_type == "execute"


def test_a_hostile_multipart_body_stays_cheap() -> None:
    body = b'name="operations"\n' * 5000
    req = request_view("POST", ENDPOINT, [("Content-Type", "multipart/form-data; boundary=x")], body)
    start = time.perf_counter()
    graphql_parser.parse(req)
    assert time.perf_counter() - start < 0.5


def test_keys_in_any_case_like_a_go_server() -> None:
    action = _graphql_request({"Query": "mutation { deleteUser(id: 1) { id } }", "OperationName": None})
    assert (action.service, action.action_type) == ("graphql", "delete")


@pytest.mark.parametrize(
    ("query", "action_type"),
    [
        ("mutation { users { delete(id: 1) { id } } }", "delete"),
        ("mutation { admin { project(id: 7) { destroy } } }", "delete"),
        ("mutation { ns { ...F } } fragment F on UsersMutations { remove(id: 1) }", "delete"),
        # a payload's fields are what the answer shows, not what runs
        ("mutation { createUser(name: \"a\") { user { deletedAt removedCount } } }", "create"),
        ("mutation { updateOrder(id: 1) { order { lineItems(first: 5) { id } } } }", "update"),
        ("query { users { delete } }", "read"),
    ],
)
def test_namespaced_mutations_are_read_one_level_down(query: str, action_type: str) -> None:
    assert gql(query).action_type == action_type
