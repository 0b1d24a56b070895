"""`shield`'s arguments: the parser, the shared filter flags, and turning them into a `Filters`."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shield_addon import __version__, paths
from shield_addon.core.durations import HINT, parse_duration
from shield_addon.core.model import Decision

if TYPE_CHECKING:
    from shield_addon.queries import Filters

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENV_FLEET = "SHIELD_FLEET"  # fleet.ENV, without importing the fleet package for --help
SHELLS = ("bash", "fish", "powershell")  # agents.SHELLS, without importing bcrypt for --help


class UsageError(Exception):
    """Bad input from the user: print it, exit 2, no traceback."""


GLOB = "case-insensitive glob"
FILTERS = (  # flag, help; how each compares is queries.FILTER_COLUMNS
    ("agent", f"agent name ({GLOB})"),
    ("action_type", "read | create | update | delete | execute | other"),
    ("namespace", f"Kubernetes namespace ({GLOB})"),
    ("table", f"SQL/PostgREST table the action touched ({GLOB})"),
    ("reviewer", f"who decided ({GLOB})"),
    ("decision", " | ".join(Decision)),
    ("rule", f"id of the deciding rule ({GLOB})"),
    ("host", f"destination host ({GLOB})"),
    ("service", f"kubernetes | sql | graphql | aws:* | postgrest | mcp | a host ({GLOB})"),
    ("flow", "flow id or a prefix of it"),
    ("hold", "retry-mode hold id (or a prefix): the held attempt, its retries, the forwarded one"),
)
TIME_FLAGS = ("since", "until")


def add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "filters", "Combine freely. Globs are matched as in rule files: the whole value, case-insensitive, "
                   "with * ? [abc] (e.g. --agent 'deploy-*' --host '*.prod.example.com').")
    for flag, text in FILTERS:
        g.add_argument("--" + flag.replace("_", "-"), help=text)
    g.add_argument("--since", help="start: a duration ago (30s, 10m, 2h, 1d, 1w, 1h30m) or an ISO-8601 time "
                                   "(UTC unless it says otherwise)")
    g.add_argument("--until", help="end: same forms as --since")


def filters_of(args: argparse.Namespace) -> Filters:
    """The filter flags as the reader's Filters; a bad --since/--until is a UsageError."""
    from shield_addon.queries import Filters  # with its SQL and the schema: data commands only

    given: dict[str, Any] = {flag: getattr(args, flag, None) for flag, _ in FILTERS}
    for flag in TIME_FLAGS:
        text = getattr(args, flag, None)
        given[flag] = parse_time(text, flag) if text else None
    return Filters(**given)


def filters_given(args: argparse.Namespace) -> dict[str, Any]:
    """The filter flags as the user typed them (export manifests, report headers)."""
    return {flag: getattr(args, flag, None) for flag in [*(f for f, _ in FILTERS), *TIME_FLAGS]
            if getattr(args, flag, None) is not None}


def where_clause(args: argparse.Namespace) -> tuple[str, list[Any]]:
    """The flags' parameterised WHERE over the timeline (as Filters.where)."""
    return filters_of(args).where()


def parse_time(text: str, flag: str = "since", now: datetime | None = None) -> datetime:
    """A duration ago (the rules' grammar: 2h, 30m, 1h30m ...) or ISO-8601; naive UTC like the ts column."""
    try:
        ago = parse_duration(text)
    except ValueError:
        pass
    else:
        return ((now or datetime.now(UTC)) - timedelta(seconds=ago)).replace(tzinfo=None)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--{flag}: {text!r} is neither {HINT} nor an ISO-8601 time") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def audit_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir).expanduser()


def confdir_of(args: argparse.Namespace) -> Path:
    return Path(args.confdir).expanduser() if args.confdir else paths.default_confdir()


