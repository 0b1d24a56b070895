#!/usr/bin/env python3
"""The fleet's readers on a big table: `shield timeline --fleet --since 1h` (and a few other
questions) over ~300k rows of chain_rows from three proxies' 24 hours, in a real PostgreSQL
(scripts/postgres.py). The figures of docs/performance.md's "The fleet's trail"; `--smoke`
uses 3k rows (it only shows the script works).

    scripts/python scripts/bench_fleet_reads.py [--smoke] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts` and shield_addon

import psycopg  # noqa: E402

from scripts import fleet_trail, postgres  # noqa: E402

PROXIES = 3
FLOWS = 47_000  # per proxy: ~100k events each, ~300k in all
SHIELD = [sys.executable, "-m", "shield_addon.cli"]


def timed(args: list[str], runs: int) -> tuple[float, float, int]:
    """(median, max) wall seconds of a `shield` command, and its output lines."""
    times, out = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        cp = subprocess.run([*SHIELD, *args], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        out = cp.stdout
    return statistics.median(times), max(times), len(out.splitlines())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--url", help="an empty database to fill (default: a PostgreSQL of our own)")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    flows = 500 if a.smoke else FLOWS
    server = None if a.url else postgres.start()
    if server is None and not a.url:
        sys.exit("needs PostgreSQL's server binaries (Debian: apt-get install postgresql)")
    try:
        url = a.url or server.database()  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            trails = fleet_trail.fleet(url, Path(tmp), PROXIES, flows, 24)
            load = time.perf_counter() - t0
            with psycopg.connect(url, autocommit=True) as con:
                con.execute("ANALYZE")
                rows = con.execute("SELECT count(*) FROM chain_rows").fetchone()[0]  # type: ignore[index]
                size = con.execute("SELECT pg_size_pretty(pg_total_relation_size('chain_rows'))").fetchone()[0]  # type: ignore[index]
            print(f"chain_rows: {rows:,} rows ({size}) from {PROXIES} proxies over 24 h; written and shipped in {load:.1f} s")
            keys = []
            for t in trails:
                pem = Path(tmp) / f"{t.name}.pub"
                subprocess.run([*SHIELD, "key", "export", "--confdir", str(t.confdir), "--out", str(pem)], check=True,
                               capture_output=True)
                keys += ["--key", str(pem)]
            for label, args, runs in [
                ("timeline --fleet --since 1h", ["timeline", "--fleet", url, "--since", "1h", "--json"], a.runs),
                ("timeline --fleet --since 1h --agent deploy-bot",
                 ["timeline", "--fleet", url, "--since", "1h", "--agent", "deploy-bot", "--json"], a.runs),
                ("timeline --fleet --limit 20", ["timeline", "--fleet", url, "--limit", "20", "--json"], a.runs),
                ("timeline --fleet (every flow)", ["timeline", "--fleet", url, "--json"], 3),
                ("sql --fleet 'SELECT count(*) FROM pending'", ["sql", "--fleet", url, "SELECT count(*) FROM pending"], 3),
                ("show --fleet <8-char prefix>", ["show", "--fleet", url, first_flow(url)[:8]], a.runs),
                ("shield --version (the interpreter's start)", ["--version"], a.runs),
                ("verify --fleet (every chain)", ["verify", "--fleet", url, *keys], 1),
            ]:
                median, worst, n = timed(args, runs)
                print(f"{label:52} median {median * 1000:7.0f} ms  max {worst * 1000:7.0f} ms  ({n} lines, {runs} runs)")
            rate = rows / max(timed(["verify", "--fleet", url, *keys], 1)[0], 1e-9)
            print(f"verify --fleet: {rate:,.0f} rows/s")
    finally:
        if server is not None:
            server.close()


def first_flow(url: str) -> str:
    with psycopg.connect(url) as con:
        return con.execute("SELECT flow_id FROM chain_rows WHERE stage = 'request' ORDER BY ts DESC LIMIT 1").fetchone()[0]  # type: ignore[index]


if __name__ == "__main__":
    main()
