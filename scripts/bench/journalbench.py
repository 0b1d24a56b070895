"""Journal throughput with the chain and signed checkpoints on: the Journal class alone
(its own writer thread, through pipeline.py), and through the audit writer process as the trail
addon runs it (WriterLink); DuckDB ingest of what it wrote."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from scripts.bench import pipeline
from scripts.bench.micro import LIMIT
from scripts.bench.testflows import load_flows
from shield_addon import checkpoints, store
from shield_addon.core.model import AuditDir
from shield_addon.writer import process
from shield_addon.writer.link import WriterLink

Event = dict[str, Any]


def sample_events() -> tuple[Event, Event]:
    """A request event and its response event, of the load's first request, allowed."""
    redactor = pipeline.redactor()
    f = load_flows()[0]
    rs = pipeline.load_rules(pipeline.bundled_rules())
    agent = pipeline.agent_of(f)
    base = pipeline.base_columns(f, agent, redactor)
    body = pipeline.body_of(f)
    view = pipeline.view_of(f, body)
    verdict = pipeline.decide(pipeline.parse(view, rs), rs, pipeline.Context(agent=agent, flow=f))
    req_event = pipeline.request_event(base, f.request, body, verdict, redactor, rs.sha256, LIMIT)
    resp_event = {**base, "stage": "response", "outcome": "forwarded", **pipeline.response_columns(f, redactor, LIMIT)}
    return req_event, resp_event


def pair_events(req_event: Event, resp_event: Event, n: int, tag: str = "b") -> list[Event]:
    """n events: a request and its response per flow, each flow its own id (as the addon writes them)."""
    return [{**(req_event if i % 2 == 0 else resp_event), "flow_id": f"{tag}-{i // 2}"} for i in range(n)]


def open_journal(audit: Path) -> pipeline.Journal:
    j = pipeline.Journal(AuditDir(audit).journal)
    j.open()
    return j


def burst(j: pipeline.Journal, events: list[Event]) -> dict[str, float]:
    """Everything queued at once (the writer batches up to journal.MAX_BATCH)."""
    c0, t0 = time.process_time(), time.perf_counter()
    for fut in [j.submit(ev) for ev in events]:
        fut.result()
    dt = time.perf_counter() - t0
    return {"burst_events_s": len(events) / dt, "burst_cpu_us": (time.process_time() - c0) / len(events) * 1e6}


def closed_loop(j: pipeline.Journal, req_event: Event, resp_event: Event, seconds: float, batches: list[int]) -> dict[str, float]:
    """10 flows, each waiting for its request event, then submitting its response event
    without waiting (what the addon does), each flow a thread."""
    batches.clear()
    counts = [0] * 10
    stop = time.perf_counter() + seconds

    def flow_loop(n: int) -> None:
        while time.perf_counter() < stop:
            counts[n] += 1
            flow_id = f"c10-{n}-{counts[n]}"
            j.submit({**req_event, "flow_id": flow_id}).result()
            j.submit({**resp_event, "flow_id": flow_id})

    seq0 = j.seq
    c0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=flow_loop, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    j.write({"stage": "ruleset"})  # drain
    dt = time.perf_counter() - t0
    events = j.seq - seq0
    flows = sum(counts)
    return {"c10_flows_s": flows / dt, "c10_events_s": events / dt,
            "c10_cpu_us_per_event": (time.process_time() - c0) / events * 1e6,
            "c10_mean_batch": events / max(1, len(batches)), "c10_wait_ms": 1000 * 10 / (flows / dt)}


