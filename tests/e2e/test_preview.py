"""A held Kubernetes request with `hold: {preview: true}`: the API server's own dry run is in
the reviewer's comment and the trail, and the preview never does what the request would."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import client
from tests.e2e.ec2_server import Ec2, start_ec2
from tests.e2e.harness import HERE, Proxy, Upstream, start_proxy, wait_for
from tests.e2e.kube_server import Kube, start_kube

PATH = "/apis/apps/v1/namespaces/preview-prod/deployments/web"


@pytest.fixture
def kube() -> Iterator[Kube]:
    k, stop = start_kube()
    k.deployment("preview-prod", "web", 3)
    yield k
    stop()


def held_delete(proxy: Proxy, kube: Kube, path: str, query: str = "", agent: str = "deploy-bot") -> dict:
    out: dict = {}

    def send() -> None:
        with client(proxy, agent, timeout=30) as c:
            out["r"] = c.delete(kube.url(path + query), headers={"authorization": "Bearer kube-token-123"})

    out["thread"] = threading.Thread(target=send, daemon=True)
    out["thread"].start()
    proxy.wait_held(f"~u {path}")
    return out


def comment(proxy: Proxy, path: str) -> str:
    return proxy.command("comments", f"~u {path}")["comments"][0]


def test_the_dry_run_is_in_the_comment_and_the_trail_and_nothing_is_deleted(proxy: Proxy, kube: Kube) -> None:
    held = held_delete(proxy, kube, PATH)
    line = wait_for(lambda: (c := comment(proxy, PATH)) and "| dry run" in c and c, 10, "the dry run in the comment")
    assert "dry run: would delete Deployment preview-prod/web (replicas 3, ready now 3, deletion pending" in line
    assert kube.calls_for(PATH) == [("DELETE", PATH, True)] and ("preview-prod", "web") in kube.objects
    proxy.command("shield.deny", f"~u {PATH}", "not", "now", held=True)
    held["thread"].join(10)
    assert held["r"].status_code == 403
    [d] = proxy.flow_events(PATH, "decision")
    assert d["decision"] == "denied" and d["preview"].startswith("dry run: would delete Deployment preview-prod/web")
    assert kube.calls_for(PATH) == [("DELETE", PATH, True)] and ("preview-prod", "web") in kube.objects


def test_an_approved_request_is_sent_once_after_its_dry_run(proxy: Proxy, kube: Kube) -> None:
    path = PATH.replace("/web", "/api")
    kube.deployment("preview-prod", "api", 2)
    held = held_delete(proxy, kube, path, "?dryRun=None")  # the agent's own dryRun is not what the preview sends
    wait_for(lambda: "| dry run" in comment(proxy, path), 10, "the dry run in the comment")
    proxy.command("shield.approve", f"~u {path}", held=True)
    held["thread"].join(10)
    assert isinstance(held["r"], httpx.Response) and held["r"].status_code == 200
    assert kube.calls_for(path) == [("DELETE", path, True), ("DELETE", path, False)]
    assert ("preview-prod", "api") not in kube.objects


def test_a_refused_dry_run_says_why(proxy: Proxy, kube: Kube) -> None:
    path = PATH.replace("/web", "/missing")
    held = held_delete(proxy, kube, path)
    line = wait_for(lambda: (c := comment(proxy, path)) and "| dry run" in c and c, 10, "the dry run in the comment")
    assert "dry run refused: 404 NotFound: deployments.apps not found" in line
    proxy.command("shield.deny", f"~u {path}", held=True)
    held["thread"].join(10)


# ---------------------------------------------------------------- EC2: DryRun=true, signed by the proxy

AGENT_KEY, PROXY_KEY, WEAK_KEY = "AKIDAGENT0000000001", "AKIDSHIELDPREVIEW01", "AKIDWEAKPREVIEW0001"
EC2_RULES = """\
version: 1
default: allow
rules:
  - id: ec2-preview
    match: {service: "aws:ec2", operation: [TerminateInstances, StopInstances, Bogus]}
    action: hold
    message: Held with EC2's dry run
    hold: {preview: true}
