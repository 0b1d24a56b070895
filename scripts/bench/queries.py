"""Query benchmark for the audit store (issue #5): synthetic events, then the `shield` commands an analyst runs.

    python scripts/bench_queries.py [--events 10000000] [--dir DIR] [--keep] [--reuse] [--no-export] [--out FILE] [--smoke]

1. Generates --events events in DuckDB SQL alone (range() + hash()) straight into DIR/audit.duckdb `events`
   (exactly record.COLUMNS, seq follows ts), and the next 5,000 into DIR/bench-tail.parquet for step 4: 50 agents
   with a skewed load, kubernetes / sql / github / aws / SaaS+LLM calls, 26 namespaces, ~30 days; a flow is a
   request row, a decision row when held, and a response (or error) row; bodies of a few hundred bytes. NOT real:
   row_hash/prev_hash link but are placeholders (`shield verify` fails, `shield show` says hash_ok false), so are
   the body sha256s; bodies are templates (they compress better than real traffic); hold_id/hold_key stay NULL.
2. store.ingest sets the file up as for a real trail and builds `flows` from the events: timed, it is what
   opening a file written before `flows` existed costs once (the upgrade).
3. Each command warm, asked of one open reader.Reader as the CLI asks it (median/p90 of 7
   after a warm-up), and as a new `shield` process (wall time, median of 5 after a warm-up; `shield --version`
   is the interpreter's share): timeline by agent over an hour and by namespace over a day, counts by decision
   and by rule (`shield sql` on the timeline), `shield show` by full id and by an 8-char prefix. EXPLAIN ANALYZE
   of each statement of a command that misses 50 ms warm.
4. On a copy of the file (DIR/tail/, deleted after): 5,000 events written by journal.Journal, resuming from a
   segment that ends with the file's last row, so they chain on as the proxy's would; connect_reader with that
   unfolded tail, timelines and `show` (a tail flow, a flow continued in the tail, a prefix) over it; then
   store.Ingester folds the tail in 1,000-event batches (append + fold into `flows`, the proxy's per-batch
   cost). The tail's flows must be the same merged on read and folded.
5. `shield export --format parquet` of everything in a child process: wall time and peak RSS (sampled every
   50 ms); killed when its RSS passes --rss-limit-gib.

Measured before with this script (10 M events, 2 cores), now gone from it: timeline was a view grouping every
event by flow, ~7 s a query (4.85 M groups), ~1 s for counts. Filtering events before grouping: 0.14-0.4 s. A
per-flow table folded at ingest: 7-40 ms warm, ~50 ms per 1,000-event batch folded through the PRIMARY KEY index
(INSERT ... ON CONFLICT joined all flows: ~450 ms), ~31 s to build once. An ART index on events(flow_id): show by
id 21 ms, +580 MiB, no help for prefixes. The per-flow table shipped as `flows` (84fba54): 7 s -> tens of ms.
Export no longer copies every event into a temp table (past 12 GiB RSS) but streams with a memory limit.

Without --keep, DIR is deleted at the end (only a directory this script created and marked). --smoke: 2,000
events, one run of each figure, a 300-event tail, in seconds: it checks the tool works (tests/scripts/ runs it).
The code: scripts/bench/queries.py (measuring) and scripts/bench/querydata.py (the synthetic events).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from scripts.bench.querydata import AGENTS, TAIL_FILE, generate
from scripts.bench.querytools import (
    EXE,
    SIZES,
    SMOKE,
    TARGET_MS,
    WARM_TARGET_MS,
    explain,
    figure,
    fmt_ms,
    recorded,
    run_measured,
    shield,
    stats,
    timed,
    work,
)
from shield_addon import __version__, journal, record, store
from shield_addon.reader import Reader

MARKER = ".shield-bench"
DOC = __doc__ or ""


# ================================================================ the steps


def describe_data(con: duckdb.DuckDBPyConnection, results: dict[str, Any]) -> None:
    n, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchone()
    flows = con.execute("SELECT count(*) FROM flows").fetchone()[0]
    by_stage = dict(con.execute("SELECT stage, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC").fetchall())
    dec = con.execute("SELECT decision, round(100.0 * count(*) / sum(count(*)) OVER (), 2) FROM timeline "
                      "GROUP BY ALL ORDER BY 2 DESC").fetchall()
    svc = con.execute("SELECT service, round(100.0 * count(*) / sum(count(*)) OVER (), 1) FROM events "
                      "WHERE stage = 'request' GROUP BY ALL ORDER BY 2 DESC LIMIT 8").fetchall()
    body = con.execute("SELECT round(avg(strlen(request_body)) FILTER (WHERE stage = 'request')), "
                       "round(avg(strlen(response_body)) FILTER (WHERE stage = 'response')) FROM events").fetchone()
    results["data"] = {"events": n, "flows": flows, "first": first, "last": last, "stages": by_stage,
                       "decisions": {str(d): p for d, p in dec}, "avg_request_body": body[0], "avg_response_body": body[1]}
    print(f"  {n:,} events, {flows:,} flows, {first} .. {last}; stages {by_stage}")
    print("  decisions (% of flows): " + ", ".join(f"{d} {p}" for d, p in dec))
    print("  services (% of requests): " + ", ".join(f"{s} {p}" for s, p in svc))
    print(f"  average body: request {body[0]} B, response {body[1]} B")


def choose_queries(con: duckdb.DuckDBPyConnection, audit_dir: Path) -> list[tuple[str, list[str]]]:
    first, last = con.execute("SELECT min(ts), max(ts) FROM flows").fetchone()
    day = datetime.combine((first + (last - first) / 2).date(), datetime.min.time())
    hour = day + timedelta(hours=14)
    held = con.execute("SELECT flow_id FROM flows WHERE ts >= ? AND decision = 'approved' ORDER BY ts LIMIT 20", [hour])
    flow = next(f for (f,) in held.fetchall() if len(store.find_flows(con, f[:8])) == 1)  # a unique 8-char prefix
    d = ["--dir", str(audit_dir)]
    count = "SELECT {0}, count(*) AS flows FROM timeline GROUP BY {0} ORDER BY flows DESC"
    return [
        ("timeline-agent-1h", ["timeline", "--agent", AGENTS[0], "--since", hour.isoformat(),
                               "--until", (hour + timedelta(hours=1)).isoformat(), "--json", *d]),
        ("timeline-ns-day", ["timeline", "--namespace", "prod-3", "--since", day.isoformat(),
                             "--until", (day + timedelta(days=1)).isoformat(), "--json", *d]),
        ("count-by-decision", ["sql", count.format("decision"), "--json", *d]),
        ("count-by-rule", ["sql", count.format("rule_id"), "--json", *d]),
        ("show-id", ["show", flow, "--json", *d]),
        ("show-prefix8", ["show", flow[:8], "--json", *d]),
    ]


def commands(audit_dir: Path, queries: list[tuple[str, list[str]]], results: dict[str, Any]) -> None:
    results["explain"] = {}
    with Reader(audit_dir) as reader:
        for name, argv in queries:
            fn = work(argv)
            warm, rows = timed(lambda f=fn: f(reader))
            figure(results, f"{name} warm", warm, rows)
            figure(results, f"{name} new process", shield(argv))
            if warm["median"] >= WARM_TARGET_MS:
                results["explain"][name] = lines = [ln for sql, params in recorded(reader, fn)
                                                    for ln in explain(reader.con, sql, params)]
                print("\n".join(lines))


def journal_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the journal writes it: timestamps as record.utc_text does."""
    return {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for k, v in row.items()}


