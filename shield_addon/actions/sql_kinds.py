"""What a parsed SQL statement is: its kind, where its verb undersells it, and what it
reaches beyond the database. Split from sql.py, which finds and reads the texts."""

from __future__ import annotations

import re

from sqlglot import exp

# sqlglot expression key -> statement kind. Anything else at the top level (a bare
# column, a literal, GraphQL read as a struct...) means the text is not SQL to us.
KINDS = {
    "select": "select",
    "union": "select",
    "except": "select",
    "intersect": "select",
    "subquery": "select",
    "values": "select",
    "insert": "insert",
    "update": "update",
    "delete": "delete",
    "merge": "merge",
    "drop": "drop",
    "truncatetable": "truncate",
    "create": "create",
    "alter": "alter",
    "altertable": "alter",  # older sqlglot
    "grant": "grant",
    "revoke": "revoke",
    "copy": "copy",
    "describe": "describe",
    "show": "show",
    "use": "use",
    "set": "set",
    "transaction": "begin",
    "commit": "commit",
    "rollback": "rollback",
    "pragma": "pragma",
    "analyze": "analyze",
    "execute": "execute",
    "executesql": "execute",  # T-SQL EXEC sp_executesql
    "attach": "attach",  # SQLite/DuckDB ATTACH 'file': see OUTSIDE_VERBS
    "detach": "detach",  # ClickHouse DETACH TABLE: the table is gone until ATTACHed
}
# Data-changing statements that count even when nested, e.g. Postgres'
# `WITH d AS (DELETE ... RETURNING *) SELECT ...`.
NESTED = frozenset({"insert", "update", "delete", "merge"})

TYPES = {
    "select": "read",
    "show": "read",
    "explain": "read",
    "describe": "read",
    "desc": "read",
    "analyze": "read",
    "insert": "create",
    "create": "create",
    "update": "update",
    "merge": "update",
    "alter": "update",
    "grant": "update",
    "revoke": "update",
    "replace": "update",
    "replace_table": "delete",
    "replace_database": "delete",
    "overwrite": "delete",
    "replace_into": "delete",
    "alter_drop": "delete",
    "rename": "update",
    "detach_table": "update",  # ClickHouse DETACH TABLE/VIEW/DICTIONARY [PERMANENTLY]: gone for every reader
    "exchange": "update",  # ClickHouse EXCHANGE TABLES a AND b: RENAME both ways
    "create_role": "update",  # a new login or role: who may do what
    "create_trigger": "update",  # code that runs on every later write: a schema change
    "replace_object": "delete",  # CREATE OR REPLACE STAGE/STREAM/SEQUENCE: its state is lost
    "set": "update",  # SET session_replication_role: changes what follows
    "set_role": "update",  # SET ROLE, SET SESSION AUTHORIZATION, EXECUTE AS USER: who the session acts as
    "set_password": "update",  # SET PASSWORD FOR root = ...: ALTER USER ... IDENTIFIED BY by another name
    "purge": "delete",  # PURGE BINARY LOGS, RESET MASTER, Oracle PURGE RECYCLEBIN/TABLE: gone for good
    "delete": "delete",
    "drop": "delete",
    "truncate": "delete",
    "begin": "other",
    "start": "other",
    "commit": "other",
    "rollback": "other",
    "savepoint": "other",
    "release": "other",
    "use": "other",
    "end": "other",
    "unparsed": "other",
}  # anything else (call, exec, copy, do, vacuum, pragma, ...) is "execute"


# DROP DATABASE/SCHEMA name a container of tables, not a table.
CONTAINERS = frozenset({"database", "schema"})
CONTAINERS_UPPER = frozenset(c.upper() for c in CONTAINERS)
# Verbs that may run SQL held in a string; see `_special_kind`.
DYNAMIC_WORDS = frozenset({"execute", "exec", "prepare", "do", "executesql"})
DYNAMIC_ARG = re.compile(r"(?:IMMEDIATE|sp_executesql)\b", re.IGNORECASE)
PROGRAM = re.compile(r"\bPROGRAM\b", re.IGNORECASE)


def statement_kind(e: exp.Expression) -> str | None:
    if e.key == "command":  # statements sqlglot keeps as text: CALL, EXPLAIN, VACUUM...
        word = str(e.this or "").split()
        return word[0].lower() if word else None
    return KINDS.get(e.key)