"""


@pytest.fixture(scope="module")
def ec2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ec2]:
    e, stop = start_ec2()
    e.keys = {AGENT_KEY: ("agent-secret", frozenset({"TerminateInstances", "StopInstances", "Bogus"})),
              PROXY_KEY: ("preview-secret", frozenset({"TerminateInstances", "StopInstances"})),
              WEAK_KEY: ("weak-secret", frozenset())}
    e.instances = {f"i-{n}": "running" for n in ("deny", "approve", "weak", "elsewhere", "bogus")}
    yield e
    stop()


def ec2_proxy(tmp: Path, ec2: Ec2, profile: str, *extra: str) -> Proxy:
    """A proxy whose own AWS profiles (not its environment's keys) sign EC2 dry runs."""
    (tmp / "rules.yaml").write_text(EC2_RULES)
    (tmp / "credentials").write_text(f"[shield-preview]\naws_access_key_id = {PROXY_KEY}\n"
                                     "aws_secret_access_key = preview-secret\n"
                                     f"[weak]\naws_access_key_id = {WEAK_KEY}\naws_secret_access_key = weak-secret\n")
    (tmp / "config").write_text("")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(tmp / "credentials"), "AWS_CONFIG_FILE": str(tmp / "config"),
           "AWS_ACCESS_KEY_ID": AGENT_KEY, "AWS_SECRET_ACCESS_KEY": "agent-secret",  # never the proxy's: a profile is named
           "AWS_EC2_METADATA_DISABLED": "true"}
    return start_proxy(tmp, "--set", f"shield_rules={tmp / 'rules.yaml'}", "--set", "proxyauth=any",
                       "--set", f"shield_preview_aws_profile={profile}", *extra, env=env)


@pytest.fixture(scope="module")
def ec2_shield(tmp_path_factory: pytest.TempPathFactory, ec2: Ec2) -> Iterator[Proxy]:
    p = ec2_proxy(tmp_path_factory.mktemp("ec2-proxy"), ec2, "shield-preview",
                  "--set", f"shield_preview_aws_endpoint={ec2.url}")
    yield p
    p.stop()


