"""Which held requests get a dry run, what is sent, and what the answer says."""

from __future__ import annotations

import json

from shield_addon.core import previews

URL = "https://k8s.internal:6443/apis/apps/v1/namespaces/prod/deployments/web"


def test_only_mutating_kubernetes_requests_have_a_dry_run() -> None:
    assert previews.dry_run("kubernetes", "GET", URL, []) is None
    assert previews.dry_run("aws:ec2", "POST", "https://ec2.amazonaws.com/", []) is None  # signed: no re-signing
    assert previews.dry_run(None, "DELETE", URL, []) is None
    url, _ = previews.dry_run("kubernetes", "DELETE", URL, [])  # type: ignore[misc]
    assert url == URL + "?dryRun=All"


def test_the_dry_run_replaces_the_agents_own_dryrun_and_keeps_its_credentials() -> None:
    url, headers = previews.dry_run(  # type: ignore[misc]
        "kubernetes", "PATCH", URL + "?dryRun=&DRYRUN=None&fieldManager=bot",
        [("Authorization", "Bearer t"), ("Proxy-Authorization", "Basic x"), ("Content-Type", "application/json"),
         ("Accept-Encoding", "gzip"), ("Content-Length", "9")])
    assert url == URL + "?fieldManager=bot&dryRun=All"
    assert headers == [("Authorization", "Bearer t"), ("Content-Type", "application/json")]


def test_the_answer_in_one_line() -> None:
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "prod", "finalizers": ["x/y"],
                                                     "deletionTimestamp": "t"},
                  "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    assert previews.summary("DELETE", 200, json.dumps(deployment).encode()) == \
        "dry run: would delete Deployment prod/web (replicas 3, ready now 2, deletion pending, finalizers x/y)"
    refused = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "message": "user cannot delete"}
    assert previews.summary("DELETE", 403, json.dumps(refused).encode()) == \
        "dry run refused: 403 Forbidden: user cannot delete"
    pods = {"kind": "PodList", "items": [{"metadata": {"name": f"p{i}"}} for i in range(7)]}
    assert previews.summary("DELETE", 200, json.dumps(pods).encode()) == \
        "dry run: would delete 7 Pod: p0, p1, p2, p3, p4, … (7 in all)"
    assert previews.summary("DELETE", 502, b"<html>bad gateway") == "dry run answered 502, not a Kubernetes object"
    assert len(previews.summary("POST", 200, json.dumps({"kind": "X" * 1000}).encode())) == previews.SUMMARY_LIMIT
