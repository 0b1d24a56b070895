#!/usr/bin/env python3
"""Soak: the proxy at full speed for N minutes with a realistic mix, watched every 30 s.

    python scripts/soak.py [--minutes 30] [--agents 32] [--report 30] [--analyst-hold MIN] [--dir DIR] [--keep] [--smoke]

AGENTS agents (proxy users agent-<n>, keep-alive connections) send, as fast as answers come:
allowed GETs (60 %), allowed JSON POSTs of 0.1-3 KB (15 %), SQL SELECTs (5 %), requests a
rule denies (10 %), and requests a rule holds (10 %), which a reviewer thread approves a few
times a second through mitmproxy's `shield.approve` (scripts/reviewer_addon.py).

Every --report seconds one line: throughput, the RSS of the proxy and its writer process, journal size, audit.duckdb size,
and the ingest lag (the journal's newest seq minus audit.duckdb's, read by opening the file
read-only between ingest batches). At the end: the answers were all as the rules say, every
request upstream saw has exactly one request event, seq is gapless, `shield verify` passes,
and the RSS levelled off: exit 1 if it still grows over the last third of the run. The RSS is
sampled every 2 s; each ingest batch briefly adds tens of MiB (DuckDB reading the journal), so
the judged series is the floor, the lowest sample of each 10 s; a least-squares line through
the floors of the last third may rise at most --rss-slack MiB over that third.

--analyst-hold MINUTES (default 0: off): at a quarter of the run an analyst opens audit.duckdb
with a plain `duckdb.connect(path, read_only=True)` (retrying while an ingest batch holds the
file), keeps that connection open for MINUTES minutes with a cheap query on it every 30 s,
then closes it. Its shared lock keeps the proxy's ingester out, so the report lines show the
ingest lag growing while the journal keeps every event (the soak's own lag reading opens the
file read-only in the same process and shares the analyst's database instance, so it works
during the hold). At the end: the largest lag seen during the hold, and how many seconds
after the release audit.duckdb held the journal's newest seq as of the release; exit 1 if
that took more than 60 s, besides the checks above (nothing lost). The hold must end at
least 60 s before the run does; the catch-up ingests the backlog in 32 MiB batches and
briefly raises the RSS, so let it end before the last third (e.g. at most 12 min in a
30-min run), or the RSS verdict judges that step along with any growth.

--smoke: 6 seconds, 4 agents, a line every 2 s, every check but the RSS verdict (a run that
short cannot show a trend): that the tool works (tests/scripts/ runs it).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from scripts.bench.procstat import cpu_seconds
from scripts.bench.stats import slope
from scripts.harness import stop_process
from scripts.reliability.common import (
    HTTPUpstream,
    Load,
    Proxy,
    Reviewer,
    dir_mib,
    duckdb_max_seq,
    finish,
    journal_max_seq,
    open_read_only,
    read_rows,
    rss_mib,
    start,
    verify,
)

CATCH_UP = 60.0  # seconds audit.duckdb may take to catch up once the analyst lets go


class Sampler(threading.Thread):
    """The RSS of the proxy and its audit writer process together, every `every` seconds."""

    def __init__(self, pid: int, every: float = 2.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float]] = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append((time.monotonic() - self.t0, rss_mib(self.pid) + children_rss_mib(self.pid)))
            except ProcessLookupError:
                return  # the proxy died: the report loop says so
            self.halt.wait(self.every)


def children_rss_mib(pid: int) -> float:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for child in children:
        try:
            total += child.memory_info().rss / 2**20
        except psutil.Error:
            continue  # the writer restarting
    return total


class Analyst(threading.Thread):
    """An analyst who opens audit.duckdb read-only `at` seconds in, holds it `hold` seconds
    (a cheap query every 30 s), closes it, and then watches the ingester catch up."""

    def __init__(self, audit_dir: Path, at: float, hold: float, t0: float):
        super().__init__(name="analyst", daemon=True)
        self.db, self.journal = audit_dir / "audit.duckdb", audit_dir / "journal"
        self.at, self.hold, self.t0 = at, hold, t0
        self.halt = threading.Event()
        self.holding = False
        self.opened = self.released = None  # seconds since t0
        self.held_seq = 0  # max(seq) in the file while held
        self.release_seq = 0  # the journal's newest seq at the release
        self.max_lag = 0
        self.queries = 0
        self.caught_up: float | None = None  # seconds after the release
        self.error: str | None = None

    def say(self, text: str) -> None:
        print(f"{time.monotonic() - self.t0:>5.0f}s analyst: {text}", flush=True)

    def run(self) -> None:
        import duckdb

        if self.halt.wait(max(0.0, self.t0 + self.at - time.monotonic())):
            return
        con = open_read_only(self.db, wait=30)  # an ingest batch holds the file for well under a second
        if con is None:
            self.error = f"the analyst could not open {self.db} read-only within 30 s"
            return
        try:
            self.holding, self.opened = True, time.monotonic() - self.t0
            self.held_seq = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
            self.say(f"opened audit.duckdb read-only (it holds seq ..{self.held_seq}), holding it {self.hold:g} s")
            end, next_query = time.monotonic() + self.hold, time.monotonic() + 30
            while (now := time.monotonic()) < end and not self.halt.is_set():
                if now >= next_query:  # clearly in use
                    _rows, top = con.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
                    self.queries, next_query = self.queries + 1, next_query + 30
                    if top != self.held_seq:
                        self.error = f"audit.duckdb changed under the analyst's read-only connection (seq ..{top})"
                self.max_lag = max(self.max_lag, journal_max_seq(self.journal) - self.held_seq)
                self.halt.wait(min(1.0, end - now))
        except duckdb.Error as e:
            self.error = f"the analyst's query failed: {e}"
        finally:
            self.release_seq = journal_max_seq(self.journal)
            self.max_lag = max(self.max_lag, self.release_seq - self.held_seq)
            con.close()
            self.holding, self.released = False, time.monotonic() - self.t0
        self.say(f"released after {self.released - self.opened:.0f} s and {self.queries} queries; journal at seq "
                 f"..{self.release_seq}, max lag during the hold {self.max_lag} events")
        released = time.monotonic()
        while not self.halt.is_set():
            in_db = duckdb_max_seq(self.db, wait=0.5)
            if in_db is not None and in_db >= self.release_seq:
                self.caught_up = time.monotonic() - released
                self.say(f"audit.duckdb reached seq {self.release_seq} {self.caught_up:.1f} s after the release")
                return
            self.halt.wait(0.5)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)

    def judge(self) -> list[str]:
        if self.error:
            return [self.error]
        if self.released is None:
            return ["the analyst never held audit.duckdb"]
        if self.caught_up is None:
            return [f"audit.duckdb had not caught up with seq {self.release_seq} when the run ended"]
        if self.caught_up > CATCH_UP:
            return [f"audit.duckdb took {self.caught_up:.0f} s (over {CATCH_UP:.0f} s) to catch up after the analyst let go"]
        return []

    def summary(self) -> str:
        if self.released is None:
            return "analyst: never held the file"
        caught = f"{self.caught_up:.1f} s" if self.caught_up is not None else "not caught up"
        return (f"analyst: held audit.duckdb {self.opened:.0f}-{self.released:.0f}s at seq {self.held_seq}; max lag "
                f"during the hold {self.max_lag} events; caught up with the journal's seq {self.release_seq} "
                f"{caught} after the release (limit {CATCH_UP:.0f} s)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--agents", type=int, default=32)
    ap.add_argument("--report", type=float, default=30, help="seconds between report lines")
    ap.add_argument("--rss-slack", type=float, default=8.0,
                    help="MiB the RSS may still rise over the last third (least-squares line) and count as levelled off")
    ap.add_argument("--analyst-hold", type=float, default=0, metavar="MINUTES",
                    help="at a quarter of the run, hold audit.duckdb open read-only this long (default 0: off)")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (always kept on failure)")
    ap.add_argument("--smoke", action="store_true", help="6 s, 4 agents, no RSS verdict: checks the tool works")
    args = ap.parse_args(argv)
    if args.smoke:
        args.minutes, args.agents, args.report, args.analyst_hold = 0.1, 4, 2.0, 0
    if args.analyst_hold < 0:
        ap.error("--analyst-hold must be 0 (off) or a number of minutes")
    if args.analyst_hold and args.minutes * 60 * 3 / 4 - args.analyst_hold * 60 < CATCH_UP:
        ap.error(f"--analyst-hold {args.analyst_hold:g} starts at a quarter of the run and must end at least "
                 f"{CATCH_UP:.0f} s before it: run longer or hold shorter")
    return args


def watch(proxy: Proxy, load: Load, reviewer: Reviewer, analyst: Analyst | None, seconds: float, every: float) -> list[str]:
    """A report line every `every` seconds until `seconds` have passed or the proxy died."""
    print(f"{'time':>6} {'requests':>9} {'req/s':>6} {'unexpected':>10} {'proxy cpu':>9} {'rss MiB':>8} "
          f"{'journal MiB':>11} {'duckdb MiB':>10} {'ingest lag':>10} {'approved':>8}", flush=True)
    t0 = last_t = time.monotonic()
    last_n, last_cpu = 0, cpu_seconds(proxy.proc.pid)
    while (now := time.monotonic()) - t0 < seconds:
        time.sleep(min(every, seconds - (now - t0)))  # the reporting period
        if proxy.proc.poll() is not None:
            return [f"the proxy died (exit {proxy.proc.returncode})"]
        now, n, cpu = time.monotonic(), load.total, cpu_seconds(proxy.proc.pid)
        jseq = journal_max_seq(proxy.audit_dir / "journal")
        dseq = duckdb_max_seq(proxy.audit_dir / "audit.duckdb", wait=5)
        lag = "busy" if dseq is None else str(jseq - dseq)
        held = "  (analyst holds audit.duckdb)" if analyst and analyst.holding else ""
        print(f"{now - t0:>5.0f}s {n:>9} {(n - last_n) / (now - last_t):>6.0f} {load.unexpected:>10} "
              f"{(cpu - last_cpu) / (now - last_t) * 100:>8.0f}% {rss_mib(proxy.proc.pid) + children_rss_mib(proxy.proc.pid):>8.1f} "
              f"{dir_mib(proxy.audit_dir / 'journal'):>11.1f} "
              f"{dir_mib(proxy.audit_dir / 'audit.duckdb'):>10.1f} {lag:>10} {reviewer.approved:>8}{held}", flush=True)
        last_t, last_n, last_cpu = now, n, cpu
    return []


def check_trail(proxy: Proxy, upstream: HTTPUpstream, tag: str) -> tuple[list[str], int, bool]:
    """After a clean stop: every forwarded request has exactly one request event, seq is
    gapless, nothing denied went upstream, `shield verify` passes, audit.duckdb caught up.
    Returns (failures, journal rows, verify passed)."""
    failures = []
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
    return failures, n_rows, ok


def rss_trend(samples: list[tuple[float, float]], elapsed: float, bucket: float = 10.0) -> tuple[float, str, int]:
    """The floors (lowest sample of each `bucket` seconds; each ingest batch briefly adds tens of
    MiB): (the rise of a least-squares line through the last third's floors over that third,
    the floors' mean by third, how many floors the last third has)."""
    buckets: dict[int, list[tuple[float, float]]] = {}
    for t, r in samples:
        buckets.setdefault(int(t // bucket), []).append((t, r))
    floors = [min(b, key=lambda s: s[1]) for b in buckets.values()]
    third = [(t, r) for t, r in floors if t >= elapsed * 2 / 3]
    rise = slope(third) * (elapsed / 3) if len(third) >= 3 else 0.0
    thirds = [[r for t, r in floors if k * elapsed / 3 <= t < (k + 1) * elapsed / 3] for k in range(3)]
    return rise, " / ".join(f"{sum(x) / len(x):.1f}" if x else "-" for x in thirds), len(third)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="shield-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds, tag = args.minutes * 60, "soak-"
    upstream = HTTPUpstream(keep=False).start()
    proxy = start(work)
    sampler = Sampler(proxy.proc.pid, every=min(2.0, seconds / 30))
    sampler.start()
    load = Load(proxy.port, upstream, args.agents, tag, keep=False, timeout=60).start()
    reviewer = Reviewer(proxy, f"/hold/{tag}a-", every=0.2)
    reviewer.start()
    hold = f", analyst holds audit.duckdb for {args.analyst_hold:g} min from {seconds / 4:.0f}s" if args.analyst_hold else ""
    print(f"soak: {args.minutes:g} min, {args.agents} agents{hold}, proxy pid {proxy.proc.pid}, work dir {work}", flush=True)
    t0 = time.monotonic()
    analyst = Analyst(proxy.audit_dir, seconds / 4, args.analyst_hold * 60, t0) if args.analyst_hold else None
    if analyst:
        analyst.start()
    failures: list[str] = []
    try:
        failures += watch(proxy, load, reviewer, analyst, seconds, args.report)
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        if analyst:
            analyst.stop()
            failures += analyst.judge()
        load.stop()
        reviewer.stop()
        sampler.halt.set()
        sampler.join(5)
    elapsed = time.monotonic() - t0
    if load.unexpected:
        wrong = Counter({k: n for k, n in load.statuses.items() if k[1] != {"deny": 403}.get(k[0], 200)})
        failures.append(f"{load.unexpected} unexpected answers: {dict(wrong.most_common(5))}")
    proxy.proc.send_signal(signal.SIGTERM)
    try:
        proxy.proc.wait(30)
    except subprocess.TimeoutExpired:
        stop_process(proxy.proc, 0)
        failures.append("the proxy ignored SIGTERM for 30 s and was killed")
    more, n_rows, ok = check_trail(proxy, upstream, tag)
    failures += more
    samples = [(t, r) for t, r in sampler.samples if r == r]
    rise, means, n_floors = rss_trend(samples, elapsed, min(10.0, seconds / 15))
    if args.smoke:
        pass  # seconds of RSS show no trend
    elif n_floors < 3:
        failures.append("too few RSS samples in the last third to judge (run longer)")
    elif rise > args.rss_slack:
        failures.append(f"the proxy's RSS still grows over the last third: +{rise:.1f} MiB (slack {args.rss_slack} MiB)")
    total = load.total
    print(f"summary: {total} requests in {elapsed:.0f}s ({total / elapsed:.0f}/s), {dict(load.sent)}; "
          f"{reviewer.approved} approved; journal {n_rows} events ({dir_mib(proxy.audit_dir / 'journal'):.1f} MiB), "
          f"audit.duckdb {dir_mib(proxy.audit_dir / 'audit.duckdb'):.1f} MiB; RSS floor by third {means} MiB, "
          f"peak {max((r for _, r in samples), default=0):.1f} MiB, floor trend over the last third {rise:+.1f} MiB"
          f"{' (not judged: --smoke)' if args.smoke else ''}; verify {'OK' if ok else 'FAILED'}")
    if analyst:
        print(analyst.summary())
    upstream.stop()
    return finish(failures, work, bool(args.keep or args.dir))


if __name__ == "__main__":
    sys.exit(main())
