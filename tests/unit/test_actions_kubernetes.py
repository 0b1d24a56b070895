"""Kubernetes paths and verbs, as the API server computes them."""

from __future__ import annotations

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
