"""Kubernetes paths and verbs, as the API server computes them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shield_addon.actions import Action, parse, request_view

K8S = "https://k8s.internal"


def k8s(method: str, path: str, pinned: bool = False) -> Action:
    pins = {"kubernetes": ["k8s.internal"]} if pinned else None
    return parse(request_view(method, K8S + path), pins)


def summary(action: Action) -> tuple[object, ...]:
    return (action.service, action.action_type, action.operation, action.resource_type, action.namespace, action.resource_name)


def test_delete_of_a_namespaced_pod() -> None:
    action = k8s("DELETE", "/api/v1/namespaces/prod-a/pods/web-1")
    assert summary(action) == ("kubernetes", "delete", "delete", "pods", "prod-a", "web-1")


def test_get_on_a_collection_is_list() -> None:
    assert summary(k8s("GET", "/api/v1/namespaces/prod/pods")) == ("kubernetes", "read", "list", "pods", "prod", None)


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_get_on_a_collection_with_watch_is_watch(value: str) -> None:
    assert k8s("GET", f"/api/v1/namespaces/prod/pods?watch={value}").operation == "watch"


def test_watch_false_is_still_list() -> None:
    assert k8s("GET", "/api/v1/namespaces/prod/pods?watch=false").operation == "list"


def test_get_on_an_item_is_get() -> None:
    assert summary(k8s("GET", "/api/v1/namespaces/prod/secrets/db")) == ("kubernetes", "read", "get", "secrets", "prod", "db")


def test_post_is_create() -> None:
    assert summary(k8s("POST", "/apis/apps/v1/namespaces/prod/deployments")) == (
        "kubernetes",
        "create",
        "create",
        "deployments",
        "prod",
        None,
    )


def test_put_is_update() -> None:
    action = k8s("PUT", "/api/v1/namespaces/prod/configmaps/cfg")
    assert (action.action_type, action.operation) == ("update", "update")


def test_patch_is_patch_and_an_update() -> None:
    action = k8s("PATCH", "/apis/apps/v1/namespaces/prod/deployments/web")
    assert (action.action_type, action.operation, action.resource_type) == ("update", "patch", "deployments")


def test_delete_on_a_collection_is_deletecollection() -> None:
    action = k8s("DELETE", "/api/v1/namespaces/prod/pods")
    assert (action.action_type, action.operation, action.resource_name) == ("delete", "deletecollection", None)


def test_cluster_scoped_resource_has_no_namespace() -> None:
    assert summary(k8s("DELETE", "/api/v1/nodes/node-7")) == ("kubernetes", "delete", "delete", "nodes", None, "node-7")


def test_group_api_with_dotted_group() -> None:
    action = k8s("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/admin")
    assert summary(action) == ("kubernetes", "delete", "delete", "clusterrolebindings", None, "admin")


def test_custom_resource_in_a_namespace() -> None:
    action = k8s("GET", "/apis/stable.example.com/v1beta1/namespaces/prod/crontabs")
    assert (action.operation, action.resource_type, action.namespace) == ("list", "crontabs", "prod")


def test_namespace_itself_is_both_the_resource_and_the_namespace() -> None:
    action = k8s("DELETE", "/api/v1/namespaces/prod")
    assert summary(action) == ("kubernetes", "delete", "delete", "namespaces", "prod", "prod")


def test_listing_namespaces_has_no_namespace() -> None:
    assert summary(k8s("GET", "/api/v1/namespaces")) == ("kubernetes", "read", "list", "namespaces", None, None)


def test_namespace_status_is_a_subresource_of_the_namespace() -> None:
    action = k8s("PUT", "/api/v1/namespaces/prod/status")
    assert (action.resource_type, action.namespace, action.resource_name) == ("namespaces/status", "prod", "prod")


def test_namespace_finalize_is_a_subresource_of_the_namespace() -> None:
    assert k8s("PUT", "/api/v1/namespaces/prod/finalize").resource_type == "namespaces/finalize"


def test_scale_subresource() -> None:
    action = k8s("PATCH", "/apis/apps/v1/namespaces/prod/deployments/web/scale")
    assert summary(action) == ("kubernetes", "update", "patch", "deployments/scale", "prod", "web")


def test_status_subresource() -> None:
    assert k8s("PUT", "/apis/apps/v1/namespaces/prod/deployments/web/status").resource_type == "deployments/status"


def test_log_subresource_is_a_read() -> None:
    action = k8s("GET", "/api/v1/namespaces/prod/pods/web-1/log?follow=true")
    assert (action.action_type, action.operation, action.resource_type) == ("read", "get", "pods/log")


@pytest.mark.parametrize("subresource", ["exec", "attach", "portforward"])
def test_create_on_exec_like_subresources_is_execute(subresource: str) -> None:
    action = k8s("POST", f"/api/v1/namespaces/prod/pods/web-1/{subresource}?command=sh")
    assert (action.action_type, action.operation, action.resource_type) == ("execute", "create", f"pods/{subresource}")


def test_exec_over_websocket_get_is_still_execute() -> None:
    action = k8s("GET", "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&stdin=true")
    assert (action.action_type, action.operation) == ("execute", "get")


def test_node_proxy_is_execute() -> None:
    action = k8s("GET", "/api/v1/nodes/node-1/proxy/run/prod/web-1/app")
    assert (action.action_type, action.resource_type, action.resource_name) == ("execute", "nodes/proxy", "node-1")


def test_deprecated_watch_prefix_is_watch() -> None:
    action = k8s("GET", "/api/v1/watch/namespaces/prod/pods")
    assert (action.operation, action.resource_type, action.namespace) == ("watch", "pods", "prod")


def test_field_selector_on_name_names_the_resource() -> None:
    action = k8s("GET", "/api/v1/namespaces/prod/pods?fieldSelector=metadata.name%3Dweb-1&watch=1")
    assert (action.operation, action.resource_name) == ("watch", "web-1")


def test_field_selector_on_other_fields_names_nothing() -> None:
    assert k8s("GET", "/api/v1/namespaces/prod/pods?fieldSelector=spec.nodeName%3Dn1").resource_name is None


def test_percent_encoding_does_not_hide_the_namespace() -> None:
    # The API server decodes the path before splitting it.
    action = k8s("DELETE", "/api/v1/namespaces/pr%6Fd/pods/web-1")
    assert (action.namespace, action.resource_name) == ("prod", "web-1")


def test_trailing_slash_on_a_collection_is_still_a_collection() -> None:
    assert k8s("DELETE", "/api/v1/namespaces/prod/pods/").operation == "deletecollection"


# --- when a request is not taken for Kubernetes -------------------------------------------


def test_api_v1_path_with_unknown_resource_is_not_kubernetes_unpinned() -> None:
    assert k8s("DELETE", "/api/v1/users/5").service == "k8s.internal"


def test_apis_path_with_an_undotted_unknown_group_is_not_kubernetes_unpinned() -> None:
    assert k8s("GET", "/apis/users/v1/list").service == "k8s.internal"


def test_apis_path_without_a_kubernetes_version_is_not_kubernetes_unpinned() -> None:
    assert k8s("GET", "/apis/example.com/latest/things").service == "k8s.internal"


def test_api_server_port_is_enough_to_recognise_any_resource() -> None:
    action = parse(request_view("DELETE", "https://10.0.0.1:6443/api/v1/namespaces/prod/widgets/w"))
    assert (action.service, action.resource_type) == ("kubernetes", "widgets")


def test_discovery_path_is_not_kubernetes_unpinned() -> None:
    assert k8s("GET", "/apis/apps/v1").service == "k8s.internal"


def test_discovery_path_on_a_pinned_host_is_a_kubernetes_read() -> None:
    action = k8s("GET", "/apis/apps/v1", pinned=True)
    assert summary(action) == ("kubernetes", "read", "get", None, None, None)


def test_pinned_host_accepts_unknown_core_resources() -> None:
    action = k8s("DELETE", "/api/v1/namespaces/prod/widgets/w1", pinned=True)
    assert summary(action) == ("kubernetes", "delete", "delete", "widgets", "prod", "w1")


# --- Kubernetes behind a path prefix (management proxies, gateways) ----------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://rancher.example.com/k8s/clusters/c-m-4x7q2/api/v1/namespaces/prod/pods/web-1",
        "https://connectgateway.googleapis.com/v1/projects/123/locations/global/gkeMemberships/m1/api/v1/namespaces/prod/pods/web-1",
        "https://lens.example.com/api-kube/api/v1/namespaces/prod/pods/web-1",
        "http://127.0.0.1:8001/custom/prefix/api/v1/namespaces/prod/pods/web-1",
        "https://console.example.com/api/kubernetes/api/v1/namespaces/prod/pods/web-1",
    ],
)
def test_a_prefixed_api_path_is_kubernetes_with_the_prefix_kept_out(url: str) -> None:
    action = parse(request_view("DELETE", url))
    assert summary(action) == ("kubernetes", "delete", "delete", "pods", "prod", "web-1")
    assert "k8s_prefixed" in action.flags


def test_a_prefixed_group_api_path_is_kubernetes() -> None:
    action = parse(request_view("PATCH", "https://rancher.example.com/k8s/clusters/local/apis/apps/v1/namespaces/prod/deployments/web/scale"))
    assert (action.service, action.resource_type, action.namespace, action.resource_name) == (
        "kubernetes",
        "deployments/scale",
        "prod",
        "web",
    )


def test_an_unprefixed_path_has_no_prefix_flag() -> None:
    assert "k8s_prefixed" not in k8s("GET", "/api/v1/namespaces/prod/pods").flags


def test_a_prefix_that_itself_holds_an_api_v1_is_skipped_to_the_kubernetes_tail() -> None:
    action = parse(request_view("GET", "https://mgmt.example.com/api/v1/clusters/c1/api/v1/namespaces/prod/secrets/db"))
    assert (action.service, action.resource_type, action.namespace, action.resource_name) == ("kubernetes", "secrets", "prod", "db")


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.com/api/v1/orders/5",
        "https://shop.example.com/store/api/v1/orders/5",
        "https://shop.example.com/api/v1/events/5",  # core resource name, but not a path the server has
        "https://shop.example.com/tenant/api/v1/secrets/abc",
        "https://shop.example.com/x/apis/shop/v1/orders/5",  # undotted, unknown group
        "https://shop.example.com/x/apis/shop.example.com/latest/orders/5",  # not a version
    ],
)
def test_rest_apis_with_api_v1_in_their_path_are_not_kubernetes(url: str) -> None:
    assert parse(request_view("DELETE", url)).service == "shop.example.com"


def test_a_namespaced_core_collection_across_namespaces_is_kubernetes() -> None:
    action = parse(request_view("GET", "https://gw.example.com/k8s/api/v1/secrets"))
    assert (action.service, action.operation, action.resource_type) == ("kubernetes", "list", "secrets")


def test_port_6443_takes_a_prefixed_path_with_a_kubernetes_version() -> None:
    action = parse(request_view("DELETE", "https://10.0.0.1:6443/gw/api/v1/namespaces/prod/widgets/w"))
    assert (action.service, action.resource_type, action.namespace) == ("kubernetes", "widgets", "prod")


def test_dot_segments_are_resolved_as_a_proxy_in_front_would() -> None:
    action = k8s("GET", "/api/v1/namespaces/dev/configmaps/%2E%2E/secrets/db")
    assert (action.resource_type, action.resource_name, action.namespace) == ("secrets", "db", "dev")
    assert "dot_segments" in action.flags


# --- subresources whose meaning is not the method's ---------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("target", ["pods/web-1", "services/web:8080", "nodes/node-1"])
def test_proxy_subresource_is_execute_whatever_the_method(method: str, target: str) -> None:
    ns = "" if target.startswith("nodes") else "/namespaces/prod"
    action = k8s(method, f"/api/v1{ns}/{target}/proxy/admin/reset")
    assert (action.action_type, action.resource_type) == ("execute", target.split("/")[0] + "/proxy")


def test_deprecated_proxy_prefix_is_execute_on_the_proxy_subresource() -> None:
    action = k8s("PUT", "/api/v1/proxy/namespaces/prod/services/web/admin")
    assert (action.action_type, action.operation, action.resource_type, action.namespace, action.resource_name) == (
        "execute",
        "proxy",
        "services/proxy",
        "prod",
        "web",
    )


def test_eviction_is_a_delete_of_the_pod() -> None:
    action = k8s("POST", "/api/v1/namespaces/prod/pods/web-1/eviction")
    assert summary(action) == ("kubernetes", "delete", "create", "pods/eviction", "prod", "web-1")


def test_writing_ephemeral_containers_is_execute_and_reading_them_is_not() -> None:
    assert k8s("PATCH", "/api/v1/namespaces/prod/pods/web-1/ephemeralcontainers").action_type == "execute"
    assert k8s("GET", "/api/v1/namespaces/prod/pods/web-1/ephemeralcontainers").action_type == "read"


def test_namespace_finalize_is_a_delete() -> None:
    action = k8s("PUT", "/api/v1/namespaces/prod/finalize")
    assert (action.action_type, action.resource_type, action.namespace) == ("delete", "namespaces/finalize", "prod")


@pytest.mark.parametrize(
    "method,path,resource_type,action_type",
    [
        ("POST", "/api/v1/namespaces/dev/serviceaccounts/ci/token", "serviceaccounts/token", "create"),
        ("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/agent/approval", "certificatesigningrequests/approval", "update"),
        ("POST", "/api/v1/namespaces/dev/pods/web-1/binding", "pods/binding", "create"),
        ("PUT", "/api/v1/namespaces/dev/pods/web-1/status", "pods/status", "update"),
        ("GET", "/api/v1/namespaces/dev/pods/web-1/log", "pods/log", "read"),
    ],
)
def test_other_subresources_keep_their_method_meaning(method: str, path: str, resource_type: str, action_type: str) -> None:
    action = k8s(method, path)
    assert (action.resource_type, action.action_type) == (resource_type, action_type)


# --- dryRun, watch and force as the server reads its query --------------------------------


def test_dry_run_all_is_a_read() -> None:
    action = k8s("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings?dryRun=All")
    assert (action.action_type, action.operation) == ("read", "create")
    assert "dry_run" in action.flags


@pytest.mark.parametrize("query", ["dryRun=All&dryRun=", "dryRun=all", "dryrun=All", "dryRun=", "dryRun=All&dryRun=None"])
def test_dry_run_twins_the_server_refuses_or_ignores_are_real_writes(query: str) -> None:
    action = k8s("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/dev/rolebindings?{query}")
    assert action.action_type == "create" and "dry_run" not in action.flags


def test_delete_with_a_body_reads_dry_run_from_the_body_not_the_query() -> None:
    url = K8S + "/api/v1/namespaces/prod/pods/web-1?dryRun=All"
    real = parse(request_view("DELETE", url, [("content-type", "application/json")], b'{"kind":"DeleteOptions"}'))
    dry = parse(request_view("DELETE", url, [("content-type", "application/json")], b'{"dryRun":["All"]}'))
    assert (real.action_type, dry.action_type) == ("delete", "read")


@pytest.mark.parametrize("path", ["/api/v1/namespaces/prod/pods/web-1/exec?command=sh", "/api/v1/namespaces/prod/pods/web-1/eviction"])
def test_dry_run_does_not_soften_subresources_that_ignore_it(path: str) -> None:
    assert k8s("POST", f"{path}{'&' if '?' in path else '?'}dryRun=All").action_type in ("execute", "delete")


@pytest.mark.parametrize("value", ["", "yes", "TRUE"])
def test_watch_is_any_first_value_but_false_or_0(value: str) -> None:
    assert k8s("GET", f"/api/v1/namespaces/prod/pods?watch={value}").operation == "watch"


@pytest.mark.parametrize("value", ["FALSE", "0"])
def test_watch_false_spellings_are_list(value: str) -> None:
    assert k8s("GET", f"/api/v1/namespaces/prod/pods?watch={value}&watch=true").operation == "list"


def _apply(query: str) -> Action:
    url = K8S + "/apis/apps/v1/namespaces/prod/deployments/web?fieldManager=agent" + query
    return parse(request_view("PATCH", url, [("content-type", "application/apply-patch+yaml")], b"spec:\n  replicas: 3\n"))


@pytest.mark.parametrize("query", ["&force=true", "&force=", "&force=1"])
def test_forced_server_side_apply_is_flagged(query: str) -> None:
    assert "force_apply" in _apply(query).flags


@pytest.mark.parametrize("query", ["", "&force=false", "&force=0"])
def test_unforced_server_side_apply_is_not_flagged(query: str) -> None:
    assert "force_apply" not in _apply(query).flags


def test_impersonation_headers_are_flagged() -> None:
    req = request_view("GET", K8S + "/api/v1/namespaces/prod/pods", [("Impersonate-User", "system:admin")])
    assert "impersonate" in parse(req).flags
    assert "impersonate" not in k8s("GET", "/api/v1/namespaces/prod/pods").flags


# --- the pack's body rules on YAML bodies (server-side apply, kubectl create -f x.yaml) ------

YAML_DEPLOYMENT_AT_ZERO = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 0x0\n"


def _pack_verdict(method: str, path: str, content_type: str, body: str) -> Any:
    from pathlib import Path

    from shield_addon import rules, ruletest

    ruleset = rules.load_path(Path(__file__).resolve().parents[2] / "rules")
    request = {"method": method, "url": K8S + ":6443" + path, "headers": {"content-type": content_type}, "body": body}
    return ruletest.explain(ruleset, request)


@pytest.mark.parametrize("content_type", ["application/yaml", "application/apply-patch+yaml"])
def test_yaml_scale_to_zero_is_held_now(content_type: str) -> None:
    method = "PUT" if content_type == "application/yaml" else "PATCH"
    v = _pack_verdict(method, "/apis/apps/v1/namespaces/dev/deployments/web", content_type, YAML_DEPLOYMENT_AT_ZERO)
    assert (v.verdict, v.rule.id) == ("hold", "k8s-scale-to-zero")


@pytest.mark.parametrize(
    "path,body,rule",
    [
        ("/apis/apps/v1/namespaces/dev/deployments/web", YAML_DEPLOYMENT_AT_ZERO, "k8s-scale-to-zero"),
        ("/api/v1/namespaces/dev/persistentvolumeclaims/data", "metadata:\n  finalizers: null\n", "k8s-finalizers-removed"),
    ],
)
def test_json_rules_read_yaml_bodies(path: str, body: str, rule: str) -> None:
    v = _pack_verdict("PATCH", path, "application/apply-patch+yaml", body)
    assert rule in v.matched


@pytest.mark.parametrize(
    "path,body,rule",
    [
        ("/api/v1/namespaces/dev/pods", "kind: Pod\nspec:\n  hostNetwork: yes\n", "k8s-privileged-workload"),
        ("/api/v1/namespaces/dev/secrets", "kind: Secret\ntype: kubernetes.io/service-account-token\n", "k8s-token-secret"),
    ],
)
def test_text_body_rules_read_yaml_bodies(path: str, body: str, rule: str) -> None:
    v = _pack_verdict("POST", path, "application/yaml", body)
    assert (v.verdict, rule in v.matched) == ("hold", True)


# --- bodies read as the server decodes them (flags for rules), and the kubelet and etcd


def k8s_body(method: str, path: str, body: Any, ctype: str = "application/json", url: str = K8S) -> Action:
    text = body if isinstance(body, str) else json.dumps(body)
    return parse(request_view(method, url + path, [("content-type", ctype)], text), None)


JSON_PATCH = "application/json-patch+json"


@pytest.mark.parametrize("patch", [
    [{"op": "move", "from": "/metadata/finalizers", "path": "/metadata/x"}],
    [{"op": "remove", "path": "/metadata/finalizers/0"}],
    [{"op": "replace", "path": "/metadata", "value": {"name": "data"}}],
])
def test_json_patch_that_removes_finalizers(patch: list[dict[str, Any]]) -> None:
    action = k8s_body("PATCH", "/api/v1/namespaces/dev/persistentvolumeclaims/data", patch, JSON_PATCH)
    assert "finalizers_removed" in action.flags


def test_replacing_metadata_that_keeps_finalizers_removes_none() -> None:
    patch = [{"op": "replace", "path": "/metadata", "value": {"name": "d", "finalizers": ["kubernetes.io/pvc-protection"]}}]
    action = k8s_body("PATCH", "/api/v1/namespaces/dev/persistentvolumeclaims/data", patch, JSON_PATCH)
    assert "finalizers_removed" not in action.flags


@pytest.mark.parametrize("body", [
    {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}},
    {"metadata": {"$patch": "replace", "name": "data"}},
])
def test_strategic_merge_directives_that_remove_finalizers(body: dict[str, Any]) -> None:
    action = k8s_body("PATCH", "/api/v1/namespaces/dev/persistentvolumeclaims/data", body,
                      "application/strategic-merge-patch+json")
    assert "finalizers_removed" in action.flags


def test_creating_with_directives_is_no_removal() -> None:
    action = k8s_body("POST", "/api/v1/namespaces/dev/persistentvolumeclaims", {"metadata": {"$patch": "replace"}})
    assert "finalizers_removed" not in action.flags


@pytest.mark.parametrize(("patch", "zero"), [
    ([{"op": "copy", "from": "/status/x", "path": "/spec/replicas"}], True),
    ([{"op": "replace", "path": "", "value": {"spec": {"replicas": 0.0}}}], True),
    ([{"op": "replace", "path": "/spec", "value": {"Replicas": 0}}], True),
    ([{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "add", "path": "/spec/paused", "value": 0}], False),
    ([{"op": "replace", "path": "/spec/replicas", "value": False}], False),
])
def test_json_patch_scale_to_zero(patch: list[dict[str, Any]], zero: bool) -> None:
    action = k8s_body("PATCH", "/apis/apps/v1/namespaces/dev/deployments/web", patch, JSON_PATCH)
    assert ("scale_to_zero" in action.flags) is zero


@pytest.mark.parametrize(("body", "ctype", "flagged"), [
    ("spec:\n  hostPID: !!bool true\n", "application/apply-patch+yaml", True),
    ("spec:\n  a: &t true\n  hostNetwork: *t\n", "application/yaml", True),
    ({"spec": {"containers": [{"securityContext": {"capabilities": {"add": ["sys_admin"]}}}]}}, "application/json", True),
    ({"spec": {"containers": [{"securityContext": {"procMount": "Unmasked"}}]}}, "application/json", True),
    ({"spec": {"volumes": [{"name": "r", "hostPath": {"path": "/"}}]}}, "application/json", True),
    ({"spec": {"containers": [{"securityContext": {"capabilities": {"add": ["CHOWN"], "drop": ["ALL"]}}}]}},
     "application/json", False),
    ({"spec": {"hostPID": False, "hostPath": None}}, "application/json", False),
    ('{"spec": {"hostPID": "true"}}', "application/json", False),  # the server refuses a string
])
def test_privileged_pod_from_the_parsed_body(body: Any, ctype: str, flagged: bool) -> None:
    action = k8s_body("POST", "/api/v1/namespaces/dev/pods", body, ctype)
    assert ("privileged_pod" in action.flags) is flagged


def test_json_patch_adding_host_pid_is_privileged() -> None:
    patch = [{"op": "add", "path": "/spec/template/spec/hostPID", "value": True}]
    assert "privileged_pod" in k8s_body("PATCH", "/apis/apps/v1/namespaces/dev/deployments/web", patch, JSON_PATCH).flags


def test_noexecute_counts_on_nodes_only() -> None:
    taint = {"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}
    assert "noexecute_taint" in k8s_body("PATCH", "/api/v1/nodes/n1", taint).flags
    tolerate = {"spec": {"template": {"spec": {"tolerations": [{"effect": "NoExecute"}]}}}}
    assert "noexecute_taint" not in k8s_body("PATCH", "/apis/apps/v1/namespaces/d/deployments/w", tolerate).flags


@pytest.mark.parametrize(("value", "flagged"), [("privileged", True), (None, True), ("baseline", False)])
def test_pod_security_label(value: str | None, flagged: bool) -> None:
    body = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": value}}}
    assert ("psa_privileged" in k8s_body("PATCH", "/api/v1/namespaces/dev", body).flags) is flagged


def test_reclaim_policy_delete_on_a_persistent_volume() -> None:
    body = {"spec": {"persistentVolumeReclaimPolicy": "Delete"}}
    assert "reclaim_delete" in k8s_body("PATCH", "/api/v1/persistentvolumes/pv1", body).flags
    assert "reclaim_delete" not in k8s_body("PATCH", "/api/v1/persistentvolumes/pv1", {"spec": {"x": "Delete"}}).flags


def test_creating_a_delete_request_is_a_delete() -> None:
    action = k8s("POST", "/apis/velero.io/v1/namespaces/velero/deletebackuprequests")
    assert (action.action_type, action.operation, action.resource_type) == ("delete", "create", "deletebackuprequests")


@pytest.mark.parametrize(("method", "path", "want"), [
    ("POST", "/run/kube-system/kube-proxy-1/kube-proxy", ("execute", "nodes/proxy", "kube-system", "kube-proxy-1")),
    ("GET", "/exec/prod/web-1/app?command=sh", ("execute", "nodes/proxy", "prod", "web-1")),
    ("POST", "/checkpoint/prod/db-0/pg", ("execute", "nodes/proxy", "prod", "db-0")),
    ("GET", "/stats/summary", ("read", "nodes/stats", None, None)),
    ("GET", "/pods", ("read", "nodes/proxy", None, None)),
])
def test_kubelet_paths_are_authorized_as_node_subresources(method: str, path: str, want: tuple[object, ...]) -> None:
    action = parse(request_view(method, "https://node-1:10250" + path), None)
    assert (action.action_type, action.resource_type, action.namespace, action.resource_name) == want
    assert "kubelet" in action.flags


@pytest.mark.parametrize(("op", "key", "end", "want"), [
    ("range", b"/registry/secrets/", b"/registry/secrets0", ("read", "secrets")),
    ("range", b"/registry/", b"\0", ("read", "secrets")),  # everything from /registry/ on
    ("range", b"/registry/secrets/prod/db", None, ("read", "secrets")),
    ("range", b"/registry/configmaps/", b"/registry/configmaps0", ("read", "configmaps")),
    ("deleterange", b"/registry/", b"/registry0", ("delete", "secrets")),  # the range spans Secrets too
    ("compaction", b"/x", None, ("delete", "etcd")),
    ("put", b"/registry/pods/dev/x", None, ("update", "pods")),
])
def test_etcd_gateway(op: str, key: bytes, end: bytes | None, want: tuple[str, str]) -> None:
    body: dict[str, str] = {"key": base64.b64encode(key).decode()}
    if end is not None:
        body["range_end"] = base64.b64encode(end).decode()
    action = k8s_body("POST", f"/v3/kv/{op}", body, url="https://etcd-0:2379")
    assert (action.service, action.action_type, action.resource_type) == ("kubernetes", *want)


def test_etcd_transaction_is_as_strong_as_its_strongest_request() -> None:
    txn = {"success": [{"request_delete_range": {"key": "L3JlZ2lzdHJ5Lw=="}}]}
    assert k8s_body("POST", "/v3/kv/txn", txn, url="https://etcd-0:2379").action_type == "delete"


def test_a_body_without_trigger_words_is_not_walked() -> None:
    assert k8s_body("PUT", "/api/v1/namespaces/dev/configmaps/c", {"data": {"a": "b"}}).flags == frozenset()


# --- Pod Security baseline's other confinement: seccomp, AppArmor, SELinux, sysctls
@pytest.mark.parametrize(("body", "flagged"), [
    ({"spec": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}}, True),
    ({"spec": {"initContainers": [{"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}]}}, True),
    ({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "unconfined"}}}, True),
    ({"spec": {"containers": [{"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}]}}, True),
    ({"spec": {"containers": [{"securityContext": {"seLinuxOptions": {"user": "system_u"}}}]}}, True),
    ({"spec": {"securityContext": {"sysctls": [{"name": "kernel.core_pattern", "value": "|/x"}]}}}, True),
    ({"spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}, False),
    ({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"}}}, False),
    ({"spec": {"securityContext": {"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}}}}, False),
    ({"spec": {"securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]}}}, False),
])
def test_baseline_confinement_lifted_is_privileged(body: Any, flagged: bool) -> None:
    action = k8s_body("POST", "/api/v1/namespaces/dev/pods", body)
    assert ("privileged_pod" in action.flags) is flagged


def test_json_patch_unconfining_seccomp_is_privileged() -> None:
    patch = [{"op": "add", "path": "/spec/template/spec/securityContext/seccompProfile", "value": {"type": "Unconfined"}}]
    assert "privileged_pod" in k8s_body("PATCH", "/apis/apps/v1/namespaces/dev/deployments/web", patch, JSON_PATCH).flags


def test_owner_references_count_on_updates_only() -> None:
    # an owner that does not exist, and the garbage collector deletes the object
    refs = {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "0"}]}}
    assert "owner_references" in k8s_body("PATCH", "/apis/apps/v1/namespaces/d/deployments/w", refs).flags
    assert "owner_references" not in k8s_body("POST", "/apis/apps/v1/namespaces/d/deployments", refs).flags
    assert "owner_references" not in k8s_body("PATCH", "/apis/apps/v1/namespaces/d/deployments/w",
                                              {"metadata": {"ownerReferences": []}}).flags


@pytest.mark.parametrize(("value", "zero"), [("0", True), (0, True), (" 0", True), ("2", False)])
def test_keda_paused_replicas_zero_is_scale_to_zero(value: Any, zero: bool) -> None:
    body = {"metadata": {"annotations": {"autoscaling.keda.sh/paused-replicas": value}}}
    action = k8s_body("PATCH", "/apis/keda.sh/v1alpha1/namespaces/d/scaledobjects/w", body)
    assert ("scale_to_zero" in action.flags) is zero


@pytest.mark.parametrize(("resource", "strategy", "flagged"), [
    ("customresourcedefinitions/w.example.com", "Webhook", True),
    ("customresourcedefinitions/w.example.com", "None", False),
    ("namespaces/d/configmaps/c", "Webhook", False),  # a field of that name elsewhere means nothing
])
def test_crd_conversion_webhook(resource: str, strategy: str, flagged: bool) -> None:
    path = "/apis/apiextensions.k8s.io/v1/" + resource if resource.startswith("custom") else "/api/v1/" + resource
    action = k8s_body("PATCH", path, {"spec": {"conversion": {"strategy": strategy}}})
    assert ("conversion_webhook" in action.flags) is flagged


@pytest.mark.parametrize(("path", "summary_", "flag"), [
    ("GET /api/v1/secret/prod/db", ("read", "get", "secrets", "prod", "db"), None),
    ("GET /api/v1/secret/prod", ("read", "list", "secrets", "prod", None), None),
    ("PUT /api/v1/scale/statefulset/prod/db?scaleBy=0", ("update", "update", "statefulsets/scale", "prod", "db"), "scale_to_zero"),
    ("PUT /api/v1/scale/deployment/prod/web?scaleBy=10", ("update", "update", "deployments/scale", "prod", "web"), None),
    ("GET /api/v1/pod/prod/web-1/shell/web", ("execute", "create", "pods/exec", "prod", "web-1"), None),
    ("DELETE /api/v1/_raw/ingress/namespace/prod/name/web", ("delete", "delete", "ingresses", "prod", "web"), None),
    ("PUT /api/v1/_raw/networkpolicy/namespace/prod/name/deny", ("update", "update", "networkpolicies", "prod", "deny"), None),
    ("GET /api/v1/_raw/clusterrolebinding/name/x", ("read", "get", "clusterrolebindings", None, "x"), None),
])
def test_dashboard_backend_routes(path: str, summary_: tuple[object, ...], flag: str | None) -> None:
    method, rest = path.split(" ")
    action = parse(request_view(method, "https://dashboard.example.com" + rest), None)
    assert (action.action_type, action.operation, action.resource_type, action.namespace, action.resource_name) == summary_
    assert "k8s_dashboard" in action.flags
    assert flag is None or flag in action.flags


@pytest.mark.parametrize("path", ["/api/v1/secretsale/2026/list", "/api/v1/pod/prod/web-1/logs", "/api/v1/_raw/x/foo/bar"])
def test_dashboard_lookalikes_are_not_kubernetes(path: str) -> None:
    action = parse(request_view("GET", "https://shop.example.com" + path), None)
    assert action is None or action.service != "kubernetes"


def test_statefulset_claim_retention_delete_on_update() -> None:
    body = {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}}
    assert "reclaim_delete" in k8s_body("PATCH", "/apis/apps/v1/namespaces/d/statefulsets/db", body).flags
    keep = {"spec": {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Retain"}}}
    assert "reclaim_delete" not in k8s_body("PATCH", "/apis/apps/v1/namespaces/d/statefulsets/db", keep).flags


def test_service_external_ips() -> None:
    assert "external_ips" in k8s_body("POST", "/api/v1/namespaces/d/services", {"spec": {"externalIPs": ["1.1.1.1"]}}).flags
    assert "external_ips" not in k8s_body("POST", "/api/v1/namespaces/d/services", {"spec": {"clusterIPs": ["10.0.0.1"]}}).flags