def tail(audit_dir: Path, queries: list[tuple[str, list[str]]], results: dict[str, Any]) -> None:
    src = audit_dir / TAIL_FILE
    if not src.exists():
        print(f"  no {TAIL_FILE} (a reused file from an older version of this script): skipped")
        return
    tdir = audit_dir / "tail"
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / store.JOURNAL_DIR).mkdir(parents=True)
    t = time.perf_counter()
    shutil.copyfile(audit_dir / store.DB_NAME, tdir / store.DB_NAME)
    print(f"  copied audit.duckdb to {tdir} in {time.perf_counter() - t:.1f} s")
    with duckdb.connect(str(tdir / store.DB_NAME), read_only=True) as c:
        last = store.rows_as_dicts(c.execute("SELECT * FROM events ORDER BY seq DESC LIMIT 1"))[0]
        events = store.rows_as_dicts(c.execute(f"SELECT * EXCLUDE (seq, chain_id, prev_hash, row_hash, ts) "
                                               f"FROM read_parquet({store.sql_str(str(src))}) ORDER BY seq"))
    # A journal ending where the file ends: Journal.open resumes seq, chain id and prev_hash from its last line.
    seg = tdir / store.JOURNAL_DIR / f"seg-{last['seq']:012d}.jsonl"
    seg.write_text(json.dumps(journal_row(last), ensure_ascii=False, separators=(",", ":")) + "\n")
    j = journal.Journal(tdir / store.JOURNAL_DIR)
    j.open()
    t = time.perf_counter()
    sealed = [f.result(60) for f in [j.submit(journal_row(e)) for e in events]]
    write_ms = (time.perf_counter() - t) * 1000
    j.close()
    assert sealed[0]["seq"] == last["seq"] + 1 and sealed[0]["prev_hash"] == last["row_hash"], "the tail does not chain"
    ids = list(dict.fromkeys(r["flow_id"] for r in sealed))
    print(f"  {len(sealed):,} events of {len(ids):,} flows written with journal.Journal in {write_ms:,.0f} ms, "
          f"seq {sealed[0]['seq']:,}..{sealed[-1]['seq']:,}")

    figure(results, f"connect_reader, {SIZES.tail:,}-event tail", timed(lambda: store.connect_reader(tdir).close())[0])
    con = store.connect_reader(tdir)
    in_file = {r[0] for r in con.execute(f"SELECT flow_id FROM audit.flows WHERE flow_id IN {store.sql_list(ids)}").fetchall()}
    last_hour = ["timeline", "--since", "1h", "--json", "--dir", str(tdir)]
    tail_id = sealed[-1]["flow_id"]  # a flow of the tail's, and one it continues from the file
    older_id = next((i for i in ids if i in in_file), tail_id)
    with_tail = [(n, a) for n, a in queries if n.startswith("timeline")] + [("timeline-last-hour", last_hour)] + [
        ("show-id", ["show", tail_id, "--json", "--dir", str(tdir)]),
        ("show-id-continued", ["show", older_id, "--json", "--dir", str(tdir)]),
        ("show-prefix8", ["show", tail_id[:8], "--json", "--dir", str(tdir)])]
    with Reader(tdir) as reader:
        for name, argv in with_tail:
            fn = work(argv)
            st, rows = timed(lambda f=fn: f(reader))
            figure(results, f"{name} warm, with tail", st, rows)
    for name, argv in with_tail[-4:]:
        figure(results, f"{name} new process, with tail", shield(argv))
    merged = con.execute(f"SELECT * FROM flows WHERE flow_id IN {store.sql_list(ids)} ORDER BY flow_id").fetchall()
    con.close()

    upto = [last["seq"]]
    ingester = store.Ingester(tdir, committed=lambda: upto[0])
    xs, parts = [], []
    for i in range(0, len(sealed), SIZES.batch):
        batch = {r["flow_id"] for r in sealed[i:i + SIZES.batch]}
        parts.append((len(batch), len(batch & in_file)))
        in_file |= batch
        upto[0] = sealed[min(i + SIZES.batch, len(sealed)) - 1]["seq"]
        t = time.perf_counter()
        if not ingester.once():
            raise RuntimeError(f"ingest failed: {ingester.last_error}")
        xs.append((time.perf_counter() - t) * 1000)
    print(f"  Ingester.once per {SIZES.batch:,}-event batch (append + fold into flows): "
          + ", ".join(f"{fmt_ms(x)} ms ({n} flows, {o} continued)" for x, (n, o) in zip(xs, parts)))
    figure(results, f"ingest of a {SIZES.batch:,}-event batch", stats(xs), note="batches " + " / ".join(fmt_ms(x) for x in xs)
           + " ms (the first also runs set_up)")
    with store.connect_reader(tdir) as con:
        folded = con.execute(f"SELECT * FROM flows WHERE flow_id IN {store.sql_list(ids)} ORDER BY flow_id").fetchall()
        left = con.execute("SELECT count(*) FROM journal_tail").fetchone()[0]
    results["tail"] = {"events": len(sealed), "flows": len(ids), "journal_write_ms": write_ms, "ingest_ms": xs,
                       "batches_flows_continued": parts, "merged_equals_folded": merged == folded}
    print(f"  tail flows merged on read == folded at ingest: {merged == folded}; journal rows left unfolded: {left}")
    shutil.rmtree(tdir, ignore_errors=True)


