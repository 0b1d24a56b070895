"""`shield fleet status` and `shield verify --fleet`: the fleet database's proxies and proof."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from shield_addon import record
from shield_addon.cli.parser import EXIT_FAILED, EXIT_OK, UsageError, fleet_of
from shield_addon.cli.render import fmt_of, render

if TYPE_CHECKING:
    from shield_addon.fleet.proof import ChainReport

ALSO = 5  # problems shown per broken chain after its first


def cmd_fleet(args: argparse.Namespace) -> int:
    from shield_addon.fleet.reads import FleetReader

    url = needed_url(args)
    with FleetReader(url) as reader:
        found = reader.status()
    cols, rows = found.columns, found.rows
    if fmt_of(args) == "table":
        at = cols.index("age_s")
        rows = [(*r[:at], age(r[at]), *r[at + 1:]) for r in rows]
        cols = [*cols[:at], "seen", *cols[at + 1:]]
        drop = {"last_seen", "chain_id"}  # the age says it; --json has both
        keep = [i for i, c in enumerate(cols) if c not in drop]
        cols, rows = [cols[i] for i in keep], [tuple(r[i] for i in keep) for r in rows]
    render(cols, rows, fmt_of(args), title="agent-shield fleet", optional=("ship_error", "version", "listen", "host"))
    return EXIT_OK


def needed_url(args: argparse.Namespace) -> str:
    url = fleet_of(args)
    if not url:
        raise UsageError("which fleet? pass --fleet postgresql://... or set SHIELD_FLEET")
    return url


def age(seconds: int | None) -> str:
    """A heartbeat's age for people: 3s ago, 5m ago, 2h ago, never."""
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def verify_fleet(args: argparse.Namespace) -> int:
    """Every chain of the fleet: one line each, OK or its first problem; exit 1 on any."""
    from shield_addon.cli.data import progress_bar, public_keys
    from shield_addon.fleet.reads import FleetReader

    keys = public_keys(args)
    with FleetReader(needed_url(args)) as reader, progress_bar("verifying the fleet") as advance:
        result = reader.verify(keys, advance)
    if not result.chains:
        print("nothing to verify: the fleet database holds no chain")
        return EXIT_OK
    for chain in result.chains:
        for line in chain_lines(chain):
            print(record.safe_text(line))
    broken = [c for c in result.chains if not c.report.ok]
    if broken:
        print(f"BROKEN: {len(broken)} of {len(result.chains)} chains")
        return EXIT_FAILED
    print(f"OK: {len(result.chains)} chains, {result.events} events")
    return EXIT_OK


def chain_lines(chain: ChainReport) -> list[str]:
    r = chain.report
    who = f"proxy {chain.proxy or '(unregistered)'} chain {chain.chain_id}"
    if r.ok:
        tail = f"; {r.unsigned} newest event(s) not signed yet" if r.unsigned else ""
        return [f"OK     {who}: {r.events} events, seq 1..{r.last_seq}, {r.checkpoints} signed checkpoint(s) "
                f"up to seq {r.signed_seq}{tail}"]
    lines = [f"BROKEN {who}: {r.problems[0]}"]
    lines += [f"  also {p}" for p in r.problems[1:1 + ALSO]]
    if len(r.problems) > 1 + ALSO:
        lines.append(f"  … {len(r.problems) - 1 - ALSO} more")
    return lines
