"""A reviewer rewrites a held request in the real console's editor, then resumes it: the
upstream gets the edit, the trail keeps both the original and what was forwarded."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import curl
from tests.e2e.harness import HERE, Upstream, wait_for
from tests.e2e.test_console import Console, free_port, held_on_screen

pytestmark = pytest.mark.console

EDITED_PATH = "/hold/edit-url-EDITED"
EDITOR = """#!/bin/sh
# The reviewer's editor: mitmproxy passes the file to edit as the last argument.
sed -i -e 's#rm -rf /#echo safe#' -e 's#/hold/edit-url#/hold/edit-url-EDITED#' "$1"
echo "$1" >> {log}
"""


class EditingConsole(Console):
    """test_console's Console, with $MITMPROXY_EDITOR (and $EDITOR) set to a script that
    rewrites the file it is given, as a reviewer would in vi."""

    def __init__(self, tmp: Path, upstream: Upstream):
        if not shutil.which("tmux"):
            pytest.fail("tmux is not installed: .ci/run installs it with apt-get")
        self.session = f"shield-edit-{os.getpid()}-{tmp.name}"
        self.port = free_port()
        self.audit = tmp / "audit"
        self.conf = tmp / "conf"
        self.editor_log = tmp / "editor.log"
        editor = tmp / "editor.sh"
        editor.write_text(EDITOR.format(log=shlex.quote(str(self.editor_log))))
        editor.chmod(0o755)
        cmd = [sys.executable, "-m", "shield_addon.cli", "run", "--confdir", str(self.conf),
               "--listen-port", str(self.port), "--listen-host", "127.0.0.1",
               "--set", f"shield_dir={self.audit}", "--set", f"shield_rules={HERE / 'rules'}",
               "--set", "shield_reviewer=alice", "--set", "console_focus_follow=true",
               "--set", "proxyauth=any", "--set", f"ssl_verify_upstream_trusted_ca={upstream.ca_file}"]
        env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color",
               "MITMPROXY_EDITOR": str(editor), "EDITOR": str(editor)}
        shell = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(cmd)
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", shell], check=True)
        wait_for(self.listening, 30, "the console proxy to listen")

    def edits(self) -> list[str]:
        return self.editor_log.read_text().splitlines() if self.editor_log.exists() else []


@pytest.fixture()
def console(tmp_path: Path, upstream: Upstream) -> Iterator[EditingConsole]:
    c = EditingConsole(tmp_path, upstream)
    yield c
    c.close()


def chooser_key(console: EditingConsole, part: str) -> str:
    """The key of `part` in the `e` chooser ("Part" in mitmproxy 11, "Edit..." in 12, with
    more entries in 12): read it off the screen rather than assume it."""
    found = wait_for(lambda: re.search(rf"(\w)\) {re.escape(part)}\b", console.screen()), 10, f"{part} in the edit chooser")
    return found.group(1)


def agent_post(console: EditingConsole, upstream: Upstream, path: str) -> subprocess.Popen:
    return subprocess.Popen(
        [curl(), "-sS", "-w", "\n%{http_code}", "--proxy", f"http://agent-tui:pw@127.0.0.1:{console.port}",
         "--cacert", str(console.conf / "mitmproxy-ca-cert.pem"), "-X", "POST", "-H", "Content-Type: text/plain",
         "--data-binary", "rm -rf /", upstream.url(path, tls=True)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def edit_and_resume(console: EditingConsole, upstream: Upstream, agent: subprocess.Popen, path: str,
                    part: str) -> str:
    """Wait for the hold, edit `part` with `e`, resume with `a`; the body the agent got (with a 200)."""
    try:
        held_on_screen(console, path)
        assert "V Restore" not in console.screen()
        console.keys("e")
        console.keys(chooser_key(console, part))
        wait_for(console.edits, 15, f"the editor to run on the {part}")
        # mitmproxy took the edit: it offers to restore the original (both 11 and 12).
        wait_for(lambda: "V Restore" in console.screen(), 10, "the console to show the flow as edited")
        assert any(path in line and "⌛" in line for line in console.screen().splitlines()), "still held"
        assert upstream.hits_for(path) == [] and upstream.hits_for(EDITED_PATH) == [], "an edit must not release it"
        console.keys("a")
        out, err = agent.communicate(timeout=20)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    body, status = out.strip().rsplit("\n", 1)
    assert status == "200", (out, err)
    return body


def trail(console: EditingConsole, path: str) -> tuple[dict, dict]:
    """The flow's request event and its decision event."""
    def both() -> list[dict] | None:
        rows = console.sql("SELECT stage, decision, operation, reviewer, edited, url, path, request_body, "
                           f"forwarded_request FROM events WHERE path = '{path}' AND stage IN ('request', 'decision') "
                           "ORDER BY seq")
        return rows if len(rows) == 2 else None

    request, decision = wait_for(both, 10, "the request and decision events in the audit store")
    assert (request["stage"], decision["stage"]) == ("request", "decision")
    assert (decision["decision"], decision["operation"], decision["reviewer"]) == ("approved", "flow.resume", "alice")
    return request, decision


def test_reviewer_edits_a_held_body_in_the_console_editor_and_the_edit_is_forwarded_and_recorded(
        console: EditingConsole, upstream: Upstream) -> None:
    path = "/hold/edit-body"
    agent = agent_post(console, upstream, path)
    body = edit_and_resume(console, upstream, agent, path, "request-body")
    assert json.loads(body)["path"] == path
    [hit] = upstream.hits_for(path)
    assert hit.method == "POST" and hit.body == b"echo safe"
    request, decision = trail(console, path)
    assert request["request_body"] == "rm -rf /", "the trail keeps what the agent asked for"
    assert decision["edited"] is True
    forwarded = json.loads(decision["forwarded_request"])
    assert forwarded["body"] == "echo safe" and forwarded["url"].endswith(path)
    assert forwarded["body_sha256"] == hashlib.sha256(b"echo safe").hexdigest()


def test_reviewer_edits_a_held_url_in_the_console_editor_and_the_edit_is_forwarded_and_recorded(
        console: EditingConsole, upstream: Upstream) -> None:
    path = "/hold/edit-url"
    agent = agent_post(console, upstream, path)
    body = edit_and_resume(console, upstream, agent, path, "url")
    assert json.loads(body)["path"] == EDITED_PATH
    assert [h.path for h in upstream.hits_for("/hold/edit-url")] == [EDITED_PATH]
    [hit] = upstream.hits_for(EDITED_PATH)
    assert hit.body == b"rm -rf /", "the editor ran on the URL only: the body is as sent"
    request, decision = trail(console, path)
    assert request["path"] == path and request["request_body"] == "rm -rf /"
    assert decision["edited"] is True
    forwarded = json.loads(decision["forwarded_request"])
    assert forwarded["url"] == upstream.url(EDITED_PATH, tls=True) and forwarded["body"] == "rm -rf /"
