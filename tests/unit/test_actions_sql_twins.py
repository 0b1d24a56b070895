"""Red team issue 19: T-SQL batches without `;`, T-SQL's DELETE without FROM, and statements
that are twins of held ones (PURGE/RESET logs, SET ROLE/PASSWORD, foreign servers)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from shield_addon.actions import parse, request_view, sql_tsql

URL = "https://db.example.com/query"


def as_field(text: str, key: str = "query"):
    return parse(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps({key: text})))


def as_body(text: str, content_type: str):
    return parse(request_view("POST", URL, [("Content-Type", content_type)], text))


# --- F1: SQL Server starts a statement at the next verb after a complete one ----------

BATCHES = [
    ("SELECT 1 DROP TABLE users", "drop"),
    ("IF 1=1 DROP TABLE users", "drop"),
    ("SELECT 1 UPDATE users SET a=0", "update"),
    ("SELECT [a;] DROP TABLE users", "drop"),  # `[a;]` is a column, not a statement's end
    ("DECLARE @s varchar(99) SET @s='DR'+'OP TABLE t' EXEC(@s)", "execute_dynamic"),
    ("SELECT 1\tTRUNCATE TABLE users", "truncate"),
    ("WHILE 1=0 BEGIN SELECT 1 END DROP TABLE users", "drop"),
    ("SELECT name FROM users WHERE id = 1 DELETE FROM users", "delete"),
    ("IF 1=0 SELECT 1 ELSE DROP TABLE users", "drop"),
    ("SELECT 1 SELECT 2 DROP TABLE t", "drop"),
]


@pytest.mark.parametrize(("text", "kind"), BATCHES)
def test_a_statement_after_a_complete_one_is_read_in_a_sql_field(text: str, kind: str) -> None:
    action = as_field(text)
    assert action is not None and action.service == "sql" and kind in action.statements


# An untyped text body is SQL only when it starts like SQL; IF and WHILE do not (see the
# report: prose starts with "If" too often to make every such string a candidate).
LOOSE_BATCHES = [(text, kind) for text, kind in BATCHES if not text.startswith(("IF", "WHILE"))]


@pytest.mark.parametrize(("text", "kind"), LOOSE_BATCHES)
def test_the_same_in_text_bodies_query_strings_and_declared_sql(text: str, kind: str) -> None:
    assert kind in as_body(text, "text/plain").statements
    assert kind in as_body(text, "application/sql").statements

    query = parse(request_view("POST", URL + "?query=" + quote(text), [], ""))
    assert kind in query.statements


@pytest.mark.parametrize(("text", "kind"), BATCHES)
def test_every_batch_in_declared_sql_and_query_strings(text: str, kind: str) -> None:
    assert kind in as_body(text, "application/sql").statements
    assert kind in parse(request_view("POST", URL + "?query=" + quote(text), [], "")).statements


def test_a_split_batch_read_whole_is_not_unparsed() -> None:
    action = as_field("SELECT 1 DROP TABLE users")
    assert (action.statements, "unparsed" in action.flags) == (("select", "drop"), False)


@pytest.mark.parametrize("text", [
    "select the drop table option",  # a search: `select the` is no statement of SQL
    "Select a time that suits you",
    "how to update my profile and delete old posts",
    "select 3 and drop table",
])
def test_prose_with_verbs_is_not_a_batch(text: str) -> None:
    action = as_field(text)
    assert action is None or action.service != "sql"


@pytest.mark.parametrize(("text", "operation"), [
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1", "INSERT"),
    ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 1", "INSERT"),
    ("SELECT * FROM t WHERE a = 1 FOR UPDATE", "SELECT"),
    ("CREATE TABLE t (id int REFERENCES u ON DELETE CASCADE)", "CREATE"),
    ("UPDATE t SET a = 1 WHERE id = 2", "UPDATE"),
    ("INSERT INTO t (a) SELECT a FROM u", "INSERT"),
    ("CREATE OR REPLACE TABLE t AS SELECT * FROM u", "REPLACE_TABLE"),
    ("SELECT 1 SELECT 2", "SELECT"),
])
def test_clauses_that_hold_a_verb_are_not_split(text: str, operation: str) -> None:
    action = as_field(text)
    assert (action.operation, action.flags & {"unparsed", "update_without_where"}) == (operation, frozenset())


def test_a_split_is_only_where_the_head_is_complete() -> None:
    complete = {"SELECT 1 ": True}.get
    assert sql_tsql.statements("SELECT 1 DROP TABLE t", lambda h: complete(h, False), False, 8) == [
        "SELECT 1 ", "DROP TABLE t"]
    assert sql_tsql.statements("UPDATE t SET a = 1", lambda h: False, True, 8) == []


def test_a_hostile_batch_costs_a_bounded_number_of_parses() -> None:
    heads: list[str] = []
    sql_tsql.statements("SELECT x " * 500, lambda h: heads.append(h) or False, True, 32)
    assert 32 <= len(heads) <= 64  # a head, and the same without its block words


# --- F2: T-SQL's DELETE needs no FROM ----------------------------------------------------

@pytest.mark.parametrize("text", [
    "DELETE users", "DELETE users WHERE 1=1", "DELETE [dbo].[users]", "DELETE dbo.users OUTPUT deleted.*",
    "DELETE TOP (100000) FROM users",
])
def test_tsql_delete_of_every_row_is_held_without_from(text: str) -> None:
    action = as_field(text)
    assert action.service == "sql" and "delete_without_where" in action.flags


def test_tsql_delete_through_an_mcp_tool() -> None:
    doc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "run_query", "arguments": {"query": "DELETE users"}}}
    action = parse(request_view("POST", "https://mcp.internal/mcp", [("Content-Type", "application/json")], json.dumps(doc)))
    assert "delete_without_where" in action.flags


def test_delete_with_an_alias_stays_prose() -> None:
    action = as_field("delete my account")  # table `my` with an alias: T-SQL refuses it
    assert action is None or action.service != "sql"


# --- F5: twins of held statements ---------------------------------------------------------

@pytest.mark.parametrize(("text", "kind"), [
    ("SET PASSWORD FOR root = 'x'", "set_password"),
    ("SET SESSION AUTHORIZATION postgres", "set_role"),
    ("SET ROLE postgres", "set_role"),
    ("EXECUTE AS USER = 'dbo'", "set_role"),
    ("PURGE BINARY LOGS BEFORE NOW()", "purge"),
    ("RESET MASTER", "purge"),
    ("RESET BINARY LOGS AND GTIDS", "purge"),
    ("PURGE RECYCLEBIN", "purge"),
    ("PURGE TABLE orders", "purge"),
    ("SELECT 1; PURGE RECYCLEBIN", "purge"),
])
def test_statements_that_change_identity_or_destroy_logs_are_named(text: str, kind: str) -> None:
    assert kind in as_field(text).statements


@pytest.mark.parametrize("text", ["SET ROLE NONE", "RESET ROLE", "RESET search_path", "SET search_path TO app"])
def test_going_back_to_oneself_and_settings_are_not_identity_changes(text: str) -> None:
    action = as_body(text, "application/sql")
    assert not {"set_role", "set_password", "purge"} & set(action.statements)


@pytest.mark.parametrize("text", [
    "CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'evil.com')",
    "CREATE USER MAPPING FOR CURRENT_USER SERVER evil OPTIONS (user 'x', password 'y')",
    "IMPORT FOREIGN SCHEMA public FROM SERVER evil INTO public",
    "CREATE FOREIGN TABLE r (a int) SERVER evil",
])
def test_foreign_servers_reach_outside_like_dblink(text: str) -> None:
    assert "reaches_outside" in as_field(text).flags


def test_cancelling_others_queries_is_server_admin() -> None:
    assert "server_admin" in as_field("SELECT pg_cancel_backend(pid) FROM pg_stat_activity").flags


@pytest.mark.parametrize(("where", "every_row"), [
    ("id IS NOT NULL", True),
    ("NOT id IS NULL", True),
    ("id >= 0", True),
    ("id > 0", True),
    ("0 < id", True),
    ("t.id > -1", True),
    ("id >= 1", True),
    ("id > 5", False),
    ("id >= 2", False),
    ("revoked_at IS NOT NULL", False),  # a real filter: only the key is NOT NULL by convention
    ("amount >= 0", False),
    ("u.id > 0", False),  # another table's key
])
def test_the_key_compared_with_its_first_value_keeps_every_row(where: str, every_row: bool) -> None:
    action = as_field(f"DELETE FROM t WHERE {where}")
    assert ("delete_without_where" in action.flags) is every_row
