"""`shield`: argument parsing and rendering only; the work lives in the other modules."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shield_addon import __version__, agents, paths, record, store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: print it, exit 2, no traceback."""


# ---------------------------------------------------------------- filters -> WHERE

FILTERS = (  # flag, timeline column, how it compares, help
    ("agent", "agent", "glob", "agent name (glob)"),
    ("action_type", "action_type", "eq", "read | create | update | delete | execute | other"),
    ("namespace", "namespace", "glob", "Kubernetes namespace (glob)"),
    ("table", "tables", "list", "SQL/PostgREST table the action touched"),
    ("reviewer", "reviewer", "glob", "who decided (glob)"),
    ("decision", "decision", "eq", "allowed | approved | denied | killed | blocked | timed_out | abandoned"),
    ("rule", "rule_id", "eq", "id of the deciding rule"),
    ("host", "host", "glob", "destination host (glob)"),
    ("service", "service", "glob", "kubernetes | sql | graphql | aws:* | postgrest | mcp | a host (glob)"),
    ("flow", "flow_id", "prefix", "flow id or a prefix of it"),
    ("hold", "hold_id", "prefix", "retry-mode hold id (or a prefix): the held attempt, its retries, the forwarded one"),
)


def add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (combine freely; globs like 'prod*' work where noted)")
    for flag, _, _, text in FILTERS:
        g.add_argument("--" + flag.replace("_", "-"), help=text)
    g.add_argument("--since", help="start: 2h, 30m, 7d or ISO-8601 (UTC unless it says otherwise)")
    g.add_argument("--until", help="end: same forms as --since")


def where_clause(args: argparse.Namespace) -> tuple[str, list[Any]]:
    """One parameterised WHERE for every listing command; values are never pasted into SQL."""
    conds: list[str] = []
    params: list[Any] = []
    for flag, column, how, _ in FILTERS:
        value = getattr(args, flag, None)
        if value is None:
            continue
        if how == "glob":
            conds.append(f"{column} GLOB ?")
        elif how == "list":
            conds.append(f"list_contains({column}, ?)")
        elif how == "prefix":
            conds.append(f"starts_with({column}, ?)")
        else:
            conds.append(f"{column} = ?")
        params.append(value)
    for flag, op in (("since", ">="), ("until", "<")):
        value = getattr(args, flag, None)
        if value:
            conds.append(f"ts {op} ?")
            params.append(parse_time(value, flag))
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def parse_time(text: str, flag: str = "since", now: datetime | None = None) -> datetime:
    """'2h', '30m', '7d', '45s' ago, or ISO-8601; returns naive UTC like the ts column."""
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"(\d+)\s*([smhdw])", text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return (now - timedelta(**{unit: int(m.group(1))})).replace(tzinfo=None)
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--{flag}: {text!r} is neither a duration like 2h/30m/7d nor an ISO-8601 time") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


# ---------------------------------------------------------------- output


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, title: str | None = None,
           optional: Sequence[str] = (), middle: str | None = None, fold: str | None = None) -> None:
    """`optional`: table columns that may be left out, first ones first, when all are empty
    or the terminal is too narrow; `middle`: the column to shorten in the middle before that;
    `fold`: a column of prose that may wrap onto more lines."""
    if fmt == "json":
        for r in rows:
            print(json.dumps(dict(zip(columns, r)), default=_json_default, ensure_ascii=False))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        for r in rows:  # CSV ends up in terminals and spreadsheets too: no raw control characters
            w.writerow(["" if v is None else record.safe_text(_plain(v), newlines=True) for v in r])
    else:
        print_table(columns, rows, title, optional, middle, fold)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None,
                optional: Sequence[str] = (), middle: str | None = None, fold: str | None = None) -> None:
    from rich.console import Console

    console = Console()
    cells = [[record.safe_text(_plain(v)) if v is not None else "" for v in r] for r in rows]
    dcol = columns.index("decision") if "decision" in columns else -1
    styles = [DECISION_STYLE.get(r[dcol], "") if dcol >= 0 else "" for r in rows]
    layout = fit(columns, cells, console.width, optional, middle, fold)
    if layout is None:
        # Too wide whatever is left out: one block per row, like psql's `\x auto`,
        # instead of a table folded to a few letters per line.
        print_records(console, columns, cells, styles, title)
    else:
        keep, shown, hidden = layout
        console.print(_table(columns, keep, shown, styles, title, fold))
        sys.stdout.flush()  # the note goes to stderr, after the table
        if hidden:
            print(f"(too narrow for: {', '.join(hidden)}; widen the terminal, or use --json)", file=sys.stderr)
    if not rows:
        print("(no rows)", file=sys.stderr)


