"""Connections to the fleet database: where its URL comes from, the schema brought up to date,
a proxy's row in `proxies`.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from shield_addon.fleet import FleetError, schema, shown, views

CONNECT_TIMEOUT = 3  # seconds: a database that does not answer must not stall a proxy's start
_MIGRATION_LOCK = 0x5348_4C44  # pg_advisory_xact_lock key: proxies starting together migrate once


def connect(url: str, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT,
                               application_name="agent-shield", **kwargs)
    except psycopg.Error as e:
        raise FleetError(f"cannot reach the fleet database {shown(url)}: {first_line(e)}") from e


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def migrate(con: psycopg.Connection) -> int:
    """Create or update the schema; the version it is at. Safe to run from many proxies at once."""
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())")
        row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        have = row[0] if row else 0
        if have > schema.VERSION:
            raise FleetError(f"the fleet database is at schema version {have}; this agent-shield knows "
                             f"{schema.VERSION}: upgrade it")
        for version in range(have + 1, schema.VERSION + 1):
            for statement in schema.MIGRATIONS[version - 1]:
                con.execute(statement)  # type: ignore[arg-type] - our own constant SQL
            con.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        con.execute("INSERT INTO fleet_secret VALUES (1, %s) ON CONFLICT DO NOTHING", (secrets.token_bytes(32),))
        grant_readers(con)
    return schema.VERSION


def grant_readers(con: psycopg.Connection) -> None:
    """A role that can read the trail and nothing else, for `shield sql --fleet`, when the
    migrating user may create roles (otherwise sql still runs in a read-only transaction)."""
    exists = con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (schema.READER_ROLE,)).fetchone()
    can = con.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").fetchone()
    if not exists and not (can and can[0]):
        return
    with con.transaction():
        if not exists:
            con.execute(f"CREATE ROLE {schema.READER_ROLE} NOLOGIN")
        con.execute(f"GRANT USAGE ON SCHEMA public TO {schema.READER_ROLE}")
        con.execute(f"GRANT SELECT ON chain_rows, events, proxies, checkpoints, holds TO {schema.READER_ROLE}")
        con.execute(f"GRANT USAGE ON SCHEMA {views.SCHEMA} TO {schema.READER_ROLE}")
        con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {views.SCHEMA} TO {schema.READER_ROLE}")
        con.execute(f"GRANT {schema.READER_ROLE} TO current_user")


def fleet_secret(con: psycopg.Connection) -> bytes:
    row = con.execute("SELECT secret FROM fleet_secret WHERE id = 1").fetchone()
    if row is None:
        raise FleetError("the fleet database has no fleet_secret row: run a proxy with shield_fleet to create it")
    return bytes(row[0])


def register(con: psycopg.Connection, chain_id: str, name: str, host: str, listen: str, version: str,
             started: float) -> None:
    """This proxy's row: who it is and where; its heartbeat and shipping figures follow. The
    running proxy corrects `listen` with the addresses it is bound to (a port 0 is chosen late)."""
    con.execute(
        """INSERT INTO proxies (chain_id, name, host, listen, version, started_at, last_seen)
           VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), now())
           ON CONFLICT (chain_id) DO UPDATE SET name = excluded.name, host = excluded.host,
               version = excluded.version, started_at = excluded.started_at, last_seen = now(),
               listen = CASE WHEN proxies.started_at = excluded.started_at THEN proxies.listen
                             ELSE excluded.listen END""",
        (chain_id, name, host, listen, version, started))


def addresses(url: str) -> list[tuple[str, int]]:
    """Where the fleet database listens (TCP only: a Unix socket is out of an agent's reach).
    Agents must never reach it: through it one could approve its own holds."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return []
    names = [h for key in ("host", "hostaddr") for h in (info.get(key) or os.environ.get("PG" + key.upper(), "")).split(",")]
    ports = (info.get("port") or os.environ.get("PGPORT") or "").split(",")
    found = []
    for i, name in enumerate(names):
        port = ports[i] if len(ports) > 1 and i < len(ports) else ports[0]
        if name and not name.startswith("/"):
            found.append((name, int(port) if port.isdigit() else 5432))
    return found
