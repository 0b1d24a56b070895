"""Kubernetes API paths, read the way the API server's RequestInfoFactory reads them.

Following the server (not kubectl) matters: RBAC and audit logs speak in its verbs,
and an agent talks to the server directly.

Where a Kubernetes path is found. Management proxies and gateways put the API under a
prefix: Rancher `/k8s/clusters/<id>/api/v1/...`, the GKE connect gateway
`/v1/projects/<p>/locations/<l>/gkeMemberships/<m>/api/v1/...`, Lens `/api-kube/...`,
`kubectl proxy --api-prefix`, console proxies. So every `api/<version>` and
`apis/<group>/<version>` segment of the path is a candidate start, leftmost first, and
the first whose tail has Kubernetes *structure* wins (flag `k8s_prefixed` when it is not
at the start; the prefix never becomes a namespace or resource). Structure, not just a
`/api/v1/`, because ordinary REST APIs live there too (`/api/v1/orders/5`):

- a version like `v1`, `v2beta1`;
- core group: `namespaces/...`, a cluster-scoped core resource (`nodes/x`), or a
  namespaced core resource as a bare collection (`/api/v1/pods`, all namespaces): the
  server has no `/api/v1/secrets/<name>`, so `/api/v1/events/5` is some other API;
- a named group: dotted (`rbac.authorization.k8s.io`, any CRD) or a built-in undotted one.

A host pinned to kubernetes, or port 6443, takes any path that starts with `/api/` or
`/apis/`, and a prefixed one whose version looks like a Kubernetes version.

What a request does is read from the server's own rules, including where they are not
what the HTTP method says: `proxy`, `exec`, `attach`, `portforward` are execution
whatever the method; `ephemeralcontainers` writes inject a container (execution);
`pods/x/eviction` deletes the pod; `namespaces/x/finalize` can force a deletion.
`dryRun=All` changes nothing, so it reads as `read` (flag `dry_run`), but only when the
server would honour it: every dryRun value is `All` (others are refused or, for
DELETE with a body, ignored in favour of the body's DeleteOptions), and never for
subresources that ignore it. Impersonation headers set flag `impersonate`; a forced
server-side apply sets `force_apply`. Path segments `.`/`..` are resolved as the
proxies in front of an API server resolve them (flag `dot_segments`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from .base import Action, RequestView
from .common import first, json_body, method_type

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
# node's kubelet, or a service) is code execution, whatever the method: the proxy passes
# PUT/PATCH/DELETE on to the target, and exec over WebSocket is a GET.
_EXEC_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
# Subresources whose writes are something other than the method says.
_WRITE_TYPES = {
    "ephemeralcontainers": "execute",  # injects a container into a running pod
    "eviction": "delete",  # POST pods/x/eviction deletes the pod
    "finalize": "delete",  # clearing a namespace's finalizers forces its deletion
}
# Subresources whose writes honour dryRun like the object itself does.
_DRY_RUN_SUBRESOURCES = frozenset({None, "status", "scale"})
# The server keeps `namespaces/{name}/status` on the namespace itself.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_SPECIAL_VERBS = frozenset({"watch", "proxy"})  # deprecated /api/v1/watch/... prefixes

# The fixed core (group "") resources; see the module docstring for how they are used.
_CLUSTER_CORE = frozenset({"namespaces", "nodes", "persistentvolumes", "componentstatuses"})
_NAMESPACED_CORE = frozenset({
    "bindings", "configmaps", "endpoints", "events", "limitranges", "persistentvolumeclaims", "pods",
    "podtemplates", "replicationcontrollers", "resourcequotas", "secrets", "serviceaccounts", "services",
})
_BUILTIN_GROUPS = frozenset({"apps", "batch", "autoscaling", "policy", "extensions"})
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?\Z")
_API_PORT = 6443


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    # The server splits the decoded path, so %2F and friends must not hide anything.
    path = unquote(req.path) if "%" in req.path else req.path
    segments = path.strip("/").split("/")
    flags = set()
    if "." in segments or ".." in segments:
        segments = _resolve_dots(segments)
        flags.add("dot_segments")
    lenient = pinned or req.port == _API_PORT
    found = _api_tail(segments, lenient)
    if found is None:
        # discovery documents and other non-resource paths of a pinned API server
        return _non_resource(req) if pinned else None
    start, rest = found
    if start:
        flags.add("k8s_prefixed")
    if any(name.startswith("impersonate-") for name, _ in req.headers):
        flags.add("impersonate")
    return _resource_action(req, rest, flags)


def _api_tail(segments: list[str], lenient: bool) -> tuple[int, list[str]] | None:
    """(where the API path starts, the segments after its version), for the leftmost
    candidate with Kubernetes structure."""
    for i, seg in enumerate(segments):
        if seg == "api" and i + 2 < len(segments):
            group, version, rest = "", segments[i + 1], segments[i + 2 :]
        elif seg == "apis" and i + 3 < len(segments):
            group, version, rest = segments[i + 1], segments[i + 2], segments[i + 3 :]
        else:
            continue
        if (lenient and (i == 0 or _VERSION.match(version))) or _has_structure(group, version, rest):
            return i, rest
    return None


def _has_structure(group: str, version: str, rest: list[str]) -> bool:
    if not _VERSION.match(version) or not rest[0]:
        return False
    if group:
        return "." in group or group in _BUILTIN_GROUPS
    if rest[0] in _SPECIAL_VERBS and len(rest) >= 2:
        rest = rest[1:]
    head = rest[0]
    return head in _CLUSTER_CORE or (head in _NAMESPACED_CORE and len(rest) == 1)


def _resource_action(req: RequestView, rest: list[str], flags: set[str]) -> Action:
    verb = _VERBS.get(req.method, req.method.lower())
    special = None
    if rest[0] in _SPECIAL_VERBS and len(rest) >= 2:
        special, rest = rest[0], rest[1:]
        verb = special
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 and rest[1] else None
    # The server gives the deprecated /proxy/ prefix no subresource; naming it like
    # the modern form lets one rule (`pods/proxy`) cover both.
    subresource = "proxy" if special == "proxy" else rest[2] if len(rest) > 2 and rest[2] else None

    if name is None and verb == "get":
        verb = "watch" if _go_bool(req.query, "watch") else "list"
    elif name is None and verb == "delete":
        verb = "deletecollection"
    if name is None and verb in ("list", "watch"):
        name = _name_from_field_selector(first(req.query, "fieldSelector"))

    action_type = _action_type(req, verb, subresource)
    if action_type in ("create", "update", "delete") and subresource in _DRY_RUN_SUBRESOURCES and _dry_run(req):
        flags.add("dry_run")
        action_type = "read"
    if verb == "patch" and req.content_type == "application/apply-patch+yaml" and _go_bool(req.query, "force"):
        flags.add("force_apply")
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=verb,
        resource_type=f"{resource}/{subresource}" if subresource else resource,
        namespace=namespace or None,
        resource_name=name,
        flags=frozenset(flags),
    )


def _action_type(req: RequestView, verb: str, subresource: str | None) -> str:
    if subresource in _EXEC_SUBRESOURCES or verb == "proxy":
        return "execute"
    if subresource in _WRITE_TYPES and verb not in ("get", "list", "watch"):
        return _WRITE_TYPES[subresource]
    return _TYPES.get(verb, method_type(req.method))


def _dry_run(req: RequestView) -> bool:
    """Whether the server would run this write as a dry run. A DELETE with a body takes
    its DeleteOptions from the body and ignores the query; anything but `All` is refused,
    so a twin such as `dryRun=All&dryRun=` is not a dry run."""
    if req.method == "DELETE" and req.body:
        body = json_body(req)
        values: Any = body.get("dryRun") if isinstance(body, dict) else None
    else:
        values = [v for k, v in req.query if k == "dryRun"]
    return isinstance(values, list) and bool(values) and all(v == "All" for v in values)


def _go_bool(query: tuple[tuple[str, str], ...], name: str) -> bool:
    # The server's query conversion reads the first value: "0" and "false" (any case)
    # are false, anything else, even an empty value, is true.
    value = first(query, name)
    return value is not None and value.lower() not in ("0", "false")


def _resolve_dots(segments: list[str]) -> list[str]:
    out: list[str] = []
    for seg in segments:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return out or [""]


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
