"""A held Kubernetes request with `hold: {preview: true}`: the API server's own dry run is in
the reviewer's comment and the trail, and the preview never does what the request would."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import client
from tests.e2e.harness import Proxy, wait_for
from tests.e2e.kube_server import Kube, start_kube

PATH = "/apis/apps/v1/namespaces/preview-prod/deployments/web"


@pytest.fixture
def kube() -> Iterator[Kube]:
    k, stop = start_kube()
    k.deployment("preview-prod", "web", 3)
    yield k
    stop()


def held_delete(proxy: Proxy, kube: Kube, path: str, query: str = "") -> dict:
    out: dict = {}

    def send() -> None:
        with client(proxy, "deploy-bot", timeout=30) as c:
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
