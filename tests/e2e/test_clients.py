"""Real clients through a real `shield run`, set up the way the README says: an agent made
with `shield agents add`, and nothing but the exports `shield env` prints for it.

Every client runs in a subprocess whose environment is PATH, HOME and LANG plus those
exports: no --proxy, no CA option, no code that names the proxy. The upstreams are local
and speak HTTPS with a self-signed certificate that only the proxy trusts, so a client that
ignored the exports (went direct, or did not trust the proxy's CA) fails here.

The proxy runs the bundled rules (no shield_rules override), and proxyauth is on because
agents exist, as for a user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.clients.fake_openai import REPLY, FakeOpenAI
from tests.e2e.conftest import curl
from tests.e2e.harness import SHIELD, Proxy, Upstream, start_proxy, wait_for

CLIENTS = Path(__file__).resolve().parent / "clients"
AGENTS = ("agent-curl", "agent-requests", "agent-openai", "agent-boto3", "agent-node")
INSTALL = "pip install -e '.[test]' (the test extras)"


def need(module: str) -> None:
    """A missing client library is a broken test setup: fail, never skip."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed for {sys.executable}: {INSTALL}")


def upstream_key(upstream: Upstream) -> Path:
    """The key of the upstream's self-signed certificate (make_cert writes it beside the cert).
    The fake OpenAI and AWS servers reuse that pair, so the proxy trusts one upstream CA."""
    key = upstream.ca_file.with_name("upstream-key.pem")
    assert key.exists(), key
    return key


# ---------------------------------------------------------------- the proxy and its agents


