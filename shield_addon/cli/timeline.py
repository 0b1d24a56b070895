"""`shield timeline`: one row per flow, in order; with --follow, like `tail -f`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shield_addon.cli.parser import EXIT_OK, filters_of, reader_of
from shield_addon.cli.render import cell, fmt_of, render, shorten

# What a narrow terminal gives up first; `shield show` and --json have all of it.
TIMELINE_OPTIONAL = ("ms", "action", "reviewer", "rule", "agent", "proxy")
FOLLOW_REQUEST_WIDTH = 64  # a line per change, unaligned: long paths cut in the middle


def cmd_timeline(args: argparse.Namespace) -> int:
    if args.follow:
        return follow_timeline(args)
    with reader_of(args) as reader:
        found = reader.timeline(filters_of(args), args.limit)
    cols, rows = found.columns, found.rows
    if fmt_of(args) == "table":
        cols, rows = for_people(cols, rows)
    render(cols, rows, fmt_of(args), title="agent-shield timeline", optional=TIMELINE_OPTIONAL, middle="request")
    return EXIT_OK


def follow_timeline(args: argparse.Namespace, interval: float = 1.0) -> int:
    """Like `tail -f`: the newest flows, then each flow again whenever its decision or
    outcome changes, until interrupted."""
    shown: dict[str, tuple] = {}
    filters, limit = filters_of(args), args.limit or 20
    first = True
    try:
        while True:
            with reader_of(args) as reader:  # a new session each round: it sees the journal's new lines
                found = reader.timeline(filters, limit)
            fresh = []
            for t, r in zip(found.dicts(), found.rows):
                state = (t["decision"], t["outcome"], t["status_code"])
                if shown.get(t["flow_id"]) != state:
                    shown[t["flow_id"]] = state
                    fresh.append(r)
            if fresh or first:
                print_changes(found.columns, fresh, fmt_of(args))
            first = False
            if found.rows and filters.since is None:
                # from the newest flow on, to the millisecond as shown, so it is seen again when decided
                last = found.rows[-1][found.columns.index("ts")]
                filters = replace(filters, since=last.replace(microsecond=last.microsecond // 1000 * 1000))
            limit = None
            time.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK


def print_changes(cols: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "json":
        render(cols, rows, "json")
    else:
        people_cols, people_rows = for_people(cols, rows)
        req = people_cols.index("request")
        for row in people_rows:
            row[req] = shorten(row[req], FOLLOW_REQUEST_WIDTH)
            print("  ".join(cell(v, "-") for v in row))
    sys.stdout.flush()


def for_people(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[str], list[list[Any]]]:
    """The timeline narrowed to what fits a terminal; --json and --csv keep every column."""
    out = []
    fleet = "proxy" in cols  # the fleet's timeline: which proxy saw the flow
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
            *([t["proxy"]] if fleet else []),
        ])
    names = ["time (UTC)", "flow", "agent", "request", "action", "rule", "decision", "reviewer", "status", "ms"]
    return [*names, *(["proxy"] if fleet else [])], out


