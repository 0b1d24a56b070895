#!/usr/bin/env python3
"""Soak: the proxy at full speed for N minutes with a realistic mix, watched every 30 s.

    python scripts/soak.py [--minutes 30] [--agents 32] [--report 30] [--dir DIR] [--keep]

AGENTS agents (proxy users agent-<n>, keep-alive connections) send, as fast as answers come:
allowed GETs (60 %), allowed JSON POSTs of 0.1-3 KB (15 %), SQL SELECTs (5 %), requests a
rule denies (10 %), and requests a rule holds (10 %), which a reviewer thread approves a few
times a second through mitmproxy's `shield.approve` (scripts/reviewer_addon.py).

Every --report seconds one line: throughput, the proxy's RSS, journal size, audit.duckdb size,
and the ingest lag (the journal's newest seq minus audit.duckdb's, read by opening the file
read-only between ingest batches). At the end: the answers were all as the rules say, every
request upstream saw has exactly one request event, seq is gapless, `shield verify` passes,
and the RSS levelled off: exit 1 if it still grows over the last third of the run. The RSS is
sampled every 2 s; each ingest batch briefly adds tens of MiB (DuckDB reading the journal), so
the judged series is the floor, the lowest sample of each 10 s; a least-squares line through
the floors of the last third may rise at most --rss-slack MiB over that third.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_common import (  # noqa: E402
    HTTPUpstream,
    Load,
    Reviewer,
    dir_mib,
    duckdb_max_seq,
    finish,
    journal_max_seq,
    read_rows,
    rss_mib,
    start,
    verify,
)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Sampler(threading.Thread):
    """The proxy's RSS every `every` seconds."""

    def __init__(self, pid: int, every: float = 2.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.monotonic() - self.t0, rss_mib(self.pid)))
            self.halt.wait(self.every)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--agents", type=int, default=32)
    ap.add_argument("--report", type=float, default=30, help="seconds between report lines")
    ap.add_argument("--rss-slack", type=float, default=8.0,
                    help="MiB the RSS may still rise over the last third (least-squares line) and count as levelled off")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (always kept on failure)")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="shield-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = args.minutes * 60
    tag = "soak-"

    upstream = HTTPUpstream(keep=False).start()
    proxy = start(work)
    sampler = Sampler(proxy.proc.pid)
    sampler.start()
    load = Load(proxy.port, upstream, args.agents, tag, keep=False, timeout=60).start()
    reviewer = Reviewer(proxy, f"/hold/{tag}a-", every=0.2)
    reviewer.start()
    print(f"soak: {args.minutes:g} min, {args.agents} agents, proxy pid {proxy.proc.pid}, work dir {work}", flush=True)
    print(f"{'time':>6} {'requests':>9} {'req/s':>6} {'unexpected':>10} {'proxy cpu':>9} {'rss MiB':>8} "
          f"{'journal MiB':>11} {'duckdb MiB':>10} {'ingest lag':>10} {'approved':>8}", flush=True)

    failures: list[str] = []
    t0 = time.monotonic()
    last_t, last_n, last_cpu = t0, 0, cpu_seconds(proxy.proc.pid)
    try:
        while (now := time.monotonic()) - t0 < seconds:
            time.sleep(min(args.report, seconds - (now - t0)))  # the reporting period
            if proxy.proc.poll() is not None:
                failures.append(f"the proxy died (exit {proxy.proc.returncode})")
                break
            now, n, cpu = time.monotonic(), load.total, cpu_seconds(proxy.proc.pid)
            jseq = journal_max_seq(proxy.audit_dir / "journal")
            dseq = duckdb_max_seq(proxy.audit_dir / "audit.duckdb", wait=5)
            lag = "busy" if dseq is None else str(jseq - dseq)
            print(f"{now - t0:>5.0f}s {n:>9} {(n - last_n) / (now - last_t):>6.0f} {load.unexpected:>10} "
                  f"{(cpu - last_cpu) / (now - last_t) * 100:>8.0f}% {rss_mib(proxy.proc.pid):>8.1f} "
                  f"{dir_mib(proxy.audit_dir / 'journal'):>11.1f} "
                  f"{dir_mib(proxy.audit_dir / 'audit.duckdb'):>10.1f} {lag:>10} {reviewer.approved:>8}", flush=True)
            last_t, last_n, last_cpu = now, n, cpu
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        load.stop()
        reviewer.stop()
        sampler.halt.set()
        sampler.join(5)
    elapsed = time.monotonic() - t0

    # the answers
    if load.unexpected:
        wrong = Counter({k: n for k, n in load.statuses.items() if k[1] != {"deny": 403}.get(k[0], 200)})
        failures.append(f"{load.unexpected} unexpected answers: {dict(wrong.most_common(5))}")

    # a clean stop, then the trail
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        proxy.proc.wait(30)
    except subprocess.TimeoutExpired:
        proxy.proc.kill()
        proxy.proc.wait(5)
        failures.append("the proxy ignored SIGTERM for 30 s and was killed")
    recorded: Counter = Counter()
    seq_ok, n_rows = True, 0
    for row in read_rows(proxy.audit_dir / "journal"):
        n_rows += 1
        seq_ok = seq_ok and row["seq"] == n_rows
        if row["stage"] == "request" and row["path"] and f"/{tag}" in row["path"]:
            recorded[row["path"]] += 1
    with upstream.lock:
        hits: Counter = Counter()
        for p, n in upstream.counts.items():
            hits[p.split("?")[0]] += n
    unrecorded = [p for p in hits if recorded[p] != 1]
    doubled = [p for p, n in hits.items() if n != 1]
    if not seq_ok:
        failures.append("seq has a gap or a repeat")
    if unrecorded:
        failures.append(f"{len(unrecorded)} forwarded request(s) without exactly one request event, e.g. {unrecorded[:3]}")
    if doubled:
        failures.append(f"{len(doubled)} request(s) forwarded more than once, e.g. {doubled[:3]}")
    if any(p.startswith("/deny/") for p in hits):
        failures.append("a denied request reached upstream")
    ok, text = verify(proxy)
    if not ok:
        failures.append(f"shield verify failed: {text[-300:]}")
    in_db = duckdb_max_seq(proxy.audit_dir / "audit.duckdb", 20)
    if in_db != n_rows:
        failures.append(f"after the clean stop audit.duckdb holds seq ..{in_db}, the journal ..{n_rows}")

    # did the RSS level off?
    samples = [(t, r) for t, r in sampler.samples if r == r]  # drop NaN
    buckets: dict[int, list[tuple[float, float]]] = {}
    for t, r in samples:
        buckets.setdefault(int(t // 10), []).append((t, r))
    floors = [min(b, key=lambda s: s[1]) for b in buckets.values()]  # the lowest sample of each 10 s
    third = [(t, r) for t, r in floors if t >= elapsed * 2 / 3]
    rise = slope(third) * (elapsed / 3) if len(third) >= 3 else 0.0
    thirds = [[r for t, r in floors if k * elapsed / 3 <= t < (k + 1) * elapsed / 3] for k in range(3)]
    means = " / ".join(f"{sum(x) / len(x):.1f}" if x else "-" for x in thirds)
    if len(third) < 3:
        failures.append("too few RSS samples in the last third to judge (run longer)")
    elif rise > args.rss_slack:
        failures.append(f"the proxy's RSS still grows over the last third: +{rise:.1f} MiB (slack {args.rss_slack} MiB)")

    total = load.total
    print(f"summary: {total} requests in {elapsed:.0f}s ({total / elapsed:.0f}/s), {dict(load.sent)}; "
          f"{reviewer.approved} approved; journal {n_rows} events ({dir_mib(proxy.audit_dir / 'journal'):.1f} MiB), "
          f"audit.duckdb {dir_mib(proxy.audit_dir / 'audit.duckdb'):.1f} MiB; RSS floor by third {means} MiB, "
          f"peak {max((r for _, r in samples), default=0):.1f} MiB, floor trend over the last third {rise:+.1f} MiB; "
          f"verify {'OK' if ok else 'FAILED'}")
    upstream.stop()
    return finish(failures, work, bool(args.keep or args.dir))


if __name__ == "__main__":
    sys.exit(main())