def special_kind(statement: exp.Expression, kind: str) -> str:
    """The kind of the statement where its verb undersells it: REPLACE INTO is not an
    update, EXEC('...') not a call, CREATE OR REPLACE TABLE not a create."""
    # sqlglot's T-SQL Execute node renders with a warning: EXECUTE AS is a Command anyway
    if kind in ("set", "purge", "reset") or (kind in ("exec", "execute") and statement.key == "command"):
        changed = _changed_identity(kind, _rest(statement, kind))
        if changed:
            return changed
    if kind in DYNAMIC_WORDS:
        if kind in ("prepare", "do") or dynamic_exec(statement):
            return "execute_dynamic"
    elif kind == "create" and statement.key == "command" and _CREATE_ROLE.match(statement.text("expression")):
        return "create_role"
    elif kind == "detach" and DETACHED.match(_rest(statement, kind)):
        return "detach_table"
    elif kind == "create" and _created(statement) in TRIGGERS:
        return "create_trigger"
    elif kind == "create" and statement.args.get("replace"):
        created = str(statement.args.get("kind") or "").upper()
        if created in CONTAINERS_UPPER:
            return "replace_database"
        if created == "TABLE":
            return "replace_table"
        if created in STATEFUL:
            return "replace_object"
    elif kind == "create" and statement.key == "command":
        m = _REPLACED.match(statement.text("expression"))
        if m and m.group(1).upper() in STATEFUL:
            return "replace_object"
    elif kind == "insert":
        if statement.args.get("overwrite"):
            return "overwrite"
        if str(statement.args.get("alternative") or "").upper() == "REPLACE":
            return "replace_into"
    elif kind == "replace" and statement.key == "command":  # MySQL REPLACE INTO, Delta REPLACE TABLE
        rest = statement.text("expression").lstrip().upper()
        return "replace_table" if rest.startswith("TABLE") else "replace_into"
    elif kind == "alter" and any(
        isinstance(action, (exp.Drop, exp.DropPartition)) or type(action).__name__.startswith("Drop")
        for action in statement.args.get("actions") or ()
    ):
        return "alter_drop"
    return kind


# Statements sqlglot reads as something else (`PURGE RECYCLEBIN` is a column with an
# alias to it, `RESET MASTER` an alias or a Command) or not at all: read as a Command of
# their verb, so the kinds below name them.
PHRASES = re.compile(
    r"\s*(PURGE|RESET|IMPORT)\s+(?:(?:BINARY|MASTER)\s+LOGS|(?:DBA_|USER_)?RECYCLEBIN|TABLE|INDEX|TABLESPACE"
    r"|MASTER|BINARY\s+LOGS|REPLICA|SLAVE|FOREIGN\s+SCHEMA)\b",
    re.IGNORECASE,
)
# Who the session acts as or what a login's password is: changed without GRANT or ALTER
# USER. Going back to oneself (SET ROLE NONE, ... DEFAULT, RESET ROLE) changes nothing.
_IDENTITY = {
    "set": re.compile(
        r"\s*(?:(?:SESSION|LOCAL)\s+)?(?:(PASSWORD)\b|(?:ROLE|SESSION\s+AUTHORIZATION)\b"
        r"(?!\s*(?:=|TO)?\s*(?:NONE|DEFAULT|ALL)\b))",
        re.IGNORECASE,
    ),
    "exec": re.compile(r"\s*AS\s+(?:USER|LOGIN)\b", re.IGNORECASE),  # T-SQL impersonation
    "execute": re.compile(r"\s*AS\s+(?:USER|LOGIN)\b", re.IGNORECASE),
}
_PURGED = re.compile(r"\s*(?:(?:BINARY|MASTER)\s+LOGS|MASTER|BINARY\s+LOGS|REPLICA|SLAVE|(?:DBA_|USER_)?RECYCLEBIN"
                     r"|TABLE|INDEX|TABLESPACE)\b", re.IGNORECASE)


def _changed_identity(kind: str, rest: str) -> str | None:
    """`set_role`, `set_password` or `purge` where a SET, EXEC, PURGE or RESET is one."""
    if kind in ("purge", "reset"):  # Postgres' RESET search_path is a setting, not a log
        return "purge" if _PURGED.match(rest) else None
    m = _IDENTITY[kind].match(rest)
    if m is None:
        return None
    return "set_password" if m.groups() and m.group(1) else "set_role"


