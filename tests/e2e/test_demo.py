"""`shield demo`, headless and in the real console, from the installed command."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import SHIELD, wait_for


def timeline(audit: Path) -> list[dict]:
    cp = subprocess.run([*SHIELD, "timeline", "--json", "--dir", str(audit)], capture_output=True, text=True, timeout=60)
    return [json.loads(x) for x in cp.stdout.splitlines()]


def decisions(audit: Path) -> dict[str, str]:
    return {f"{t['method']} {t['path']}": t["decision"] for t in timeline(audit)}


EXPECTED = {
    "GET /api/v1/namespaces/prod/pods": "allowed",
    "DELETE /apis/apps/v1/namespaces/prod/deployments/web": "approved",
    "POST /v1/refunds": "blocked",
    "GET /v1/charges": "allowed",
}


def test_auto_demo_shows_holds_a_denial_and_the_timeline(tmp_path: Path) -> None:
    cp = subprocess.run([*SHIELD, "demo", "--auto", "--dir", str(tmp_path / "demo")], capture_output=True, text=True,
                        timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "demo reviewer: shield.approve" in cp.stdout and "agent-shield timeline" in cp.stdout
    got = decisions(tmp_path / "demo" / "audit")
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert sorted(t["decision"] for t in timeline(tmp_path / "demo" / "audit") if t["path"] == "/sql") == ["allowed", "denied"]
    verify = subprocess.run([*SHIELD, "verify", "--dir", str(tmp_path / "demo" / "audit"), "--confdir",
                             str(tmp_path / "demo" / "conf")], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout


@pytest.mark.console
def test_console_demo_lets_the_newcomer_decide(tmp_path: Path) -> None:
    if not shutil.which("tmux"):
        pytest.fail("tmux is not installed: .ci/run installs it with apt-get")
    session = f"shield-demo-{tmp_path.name}"
    work = tmp_path / "demo"
    cmd = " ".join(map(shlex.quote, [sys.executable, "-m", "shield_addon.cli", "demo", "--dir", str(work)]))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50",
                    f"LANG=C.UTF-8 TERM=xterm-256color COLUMNS=200 {cmd}; echo DEMO-EXITED; sleep 60"], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def held(path: str) -> bool:
        return any(path in line and "⌛" in line for line in screen().splitlines())

    try:
        wait_for(lambda: held("/deployments/web"), 60, "the held delete on the console")
        subprocess.run(["tmux", "send-keys", "-t", session, "y"], check=True)
        wait_for(lambda: held("/sql"), 30, "the held DROP on the console")
        subprocess.run(["tmux", "send-keys", "-t", session, "N"], check=True)
        wait_for(lambda: "shield.deny" in screen(), 10, "the deny prompt")
        subprocess.run(["tmux", "send-keys", "-t", session, "-l", "not today"], check=True)
        subprocess.run(["tmux", "send-keys", "-t", session, "Enter"], check=True)
        wait_for(lambda: "GET /v1/charges" in decisions(work / "audit"), 30, "the agent to finish")
        subprocess.run(["tmux", "send-keys", "-t", session, "Q"], check=True)
        wait_for(lambda: "DEMO-EXITED" in screen(), 30, "the console to quit and the timeline to print")
        assert "agent-shield timeline" in screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    got = decisions(work / "audit")
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    sql = [t for t in timeline(work / "audit") if t["path"] == "/sql" and t["decision"] == "denied"]
    assert sql and sql[0]["reviewer"]
