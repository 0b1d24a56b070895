"""Each benchmark and reliability tool, run as a user runs it, in its --smoke mode: it must work
end to end and say what it measured. Its figures are never asserted (a smoke run means nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench.load import nginx_path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str, timeout: float = 120) -> str:
    cp = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=timeout,
                        cwd="/")  # the entry points find the checkout themselves
    assert cp.returncode == 0, f"{script} exited {cp.returncode}:\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}"
    assert "Traceback" not in cp.stderr, cp.stderr[-3000:]
    return cp.stdout


@pytest.mark.skipif(nginx_path() is None, reason="the proxy benchmark's upstream is nginx (apt-get install nginx-light)")
@pytest.mark.timeout(180)
def test_bench_proxy_smoke(tmp_path: Path) -> None:
    out = run("bench_proxy.py", "--smoke", "--soak", "1", "--no-micro", "--json", str(tmp_path / "figures.json"))
    for part in ("== Ceiling", "== Soak", "-- round 1/1", "== Summary", "== Calibration", "== Targets"):
        assert part in out, part
    assert "MISMATCH" not in out and "failed:" not in out
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert {r["proxy"] for r in figures["runs"]} == {"bare", "shield"}
    assert figures["runs"][0]["requests"] > 0 and figures["runs"][0]["peak_rss_mib"] > 0
    assert set(figures["calibration"]) == {"null-hooks", "null-thread", "null-writer"}
    assert "shield/http" in figures["figures"]


@pytest.mark.timeout(120)
def test_bench_proxy_micro_smoke(tmp_path: Path) -> None:
    out = run("bench_proxy.py", "--micro-only", "--smoke", "--json", str(tmp_path / "figures.json"))
    for part in ("== Rule evaluation", "== Action parsing", "== The proxy's work per allowed request", "== Journal and DuckDB ingest"):
        assert part in out, part
    assert "failed:" not in out
    micro = json.loads((tmp_path / "figures.json").read_text())["micro"]
    assert set(micro["rules"]) == {"10 generated", "100 generated", "500 generated", "bundled", "bundled + 500 generated"}
    assert micro["journal"]["ingest_rows"] == micro["journal"]["rows"]


def test_bench_proxy_help_names_the_old_flags_and_smoke() -> None:
    out = run("bench_proxy.py", "--help")
    for flag in ("--rounds", "--quick", "--micro-only", "--variant", "--soak", "--py-spy", "--nice", "--json", "--smoke"):
        assert flag in out, flag


@pytest.mark.skipif(nginx_path() is None, reason="the fleet benchmark's upstream is nginx (apt-get install nginx-light)")
@pytest.mark.timeout(240)
def test_bench_fleet_smoke(tmp_path: Path) -> None:
    out = run("bench_fleet.py", "--smoke", "--json", str(tmp_path / "figures.json"), timeout=230)
    for part in ("== (a) Shipping", "MiB batches (as shipped)", "COPY only: binary", "== (b) Proxies behind HAProxy",
                 "ratio 2 proxies / 1 proxy, both behind HAProxy", "ratio 1 proxy behind HAProxy / direct", "== Targets"):
        assert part in out, part
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert {f["events"] for f in figures["shipping"]["figures"].values()} == {2000}  # every variant shipped all
    runs = [r for rs in figures["scale"]["runs"].values() for r in rs]
    assert len(runs) == 3 and all(r["requests"] > 0 and r["errors"] == 0 for r in runs)
    assert figures["scale"]["fleet_lag_after"].count("shipped") == 2  # both proxies joined the fleet


@pytest.mark.timeout(120)
def test_bench_queries_smoke() -> None:
    out = run("bench_queries.py", "--smoke")
    for part in ("== generating 2,000 events", "== the commands", "journal tail", "== full export", "== summary"):
        assert part in out, part
    assert "tail flows merged on read == folded at ingest: True" in out


@pytest.mark.timeout(120)
def test_crash_loop_smoke() -> None:
    out = run("crash_loop.py", "--smoke", "--seed", "1")
    assert "round  1/2: killed the proxy" in out and "round  2/2: killed the writer, then the proxy" in out
    assert out.count("; OK") >= 3  # both rounds and the final restart
    assert "summary: 2 rounds" in out and "0 failure(s)" in out


@pytest.mark.timeout(120)
def test_soak_smoke() -> None:
    out = run("soak.py", "--smoke")
    assert "soak: 0.1 min, 4 agents" in out
    assert "summary:" in out and "verify OK" in out


@pytest.mark.timeout(120)
def test_bench_trail_smoke() -> None:
    out = run("bench_trail.py", "--smoke")
    for part in ("ordinary GET with a query:", "KiB path:", "headers of 1 KB:", "held, then abandoned:"):
        assert part in out, part


@pytest.mark.timeout(180)
def test_bench_queue_smoke() -> None:
    out = run("bench_queue.py", "--smoke")
    assert "listed on B's console: p50" in out and "answered on A: p50" in out