def phrase(text: str) -> tuple[str, str] | None:
    """Verb and rest of a statement PHRASES names, as sqlglot's Command would hold them."""
    m = PHRASES.match(text)
    return (m.group(1).upper(), text[m.end(1) :]) if m else None


def shaped_phrase(verb: str, rest: str) -> bool:
    """Whether undeclared text is one of the statements above by its words alone."""
    if verb in _IDENTITY:
        return _changed_identity(verb, rest) is not None
    return PHRASES.match(f"{verb} {rest}") is not None


# Objects whose creation is code that runs later, on every write or on a schedule: the
# DELETE in `CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE ...` runs unseen by us.
TRIGGERS = frozenset({"TRIGGER", "RULE", "EVENT", "TASK"})  # TASK: Snowflake's scheduled statement
# Objects that hold state beyond their definition: replacing one loses it (an internal
# stage's files, a stream's offset, a sequence's position, a pipe's load history).
STATEFUL = frozenset({"STAGE", "STREAM", "SEQUENCE", "PIPE"})
_CREATED = re.compile(
    r"\s*(?:OR\s+REPLACE\s+)?(?:DEFINER\s*=\s*\S+\s+)?(?:CONSTRAINT\s+)?(TRIGGER|RULE|EVENT|TASK)\b", re.IGNORECASE
)
_REPLACED = re.compile(r"\s*OR\s+REPLACE\s+(?:(?:TRANSIENT|TEMPORARY|TEMP)\s+)?(\w+)", re.IGNORECASE)


# SQLite's `DETACH [DATABASE] alias` only closes an attached file: not this.
DETACHED = re.compile(r"\s*(?:TABLE|VIEW|DICTIONARY)\b|.*\bPERMANENTLY\b", re.IGNORECASE | re.DOTALL)


def _rest(statement: exp.Expression, kind: str) -> str:
    """What follows the verb, from a Command's text or sqlglot's own rendering."""
    return statement.text("expression") if statement.key == "command" else statement.sql()[len(kind) :]


def _created_code(statement: exp.Expression) -> bool:
    return str(statement.args.get("kind") or "").upper() in ("FUNCTION", "PROCEDURE")


def _created(statement: exp.Expression) -> str:
    if statement.key == "command":
        m = _CREATED.match(statement.text("expression"))
        return m.group(1).upper() if m else ""
    return str(statement.args.get("kind") or "").upper()


def dynamic_exec(statement: exp.Expression) -> bool:
    """EXEC/EXECUTE of a string (literal, variable, IMMEDIATE, sp_executesql) rather
    than of a named procedure or prepared statement."""
    if statement.key == "executesql":
        return True
    if statement.key == "execute":  # T-SQL's node: EXEC ('...') is a Subquery
        target = statement.this
        return not isinstance(target, exp.Table) or target.name.lower() in ("immediate", "sp_executesql")
    rest = statement.text("expression").lstrip() if statement.key == "command" else ""
    return rest[:1] in ("(", "'", '"', "@", "$") or rest[:2].upper() == "N'" or bool(DYNAMIC_ARG.match(rest))


def runs_program(statement: exp.Expression) -> bool:
    files = statement.args.get("files") or ()
    if any(isinstance(f, exp.Identifier) and f.name.upper() == "PROGRAM" for f in files):
        return True
    return statement.key == "command" and PROGRAM.search(statement.text("expression")) is not None


def dropped_container(table: exp.Table) -> str | None:
    """The kind, database or schema, when `table` names what DROP DATABASE/SCHEMA (or
    CREATE OR REPLACE DATABASE/SCHEMA) drops."""
    parent = table.parent
    drops = isinstance(parent, exp.Drop) or (isinstance(parent, exp.Create) and parent.args.get("replace"))
    kind = str(parent.args.get("kind") or "").lower() if drops else ""
    return kind if kind in CONTAINERS else None


