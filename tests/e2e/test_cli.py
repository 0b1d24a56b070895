"""`shield` as a new process: the exit codes a shell sees, proxies that refuse bad rules.
Help texts, `rules explain` and argument errors are tested in process (tests/unit/test_cli.py)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx

from tests.e2e.harness import SHIELD, stop_process, wait_for

SUBCOMMANDS = ["run", "timeline", "show", "sql", "verify", "rules", "agents", "env"]


def shield(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SHIELD, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_help_lists_every_command() -> None:
    cp = shield("--help")
    assert cp.returncode == 0
    for name in SUBCOMMANDS:
        assert name in cp.stdout


def test_bad_rule_file_is_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    match: {methd: DELETE}\n    action: hold\n")
    cp = shield("rules", "check", str(bad))
    assert cp.returncode == 2
    assert f"{bad}:4:13: rule a: match.methd: unknown key" in cp.stderr and "Traceback" not in cp.stderr


def test_failing_rule_test_exits_1(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("version: 1\nrules: []\ntests:\n  - request: {method: DELETE, url: 'https://x/y'}\n    expect: {action: hold}\n")
    cp = shield("rules", "test", str(f), "--json")
    assert cp.returncode == 1 and cp.stdout.strip().endswith("0 passed, 1 failed")
    row = json.loads(cp.stdout.splitlines()[0])
    assert row["result"] == "FAIL" and row["why"] == "action: expected 'hold', got 'allow'" and row["test"] == f"{f}:4"


def test_proxy_does_not_start_on_a_bad_rule_set(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    match: {path: '(oops'}\n    action: deny\n")
    cp = subprocess.run([*SHIELD, "run", "--headless", "--confdir", str(tmp_path / "c"), "--listen-port", "0",
                         "--set", f"shield_rules={bad}", "--set", f"shield_dir={tmp_path / 'a'}"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode != 0
    assert f"{bad}:4" in cp.stdout + cp.stderr and "bad regex" in cp.stdout + cp.stderr


def test_read_only_sql_refuses_writes(tmp_path: Path) -> None:
    cp = shield("sql", "DELETE FROM events", "--dir", str(tmp_path))
    assert cp.returncode == 2 and "reads only" in cp.stderr
    cp = shield("sql", "SELECT 1 AS one; DROP TABLE events", "--dir", str(tmp_path))
    assert cp.returncode == 2 and "DROP" in cp.stderr


def test_web_mode_starts_mitmweb_with_the_addon_and_agents_cannot_reach_its_api(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    proc = subprocess.Popen([*SHIELD, "run", "--web", "--confdir", str(tmp_path / "c"), "--listen-port", str(ports[0]),
                             "--listen-host", "127.0.0.1", "--set", f"web_port={ports[1]}", "--set", "web_open_browser=false",
                             "--set", f"shield_dir={tmp_path / 'a'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                socket.create_connection(("127.0.0.1", ports[1]), timeout=0.5).close()
                return True
            except OSError:
                return False

        wait_for(up, 30, "mitmweb to listen")
        wait_for(lambda: (tmp_path / "a" / "journal").is_dir(), 10, "the addon to open its journal")
        # An agent going through the proxy to mitmweb's API would approve its own holds.
        for path in ("/flows", "/commands/flow.resume"):
            with httpx.Client(proxy=f"http://127.0.0.1:{ports[0]}", trust_env=False, timeout=10) as c:
                r = c.get(f"http://127.0.0.1:{ports[1]}{path}")
            assert r.status_code == 403 and r.json()["decision"] == "blocked", path
            assert r.json()["rule"] in ("builtin:proxy-itself", "proxy-mitmweb", "proxy-mitmweb-api")
    finally:
        stop_process(proc, 15)
