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
from tests.e2e.harness import HERE, Upstream, free_port, wait_for

pytestmark = pytest.mark.console


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


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Console]:
    """One console for the module; focus follows the newest flow, so each test's keys
    act on the flow it just sent."""
    c = Console(tmp_path_factory.mktemp("console"), upstream)
    yield c
    c.close()


def decision(console: Console, path: str) -> dict:
    rows = wait_for(lambda: console.sql(f"SELECT * FROM events WHERE stage = 'decision' AND path = '{path}'"), 10,
                    "the decision in the audit store")
    return rows[0]


def held_on_screen(console: Console, path: str) -> None:
    """The flow is listed from its headers on, but held only once its line shows ⌛."""
    wait_for(lambda: any(path in line and "⌛" in line for line in console.screen().splitlines()), 20,
             "the held flow on the console")


def agent_curl(console: Console, upstream: Upstream, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [curl(), "-sS", "-w", "\n%{http_code}", "--proxy", f"http://agent-tui:pw@127.0.0.1:{console.port}",
         "--cacert", str(console.conf / "mitmproxy-ca-cert.pem"), "-X", "DELETE", upstream.url(path, tls=True)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_reviewer_approves_a_held_delete_with_the_y_key(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-approve"
    agent = agent_curl(console, upstream, path)
    held_on_screen(console, path)
    assert upstream.hits_for(path) == []
    console.keys("y")
    out, err = agent.communicate(timeout=20)
    assert out.strip().endswith("200"), (out, err)
    assert json.loads(out.strip().rsplit("\n", 1)[0])["path"] == path
    assert len(upstream.hits_for(path)) == 1
    d = decision(console, path)
    assert (d["decision"], d["reviewer"], d["agent"], d["operation"]) == ("approved", "alice", "agent-tui", "shield.approve")


def test_reviewer_kills_a_held_flow_with_x_and_the_agent_is_not_left_hanging(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-kill"
    agent = agent_curl(console, upstream, path)
    held_on_screen(console, path)
    console.keys("X")
    agent.communicate(timeout=10)  # the kill bug would keep curl waiting
    assert agent.returncode != 0
    assert upstream.hits_for(path) == []
    d = decision(console, path)
    assert (d["decision"], d["reviewer"]) == ("killed", "alice")


def test_reviewer_denies_with_a_reason_typed_after_n(console: Console, upstream: Upstream) -> None:
    path = "/hold/console-deny"
    agent = agent_curl(console, upstream, path)
    held_on_screen(console, path)
    console.keys("N")
    wait_for(lambda: "shield.deny" in console.screen(), 10, "the deny prompt")
    console.keys("-l", "wrong cluster")
    console.keys("Enter")
    out, _ = agent.communicate(timeout=20)
    body, status = out.strip().rsplit("\n", 1)
    assert status == "403" and json.loads(body)["reviewer_comment"] == "wrong cluster"
    assert upstream.hits_for(path) == []
    d = decision(console, path)
    assert (d["decision"], d["reviewer_comment"], d["operation"]) == ("denied", "wrong cluster", "shield.deny")


def test_native_a_resumes_and_is_recorded_as_approved(console: Console, upstream: Upstream) -> None:
    path = "/hold/tui-resume"
    agent = agent_curl(console, upstream, path)
    held_on_screen(console, path)
    console.keys("a")
    out, _ = agent.communicate(timeout=20)
    assert out.strip().endswith("200") and len(upstream.hits_for(path)) == 1
    d = decision(console, path)
    assert (d["decision"], d["operation"], d["reviewer"]) == ("approved", "flow.resume", "alice")


def test_removing_a_held_flow_with_d_kills_it(console: Console, upstream: Upstream) -> None:
    path = "/hold/tui-remove"
    agent = agent_curl(console, upstream, path)
    held_on_screen(console, path)
    console.keys("d")
    agent.communicate(timeout=10)
    assert agent.returncode != 0 and upstream.hits_for(path) == []
    assert decision(console, path)["decision"] == "killed"
