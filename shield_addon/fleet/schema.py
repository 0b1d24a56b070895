"""The fleet database's tables, as versioned migrations, and how a journal row becomes one
of its rows. Pure: SQL text and plain functions, no connection.

`events` keeps each journal line byte for byte (`line`: what `shield verify --fleet` hashes)
beside typed copies of its small columns (what the views filter on). The big columns
(headers, bodies) are read out of `line` by the `events` view, so shipping writes them once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shield_addon.fleet import views
from shield_addon.record.schema import COLUMNS

# Left in `line` only: the view reads them out of it.
LINE_ONLY = ("request_headers", "request_body", "response_headers", "response_body", "forwarded_request", "actions")
_PG_TYPES = {"BIGINT": "bigint", "VARCHAR": "text", "TIMESTAMP": "timestamp", "INTEGER": "integer",
             "BOOLEAN": "boolean", "DOUBLE": "double precision", "VARCHAR[]": "text[]", "JSON": "json"}
TYPED = tuple((name, _PG_TYPES[typ]) for name, typ in COLUMNS if name not in LINE_ONLY)
TYPED_NAMES = tuple(name for name, _ in TYPED)
SHIP_COLUMNS = (*TYPED_NAMES, "line")
_LISTS = frozenset(name for name, typ in TYPED if typ == "text[]")

# NOTIFY channels: a hold published or decided (payload: hold_id), and a proxy's heartbeat.
HOLDS_CHANNEL = "shield_holds"
READER_ROLE = "shield_reader"

_EVENTS_TABLE = "CREATE TABLE chain_rows ({}, line text NOT NULL, PRIMARY KEY (chain_id, seq))".format(
    ", ".join(f"{name} {typ}" + (" NOT NULL" if name in ("seq", "chain_id", "row_hash", "ts") else "")
              for name, typ in TYPED))

# Every column of the trail, in the journal's order, plus the proxy that wrote it. A NUL
# escaped in a line (a body's) is read as U+FFFD: PostgreSQL's json operators refuse \u0000,
# and one such row would fail every query over the view.
_LINE = r"replace(r.line, '\u0000', '\ufffd')::json"
_EVENTS_VIEW = "CREATE VIEW events AS SELECT {}, p.name AS proxy FROM chain_rows r LEFT JOIN proxies p USING (chain_id)".format(
    ", ".join(f"({_LINE} -> '{name}') AS {name}" if name in ("request_headers", "response_headers",
                                                             "forwarded_request", "actions")
              else f"({_LINE} ->> '{name}') AS {name}" if name in LINE_ONLY else f"r.{name}"
              for name, _ in COLUMNS))
# The trail's columns when migration 1 was written. A column added to record.COLUMNS needs a
# migration of its own (tests/unit/test_fleet.py holds them equal until there is one).
V1_COLUMNS = ("seq", "chain_id", "prev_hash", "row_hash", "ts", "stage", "flow_id", "agent", "client_ip", "method",
              "scheme", "host", "port", "path", "url", "request_headers", "request_body", "request_body_size",
              "request_sha256", "service", "action_type", "operation", "resource_type", "namespace", "resource_name",
              "tables", "rule_id", "verdict", "matched_rules", "mode", "ruleset_sha256", "severity", "decision",
              "reviewer", "decided_at", "reviewer_comment", "edited", "forwarded_request", "status_code",
              "response_headers", "response_body", "response_body_size", "response_sha256", "outcome", "error",
              "duration_ms", "hold_id", "hold_key", "actions", "preview")

# Each entry is applied once, in order, in one transaction with its row in schema_version.
# A released entry is never edited: a change is a new entry.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE proxies (
            chain_id text PRIMARY KEY,
            name text NOT NULL,
            host text, listen text, version text,
            started_at timestamptz, last_seen timestamptz,
            journal_seq bigint NOT NULL DEFAULT 0,
            shipped_seq bigint NOT NULL DEFAULT 0,
            ship_error text)""",
        _EVENTS_TABLE,
        "CREATE INDEX chain_rows_ts ON chain_rows (ts)",
        "CREATE INDEX chain_rows_flow ON chain_rows (flow_id)",
        "CREATE INDEX chain_rows_agent ON chain_rows (agent, ts)",
        """CREATE TABLE checkpoints (
            chain_id text NOT NULL, seq bigint NOT NULL, line text NOT NULL,
            PRIMARY KEY (chain_id, seq, line))""",
        """CREATE TABLE holds (
            hold_id text PRIMARY KEY,
            chain_id text NOT NULL,
            proxy text NOT NULL,
            mode text NOT NULL,
            hold_key text,
            agent text, method text, url text, summary text, rule_id text,
            created_at timestamptz NOT NULL DEFAULT now(),
            deadline timestamptz, approval_ttl double precision,
            approvals_needed integer NOT NULL DEFAULT 1, approvers text[] NOT NULL DEFAULT '{}',
            decision text, reviewer text, decided_at timestamptz, reason text, decided_on text,
            applied_at timestamptz,
            expires_at timestamptz, used_at timestamptz, used_by text,
            closed_at timestamptz)""",
        "CREATE INDEX holds_pending ON holds (created_at) WHERE decision IS NULL AND closed_at IS NULL",
        "CREATE INDEX holds_key ON holds (hold_key) WHERE hold_key IS NOT NULL",
        # The key retry-mode approvals are bound with (db.migrate fills it in): the same on
        # every proxy, so a retry that lands on another proxy finds its approval. Readers
        # are not granted it.
        "CREATE TABLE fleet_secret (id integer PRIMARY KEY CHECK (id = 1), secret bytea NOT NULL)",
        _EVENTS_VIEW,
    ),
    # 2: the analyst's views (timeline, holds, pending, by_agent, by_reviewer, denials) in schema `trail`
    views.MIGRATION,
)
VERSION = len(MIGRATIONS)


def pg_row(row: Mapping[str, Any], line: str) -> tuple[Any, ...]:
    """A journal row as a `chain_rows` row. Text loses its NULs (PostgreSQL's text cannot hold
    them; `line` keeps them escaped), so `verify` compares typed columns through this too."""
    out: list[Any] = []
    for name in TYPED_NAMES:
        v = row.get(name)
        if v is None:
            out.append(None)
        elif name in _LISTS:
            out.append([_text(x) for x in v])
        elif isinstance(v, str):
            out.append(_text(v))
        else:
            out.append(v)
    out.append(line)
    return tuple(out)


def _text(v: Any) -> Any:
    return v.replace("\x00", "\ufffd") if isinstance(v, str) and "\x00" in v else v