def export(audit_dir: Path, results: dict[str, Any], rss_limit: int) -> None:
    out = audit_dir / "export-parquet"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [EXE, "export", "--format", "parquet", "--out", str(out), "--dir", str(audit_dir)]
    print(f"  {' '.join(cmd)}", flush=True)
    r = run_measured(cmd, audit_dir, rss_limit)
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    files = list(out.rglob("*.parquet")) if out.exists() else []
    size = sum(f.stat().st_size for f in files)
    why = f"KILLED: RSS passed {rss_limit / 2**30:.0f} GiB (--rss-limit-gib)" if r["killed"] else \
        f"exit {r['rc']} {r['stderr'].strip()[-300:]}" if r["rc"] else "ok"
    results["export"] = {"cmd": cmd, "rc": r["rc"], "killed": r["killed"], "seconds": r["seconds"], "files": len(files),
                         "bytes": size, "events": manifest.get("events"), "max_rss_bytes": r["max_rss_bytes"]}
    note = f"{why}; {manifest.get('events') or 0:,} events, {len(files)} files, {size / 2**30:.2f} GiB, " \
           f"peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB"
    figure(results, "shield export --format parquet (all)", stats([r["seconds"] * 1000]), note=note)
    shutil.rmtree(out, ignore_errors=True)