def add_format(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line")
    g.add_argument("--csv", action="store_true", help="CSV with a header row")


def profiles() -> list[str]:
    """The bundled profiles: the folders of rules/profiles/."""
    folder = paths.bundled_rules() / "profiles"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=os.environ.get("SHIELD_DIR", "./shield-audit"),
                        help="audit directory (default: ./shield-audit, or $SHIELD_DIR)")
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("--confdir", help="mitmproxy confdir (default: ~/.mitmproxy)")
    fleet = argparse.ArgumentParser(add_help=False)
    add_fleet(fleet)

    p = argparse.ArgumentParser(
        prog="shield",
        description="agent-shield: an in-line guard for AI agents. Their HTTP(S) goes through mitmproxy; every "
                    "request is checked against YAML rules, risky ones are held for a reviewer, and everything "
                    "lands in a tamper-evident audit trail (journal + audit.duckdb).",
    )
    p.add_argument("--version", action="version", version=f"agent-shield {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _proxy_commands(sub, conf)
    _data_commands(sub, common, conf, fleet)
    _fleet_commands(sub, fleet)
    _rules_commands(sub, common)
    _credential_commands(sub, conf)
    return p


Subparsers = Any  # argparse's _SubParsersAction


def _proxy_commands(sub: Subparsers, conf: argparse.ArgumentParser) -> None:
    r = sub.add_parser("run", parents=[conf], help="start the proxy (console; --headless: mitmdump; --web: mitmweb)",
                       description="Start mitmproxy with the shield addon, the bundled rules and ./shield-audit. "
                                   "Unknown arguments go to mitmproxy, e.g. --set shield_rules=./rules.")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--headless", action="store_true", help="mitmdump: no console (no reviewer unless via commands)")
    g.add_argument("--web", action="store_true", help="mitmweb: review in the browser")
    r.add_argument("--listen-port", type=int, help="proxy port (default 8080)")
    r.add_argument("--reviewer", help="name recorded with this console's decisions (default: the OS user)")
    r.add_argument("--profile", choices=profiles(),
                   help="rules loaded after the rule set: strict holds first contacts with a host, unparsed "
                        "requests and anything no rule names (docs/rules.md#strict-profile)")

    v = sub.add_parser("review", parents=[conf], help="a console over every pending hold of a fleet (--fleet URL)",
                       description="Open mitmproxy's console on the fleet's pending holds, from every proxy: the same keys "
                                   "(y approve, N deny with a reason, X kill). The first decision anywhere wins; the "
                                   "proxy that holds the request applies it. Unknown arguments go to mitmproxy.")
    v.add_argument("--fleet", default=os.environ.get("SHIELD_FLEET", ""),
                   help="the fleet's PostgreSQL URL (default: $SHIELD_FLEET)")
    v.add_argument("--reviewer", help="name recorded with this console's decisions (default: the OS user)")
    v.add_argument("--headless", action="store_true", help="mitmdump: no console (decide through commands)")

    d = sub.add_parser("demo", help="a scripted agent against a fake API: holds, a denial, the timeline",
                       description="Start the proxy with the bundled rules, a fake production API (Kubernetes-, SQL- and "
                                   "payments-like) and a scripted agent that reads, deletes a deployment in prod (held), "
                                   "drops a table (held) and refunds a customer (denied). Approve or deny the holds in "
                                   "the console (y, N); --auto decides for you and runs headless. The timeline follows.")
    d.add_argument("--auto", action="store_true", help="decide the holds automatically and run without a console")
    d.add_argument("--dir", default="./shield-demo", help="where the demo keeps its audit trail and confdir")
    d.add_argument("--port", type=int, default=0, help="proxy port (default: any free one)")
    for flag, *_ in FILTERS:
        d.set_defaults(**{flag: None})
    d.set_defaults(since=None, until=None, json=False, csv=False)


def _data_commands(sub: Subparsers, common: argparse.ArgumentParser, conf: argparse.ArgumentParser,
                   fleet: argparse.ArgumentParser) -> None:
    t = sub.add_parser("timeline", parents=[common, fleet], help="one row per flow, in order",
                       description="One row per flow, ordered by its first event, with the newest events included.")
    add_filters(t)
    add_format(t)
    t.add_argument("--limit", type=int, help="only the newest N flows")
    t.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new flows, and flows again when decided, like tail -f (Ctrl-C stops)")

    x = sub.add_parser("export", parents=[common, fleet], help="Parquet (hive-partitioned by date), JSONL or OCSF, with a manifest",
                       description="Export the events of the flows the filters select (all events without filters). "
                                   "parquet: a folder, hive-partitioned by date, with the signed checkpoint log; jsonl: "
                                   "one event per line; ocsf: one OCSF 1.3 HTTP Activity (4002) or API Activity (6003) "
                                   "event per flow. Each export has a manifest with its files' SHA-256 and seq range.")
    x.add_argument("--format", required=True, choices=["parquet", "jsonl", "ocsf"])
    y = sub.add_parser("report", parents=[common, fleet], help="one self-contained HTML page for an incident review",
                       description="Write one HTML page (no network fetches) with the timeline of the filtered flows, "
                                   "counts by decision, agent and rule, held flows and who decided, and a chart of flows "
                                   "and holds over time.")
    y.add_argument("--html", required=True, help="the page to write")
    y.add_argument("--title", default="agent-shield incident report")
    add_filters(y)
    x.add_argument("--out", required=True, help="a new folder (parquet) or file (jsonl, ocsf)")
    add_filters(x)

    s = sub.add_parser("show", parents=[common, fleet], help="every event of one flow",
                       description="Every event of one flow, in order. A unique prefix of the id is enough.")
    s.add_argument("flow_id")
    s.add_argument("--json", action="store_true", help="one JSON object per event")

    q = sub.add_parser("sql", parents=[common, fleet], help="read-only SQL over events and timeline",
                       description="Run a read-only SQL query over the tables and views: events, timeline, holds, "
                                   "pending, by_agent, by_reviewer, denials. With --fleet: one statement, in a read-only "
                                   "transaction, as the read-only role when there is one; every view has a proxy column.")
    q.add_argument("query")
    add_format(q)

    v = sub.add_parser("verify", parents=[common, conf, fleet], help="prove the trail whole; exit 1 and name the first bad seq",
                       description="Check every row hash and link of the journal, every signed checkpoint, and that "
                                   "audit.duckdb agrees with the journal. Needs only the public key.")
    v.add_argument("--key", action="append",
                   help="public key PEM (from `shield key export`); default: derived from the confdir's key. "
                        "With --fleet, repeat it: one per proxy's signing key")

    k = sub.add_parser("key", help="the checkpoint signing key")
    ksub = k.add_subparsers(dest="key_cmd", required=True, metavar="SUBCOMMAND")
    x = ksub.add_parser("export", parents=[conf], help="print the public key verify needs",
                        description="Print the public key of the confdir's checkpoint signing key (PEM).")
    x.add_argument("--out", help="write it to a file instead")


def _fleet_commands(sub: Subparsers, fleet: argparse.ArgumentParser) -> None:
    f = sub.add_parser("fleet", help="the fleet of proxies sharing one PostgreSQL database")
    fsub = f.add_subparsers(dest="fleet_cmd", required=True, metavar="SUBCOMMAND")
    x = fsub.add_parser("status", parents=[fleet], help="each proxy: last seen, journal and shipped seq, lag",
                        description="Each proxy of the fleet: name, host, listen address, version, when it was last "
                                    "seen (heartbeat age), its journal's seq, the seq shipped to the database, the lag "
                                    "between them and the last shipping error.")
    add_format(x)


def add_fleet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet", metavar="URL",
                   help=f"read the fleet's PostgreSQL database (postgresql://...) instead of --dir; default: ${ENV_FLEET}")