def agent_ec2(proxy: Proxy, endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("ec2", endpoint_url=endpoint, region_name="eu-west-3", aws_access_key_id=AGENT_KEY,
                        aws_secret_access_key="agent-secret",
                        config=Config(proxies={"http": proxy.url("deploy-bot")}, retries={"max_attempts": 1},
                                      read_timeout=30))


def held_call(proxy: Proxy, endpoint: str, operation: str, instance: str) -> dict:
    out: dict = {}

    def send() -> None:
        try:
            out["r"] = getattr(agent_ec2(proxy, endpoint), operation)(InstanceIds=[instance])
        except Exception as e:  # the reviewer's 403 arrives as botocore's ClientError
            out["r"] = e

    out["thread"] = threading.Thread(target=send, daemon=True)
    out["thread"].start()
    proxy.wait_held(f"~b {instance}")
    return out


def ec2_comment(proxy: Proxy, instance: str) -> str:
    return wait_for(lambda: (c := proxy.command("comments", f"~b {instance}")["comments"][0]) and "| dry run" in c and c,
                    15, f"the dry run of {instance} in the comment")


def decision(proxy: Proxy, instance: str) -> dict:
    [req] = wait_for(lambda: proxy.events(f"stage = 'request' AND resource_name = '{instance}'"), 15, "the request")
    return wait_for(lambda: proxy.events(f"stage = 'decision' AND flow_id = '{req['flow_id']}'"), 15, "the decision")[0]


def test_an_ec2_dry_run_is_signed_by_the_proxys_profile_and_nothing_is_terminated(ec2_shield: Proxy, ec2: Ec2) -> None:
    held = held_call(ec2_shield, ec2.url, "terminate_instances", "i-deny")
    assert "dry run as shield-preview: TerminateInstances would succeed" in ec2_comment(ec2_shield, "i-deny")
    [dry] = [c for c in ec2.calls_for("TerminateInstances") if ("InstanceId.1", "i-deny") in c.params]
    # the proxy's key, a valid signature over DryRun=true, the region the agent signed for
    assert (dry.dry_run, dry.key, dry.region) == (True, PROXY_KEY, "eu-west-3") and not ec2.refused
    assert [k for k, _ in dry.params] == ["Action", "Version", "InstanceId.1", "DryRun"]
    assert ec2.instances["i-deny"] == "running"
    ec2_shield.command("shield.deny", "~b i-deny", "not", "today", held=True)
    held["thread"].join(15)
    assert "not today" in str(held["r"]) and ec2.instances["i-deny"] == "running"  # the 403 reaches boto3
    d = decision(ec2_shield, "i-deny")
    assert d["decision"] == "denied" and d["preview"] == "dry run as shield-preview: TerminateInstances would succeed"
    trail = b"".join(p.read_bytes() for p in ec2_shield.audit_dir.rglob("*") if p.is_file())
    assert PROXY_KEY.encode() not in trail and b"preview-secret" not in trail  # the proxy's key is nowhere in it


def test_an_approved_ec2_request_goes_once_with_the_agents_own_signature(ec2_shield: Proxy, ec2: Ec2) -> None:
    held = held_call(ec2_shield, ec2.url, "stop_instances", "i-approve")
    ec2_comment(ec2_shield, "i-approve")
    ec2_shield.command("shield.approve", "~b i-approve", held=True)
    held["thread"].join(15)
    assert isinstance(held["r"], dict), held["r"]
    calls = [(c.dry_run, c.key) for c in ec2.calls_for("StopInstances") if ("InstanceId.1", "i-approve") in c.params]
    assert calls == [(True, PROXY_KEY), (False, AGENT_KEY)] and not ec2.refused
    assert ec2.instances["i-approve"] == "shutting-down"


def test_an_ec2_operation_without_dryrun_in_the_model_gets_no_preview(ec2_shield: Proxy, ec2: Ec2) -> None:
    import botocore.session

    assert "Bogus" not in botocore.session.get_session().get_service_model("ec2").operation_names
    held: dict = {}

    def send() -> None:  # an operation EC2's model does not have, signed by the agent
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        body = b"Action=Bogus&Version=2016-11-15&InstanceId.1=i-bogus"
        req = AWSRequest("POST", ec2.url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        SigV4Auth(Credentials(AGENT_KEY, "agent-secret"), "ec2", "eu-west-3").add_auth(req)
        with client(ec2_shield, "deploy-bot") as c:
            held["r"] = c.post(ec2.url, content=body, headers=dict(req.headers.items()))

    t = threading.Thread(target=send, daemon=True)
    t.start()
    ec2_shield.wait_held("~b i-bogus")
    ec2_shield.command("shield.deny", "~b i-bogus", held=True)
    t.join(15)
    assert held["r"].status_code == 403
    assert decision(ec2_shield, "i-bogus")["preview"] is None and ec2.calls_for("Bogus") == []


def test_the_dry_run_answers_for_the_profile_and_goes_only_to_ec2s_endpoint(
        tmp_path_factory: pytest.TempPathFactory, ec2: Ec2) -> None:
    elsewhere, stop = start_ec2()  # the host the agent names: it must see no dry run signed by the proxy
    elsewhere.keys = ec2.keys
    try:
        weak = ec2_proxy(tmp_path_factory.mktemp("ec2-weak"), ec2, "weak", "--set",
                         f"shield_preview_aws_endpoint={ec2.url}")
        try:
            held = held_call(weak, elsewhere.url, "terminate_instances", "i-weak")
            line = ec2_comment(weak, "i-weak")
            assert "dry run as weak refused: 403 UnauthorizedOperation: You are not authorized" in line
            assert [c.key for c in ec2.calls_for("TerminateInstances") if ("InstanceId.1", "i-weak") in c.params] \
                == [WEAK_KEY]
            assert elsewhere.calls == [] and elsewhere.refused == []
            weak.command("shield.deny", "~b i-weak", held=True)
            held["thread"].join(15)
        finally:
            weak.stop()
        # no endpoint configured: EC2's own for the region (botocore's resolver), never the agent's host
        unset = ec2_proxy(tmp_path_factory.mktemp("ec2-unset"), ec2, "no-such-profile")
        try:
            held = held_call(unset, elsewhere.url, "terminate_instances", "i-elsewhere")
            assert "dry run failed: AwsError: The config profile (no-such-profile) could not be found" in \
                ec2_comment(unset, "i-elsewhere")
            assert elsewhere.calls == [] and elsewhere.refused == []
            unset.command("shield.deny", "~b i-elsewhere", held=True)
            held["thread"].join(15)
        finally:
            unset.stop()
    finally:
        stop()


def test_past_four_of_an_agent_or_eight_in_all_under_way_a_hold_gets_no_dry_run(tmp_path: Path, kube: Kube) -> None:
    """An agent flooding held requests can neither make the proxy a load on the API server nor
    take the other agents' previews."""
    proxy = start_proxy(tmp_path, "--set", f"shield_rules={HERE / 'rules'}", "--set", "proxyauth=any",
                        "--set", "shield_preview_timeout=60")  # the slow server is slow, not failing
    kube.dry_runs_wait = threading.Event()
    # (agent, asks): deploy-bot's fifth is past its four; ops-bot's four fill the eight; audit-bot's is past eight
    plan = [*(("deploy-bot", i < 4) for i in range(5)), *(("ops-bot", True) for _ in range(4)), ("audit-bot", False)]
    paths = [PATH.replace("/web", f"/flood-{i}") for i in range(len(plan))]
    held = []
    try:
        for i, ((agent, asks), path) in enumerate(zip(plan, paths, strict=True)):
            kube.deployment("preview-prod", f"flood-{i}", 1)
            held.append(held_delete(proxy, kube, path, agent=agent))
            if asks:  # in order: it is asking before the next one is held
                wait_for(lambda p=path: kube.calls_for(p), 10, f"the dry run of {path} asked")
            else:
                wait_for(lambda p=path: "| no dry run" in comment(proxy, p), 10, f"{path} refused a dry run")
        assert "| no dry run: 4 of this agent's already under way" in comment(proxy, paths[4])
        assert "| no dry run: 8 already under way" in comment(proxy, paths[9])
        assert kube.calls_for(paths[4]) == [] and kube.calls_for(paths[9]) == []
        kube.dry_runs_wait.set()
        for path, (_, asks) in zip(paths, plan, strict=True):
            if asks:
                wait_for(lambda p=path: "| dry run: would delete Deployment" in comment(proxy, p), 10, f"the dry run of {path}")
        proxy.command("shield.deny", "~u /flood-", held=True)
        for h in held:
            h["thread"].join(10)
            assert h["r"].status_code == 403
    finally:
        kube.dry_runs_wait.set()
        proxy.stop()


# ---------------------------------------------------------------- a hostile agent: dry runs that are not dry


def test_a_delete_with_delete_options_in_its_body_is_previewed_dry(proxy: Proxy, kube: Kube) -> None:
    """kubectl and client-go send DeleteOptions as the DELETE's body; the API server then reads
    dryRun from that body only, never from the query: `?dryRun=All` alone would delete for real."""
    path = PATH.replace("/web", "/options")
    kube.deployment("preview-prod", "options", 2)
    out: dict = {}

    def send() -> None:
        with client(proxy, "deploy-bot", timeout=30) as c:
            out["r"] = c.request("DELETE", kube.url(path), headers={"authorization": "Bearer kube-token-123",
                                                                   "content-type": "application/json"},
                                 content=b'{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background",'
                                         b'"DryRun":[],"dryRun":[]}')

    t = threading.Thread(target=send, daemon=True)
    t.start()
    proxy.wait_held(f"~u {path}")
    line = wait_for(lambda: (c := comment(proxy, path)) and "| dry run" in c and c, 10, "the dry run in the comment")
    assert "dry run: would delete Deployment preview-prod/options" in line
    assert kube.calls_for(path) == [("DELETE", path, True)] and ("preview-prod", "options") in kube.objects
    proxy.command("shield.deny", f"~u {path}", held=True)
    t.join(10)
    assert out["r"].status_code == 403 and ("preview-prod", "options") in kube.objects


@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/preview-prod/services/web/proxy/admin/wipe1",  # the service gets the POST, dryRun or not
    "/api/v1/namespaces/preview-prod/pods/web%2Fproxy/wipe2",  # %2F is a slash to the API server
    "/k8s/clusters/c-1/api/v1/namespaces/preview-prod/pods/web/proxy/wipe3",  # behind a gateway's prefix
])
def test_a_write_through_a_proxy_subresource_gets_no_dry_run(proxy: Proxy, kube: Kube, path: str) -> None:
    """The API server passes `proxy` (and exec, attach, portforward) on to the pod or service,
    which never heard of dryRun: the preview would be the request itself, before any decision."""
    out: dict = {}

    def send() -> None:
        with client(proxy, "deploy-bot", timeout=30) as c:
            out["r"] = c.post(kube.url(path), headers={"authorization": "Bearer kube-token-123"}, content=b"go")

    word = path.rsplit("/", 1)[-1]
    t = threading.Thread(target=send, daemon=True)
    t.start()
    proxy.wait_held(f"~u {word}")
    line = wait_for(lambda: (c := comment(proxy, word)) and re.search(r"\| (no )?dry run", c) and c, 10, "the preview")
    assert "| no dry run: the server does not honour dryRun there" in line
    assert [c for c in kube.calls if word in c[1]] == []  # nothing reached the server
    proxy.command("shield.deny", f"~u {word}", held=True)
    t.join(10)
    assert out["r"].status_code == 403 and [c for c in kube.calls if word in c[1]] == []