@dataclass
class Shielded:
    proxy: Proxy
    tokens: dict[str, str]
    home: Path

    def env(self, agent: str) -> dict[str, str]:
        """What the agent's shell has after pasting `shield env NAME --token=T --port P`. (`--token=`:
        a token can start with '-', which argparse would take for an option after `--token `.)"""
        cp = subprocess.run([*SHIELD, "env", agent, f"--token={self.tokens[agent]}", "--confdir",
                             str(self.proxy.confdir), "--port", str(self.proxy.port)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        exports = {}
        for line in cp.stdout.splitlines():
            export, assignment = shlex.split(line)  # export NAME='value'
            assert export == "export", line
            name, _, value = assignment.partition("=")
            exports[name] = value
        assert exports["HTTPS_PROXY"].endswith(f"@127.0.0.1:{self.proxy.port}"), exports
        return {"PATH": os.environ["PATH"], "HOME": str(self.home), "LANG": "C.UTF-8", **exports}

    def run(self, agent: str, *argv: str, timeout: float = 60) -> dict:
        """Run a client as `agent`; it prints one JSON line last."""
        cp = subprocess.run(argv, env=self.env(agent), cwd=self.home, capture_output=True, text=True, timeout=timeout)
        assert cp.returncode == 0, f"{argv[:2]} exited {cp.returncode}:\n{cp.stdout}\n{cp.stderr}"
        return json.loads(cp.stdout.splitlines()[-1])

    def start(self, agent: str, *argv: str) -> subprocess.Popen:
        """Start a client as `agent` in the background; its stdout is read line by line."""
        return subprocess.Popen(argv, env=self.env(agent), cwd=self.home, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)


def add_agent(confdir: Path, name: str) -> str:
    cp = subprocess.run([*SHIELD, "agents", "add", name, "--confdir", str(confdir)], capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def shielded(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Shielded]:
    tmp = tmp_path_factory.mktemp("clients")
    tokens = {name: add_agent(tmp / "conf", name) for name in AGENTS}  # before the proxy: proxyauth turns on
    home = tmp / "home"
    home.mkdir()
    proxy = start_proxy(tmp, upstream_ca=upstream.ca_file)
    yield Shielded(proxy, tokens, home)
    proxy.stop()


def request_event(proxy: Proxy, flow_id: str) -> dict:
    [ev] = proxy.events(f"flow_id = '{flow_id}' AND stage = 'request'")
    return ev


# ---------------------------------------------------------------- curl and requests


def curl_get(url: str) -> list[str]:
    return [curl(), "-sS", "--fail", "--max-time", "30", "-w", "\\n%{http_code}", url]


def requests_get(url: str) -> list[str]:
    need("requests")
    return [sys.executable, str(CLIENTS / "requests_get.py"), url]


@pytest.mark.parametrize(("agent", "argv"), [("agent-curl", curl_get), ("agent-requests", requests_get)],
                         ids=["curl", "requests"])
def test_allowed_https_get_is_recorded_with_the_agents_name(shielded: Shielded, upstream: Upstream, agent: str,
                                                            argv: Callable[[str], list[str]]) -> None:
    path = f"/clients/{agent}"
    cp = subprocess.run(argv(upstream.url(path, tls=True)), env=shielded.env(agent), cwd=shielded.home,
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    body, status = cp.stdout.strip().rsplit("\n", 1)  # both print the body, then the status
    assert status == "200" and json.loads(body)["path"] == path
    assert len(upstream.hits_for(path)) == 1
    [resp] = shielded.proxy.flow_events(path, "response")
    assert resp["agent"] == agent and resp["status_code"] == 200 and resp["outcome"] == "forwarded"
    req = request_event(shielded.proxy, resp["flow_id"])
    assert req["decision"] == "allowed" and req["scheme"] == "https"


# ---------------------------------------------------------------- the openai SDK


@pytest.fixture(scope="module")
def fake_openai(upstream: Upstream) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(upstream.ca_file, upstream_key(upstream)).start()
    yield server
    server.stop()


def openai_chat(base_url: str, mode: str) -> list[str]:
    need("openai")
    return [sys.executable, str(CLIENTS / "openai_chat.py"), base_url, mode]


def test_openai_sdk_completion_comes_back_and_is_recorded(shielded: Shielded, fake_openai: FakeOpenAI) -> None:
    reply = shielded.run("agent-openai", *openai_chat(fake_openai.base_url("/complete"), "complete"))
    assert reply == {"id": "chatcmpl-fake-1", "content": REPLY}
    [(_, sent)] = [(p, b) for p, b in fake_openai.requests if p == "/complete/v1/chat/completions"]
    assert sent["model"] == "fake-gpt" and not sent.get("stream")
    [resp] = shielded.proxy.flow_events("/complete/v1/chat/completions", "response")
    assert resp["agent"] == "agent-openai" and resp["status_code"] == 200 and resp["outcome"] == "forwarded"
    req = request_event(shielded.proxy, resp["flow_id"])
    assert req["method"] == "POST" and req["decision"] == "allowed"
    assert json.loads(req["request_body"])["model"] == "fake-gpt"


def test_openai_sdk_stream_arrives_chunk_by_chunk_and_is_recorded_whole(shielded: Shielded,
                                                                         fake_openai: FakeOpenAI) -> None:
    """The fake server sends the first SSE chunk, then waits until this test has seen the
    client print it: a proxy that buffered the response would deliver nothing before the end."""
    client = shielded.start("agent-openai", *openai_chat(fake_openai.base_url("/stream"), "stream"))
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in client.stdout], daemon=True)
    reader.start()
    try:
        try:
            first = json.loads(lines.get(timeout=20))
        except queue.Empty:
            pytest.fail("the client got no SSE chunk within 20 s while the server held back the rest of the "
                        "stream: the proxy buffers text/event-stream responses instead of streaming them")
        assert first == {"piece": "Hello"}
        assert fake_openai.released_in_time is None, "the server must still be holding back the rest"
        fake_openai.release.set()
        assert client.wait(30) == 0, client.stderr.read()
    finally:
        fake_openai.release.set()
        if client.poll() is None:
            client.kill()
            client.wait()
    reader.join(10)
    rest = [json.loads(lines.get_nowait()) for _ in range(lines.qsize())]
    assert rest[-1] == {"done": True}
    assert first["piece"] + "".join(r["piece"] or "" for r in rest[:-1]) == REPLY
    assert fake_openai.released_in_time is True

    [resp] = shielded.proxy.flow_events("/stream/v1/chat/completions", "response")
    assert resp["agent"] == "agent-openai" and resp["status_code"] == 200 and resp["outcome"] == "forwarded"
    assert resp["response_body_size"] == len(fake_openai.streamed) > 0
    assert resp["response_sha256"] == hashlib.sha256(fake_openai.streamed).hexdigest()


def test_openai_sdk_stream_closed_at_done_before_the_body_ends_is_still_recorded(shielded: Shielded,
                                                                                 upstream: Upstream) -> None:
    """The openai SDK closes a stream as soon as it reads `data: [DONE]`. Here the upstream ends
    the body a second later: the agent has had the whole completion, and the trail should say
    what it got (status 200, the streamed bytes' size and digest), whichever stage records it."""
    fake = FakeOpenAI(upstream.ca_file, upstream_key(upstream), end_delay=1).start()
    fake.release.set()  # nothing to hold back here
    try:
        assert shielded.run("agent-openai", *openai_chat(fake.base_url("/late-end"), "stream")) == {"done": True}
    finally:
        fake.stop()
    outcome = "path LIKE '/late-end/%' AND stage IN ('response', 'error')"
    [ev] = wait_for(lambda: shielded.proxy.events(outcome), 15, "the stream's response or error event")
    assert (ev["status_code"], ev["response_body_size"]) == (200, len(fake.streamed)), ev["error"]
    assert ev["response_sha256"] == hashlib.sha256(fake.streamed).hexdigest()


# ---------------------------------------------------------------- boto3


@pytest.fixture(scope="module")
def aws(upstream: Upstream) -> Iterator[str]:
    """moto's AWS server, as ThreadedMotoServer builds it but over HTTPS (real AWS endpoints
    are HTTPS, so boto3 must trust the proxy's CA through AWS_CA_BUNDLE). Returns its endpoint."""
    need("moto")
    need("boto3")
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True,
                         request_handler=MotoRequestHandler, ssl_context=(str(upstream.ca_file), str(upstream_key(upstream))))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_port}"
    server.shutdown()
    thread.join(10)


