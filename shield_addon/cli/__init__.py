"""`shield`: argument parsing and rendering only; the data commands ask `shield_addon.reader`.

Each command's module is imported when that command runs, so `shield --help`, `shield env`
or `shield rules check` never load DuckDB, and `shield timeline` never loads mitmproxy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from shield_addon.cli.parser import (  # noqa: F401 - the CLI's public names
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    build_parser,
    filters_of,
    parse_time,
    where_clause,
)
from shield_addon.cli.render import render, shorten  # noqa: F401

COMMANDS = {  # command -> (module in this package, function)
    "timeline": ("timeline", "cmd_timeline"), "show": ("show", "cmd_show"), "sql": ("data", "cmd_sql"),
    "verify": ("data", "cmd_verify"), "key": ("data", "cmd_key"), "export": ("data", "cmd_export"),
    "report": ("data", "cmd_report"), "rules": ("rules", "cmd_rules"), "agents": ("credentials", "cmd_agents"),
    "env": ("credentials", "cmd_env"), "ca": ("credentials", "cmd_ca"), "run": ("proxy", "cmd_run"), "demo": ("proxy", "cmd_demo"),
    "review": ("proxy", "cmd_review"), "fleet": ("fleet", "cmd_fleet"),
}


def command(name: str) -> Callable[..., int]:
    module, func = COMMANDS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), func)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["run"], ["demo"], ["review"]):  # the unknown arguments are mitmproxy's
        args, extra = parser.parse_known_args(argv)
        return command(argv[0])(args, extra)
    args = parser.parse_args(argv)
    try:
        return command(args.cmd)(args)
    except UsageError as e:
        print(f"shield: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:
        # Each checked only if its module was loaded: importing one to catch its errors is
        # what a command that never needed it would pay for.
        queries, agents = sys.modules.get("shield_addon.queries"), sys.modules.get("shield_addon.agents")
        duckdb = sys.modules.get("duckdb") or sys.modules.get("_duckdb")  # shield_addon.duck loads the engine alone
        if queries and isinstance(e, queries.ReaderError) or agents and isinstance(e, agents.AgentError):
            print(f"shield: {e}", file=sys.stderr)
            return EXIT_USAGE
        if duckdb and isinstance(e, duckdb.Error):  # a locked or damaged store must not end in a traceback
            print(f"shield: audit store: {e}", file=sys.stderr)
            return EXIT_USAGE
        fleet_db, psycopg = sys.modules.get("shield_addon.fleet.db"), sys.modules.get("psycopg")
        if fleet_db and isinstance(e, fleet_db.FleetError):
            print(f"shield: {e}", file=sys.stderr)
            return EXIT_USAGE
        if psycopg and isinstance(e, psycopg.Error):  # the fleet database failed mid-question
            print(f"shield: fleet database: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}",
                  file=sys.stderr)
            return EXIT_USAGE
        raise