def fleet_of(args: argparse.Namespace) -> str:
    """The fleet URL the command reads (--fleet, else $SHIELD_FLEET), or "" for the local trail."""
    from shield_addon.fleet import fleet_url

    return fleet_url(getattr(args, "fleet", None))


def reader_of(args: argparse.Namespace) -> Any:
    """The trail a data command reads: the fleet database when one is named, else --dir."""
    if url := fleet_of(args):
        from shield_addon.fleet.reads import FleetReader

        return FleetReader(url)
    from shield_addon.reader import Reader

    return Reader(audit_dir(args))


def _rules_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    rl = sub.add_parser("rules", help="check rule files or run their tests:")
    rsub = rl.add_subparsers(dest="rules_cmd", required=True, metavar="SUBCOMMAND")
    x = rsub.add_parser("check", help="validate rule files (exit 2 with file:line:column on error)",
                        description="Validate rule files: schema, regexes, globs, filter expressions, unique ids.")
    x.add_argument("path", nargs="?", help="rule file or folder (default: the bundled rules)")
    x = rsub.add_parser("test", help="run the tests: in rule files (exit 1 if one fails)",
                        description="Run every tests: entry of the rule files and print a pass/fail table.")
    x.add_argument("path", nargs="?", help="rule file or folder (default: the bundled rules)")
    add_format(x)
    x = rsub.add_parser("explain", help="which rules match a request, and why",
                        description="Parse a request into an action and show every rule with each field's result.")
    x.add_argument("method")
    x.add_argument("url")
    x.add_argument("--header", action="append", metavar="K:V", help="a request header (repeatable)")
    b = x.add_mutually_exclusive_group()
    b.add_argument("--body", help="the request body")
    b.add_argument("--body-file", help="read the request body from a file")
    x.add_argument("--agent", help="the agent name, for `agent:` matchers")
    x.add_argument("--count", type=int, default=0, help="requests every `limit:` already counted (default 0)")
    x.add_argument("--now", help="the moment `when:` judges, ISO with offset (default: now)")
    x.add_argument("--seen-host", action="append", help="a host the agent already reached, for `first_contact:`")
    x.add_argument("--rules", dest="path", help="rule file or folder (default: the bundled rules)")
    x = rsub.add_parser("replay", parents=[common],
                        help="recorded requests against candidate rules: what would change",
                        description="Re-evaluate recorded requests from the audit store against a candidate rule set "
                                    "and list those whose verdict or rule would change. Secrets are redacted and bodies "
                                    "cut in the trail, so rules on those see what the trail kept.")
    x.add_argument("path", nargs="?", help="candidate rule file or folder (default: the bundled rules)")
    add_filters(x)
    add_format(x)