# ================================================================ main


def used_bytes(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as c:
        return c.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]


def prepare_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        d = Path(args.dir).expanduser().resolve()
        if d.exists() and any(d.iterdir()) and not (d / MARKER).exists():
            raise SystemExit(f"{d} exists, is not empty and was not made by this script: choose another --dir")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = Path(tempfile.mkdtemp(prefix="shield-bench-")).resolve()
    (d / MARKER).write_text("made by scripts/bench_queries.py; safe to delete\n")
    return d


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench_queries.py", description=DOC.split("\n\n")[0], epilog=DOC.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="events to generate (default 10,000,000)")
    ap.add_argument("--dir", help="audit directory to create (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the directory (audit.duckdb and the tail source) afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse DIR/audit.duckdb if it already holds --events events")
    ap.add_argument("--out", help="also write every figure as JSON to this file")
    ap.add_argument("--rss-limit-gib", type=float, default=12.0,
                    help="kill the export process when its RSS passes this (default 12 GiB; the box is shared)")
    ap.add_argument("--no-export", action="store_true",
                    help="skip step 5 (the full export: minutes and GiBs), e.g. when re-measuring the commands on a --reuse'd store")
    ap.add_argument("--smoke", action="store_true",
                    help="2,000 events, one run of each figure, a 300-event tail: checks the tool works, in seconds")
    args = ap.parse_args(argv)
    if args.smoke:
        args.events = 2000
        SIZES.__dict__.update(SMOKE.__dict__)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve() if args.out else None
    audit_dir = prepare_dir(args)
    os.chdir(audit_dir)  # DuckDB may spill to ./.tmp: keep it out of the checkout
    cpu = next((ln.split(":")[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    m = {"python": platform.python_version(), "duckdb": duckdb.__version__, "agent_shield": __version__,
         "cores": len(os.sched_getaffinity(0)), "memory_gib": round(ram, 1), "cpu": cpu}
    results: dict[str, Any] = {"machine": m, "events": args.events, "dir": str(audit_dir), "figures": [],
                               "load_start": os.getloadavg()}
    print(f"Python {m['python']}, DuckDB {m['duckdb']}, agent-shield {m['agent_shield']}; {m['cores']} usable cores, "
          f"{ram:.1f} GiB; {cpu}\naudit dir: {audit_dir}; load average {results['load_start']}")
    t0 = time.perf_counter()
    try:
        run(args, audit_dir, results)
    finally:
        results["seconds"] = time.perf_counter() - t0
        results["load_end"] = os.getloadavg()
        if out:
            out.write_text(json.dumps(results, indent=2, default=str))
        os.chdir("/")
        if not args.keep:
            shutil.rmtree(audit_dir, ignore_errors=True)
            print(f"removed {audit_dir} (use --keep to keep it)")
    return 0


def run(args: argparse.Namespace, audit_dir: Path, results: dict[str, Any]) -> None:
    db = audit_dir / store.DB_NAME
    have, has_flows = 0, False
    if args.reuse and db.exists():
        with contextlib.suppress(duckdb.Error), duckdb.connect(str(db), read_only=True) as c:
            have = c.execute("SELECT count(*) FROM events").fetchone()[0]
            has_flows = "flows" in store.table_names(c)
            if [(r[0], r[1]) for r in c.execute("DESCRIBE events").fetchall()] != list(record.COLUMNS):
                print("  (existing events table differs from record.COLUMNS: regenerating)")
                have, has_flows = -1, False
    if have == args.events:
        print(f"\n== reusing {db} ({have:,} events, {db.stat().st_size / 2**30:.2f} GiB)")
        results["generation"] = {"reused": True, "bytes": db.stat().st_size}
    else:
        print(f"\n== generating {args.events:,} events into {db}", flush=True)
        results["generation"] = gen = generate(audit_dir, args.events, SIZES.tail)
        has_flows = False
        print(f"  done in {gen['seconds']:.1f} s; audit.duckdb {gen['bytes'] / 2**30:.2f} GiB "
              f"({gen['bytes'] / args.events:,.0f} bytes/event)")
    (audit_dir / store.JOURNAL_DIR).mkdir(exist_ok=True)
    size = used_bytes(db)
    # store.ingest in a child process (for its peak RSS): set_up makes the tables and views, and folds
    # `flows` from every event when the file has none
    r = run_measured([sys.executable, "-c", "import sys; from pathlib import Path; from shield_addon import store; "
                      "store.ingest(Path(sys.argv[1]))", str(audit_dir)], audit_dir, int(args.rss_limit_gib * 2**30),
                     env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    if r["rc"]:
        raise SystemExit(f"store.ingest failed (killed: {r['killed']}): {r['stderr'][-800:]}")
    note = f"used blocks +{(used_bytes(db) - size) / 2**20:,.0f} MiB, peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB"
    figure(results, "flows built from the events (one-off upgrade)" if not has_flows else "store.ingest (flows already built)",
           stats([r["seconds"] * 1000]), args.events, note)
    if not has_flows:
        print(f"  flows built from {args.events:,} events in {r['seconds']:.1f} s")

    con = store.connect_reader(audit_dir)
    describe_data(con, results)
    queries = choose_queries(con, audit_dir)
    results["queries"] = dict(queries)
    print("\n== start-up and reader set-up")
    figure(results, "shield --version (interpreter + imports)", shield(["--version"]))
    figure(results, "connect_reader, empty journal", timed(lambda: store.connect_reader(audit_dir).close())[0])
    print("\n== the commands: warm (one reader, the CLI's statements) and as a new `shield` process")
    con.close()
    commands(audit_dir, queries, results)
    print(f"\n== a {SIZES.tail:,}-event journal tail not yet in audit.duckdb (on a copy of the file)")
    tail(audit_dir, queries, results)
    if not args.no_export:
        print("\n== full export, in a child process")
        export(audit_dir, results, int(args.rss_limit_gib * 2**30))
    summary(results)


def summary(results: dict[str, Any]) -> None:
    m, d, figs = results["machine"], results["data"], results["figures"]
    print(f"\n== summary: {d['events']:,} events, {d['flows']:,} flows; Python {m['python']}, DuckDB {m['duckdb']}, "
          f"{m['cores']} cores; 1-min load average at start {results['load_start'][0]:.2f}, during "
          f"{min(f['load_1min'] for f in figs):.2f}..{max(f['load_1min'] for f in figs):.2f}, now {os.getloadavg()[0]:.2f}")
    print("   warm = one open reader running the CLI's statements (median/p90 of 7 after a warm-up); new process = the "
          "`shield` command, wall time (median/p90 of 5 after a warm-up)")
    print(f"   {'figure':<46} {'median ms':>10} {'p90 ms':>9} {'rows':>10}  vs {TARGET_MS:.0f} ms")
    for f in figs:
        ok = "PASS" if f["median"] < TARGET_MS else "over"
        rows = f"{f['rows']:,}" if isinstance(f["rows"], int) else f["rows"]
        print(f"   {f['figure']:<46} {fmt_ms(f['median']):>10} {fmt_ms(f['p90']):>9} {rows:>10}  {ok}  {f['note']}")


if __name__ == "__main__":
    sys.exit(main())