def fit(columns: Sequence[str], cells: Sequence[Sequence[str]], width: int, optional: Sequence[str],
        middle: str | None, fold: str | None = None) -> tuple[list[str], Sequence[Sequence[str]], list[str]] | None:
    """(columns shown, their cells, columns left out) for a table at most `width` wide, or
    None when no choice fits. Empty optional columns go first, silently; then the middle
    column is shortened down to MIDDLE_MIN, and if that is not enough the next optional
    column goes. The `fold` column counts as FOLD_MIN wide: it wraps. Widths are counted
    once, not measured by rendering: a timeline can have many thousand rows."""
    from rich.cells import cell_len

    natural = {c: max([cell_len(c), *(cell_len(r[i]) for r in cells)]) for i, c in enumerate(columns)}
    if fold in natural:
        natural[fold] = max(cell_len(fold), min(natural[fold], FOLD_MIN))
    keep = [c for i, c in enumerate(columns) if c not in optional or not cells or any(r[i] for r in cells)]
    hidden: list[str] = []

    def excess(middle_width: int | None = None) -> int:
        widths = [natural[c] if c != middle or middle_width is None else max(cell_len(c), min(natural[c], middle_width))
                  for c in keep]
        return sum(widths) + COLUMN_GAP * (len(widths) - 1) - width

    while (over := excess()) > 0:
        if middle in keep:
            short = max(MIDDLE_MIN, natural[middle] - over)
            if excess(short) <= 0:
                m = columns.index(middle)
                return keep, [[shorten(v, short) if j == m else v for j, v in enumerate(r)] for r in cells], hidden
        gone = next((c for c in optional if c in keep), None)
        if gone is None:
            return None
        keep.remove(gone)
        hidden.append(gone)
    return keep, cells, hidden