def ingest_all(audit: Path) -> dict[str, float]:
    """Into DuckDB, as the ingester does (open, insert the new journal rows, close)."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = store.ingest(audit)
    dt = time.perf_counter() - t0
    return {"ingest_rows": n, "ingest_rows_s": n / dt, "ingest_cpu_us_per_row": (time.process_time() - c0) / n * 1e6}


def ingest_batches(audit_dir: Path, tag: str, events: tuple[Event, Event], sizes: tuple[int, ...] = (2, 1000)) -> dict[str, float]:
    """The per-second batch: `sizes` new rows (a quiet proxy, a busy one) with the current segment
    as it is; the ingester's cursor reads only the new lines (the first batch after a start reads
    the current segment once to find its place: done here before measuring)."""
    res: dict[str, float] = {}
    jj = open_journal(audit_dir)
    cursor = store.Cursor()
    jj.write({"stage": "ruleset"})
    store.ingest(audit_dir, cursor=cursor)
    res[f"segment_{tag}_rows"] = jj.seq
    res[f"segment_{tag}_mib"] = sum(p.stat().st_size for _, p in pipeline.segments(AuditDir(audit_dir).journal)) / 2**20
    for size in sizes:
        walls, cpus = [], []
        for k in range(3):
            for fut in [jj.submit(ev) for ev in pair_events(*events, size, f"{tag}{size}-{k}")]:
                fut.result()
            c0, t0 = time.process_time(), time.perf_counter()
            store.ingest(audit_dir, cursor=cursor)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        res[f"batch_{size}_{tag}_wall_ms"] = statistics.median(walls) * 1000
        res[f"batch_{size}_{tag}_cpu_ms"] = statistics.median(cpus) * 1000
    jj.close()
    return res


def fdatasync_ms(directory: Path, n: int = 100) -> float:
    """Median fdatasync of a small append on this file system."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 1200 + b"\n")
            t = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times) * 1000


def bench_journal(work: Path, n_burst: int, seconds: float, small_rows: int = 1000) -> dict[str, float]:
    audit, small = work / "micro-journal", work / "micro-journal-small"
    events = sample_events()
    j = open_journal(audit)
    cp = checkpoints.Checkpointer(AuditDir(audit).checkpoints, checkpoints.load_or_create_key(work / "micro-conf"), j.chain_id)
    batches: list[int] = []

    def on_commit(seq: int, head: str) -> None:
        batches.append(seq)
        cp.on_commit(seq, head)

    j.on_commit = on_commit
    res = burst(j, pair_events(*events, n_burst))
    res.update(closed_loop(j, *events, seconds, batches))
    j.close()
    res["rows"] = j.seq
    res.update(ingest_all(audit))
    js = open_journal(small)
    burst(js, pair_events(*events, small_rows, "small"))
    js.close()
    store.ingest(small)
    for audit_dir, tag in ((small, "small"), (audit, "big")):
        res.update(ingest_batches(audit_dir, tag, events))
    res["fdatasync_ms"] = fdatasync_ms(audit)
    return res


def bench_writer(work: Path, n_burst: int, seconds: float) -> dict[str, float]:
    """The same two loads through the writer process: events out through the socket, each
    awaited one released by the writer's watermark. CPU of this process's loop and of the
    writer (its ingest thread included) per event."""
    audit = AuditDir(work / "micro-writer")
    link = WriterLink(audit.journal, process.arguments(audit.root, work / "micro-conf", process.FSYNC, 1.0, 1000, 60, 1))
    link.start()
    assert link.pid is not None
    writer = psutil.Process(link.pid)
    req_event, resp_event = sample_events()
    res: dict[str, float] = {}

    def cpu() -> tuple[float, float, float]:
        t = writer.cpu_times()
        return time.process_time(), t.user + t.system, time.perf_counter()

    async def burst() -> None:
        futures = [link.submit_async(ev) for ev in pair_events(req_event, resp_event, n_burst, "wb")]
        await futures[-1]  # one turn of the loop: one future for all

    async def flows(stop: float, counts: list[int]) -> None:
        while time.perf_counter() < stop:
            counts[0] += 1
            flow_id = f"wc-{counts[0]}"
            await link.submit_async({**req_event, "flow_id": flow_id})
            link.submit({**resp_event, "flow_id": flow_id})

    async def closed() -> int:
        counts = [0]
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(flows(stop, counts) for _ in range(10)))
        await link.submit_async({"stage": "ruleset"})  # drain
        return counts[0]

    try:
        a = cpu()
        asyncio.run(burst())
        b = cpu()
        res.update(w_burst_events_s=n_burst / (b[2] - a[2]), w_burst_loop_us=(b[0] - a[0]) / n_burst * 1e6,
                   w_burst_writer_us=(b[1] - a[1]) / n_burst * 1e6)
        n = asyncio.run(closed())
        c = cpu()
        events = 2 * n + 1
        res.update(w_c10_flows_s=n / (c[2] - b[2]), w_c10_events_s=events / (c[2] - b[2]),
                   w_c10_loop_us=(c[0] - b[0]) / events * 1e6, w_c10_writer_us=(c[1] - b[1]) / events * 1e6)
    finally:
        link.close()
    return res