def ec2(endpoint: str, *args: str) -> list[str]:
    return [sys.executable, str(CLIENTS / "aws_ec2.py"), endpoint, *args]


def test_boto3_terminate_instances_is_held_until_approved_while_describe_flows(shielded: Shielded, aws: str) -> None:
    proxy = shielded.proxy
    instance = shielded.run("agent-boto3", *ec2(aws, "run"))["id"]
    assert shielded.run("agent-boto3", *ec2(aws, "describe", instance)) == {"state": "running"}

    terminate = shielded.start("agent-boto3", *ec2(aws, "terminate", instance))
    try:
        proxy.wait_held("~b TerminateInstances")
        # held: another call of the same agent flows, and the instance is untouched
        assert shielded.run("agent-boto3", *ec2(aws, "describe", instance)) == {"state": "running"}
        assert terminate.poll() is None, "boto3 must still be waiting for the reviewer"
        proxy.command("shield.approve", "~b TerminateInstances")
        out, err = terminate.communicate(timeout=30)
    finally:
        if terminate.poll() is None:
            terminate.kill()
            terminate.wait()
    assert terminate.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["state"] in ("shutting-down", "terminated")
    assert shielded.run("agent-boto3", *ec2(aws, "describe", instance))["state"] in ("shutting-down", "terminated")

    def terminate_row() -> dict | None:
        rows = [r for r in proxy.timeline("--service", "aws:ec2", "--agent", "agent-boto3")
                if r["operation"] == "TerminateInstances" and r["status_code"]]
        return rows[0] if rows else None

    row = wait_for(terminate_row, 15, "the TerminateInstances flow in the timeline")
    assert (row["service"], row["rule_id"], row["verdict"]) == ("aws:ec2", "aws-terminate", "hold")
    assert (row["decision"], row["reviewer"], row["status_code"]) == ("approved", "test-reviewer", 200)
    assert row["resource_name"] == instance
    [decision] = proxy.events(f"flow_id = '{row['flow_id']}' AND stage = 'decision'")
    assert (decision["operation"], decision["reviewer"]) == ("shield.approve", "test-reviewer")
    others = {(r["operation"], r["decision"]) for r in proxy.timeline("--service", "aws:ec2", "--agent", "agent-boto3")
              if r["operation"] != "TerminateInstances"}
    assert others == {("RunInstances", "allowed"), ("DescribeInstances", "allowed")}


# ---------------------------------------------------------------- Node


@pytest.fixture(scope="module")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/e2e/clients' Node script with its pinned undici, installed by `npm ci` into a
    temp dir (ESM resolves `undici` next to the script, so the script is copied there)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed (Node 20+): apt-get install nodejs npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"Node {version} is too old for these tests: they need Node 20+")
    work = tmp_path_factory.mktemp("node")
    for name in ("package.json", "package-lock.json", "node_fetch.mjs"):
        shutil.copy(CLIENTS / name, work / name)
    cp = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=work, capture_output=True, text=True, timeout=300)
    if cp.returncode != 0:
        pytest.fail(f"`npm ci` of tests/e2e/clients/package.json (undici) failed; it needs the npm registry:\n{cp.stderr}")
    return work / "node_fetch.mjs"


def test_node_fetch_through_undici_env_proxy_agent_is_recorded(shielded: Shielded, upstream: Upstream,
                                                               node_client: Path) -> None:
    """Node 20's fetch ignores HTTP(S)_PROXY, and NODE_USE_ENV_PROXY=1 (which `shield env`
    exports) changes nothing there: the script sets undici's EnvHttpProxyAgent, which reads
    the same variables, as fetch's global dispatcher. NODE_EXTRA_CA_CERTS trusts the CA."""
    path = "/clients/agent-node"
    result = shielded.run("agent-node", "node", str(node_client), upstream.url(path, tls=True))
    assert result["status"] == 200 and json.loads(result["body"])["path"] == path
    assert len(upstream.hits_for(path)) == 1
    [resp] = shielded.proxy.flow_events(path, "response")
    assert resp["agent"] == "agent-node" and resp["status_code"] == 200 and resp["outcome"] == "forwarded"
    assert request_event(shielded.proxy, resp["flow_id"])["decision"] == "allowed"