# Functions that run the SQL text they are given, here or on another server: a SELECT
# around them is dynamic SQL, and their string arguments are read as code.
RUNS_SQL = frozenset({
    "dblink", "dblink_exec", "dblink_send_query", "dblink_open", "query_to_xml", "query_to_xmlschema",
    "query_to_xml_and_xmlschema", "openquery", "openrowset", "opendatasource",
    "sp_msforeachtable", "sp_msforeachdb",  # T-SQL: run their string for every table or database
    # Schedulers: the SQL they are given runs later, unseen (pg_cron, Oracle jobs)
    "cron.schedule", "cron.schedule_in_database", "cron.alter_job", "dbms_job.submit", "dbms_job.change",
})
# Functions and procedures that reach beyond the database's own tables: the server's
# files, a shell, the network, another server (ClickHouse table functions).
OUTSIDE = frozenset({
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_file_write", "pg_file_unlink",
    "pg_file_rename", "lo_import", "lo_export", "load_file", "sys_exec", "sys_eval", "xp_cmdshell",
    "xp_dirtree", "xp_fileexist", "xp_regwrite", "xp_regread", "sp_oacreate", "sp_oamethod",
    "sp_execute_external_script", "sp_addextendedproc", "sp_makewebtask", "url", "s3", "s3cluster", "gcs",
    "hdfs", "remote", "remotesecure", "executable", "jdbc", "odbc", "azureblobstorage", "mongodb", "redis",
    "utl_http.request", "utl_file.fopen", "dbms_scheduler.create_job", "dbms_java.runjava",
    "http_get", "http_post", "http_request", "net.http_get", "net.http_post",
    # DuckDB and ClickHouse read the server's files and any URL through table functions.
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_ndjson", "read_text",
    "read_blob", "parquet_scan", "sqlite_scan", "postgres_scan", "mysql_scan", "file",
}) | RUNS_SQL
# What stops the server, ends others' sessions or changes the server's configuration.
ADMIN = frozenset({
    "pg_terminate_backend", "pg_cancel_backend", "pg_wal_replay_pause",
    "pg_promote", "pg_drop_replication_slot", "lo_unlink", "pg_reload_conf", "sp_configure", "sp_addsrvrolemember",
    "sp_addlogin", "sp_password", "sp_droplogin", "xp_servicecontrol", "reconfigure",
    # T-SQL system procedures that rename, drop, detach or grant: DDL spelt as a call
    "sp_rename", "sp_renamedb", "sp_detach_db", "sp_dropuser", "sp_dropserver", "sp_droprolemember",
    "sp_addrolemember", "sp_adduser", "sp_grantdbaccess", "sp_grantlogin", "sp_changedbowner",
    "sp_addlinkedserver", "sp_addlinkedsrvlogin", "sp_delete_database_backuphistory", "sp_delete_backuphistory",
    # Amazon RDS for MySQL's stand-ins for KILL and SET GLOBAL
    "rds_kill", "rds_kill_query", "rds_set_configuration", "rds_stop_replication", "rds_skip_repl_error",
})
ADMIN_KINDS = frozenset({"shutdown", "kill", "reconfigure"})
# ClickHouse SYSTEM statements that stop, drop or kill (SYSTEM FLUSH LOGS does not).
SYSTEM_ADMIN = re.compile(
    r"\s*(?:SHUTDOWN|KILL|STOP|DROP|RESTART|DISABLE|UNFREEZE|RESTORE\s+REPLICA|DROP\s+REPLICA)\b", re.IGNORECASE
)
# Settings that switch off the database's own safeguards (triggers, foreign keys,
# replication) or change the whole server (SET GLOBAL / PERSIST).
_UNSAFE_SET = re.compile(
    r"\b(?:GLOBAL|PERSIST(?:_ONLY)?)\b|session_replication_role\s*(?:=|TO)\s*'?(?:replica|local)"
    r"|(?:foreign_key_checks|unique_checks|sql_log_bin)\s*(?:=|TO)\s*'?(?:0|off|false)\b",
    re.IGNORECASE,
)
_FILE_READERS = tuple(getattr(exp, name) for name in ("ReadCSV", "ReadParquet") if hasattr(exp, name))
_CREATE_ROLE = re.compile(r"\s*(?:OR\s+REPLACE\s+)?(?:ROLE|USER|LOGIN)\b", re.IGNORECASE)
_PROCEDURE = re.compile(r"\s*(?:@\w+\s*=\s*)?([\w.\[\]\"`$]+)")


