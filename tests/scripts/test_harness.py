"""The harness shared by the tests and the scripts: one way to get a port, stop a process, read its memory."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import harness
from scripts.bench import procstat
from tests.e2e import harness as e2e_harness

ROOT = Path(__file__).resolve().parents[2]


def test_the_e2e_harness_is_the_shared_one() -> None:
    for name in ("free_port", "stop_process", "rss_mib", "wait_for", "make_cert", "Proxy", "SHIELD"):
        assert getattr(e2e_harness, name) is getattr(harness, name)


def test_free_port_can_be_bound() -> None:
    port = harness.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_stop_process_terminates_and_returns_the_status() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert harness.stop_process(proc, 10) == -15
    assert harness.stop_process(proc) == -15  # already gone: just the status


def test_rss_of_a_live_process_and_of_a_gone_one() -> None:
    import os

    assert harness.rss_mib(os.getpid()) > 1
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        harness.rss_mib(proc.pid)


def test_peak_rss_and_cpu_of_a_child() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; x = bytearray(64 << 20); sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    peak = procstat.PeakRss(proc.pid, every=0.01).start()
    harness.wait_for(lambda: harness.rss_mib(proc.pid) > 64, 30, "the child's allocation")
    got = peak.stop()
    assert got > 64
    assert procstat.cpu_seconds(proc.pid) > 0
    assert proc.pid in procstat.thread_cpu(proc.pid)
    proc.communicate(b"")


def test_shipped_code_imports_neither_scripts_nor_tests() -> None:
    for path in (ROOT / "shield_addon").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad = [n for n in names if n.split(".")[0] in ("scripts", "tests")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_scripts_do_not_import_the_e2e_harness() -> None:
    for path in (ROOT / "scripts").rglob("*.py"):
        assert "tests.e2e.harness" not in path.read_text(), path
