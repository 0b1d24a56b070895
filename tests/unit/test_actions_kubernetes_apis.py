"""hostPort, Rancher's Steve API, and Argo CD / Flux prune, as the kubernetes parser reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shield_addon.actions import Action, parse, request_view


def req(method: str, url: str, body: Any = None, headers: list[tuple[str, str]] | None = None) -> Action:
    text = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    return parse(request_view(method, url, headers or [("content-type", "application/json")], text))


def summary(action: Action) -> tuple[object, ...]:
    return (action.service, action.action_type, action.operation, action.resource_type, action.namespace,
            action.resource_name)


def pod(ports: list[dict[str, Any]], where: str = "containers") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "spec": {where: [{"name": "c", "image": "a", "ports": ports}]}}


# --- hostPort

@pytest.mark.parametrize("where", ["containers", "initContainers", "ephemeralContainers"])
def test_a_host_port_on_any_container_list_is_a_privileged_pod(where: str) -> None:
    action = req("POST", "https://k8s.internal:6443/api/v1/namespaces/dev/pods", pod([{"hostPort": 80}], where))
    assert "privileged_pod" in action.flags


@pytest.mark.parametrize("ports", [[{"containerPort": 80}], [{"containerPort": 80, "hostPort": 0}],
                                   [{"containerPort": 80, "hostPort": None}]])
def test_no_node_port_is_no_flag(ports: list[dict[str, Any]]) -> None:
    assert "privileged_pod" not in req("POST", "https://k8s.internal:6443/api/v1/namespaces/dev/pods", pod(ports)).flags


def test_a_json_patch_adding_a_host_port_is_flagged_and_removing_one_is_not() -> None:
    url = "https://k8s.internal:6443/apis/apps/v1/namespaces/dev/deployments/web"
    hdr = [("content-type", "application/json-patch+json")]
    path = "/spec/template/spec/containers/0/ports/0/hostPort"
    assert "privileged_pod" in req("PATCH", url, [{"op": "add", "path": path, "value": 8080}], hdr).flags
    assert "privileged_pod" in req("PATCH", url, [{"op": "copy", "from": "/x", "path": path}], hdr).flags
    assert "privileged_pod" not in req("PATCH", url, [{"op": "remove", "path": path}], hdr).flags


def test_a_yaml_host_port_is_flagged() -> None:
    body = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    ports:\n    - {containerPort: 22, hostPort: 22}\n"
    action = req("POST", "https://k8s.internal:6443/api/v1/namespaces/dev/pods", body, [("content-type", "application/yaml")])
    assert "privileged_pod" in action.flags


# --- Steve

def test_steve_get_of_a_secret_is_the_kubernetes_get() -> None:
    action = req("GET", "https://rancher.example.com/v1/secrets/prod/db")
    assert summary(action) == ("kubernetes", "read", "get", "secrets", "prod", "db")
    assert "steve" in action.flags


def test_steve_group_types_name_the_resource_after_the_group() -> None:
    assert summary(req("DELETE", "https://rancher.example.com/v1/apps.deployments/prod/web")) == (
        "kubernetes", "delete", "delete", "deployments", "prod", "web")
    assert summary(req("GET", "https://rancher.example.com/v1/rbac.authorization.k8s.io.clusterroles/admin")) == (
        "kubernetes", "read", "get", "clusterroles", None, "admin")


def test_steve_two_segments_of_a_namespaced_type_list_a_namespace() -> None:
    assert summary(req("GET", "https://rancher.example.com/v1/pods/dev")) == ("kubernetes", "read", "list", "pods", "dev", None)


def test_steve_create_takes_its_namespace_from_the_body() -> None:
    action = req("POST", "https://rancher.example.com/v1/configmaps", {"metadata": {"name": "x", "namespace": "kube-system"}})
    assert summary(action) == ("kubernetes", "create", "create", "configmaps", "kube-system", None)


def test_steve_of_a_downstream_cluster() -> None:
    action = req("GET", "https://mgmt.example.com/k8s/clusters/c-m-1/v1/secrets")
    assert summary(action) == ("kubernetes", "read", "list", "secrets", None, None)


@pytest.mark.parametrize(("action_name", "action_type"), [("uninstall", "delete"), ("redeploy", "update")])
def test_steve_actions(action_name: str, action_type: str) -> None:
    action = req("POST", f"https://rancher.example.com/v1/catalog.cattle.io.apps/dev/web?action={action_name}", {})
    assert (action.action_type, action.operation) == (action_type, f"action {action_name}")


@pytest.mark.parametrize("headers", [[("authorization", "Bearer token-ab12c:s3cr3t")], [("cookie", "R_SESS=token-ab12c:x")]])
def test_a_rancher_server_is_known_by_its_tokens(headers: list[tuple[str, str]]) -> None:
    assert req("GET", "https://mgmt.example.com/v1/secrets/prod/db", headers=headers).service == "kubernetes"


@pytest.mark.parametrize("url", ["https://vault.example.com/v1/secrets/data/app",  # no sign of Rancher
                                 "https://rancher.example.com/v1/orders/5",  # not a Kubernetes type
                                 "https://rancher.example.com/v3/clusters/c-m-1"])  # Norman, not Steve
def test_not_steve(url: str) -> None:
    assert req("GET", url).service != "kubernetes"


# --- Argo CD and Flux

ARGO = "https://argocd.example.com/api/v1/applications"


@pytest.mark.parametrize("body", [{"prune": True}, {"syncOptions": {"items": ["Prune=true"]}},
                                  {"strategy": {"apply": {"force": True}}}, {"strategy": {"hook": {"force": True}}}])
def test_a_sync_that_deletes(body: dict[str, Any]) -> None:
    action = req("POST", "https://cd.example.com/api/v1/applications/web/sync", body)
    assert summary(action) == ("kubernetes", "delete", "sync", "applications/sync", None, "web")
    assert {"prune", "argocd"} <= action.flags


def test_a_sync_without_prune_is_an_update_and_a_dry_run_a_read() -> None:
    assert (req("POST", f"{ARGO}/web/sync", {"prune": False}).action_type, req("POST", f"{ARGO}/web/sync", {}).flags) == (
        "update", {"argocd"})
    assert req("POST", f"{ARGO}/web/sync", {"prune": True, "dryRun": True}).action_type == "read"


def test_deleting_an_application_cascades_unless_told_not_to() -> None:
    assert "prune" in req("DELETE", f"{ARGO}/web").flags
    assert "prune" in req("DELETE", "https://cd.example.com/api/v1/applications/web?cascade=true").flags
    orphan = req("DELETE", f"{ARGO}/web?cascade=false")
    assert (orphan.action_type, "prune" in orphan.flags) == ("delete", False)


def test_turning_automated_prune_on_is_flagged_on_update_not_on_create() -> None:
    spec = {"spec": {"syncPolicy": {"automated": {"prune": True}}}}
    assert "prune" in req("PUT", f"{ARGO}/web", spec).flags
    assert "prune" not in req("POST", ARGO, spec).flags


def test_an_ordinary_api_with_applications_is_not_argo() -> None:
    assert req("DELETE", "https://api.example.com/api/v1/applications/5").service == "api.example.com"


def test_flux_prune_on_an_existing_kustomization_and_not_on_reconcile() -> None:
    url = "https://k8s.internal:6443/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps"
    hdr = [("content-type", "application/merge-patch+json")]
    assert "prune" in req("PATCH", url, {"spec": {"prune": True}}, hdr).flags
    assert "prune" not in req("PATCH", url, {"spec": {"prune": False}}, hdr).flags
    assert "prune" in req("PATCH", url, {"spec": {"force": True}}, hdr).flags
    annotation = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}}}
    assert "prune" not in req("PATCH", url, annotation, hdr).flags
    create = req("POST", url.rsplit("/", 1)[0], {"kind": "Kustomization", "spec": {"prune": True}})
    assert "prune" not in create.flags


@pytest.mark.parametrize(("sync", "prunes"), [
    ({"prune": True}, True), ({"syncOptions": ["Prune=true"]}, True), ({"syncStrategy": {"hook": {"force": True}}}, True),
    ({"revision": "HEAD"}, False), ({"prune": False, "syncOptions": ["PruneLast=true"]}, False),
])
def test_an_application_operation_patched_in_is_read_as_its_sync(sync: dict[str, Any], prunes: bool) -> None:
    url = "https://k8s.internal:6443/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/web"
    action = req("PATCH", url, {"operation": {"sync": sync}}, [("content-type", "application/merge-patch+json")])
    assert ("prune" in action.flags) is prunes


@pytest.mark.parametrize(("method", "body", "action_type", "prunes"), [
    ("Delete", b"\x00\x00\x00\x00\x05\n\x03web", "delete", True),
    ("Sync", b"\x00\x00\x00\x00\x15\n\x03web\x5a\x0e\n\x0cPrune=true", "delete", True),
    ("Sync", b"\x00\x00\x00\x00\x05\n\x03web", "update", False),
    ("Get", b"\x00\x00\x00\x00\x05\n\x03web", "read", False),
])
def test_the_argocd_grpc_methods(method: str, body: bytes, action_type: str, prunes: bool) -> None:
    view = request_view("POST", f"https://argocd.example.com/application.ApplicationService/{method}",
                        [("content-type", "application/grpc")], body)
    action = parse(view)
    assert (action.service, action.action_type, "prune" in action.flags) == ("kubernetes", action_type, prunes)