def callee(node: exp.Expression) -> str | None:
    """The lower-cased name a function call or EXEC names, without schema or quotes
    (`master..xp_cmdshell`, `[dbo].[sp_configure]`), dotted packages kept
    (`utl_http.request`)."""
    if isinstance(node, exp.Anonymous):
        name = str(node.this or "")
        if isinstance(node.parent, exp.Dot) and node.parent.expression is node:
            return f"{node.parent.this.name}.{name}".lower()
        return name.lower()
    if isinstance(node, _FILE_READERS):  # sqlglot's own nodes for DuckDB's readers
        return node.sql_name().lower()
    if isinstance(node, exp.Execute) and isinstance(node.this, exp.Table):
        return node.this.name.lower()
    if node.key == "command" and statement_kind(node) in ("exec", "execute", "call"):
        return _procedure_name(node.text("expression"))
    return None


def known_procedure(rest: str) -> bool:
    """Whether the text after EXEC/EXECUTE names a procedure of OUTSIDE or ADMIN
    (`EXEC master..xp_cmdshell 'whoami'`): SQL by its name alone."""
    name = _procedure_name(rest)
    return name is not None and (name in OUTSIDE or name in ADMIN)


def _procedure_name(rest: str) -> str | None:
    m = _PROCEDURE.match(rest)
    if not m:
        return None
    parts = [p.strip('[]"`').lower() for p in m.group(1).split(".") if p.strip('[]"`')]
    if len(parts) >= 2 and ".".join(parts[-2:]) in OUTSIDE | ADMIN:
        return ".".join(parts[-2:])  # utl_file.fopen: a package's procedure
    return parts[-1] if parts else None


def admin_statement(statement: exp.Expression, kind: str) -> bool:
    """SHUTDOWN, KILL, RECONFIGURE, ClickHouse SYSTEM SHUTDOWN/STOP/DROP ...: the
    server itself, not its data."""
    if kind == "set":
        return _UNSAFE_SET.search(statement.sql()) is not None
    if kind == "system":
        return statement.key == "command" and SYSTEM_ADMIN.match(statement.text("expression")) is not None
    return kind in ADMIN_KINDS


def call_flags(name: str) -> tuple[set[str], bool]:
    """Flags for a call of `name` (`reaches_outside`, `server_admin`) and whether it
    runs SQL text it is given (dblink_exec)."""
    short = name.rsplit(".", 1)[-1]
    flags: set[str] = set()
    if name in OUTSIDE or short in OUTSIDE:
        flags.add("reaches_outside")
    if name in ADMIN or short in ADMIN:
        flags.add("server_admin")
    return flags, name in RUNS_SQL or short in RUNS_SQL


# Statements that open the server's files, load its code or fetch from the network,
# by verb: what follows the verb when they do (`ATTACH 'file'`, `LOAD 'lib.so'`,
# `LOAD DATA INFILE`, `VACUUM INTO 'file'`, `INSTALL x FROM 'url'`, an untrusted
# procedural language or an extension that reaches other servers or files).
OUTSIDE_VERBS = {
    "attach": re.compile(r"\s*(?:DATABASE\s+)?(?:IF\s+NOT\s+EXISTS\s+)?['\"]", re.IGNORECASE),
    "load": re.compile(r"\s*(?:['\"]|(?:DATA|XML)\b)", re.IGNORECASE),
    "vacuum": re.compile(r"\s*(?:\w+\s+)?INTO\b", re.IGNORECASE),
    "install": re.compile(r"\s*\w+\s+FROM\b", re.IGNORECASE),
    "import": re.compile(r"\s*FOREIGN\s+SCHEMA\b", re.IGNORECASE),  # a remote server's tables, here
    "create": re.compile(
        r"\s*(?:OR\s+REPLACE\s+)?(?:TRUSTED\s+)?(?:PROCEDURAL\s+)?LANGUAGE\b"
        r"|\s*EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?\"?(?:dblink|postgres_fdw|file_fdw|mysql_fdw|oracle_fdw|tds_fdw"
        r"|adminpack|http|pgsql_http|pg_net|aws_s3|aws_lambda|log_fdw|plpython3u|plpythonu|plperlu|pltclu|plsh"
        r"|plv8|pllua)\b"
        # a foreign server (postgres_fdw, mysql_fdw...), the login it is reached with, its tables:
        # what dblink does, declared once for every later query
        r"|\s*(?:OR\s+REPLACE\s+)?(?:SERVER|USER\s+MAPPING|FOREIGN\s+(?:TABLE|DATA\s+WRAPPER))\b",
        re.IGNORECASE,
    ),
}
# Schemas and tables of the server's own catalogue: writing them changes users,
# privileges or the schema behind the database's back.
CATALOG_SCHEMAS = frozenset({"pg_catalog", "mysql", "sys", "information_schema", "performance_schema"})
CATALOG_TABLES = frozenset({"sqlite_master", "sqlite_schema"})