def _credential_commands(sub: Subparsers, conf: argparse.ArgumentParser) -> None:
    a = sub.add_parser("agents", help="per-agent proxy credentials")
    asub = a.add_subparsers(dest="agents_cmd", required=True, metavar="SUBCOMMAND")
    x = asub.add_parser("add", parents=[conf], help="create an agent and print its token once")
    x.add_argument("name")
    x = asub.add_parser("remove", parents=[conf], help="remove an agent")
    x.add_argument("name")
    x = asub.add_parser("rotate", parents=[conf], help="issue a new token (the old one stops working)")
    x.add_argument("name")
    asub.add_parser("list", parents=[conf], help="list agents")

    e = sub.add_parser("env", parents=[conf], help="shell exports for an agent (proxy URL and CA)")
    e.add_argument("name")
    e.add_argument("--token", help="the agent's token, to put it into the proxy URL")
    e.add_argument("--host", default="127.0.0.1", help="proxy host (default 127.0.0.1)")
    e.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    e.add_argument("--shell", choices=SHELLS, default="bash", help="syntax of the lines (default bash)")
    e.add_argument("--no-proxy", help="hosts the agent may reach directly (NO_PROXY); default: none")

    c = sub.add_parser("ca", parents=[conf], help="the proxy's CA certificate that agents must trust",
                       description="Print the path of the CA certificate (created in the confdir if missing); "
                                   "--pem prints the certificate itself. The proxy does not serve it (no mitm.it).")
    c.add_argument("--pem", action="store_true", help="print the certificate (PEM) instead of its path")


