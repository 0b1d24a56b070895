"""Kubernetes API paths, read the way the API server's RequestInfoFactory reads them.

Following the server (not kubectl) matters: RBAC and audit logs speak in its verbs,
and an agent talks to the server directly.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .base import Action, RequestView
from .common import first, method_type

_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
_TYPES = {
    "get": "read",
    "list": "read",
    "watch": "read",
    "create": "create",
    "update": "update",
    "patch": "update",
    "delete": "delete",
    "deletecollection": "delete",
    "proxy": "execute",
}
# Running a command in, attaching to, forwarding to or proxying through a pod (or a
# node's kubelet) is code execution, whatever the verb; exec over WebSocket is a GET.
_EXEC_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
# The server keeps `namespaces/{name}/status` on the namespace itself.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_SPECIAL_VERBS = frozenset({"watch", "proxy"})  # deprecated /api/v1/watch/... prefixes
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})  # Go's strconv.ParseBool

# Many ordinary REST APIs live under /api/v1/, so without a pin we only claim paths
# whose resource is one of the fixed core resources, or whose /apis/ group and version
# look like Kubernetes ones (a dotted group or a built-in one, and v1, v2beta1, ...).
_CORE_RESOURCES = frozenset({
    "bindings", "componentstatuses", "configmaps", "endpoints", "events", "limitranges", "namespaces",
    "nodes", "persistentvolumeclaims", "persistentvolumes", "pods", "podtemplates",
    "replicationcontrollers", "resourcequotas", "secrets", "serviceaccounts", "services",
    "watch", "proxy",
})
_BUILTIN_GROUPS = frozenset({"apps", "batch", "autoscaling", "policy", "extensions"})
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?\Z")
_API_PORT = 6443


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    # The server splits the decoded path, so %2F and friends must not hide anything.
    path = unquote(req.path) if "%" in req.path else req.path
    if not pinned and not path.startswith(("/api/v1/", "/apis/")):
        return None
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        rest = []
    if not rest:  # discovery documents and other non-resource paths
        return _non_resource(req) if pinned else None
    if not pinned and not _looks_like_kubernetes(req, group, version, rest[0]):
        return None

    verb = _VERBS.get(req.method, req.method.lower())
    if rest[0] in _SPECIAL_VERBS and len(rest) >= 2:
        verb, rest = rest[0], rest[1:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 and rest[1] else None
    subresource = rest[2] if len(rest) > 2 and rest[2] else None

    if name is None and verb == "get":
        verb = "watch" if first(req.query, "watch") in _TRUE else "list"
    elif name is None and verb == "delete":
        verb = "deletecollection"
    if name is None and verb in ("list", "watch"):
        name = _name_from_field_selector(first(req.query, "fieldSelector"))

    if subresource in _EXEC_SUBRESOURCES and verb in ("create", "get"):
        action_type = "execute"
    else:
        action_type = _TYPES.get(verb, method_type(req.method))
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=verb,
        resource_type=f"{resource}/{subresource}" if subresource else resource,
        namespace=namespace or None,
        resource_name=name,
    )


def _looks_like_kubernetes(req: RequestView, group: str, version: str, head: str) -> bool:
    if req.port == _API_PORT:
        return True
    if not _VERSION.match(version):
        return False
    if group == "":
        return head in _CORE_RESOURCES
    return "." in group or group in _BUILTIN_GROUPS


def _name_from_field_selector(selector: str | None) -> str | None:
    # `kubectl get pod x --watch` lists with fieldSelector=metadata.name=x; the server
    # then authorizes (and audits) the request as being about x.
    if not selector or "," in selector:
        return None
    for prefix in ("metadata.name==", "metadata.name="):
        if selector.startswith(prefix):
            return selector[len(prefix) :] or None
    return None


def _non_resource(req: RequestView) -> Action:
    return Action(
        service="kubernetes",
        action_type=method_type(req.method),
        operation=req.method.lower(),
    )
