"""The real mitmproxy console under tmux: a reviewer presses keys, the agent gets its answer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import curl
from tests.e2e.harness import HERE, Upstream, wait_for

pytestmark = pytest.mark.console


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    def __init__(self, tmp: Path, upstream: Upstream):
        if not shutil.which("tmux"):
            pytest.fail("tmux is not installed: .ci/run installs it with apt-get")
        self.session = f"shield-test-{os.getpid()}-{tmp.name}"
        self.port = free_port()
        self.audit = tmp / "audit"
        self.conf = tmp / "conf"
        cmd = [sys.executable, "-m", "shield_addon.cli", "run", "--confdir", str(self.conf),
               "--listen-port", str(self.port), "--listen-host", "127.0.0.1",
               "--set", f"shield_dir={self.audit}", "--set", f"shield_rules={HERE / 'rules'}",
               "--set", "shield_reviewer=alice", "--set", "console_focus_follow=true",
               "--set", "proxyauth=any", "--set", f"ssl_verify_upstream_trusted_ca={upstream.ca_file}"]
        env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color"}
        shell = " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(map(shlex_quote, cmd))
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", shell], check=True)
        wait_for(self.listening, 30, "the console proxy to listen")

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def screen(self) -> str:
        cp = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True)
        return cp.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)

    def alive(self) -> bool:
        return subprocess.run(["tmux", "has-session", "-t", self.session], capture_output=True).returncode == 0

    def close(self) -> None:
        if self.alive():
            self.keys("Q")
            try:
                wait_for(lambda: not self.alive(), 15, "the console to exit")
            except AssertionError:
                subprocess.run(["tmux", "kill-session", "-t", self.session])

    def sql(self, query: str) -> list[dict]:
        cp = subprocess.run([sys.executable, "-m", "shield_addon.cli", "sql", query, "--json", "--dir", str(self.audit)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return [json.loads(x) for x in cp.stdout.splitlines()]


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@pytest.fixture
def console(tmp_path: Path, upstream: Upstream) -> Iterator[Console]:
    c = Console(tmp_path, upstream)
    yield c
    c.close()


def agent_curl(console: Console, upstream: Upstream, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [curl(), "-sS", "-w", "\n%{http_code}", "--proxy", f"http://agent-tui:pw@127.0.0.1:{console.port}",
         "--cacert", str(console.conf / "mitmproxy-ca-cert.pem"), "-X", "DELETE", upstream.url(path, tls=True)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_reviewer_approves_a_held_delete_with_the_y_key(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-approve"
    agent = agent_curl(console, upstream, path)
    wait_for(lambda: path in console.screen(), 20, "the held flow on the console")
    assert upstream.hits_for(path) == []
    console.keys("y")
    out, err = agent.communicate(timeout=20)
    assert out.strip().endswith("200"), (out, err)
    assert json.loads(out.strip().rsplit("\n", 1)[0])["path"] == path
    assert len(upstream.hits_for(path)) == 1
    rows = wait_for(lambda: console.sql(f"SELECT * FROM events WHERE stage = 'decision' AND path = '{path}'"), 10,
                    "the decision in the audit store")
    assert (rows[0]["decision"], rows[0]["reviewer"], rows[0]["agent"]) == ("approved", "alice", "agent-tui")


def test_reviewer_kills_a_held_flow_with_x_and_the_agent_is_not_left_hanging(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-kill"
    agent = agent_curl(console, upstream, path)
    wait_for(lambda: path in console.screen(), 20, "the held flow on the console")
    console.keys("X")
    agent.communicate(timeout=10)  # the kill bug would keep curl waiting
    assert agent.returncode != 0
    assert upstream.hits_for(path) == []
    rows = wait_for(lambda: console.sql(f"SELECT * FROM events WHERE stage = 'decision' AND path = '{path}'"), 10,
                    "the decision in the audit store")
    assert rows[0]["decision"] == "killed" and rows[0]["reviewer"] == "alice"


def test_reviewer_denies_with_a_reason_typed_after_n(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-deny"
    agent = agent_curl(console, upstream, path)
    wait_for(lambda: path in console.screen(), 20, "the held flow on the console")
    console.keys("N")
    wait_for(lambda: "shield.deny" in console.screen(), 10, "the deny prompt")
    console.keys("-l", "wrong cluster")
    console.keys("Enter")
    out, _ = agent.communicate(timeout=20)
    body, status = out.strip().rsplit("\n", 1)
    assert status == "403" and json.loads(body)["reviewer_comment"] == "wrong cluster"
    assert upstream.hits_for(path) == []