# Functions in native code (C, a MySQL SONAME library) or an untrusted language (by
# Postgres' convention its name ends in u: plpython3u, plperlu, pltclu) run as the
# server's OS user: a shell by another name.
_NATIVE_FUNCTION = re.compile(
    r"\bLANGUAGE\s+['\"]?(?:c|internal|plsh|plr|\w+u)\b|\bSONAME\b", re.IGNORECASE
)


def outside_statement(statement: exp.Expression, kind: str) -> bool:
    """ATTACH/LOAD/VACUUM INTO/INSTALL FROM/CREATE LANGUAGE, COPY to or from the
    server's files, native or untrusted functions: what reaches beyond the database's
    tables without a function call."""
    if kind == "copy":
        return copy_outside(statement)
    if kind == "create" and (statement.key == "command" or _created_code(statement)):
        text = statement.text("expression") if statement.key == "command" else statement.sql()
        if _NATIVE_FUNCTION.search(text):
            return True
    shape = OUTSIDE_VERBS.get(kind)
    if shape is None or (kind == "create" and statement.key != "command"):
        return False  # sqlglot keeps CREATE LANGUAGE/EXTENSION as text: a parsed CREATE is neither
    rest = _rest(statement, kind)
    return shape.match(rest) is not None


def outside_text(verb: str, rest: str) -> bool:
    """The same test for text no dialect read, by its verb and what follows."""
    shape = OUTSIDE_VERBS.get(verb)
    return shape is not None and shape.match(rest) is not None


COPY_OUTSIDE = re.compile(
    r"^\s*INTO\s+'|\bTO\s+'|\bFROM\s+'(?:/|file:|~|[^']*\.\.)", re.IGNORECASE
)


def copy_outside(statement: exp.Expression) -> bool:
    """COPY t TO 'file' (the server writes a file or a URL), COPY INTO 's3://...' FROM t
    (Snowflake's export), COPY t FROM '/abs/path' (the server reads its own files). A
    load from a relative file or a URL into a table is ordinary ETL; STDOUT is no file."""
    if statement.key == "command":  # options sqlglot's default dialect cannot read
        return COPY_OUTSIDE.search(statement.text("expression")) is not None
    if statement.key != "copy":
        return False
    strings = [f for f in statement.args.get("files") or () if isinstance(f, exp.Literal) and f.is_string]
    if not statement.args.get("kind"):  # TO
        return bool(strings)
    target = statement.this
    if isinstance(target, exp.Table) and isinstance(target.this, exp.Literal):
        target = target.this  # Snowflake: COPY INTO 's3://...' is a Table around a string
    if isinstance(target, exp.Literal) and target.is_string:
        return True
    if isinstance(target, exp.Table) and "://" in target.name:  # the same, read by the default dialect
        return True
    return any(s.name.startswith(("/", "file:", "~")) or ".." in s.name for s in strings)


def catalog_write(node: exp.Expression) -> bool:
    """An INSERT/UPDATE/DELETE/MERGE whose target is the server's catalogue (pg_authid,
    mysql.user, sqlite_master): unqualified pg_* tables resolve to pg_catalog first."""
    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    if not isinstance(target, exp.Table):
        return False
    parts = [p.name.lower() for p in target.parts]
    return bool(parts) and (
        any(p in CATALOG_SCHEMAS for p in parts[:-1]) or parts[-1].startswith("pg_") or parts[-1] in CATALOG_TABLES
    )


def unsafe_setting(node: exp.Expression) -> bool:
    """set_config('session_replication_role', 'replica', false): SET by a function."""
    args = node.expressions if isinstance(node, exp.Anonymous) else []
    if len(args) < 2 or not all(isinstance(a, exp.Literal) for a in args[:2]):
        return False
    return _UNSAFE_SET.search(f"{args[0].name} = {args[1].name}") is not None