def print_records(console: Any, columns: Sequence[str], cells: Sequence[Sequence[str]], styles: Sequence[str],
                  title: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    if title:
        console.print(Text(title, style="bold"))
    for n, (texts, style) in enumerate(zip(cells, styles), 1):
        console.print(Text(f"-[ row {n} ]", style="dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")  # a long value continues under itself, not under the names
        for c, v in zip(columns, texts):
            grid.add_row(Text(c), Text(v, style=style))
        console.print(grid)


MIDDLE_MIN = 24  # below this a shortened request says too little to be worth its column
FOLD_MIN = 24  # prose narrower than this reads badly folded
COLUMN_GAP = 2  # what _table puts between two columns


def _table(columns: Sequence[str], keep: Sequence[str], cells: Sequence[Sequence[str]], styles: Sequence[str],
           title: str | None, fold: str | None = None) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # No vertical rules and one space between columns: an 80-column terminal is common.
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for c in keep:
        table.add_column(c, overflow="fold", no_wrap=c != fold)  # fit() made the others fit
    at = [columns.index(c) for c in keep]
    for texts, style in zip(cells, styles):
        # Text(), never markup: a path like "[red]" or an ESC byte is shown, not obeyed.
        table.add_row(*(Text(texts[i]) for i in at), style=style)
    return table


DECISION_STYLE = {
    "approved": "green", "allowed": "", "denied": "red", "blocked": "red", "killed": "magenta",
    "timed_out": "yellow", "abandoned": "dim",
}


def _plain(v: Any) -> str:
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def fmt_of(args: argparse.Namespace) -> str:
    return "json" if getattr(args, "json", False) else "csv" if getattr(args, "csv", False) else "table"


def add_format(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="one JSON object per line")
    g.add_argument("--csv", action="store_true", help="CSV with a header row")


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    argv = ["-s", str(paths.ADDON)]
    if args.listen_port is not None:
        argv += ["--listen-port", str(args.listen_port)]
    if args.confdir:
        argv += ["--set", f"confdir={args.confdir}"]
    if args.reviewer:
        argv += ["--set", f"shield_reviewer={args.reviewer}"]
    given = paths.confdir_option(extra) or args.confdir  # `--set confdir=X` works as well as --confdir X
    confdir = Path(given).expanduser() if given else paths.default_confdir()
    # Before mitmproxy: it reads config.yaml from the confdir and writes its CA there, and
    # a bad confdir would end in a traceback (issue #8).
    if problem := paths.check_confdir(confdir):
        print(f"shield: {problem}", file=sys.stderr)
        return EXIT_USAGE
    htpasswd = agents.htpasswd_path(confdir)
    if htpasswd.exists() and agents.list_agents(confdir) and not any(a.startswith("proxyauth") for a in extra):
        argv += ["--set", f"proxyauth=@{htpasswd}"]
    argv += extra
    tool = mitm.mitmdump if args.headless else mitm.mitmweb if args.web else mitm.mitmproxy
    return tool(argv) or 0


def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from mitmproxy.tools import main as mitm

    work = Path(args.dir).expanduser()
    argv = ["-s", str(paths.ADDON), "-s", str(paths.DEMO), "--listen-host", "127.0.0.1", "--listen-port", str(args.port),
            "--set", f"confdir={work / 'conf'}", "--set", f"shield_dir={work / 'audit'}", "--set", "proxyauth=any",
            "--set", "console_focus_follow=true"]
    if args.auto:
        argv += ["--set", "shield_demo_auto=true", "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    print(f"agent-shield demo: a scripted agent against a fake production API; the trail goes to {work / 'audit'}",
          file=sys.stderr)
    rc = (mitm.mitmdump if args.auto else mitm.mitmproxy)([*argv, *extra]) or 0
    args.dir, args.follow, args.limit = str(work / "audit"), False, None
    print()
    cmd_timeline(args)
    print(f"\nNext: shield show FLOW_ID --dir {work / 'audit'}   |   shield verify --dir {work / 'audit'} "
          f"--confdir {work / 'conf'}", file=sys.stderr)
    return rc


def cmd_timeline(args: argparse.Namespace) -> int:
    if args.follow:
        return follow_timeline(args)
    cols, rows = timeline_rows(args)
    if fmt_of(args) == "table":
        cols, rows = for_people(cols, rows)
    render(cols, rows, fmt_of(args), title="agent-shield timeline", optional=TIMELINE_OPTIONAL, middle="request")
    return EXIT_OK


# What a narrow terminal gives up first; `shield show` and --json have all of it.
TIMELINE_OPTIONAL = ("ms", "action", "reviewer", "rule", "agent")


def timeline_rows(args: argparse.Namespace) -> tuple[list[str], list[tuple]]:
    where, params = where_clause(args)
    with store.connect_reader(audit_dir(args)) as con:
        sql = f"SELECT * FROM timeline{where}"
        if args.limit:  # the newest N, still shown oldest first
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, flow_id DESC LIMIT ?)"
            params.append(args.limit)
        cur = con.execute(sql + " ORDER BY ts, flow_id", params)
        return [d[0] for d in cur.description], cur.fetchall()


def follow_timeline(args: argparse.Namespace, interval: float = 1.0) -> int:
    """Like `tail -f`: the newest flows, then each flow again whenever its decision or
    outcome changes, until interrupted."""
    import time as _time

    shown: dict[str, tuple] = {}
    args.limit = args.limit or 20
    first = True
    try:
        while True:
            cols, rows = timeline_rows(args)
            fresh = []
            for r in rows:
                t = dict(zip(cols, r))
                state = (t["decision"], t["outcome"], t["status_code"])
                if shown.get(t["flow_id"]) != state:
                    shown[t["flow_id"]] = state
                    fresh.append(r)
            if fresh or first:
                if fmt_of(args) == "json":
                    render(cols, fresh, "json")
                else:
                    people_cols, people_rows = for_people(cols, fresh)
                    req = people_cols.index("request")
                    for row in people_rows:
                        row[req] = shorten(row[req], FOLLOW_REQUEST_WIDTH)
                        print("  ".join(record.safe_text(_plain(v)) if v is not None else "-" for v in row))
                sys.stdout.flush()
            first = False
            args.since = args.since or _plain(rows[-1][cols.index("ts")]) if rows else args.since
            args.limit = None
            _time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK


FOLLOW_REQUEST_WIDTH = 64  # a line per change, unaligned: long paths cut in the middle


def cmd_report(args: argparse.Namespace) -> int:
    from shield_addon import report

    where, params = where_clause(args)
    words = ", ".join(f"{flag.replace('_', '-')} {getattr(args, flag)}" for flag in
                      [f for f, *_ in FILTERS] + ["since", "until"] if getattr(args, flag, None)) or None
    with store.connect_reader(audit_dir(args)) as con:
        page = report.render_report(con, where, params, title=args.title, filter_text=words)
    Path(args.html).write_text(page, encoding="utf-8")
    print(f"report written to {args.html} ({len(page):,} bytes; self-contained, open it in any browser)")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from shield_addon import export

    out = Path(args.out)
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise UsageError(f"{out} exists: export to a new path")
    where, params = where_clause(args)
    filters = {flag: getattr(args, flag, None) for flag, *_ in FILTERS} | {"since": args.since, "until": args.until}
    with store.connect_reader(audit_dir(args)) as con:
        manifest = export.export(con, args.format, out, where, params, audit_dir(args), filters)
    print(export.describe(manifest, out))
    return EXIT_OK


def for_people(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """The timeline narrowed to what fits a terminal; --json and --csv keep every column."""
    out = []
    for r in rows:
        t = dict(zip(cols, r))
        what = " ".join(str(x) for x in (t["service"], t["operation"]) if x)
        where = "/".join(str(x) for x in (t["namespace"], t["resource_name"]) if x) or ",".join(t["tables"] or [])
        out.append([
            t["ts"].strftime("%m-%d %H:%M:%S") if t["ts"] else "",
            (t["flow_id"] or "")[:8],
            t["agent"],
            f"{t['method']} {t['host']}{t['path']}",  # print_table shortens it to what the terminal has room for
            shorten(f"{what} {where}".strip(), 36),
            t["rule_id"],
            t["decision"],
            t["reviewer"],
            t["status_code"] if t["status_code"] is not None else t["outcome"],
            f"{t['duration_ms']:.0f}" if t["duration_ms"] is not None else None,
        ])
    return ["time (UTC)", "flow", "agent", "request", "action", "rule", "decision", "reviewer", "status", "ms"], out


def shorten(text: str, width: int) -> str:
    """Cut the middle, where long paths repeat themselves, and keep both ends."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2):]


def cmd_show(args: argparse.Namespace) -> int:
    with store.connect_reader(audit_dir(args)) as con:
        found = store.find_flows(con, args.flow_id)
        if not found:
            raise UsageError(f"no flow with id {args.flow_id!r}")
        if len(found) > 1:
            raise UsageError(f"{args.flow_id!r} is ambiguous: {', '.join(f[0] for f in found[:5])}")
        flow_id, first_seq, last_seq = found[0]
        rows = store.rows_as_dicts(con.execute(
            "SELECT * FROM events WHERE seq BETWEEN ? AND ? AND flow_id = ? ORDER BY seq", [first_seq, last_seq, flow_id]))
        chain = store.chain_status(con, [r["seq"] for r in rows])
    if args.json:
        for r in rows:
            print(json.dumps({**r, "hash_ok": chain[r["seq"]][0], "link_ok": chain[r["seq"]][1]},
                             default=_json_default, ensure_ascii=False))
        return EXIT_OK
    for label, text in flow_summary(rows, chain):
        print(f"{label:9} {record.safe_text(text)}")
    for i, r in enumerate(rows):
        ok = "✓" if all(chain[r["seq"]]) else "✗ " + ("row_hash" if not chain[r["seq"]][0] else "link")
        print(f"\n--- seq {r['seq']}  {r['stage']}  {_plain(r['ts'])}  chain {ok}")
        for k, v in r.items():
            if v is None or v == [] or k in ("seq", "stage", "ts") or (i and k in REPEATED):
                continue
            text = record.safe_text(pretty(k, v), newlines=True).replace("\n", "\n" + " " * 21)
            print(f"  {k:18} {text}")
    return EXIT_OK


# Columns every event of a flow repeats: shown once, with the first event.
REPEATED = {"chain_id", "flow_id", "agent", "client_ip", "method", "scheme", "host", "port", "path", "url"}


def flow_summary(rows: Sequence[dict[str, Any]], chain: dict[int, tuple[bool, bool]]) -> list[tuple[str, str]]:
    """The story of one flow in a few lines, before its events."""
    first = rows[0]
    by_stage = {r["stage"]: r for r in rows}
    req, dec = by_stage.get("request", first), by_stage.get("decision")
    end = by_stage.get("response") or by_stage.get("error")
    out = [("flow", f"{first['flow_id']}  agent {first['agent']}  from {first['client_ip']}"),
           ("request", f"{first['method']} {first['url']}  ({req.get('request_body_size') or 0} bytes, "
                       f"sha256 {(req.get('request_sha256') or '-')[:16]})")]
    if req.get("service"):
        target = "/".join(x for x in (req["resource_type"], req["resource_name"]) if x)
        where = f" in {req['namespace']}" if req["namespace"] else ""
        tables = f" tables {','.join(req['tables'])}" if req["tables"] else ""
        out.append(("action", f"{req['service']} {req['operation']} {target}{where}{tables} ({req['action_type']})"))
        matched = ", ".join(req["matched_rules"] or []) or "none"
        out.append(("rules", f"verdict {req['verdict']} by {req['rule_id'] or 'the default'} (matched: {matched}; "
                             f"mode {req['mode']}, ruleset {(req['ruleset_sha256'] or '')[:12]})"))
    if dec:
        comment = f' "{dec["reviewer_comment"]}"' if dec["reviewer_comment"] else ""
        out.append(("decision", f"{dec['decision']} by {dec['reviewer'] or '-'} at {_plain(dec['decided_at'])} "
                                f"via {dec['operation']}{comment}"))
        if dec["edited"]:
            out.append(("edited", "yes: the reviewer changed the request; forwarded_request below has what was sent"))
    elif req.get("decision"):
        out.append(("decision", f"{req['decision']} by the rules"))
    if end:
        status = end["status_code"] if end["status_code"] is not None else end["error"]
        out.append(("outcome", f"{end['outcome']}: {status}, {end['response_body_size'] or 0} bytes, {end['duration_ms']} ms"))
    bad = [seq for seq, (h, link) in chain.items() if not (h and link)]
    seqs = sorted(chain)
    out.append(("chain", f"{len(rows)} events, seq {seqs[0]}..{seqs[-1]}: " +
                ("every row hash and link verifies" if not bad else f"BROKEN at seq {', '.join(map(str, bad))}")))
    return out


def pretty(key: str, value: Any) -> str:
    """Headers one per line, JSON bodies indented; everything else as it is."""
    if key in ("request_headers", "response_headers") and isinstance(value, str):
        return "\n".join(f"{k}: {v}" for k, v in json.loads(value))
    if key in ("forwarded_request", "request_body", "response_body") and isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return _plain(value)


def cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    try:
        statements = duckdb.extract_statements(args.query)
    except duckdb.Error as e:
        raise UsageError(f"SQL: {e}") from None
    readonly = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
    bad = [s.type.name for s in statements if s.type not in readonly]
    if bad or not statements:
        raise UsageError(f"shield sql runs reads only (SELECT, WITH, EXPLAIN); refused: {', '.join(bad) or 'empty'}")
    with store.connect_reader(audit_dir(args)) as con:
        try:
            cur = con.execute(args.query)
        except duckdb.Error as e:
            raise UsageError(f"SQL: {e}") from None
        cols = [d[0] for d in cur.description]
        render(cols, cur.fetchall(), fmt_of(args))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from shield_addon import verify

    adir = audit_dir(args)
    if not (adir / store.JOURNAL_DIR).is_dir():
        raise UsageError(f"no audit trail in {adir} (use --dir)")
    public = public_key(args)
    with progress_bar("verifying") as advance:
        report = verify.verify(adir, public, advance)
    if report.ok:
        tail = f"; {report.unsigned} newest event(s) not signed yet (a crash, or the proxy is running)" if report.unsigned else ""
        print(f"OK: {report.events} events, seq 1..{report.last_seq}, chain {report.chain_id}, "
              f"{report.checkpoints} signed checkpoint(s) up to seq {report.signed_seq}{tail}")
        return EXIT_OK
    first = report.problems[0]
    print(f"BROKEN: {first}")
    for p in report.problems[1:10]:
        print(f"  also {p}")
    if len(report.problems) > 10:
        print(f"  … {len(report.problems) - 10} more")
    return EXIT_FAILED


def public_key(args: argparse.Namespace) -> Any:
    from shield_addon import checkpoints

    try:
        if args.key:
            return checkpoints.load_public(Path(args.key).read_bytes())
        private = confdir_of(args) / checkpoints.KEY_FILE
        if private.exists():
            return checkpoints.load_or_create_key(confdir_of(args)).public_key()
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the public key: {e}") from None
    raise UsageError("no public key: pass --key FILE (from `shield key export` on the proxy's host) or --confdir")


class progress_bar:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, what: str):
        self.what, self.bar = what, None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=Console(stderr=True))
            self.bar.start()
            task = self.bar.add_task(self.what, total=None)
            return lambda n: self.bar.update(task, completed=n, description=f"{self.what}: {n:,} events")
        return None

    def __exit__(self, *exc: Any) -> None:
        if self.bar:
            self.bar.stop()


def cmd_key(args: argparse.Namespace) -> int:
    from shield_addon import checkpoints

    path = confdir_of(args) / checkpoints.KEY_FILE
    if not path.exists():
        raise UsageError(f"no signing key in {confdir_of(args)}: the proxy creates it on its first start")
    pem = checkpoints.public_pem(checkpoints.load_or_create_key(confdir_of(args)))
    if args.out:
        Path(args.out).write_text(pem)
        print(f"public key written to {args.out}", file=sys.stderr)
    else:
        print(pem, end="")
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from shield_addon import rules

    source = args.path or str(paths.bundled_rules())
    try:
        ruleset = rules.load_path(source)
    except rules.RuleError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.rules_cmd == "check":
        print(f"OK: {len(ruleset.rules)} rules in {len(ruleset.files)} file(s), default {ruleset.default}, "
              f"sha256 {ruleset.sha256}")
        return EXIT_OK
    return {"test": rules_test, "explain": rules_explain, "replay": rules_replay}[args.rules_cmd](args, ruleset)


def rules_test(args: argparse.Namespace, ruleset: Any) -> int:
    from shield_addon import ruletest

    rows, failures = [], 0
    for file, line, result in ruletest.run_tests(ruleset):
        failures += result is not None
        rows.append(["pass" if result is None else "FAIL", f"{file}:{line}", result or ""])
    render(["result", "test", "why"], rows, fmt_of(args), fold="why")
    print(f"{len(rows) - failures} passed, {failures} failed")
    return EXIT_FAILED if failures else EXIT_OK


def rules_explain(args: argparse.Namespace, ruleset: Any) -> int:
    from shield_addon import rules, ruletest

    headers = []
    for h in args.header or []:
        if ":" not in h:
            raise UsageError(f"--header {h!r}: use NAME:VALUE")
        k, v = h.split(":", 1)
        headers.append((k.strip(), v.strip()))
    body: bytes | str = Path(args.body_file).read_bytes() if args.body_file else (args.body or "")
    request = {"method": args.method, "url": args.url, "headers": headers, "body": body, "agent": args.agent or ""}
    try:
        subject = ruletest.subject_for(ruleset, request)
    except ValueError as e:
        raise UsageError(f"bad request: {e}") from None
    v = rules.evaluate(ruleset, subject)
    a = v.action
    print(record.safe_text(f"request  {subject.request.method} {args.url}"))
    print("action   " + record.safe_text(" ".join(
        f"{k}={val}" for k, val in (("service", a.service), ("action_type", a.action_type), ("operation", a.operation),
                                    ("resource_type", a.resource_type), ("namespace", a.namespace),
                                    ("resource_name", a.resource_name), ("tables", ",".join(a.tables)),
                                    ("statements", ",".join(a.statements)), ("flags", ",".join(sorted(a.flags))))
        if val)))
    print("rules")
    for rule in ruleset.rules:
        checks = rule.predicate.explain(subject)
        hit = all(ok for _, ok in checks)
        why = ", ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in checks) or "matches everything"
        tag = "MATCH" if hit else "  -  "
        extra = f" -> {rule.action}" + (" (shadow)" if rule.mode == "shadow" else "") if hit else ""
        print(f"  {tag} {rule.id:28} {why}{extra}   [{Path(rule.file).name}:{rule.line}]")
    decided = f" by {v.rule.id}" if v.rule else " (default)"
    print(f"verdict  {v.verdict}{decided}" + (f"; enforced: {v.enforced}" if v.shadowed else ""))
    return EXIT_OK


def rules_replay(args: argparse.Namespace, ruleset: Any) -> int:
    """Recorded requests against a candidate rule set: what would change."""
    from shield_addon import rules, ruletest

    where, params = where_clause(args)
    with store.connect_reader(audit_dir(args)) as con:
        cur = con.execute(
            "SELECT e.* FROM events e SEMI JOIN (SELECT flow_id FROM timeline" + where + ") t USING (flow_id) "
            "WHERE e.stage = 'request' ORDER BY e.seq", params)
        recorded = store.rows_as_dicts(cur)
    changes, same = [], 0
    for row in recorded:
        v = rules.evaluate(ruleset, ruletest.subject_for(ruleset, ruletest.recorded_request(row)))
        was = row["verdict"]
        if (v.verdict, v.rule.id if v.rule else None) == (was, row["rule_id"]):
            same += 1
            continue
        changes.append([_plain(row["ts"]), row["flow_id"][:8], row["agent"], shorten(f"{row['method']} {row['url']}", 60),
                        f"{was} ({row['rule_id'] or 'default'})", f"{v.verdict} ({v.rule.id if v.rule else 'default'})"])
    render(["time (UTC)", "flow", "agent", "request", "recorded", "candidate"], changes, fmt_of(args),
           title="what the candidate rules would change", middle="request")
    stricter = sum(1 for c in changes if c[5].split()[0] != "allow" and c[4].split()[0] == "allow")
    print(f"{len(recorded)} recorded requests: {same} unchanged, {len(changes)} changed "
          f"({stricter} newly held or denied)", file=sys.stderr)
    return EXIT_OK


def cmd_agents(args: argparse.Namespace) -> int:
    confdir = confdir_of(args)
    if args.agents_cmd in ("add", "rotate"):
        token = (agents.add if args.agents_cmd == "add" else agents.rotate)(confdir, args.name)
        print(f"agent {args.name!r} {'added' if args.agents_cmd == 'add' else 'has a new token'}; its token (shown once):\n{token}")
        print(f"\nexport lines: shield env {args.name} --token={token}", file=sys.stderr)
    elif args.agents_cmd == "remove":
        agents.remove(confdir, args.name)
        print(f"agent {args.name!r} removed")
    else:
        for name in agents.list_agents(confdir):
            print(name)
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    confdir = confdir_of(args)
    if args.name not in agents.list_agents(confdir):
        raise UsageError(f"no agent {args.name!r}; add it with: shield agents add {args.name}")
    pairs = agents.env_vars(args.name, args.token or "TOKEN", args.host, args.port,
                            confdir / "mitmproxy-ca-cert.pem", args.no_proxy or "")
    print("\n".join(agents.env_lines(pairs, args.shell)))
    if not args.token:
        print("# replace TOKEN with the agent's token (printed once by `shield agents add`)", file=sys.stderr)
    return EXIT_OK


def audit_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir).expanduser()


def confdir_of(args: argparse.Namespace) -> Path:
    return Path(args.confdir).expanduser() if args.confdir else paths.default_confdir()


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=os.environ.get("SHIELD_DIR", "./shield-audit"),
                        help="audit directory (default: ./shield-audit, or $SHIELD_DIR)")
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("--confdir", help="mitmproxy confdir (default: ~/.mitmproxy)")

    p = argparse.ArgumentParser(
        prog="shield",
        description="agent-shield: an in-line guard for AI agents. Their HTTP(S) goes through mitmproxy; every "
                    "request is checked against YAML rules, risky ones are held for a reviewer, and everything "
                    "lands in a tamper-evident audit trail (journal + audit.duckdb).",
    )
    p.add_argument("--version", action="version", version=f"agent-shield {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", parents=[conf], help="start the proxy (console; --headless: mitmdump; --web: mitmweb)",
                       description="Start mitmproxy with the shield addon, the bundled rules and ./shield-audit. "
                                   "Unknown arguments go to mitmproxy, e.g. --set shield_rules=./rules.")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--headless", action="store_true", help="mitmdump: no console (no reviewer unless via commands)")
    g.add_argument("--web", action="store_true", help="mitmweb: review in the browser")
    r.add_argument("--listen-port", type=int, help="proxy port (default 8080)")
    r.add_argument("--reviewer", help="name recorded with this console's decisions (default: the OS user)")

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

    t = sub.add_parser("timeline", parents=[common], help="one row per flow, in order",
                       description="One row per flow, ordered by its first event, with the newest events included.")
    add_filters(t)
    add_format(t)
    t.add_argument("--limit", type=int, help="only the newest N flows")
    t.add_argument("--follow", "-f", action="store_true",
                   help="keep printing new flows, and flows again when decided, like tail -f (Ctrl-C stops)")

    x = sub.add_parser("export", parents=[common], help="Parquet (hive-partitioned by date), JSONL or OCSF, with a manifest",
                       description="Export the events of the flows the filters select (all events without filters). "
                                   "parquet: a folder, hive-partitioned by date, with the signed checkpoint log; jsonl: "
                                   "one event per line; ocsf: one OCSF 1.3 HTTP Activity (4002) or API Activity (6003) "
                                   "event per flow. Each export has a manifest with its files' SHA-256 and seq range.")
    x.add_argument("--format", required=True, choices=["parquet", "jsonl", "ocsf"])
    y = sub.add_parser("report", parents=[common], help="one self-contained HTML page for an incident review",
                       description="Write one HTML page (no network fetches) with the timeline of the filtered flows, "
                                   "counts by decision, agent and rule, held flows and who decided, and a chart of flows "
                                   "and holds over time.")
    y.add_argument("--html", required=True, help="the page to write")
    y.add_argument("--title", default="agent-shield incident report")
    add_filters(y)
    x.add_argument("--out", required=True, help="a new folder (parquet) or file (jsonl, ocsf)")
    add_filters(x)

    s = sub.add_parser("show", parents=[common], help="every event of one flow",
                       description="Every event of one flow, in order. A unique prefix of the id is enough.")
    s.add_argument("flow_id")
    s.add_argument("--json", action="store_true", help="one JSON object per event")

    q = sub.add_parser("sql", parents=[common], help="read-only SQL over events and timeline",
                       description="Run a read-only SQL query over the tables and views: events, timeline.")
    q.add_argument("query")
    add_format(q)

    v = sub.add_parser("verify", parents=[common, conf], help="prove the trail whole; exit 1 and name the first bad seq",
                       description="Check every row hash and link of the journal, every signed checkpoint, and that "
                                   "audit.duckdb agrees with the journal. Needs only the public key.")
    v.add_argument("--key", help="public key PEM (from `shield key export`); default: derived from the confdir's key")

    k = sub.add_parser("key", help="the checkpoint signing key")
    ksub = k.add_subparsers(dest="key_cmd", required=True, metavar="SUBCOMMAND")
    x = ksub.add_parser("export", parents=[conf], help="print the public key verify needs",
                        description="Print the public key of the confdir's checkpoint signing key (PEM).")
    x.add_argument("--out", help="write it to a file instead")

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
    x.add_argument("--rules", dest="path", help="rule file or folder (default: the bundled rules)")
    x = rsub.add_parser("replay", parents=[common],
                        help="recorded requests against candidate rules: what would change",
                        description="Re-evaluate recorded requests from the audit store against a candidate rule set "
                                    "and list those whose verdict or rule would change. Secrets are redacted and bodies "
                                    "cut in the trail, so rules on those see what the trail kept.")
    x.add_argument("path", nargs="?", help="candidate rule file or folder (default: the bundled rules)")
    add_filters(x)
    add_format(x)

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
    e.add_argument("--shell", choices=agents.SHELLS, default="bash", help="syntax of the lines (default bash)")
    e.add_argument("--no-proxy", help="hosts the agent may reach directly (NO_PROXY); default: none")
    return p


COMMANDS = {
    "timeline": cmd_timeline, "show": cmd_show, "sql": cmd_sql, "verify": cmd_verify, "key": cmd_key,
    "export": cmd_export, "report": cmd_report,
    "rules": cmd_rules, "agents": cmd_agents, "env": cmd_env,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["run"], ["demo"]):
        args, extra = parser.parse_known_args(argv)
        return (cmd_run if argv[0] == "run" else cmd_demo)(args, extra)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except (UsageError, agents.AgentError) as e:
        print(f"shield: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a locked or damaged store must not end in a traceback
        import duckdb

        if isinstance(e, duckdb.Error):
            print(f"shield: audit store: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