def trickling_server() -> tuple[int, threading.Event, Any]:
    """An 'API server' that answers a header line every 0.2 s for up to 30 s: each read
    beats a socket timeout, so only a deadline on the whole answer ends it. The event is
    set when the proxy hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    hung_up = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for _ in range(150):
                    conn.sendall(b"X-Trickle: still coming\r\n")
                    if peer_gone(conn):
                        break
                    time.sleep(0.2)  # the server's pace, not the test's synchronisation
                else:
                    return  # the proxy never hung up
            except OSError:
                pass
            hung_up.set()

    def loop() -> None:
        try:
            while True:
                serve()
        except OSError:
            pass

    threading.Thread(target=loop, daemon=True).start()
    return listener.getsockname()[1], hung_up, listener


def peer_gone(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


def test_a_server_that_trickles_its_answer_does_not_keep_a_preview_thread(proxy: Proxy) -> None:
    """Eight such answers would otherwise pin every preview thread for as long as the server
    likes: the previews of every other hold, EC2's included, would fail meanwhile."""
    port, hung_up, listener = trickling_server()
    path = "/apis/apps/v1/namespaces/preview-prod/deployments/trickle"
    out: dict = {}

    def send() -> None:
        with client(proxy, "deploy-bot", timeout=30) as c:
            out["r"] = c.delete(f"http://127.0.0.1:{port}{path}")

    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        proxy.wait_held(f"~u {path}")
        started = time.monotonic()
        line = wait_for(lambda: (c := comment(proxy, path)) and "| dry run failed" in c and c, 10, "the preview's failure")
        assert "TimeoutError" in line
        wait_for(hung_up.is_set, 10, "the proxy hanging up on the trickling server")
        assert time.monotonic() - started < 8  # its 3 s deadline, not the server's 30 s
        proxy.command("shield.deny", f"~u {path}", held=True)
        t.join(10)
        assert out["r"].status_code == 403
    finally:
        listener.close()


def test_a_server_that_only_looks_like_kubernetes_gets_no_dry_run(proxy: Proxy, upstream: Upstream) -> None:
    """The parser knows Kubernetes by its paths: an ordinary service with such a path would take
    the 'dry run' as the request itself, before any decision. It is asked GET /version first."""
    path = "/apis/apps/v1/namespaces/preview-prod/deployments/lookalike"
    out: dict = {}

    def send() -> None:
        with client(proxy, "deploy-bot", timeout=30) as c:
            out["r"] = c.delete(upstream.url(path))

    t = threading.Thread(target=send, daemon=True)
    t.start()
    proxy.wait_held(f"~u {path}")
    line = wait_for(lambda: (c := comment(proxy, path)) and re.search(r"\| (no )?dry run", c) and c, 10, "the preview")
    assert "| no dry run: the server did not answer GET /version as a Kubernetes API server" in line
    assert upstream.hits_for(path) == []  # the mutating request never reached it
    proxy.command("shield.deny", f"~u {path}", held=True)
    t.join(10)
    assert out["r"].status_code == 403 and upstream.hits_for(path) == []
