"""The Kubernetes API by other names: Rancher's Steve API and Argo CD's API server.

Steve (`/v1/{type}[/{namespace}[/{name}]]`, and `/k8s/clusters/{id}/v1/...` for a
downstream cluster) is a thin front of the API server: `DELETE /v1/apps.deployments/prod/web`
is the delete of that Deployment. `steve_path` turns such a path into the API server's own
segments (`namespaces/prod/deployments/web`) so the kubernetes parser reads it as it reads
`/apis/apps/v1/...`. A `/v1/` path is Steve only when the request shows Rancher (a host named
rancher, the `/k8s/clusters/` prefix, a Rancher API token `token-xxxxx:...` or its session
cookie, or a host pinned to kubernetes) and the type is a Kubernetes one (a core resource, or
`group.resource`): `/v1/secrets/data/app` on Vault stays Vault.

Argo CD (`/api/v1/applications/...`) deploys into a cluster from git. What deletes there:
a sync with `prune` (or sync option `Prune=true`, or a forced apply, which deletes what it
cannot patch), and deleting an Application or ApplicationSet (cascade is the default: every
object it deployed goes with it). `argocd` reads those as kubernetes actions on resource
`applications`, flag `prune` where objects are deleted. Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

from typing import Any

from .base import Action, RequestView
from .common import field, first, json_body

# --- Steve

# Cluster-scoped kinds: `/v1/{type}/{x}` names the object x; for a namespaced kind, x is a
# namespace (the list of that kind there).
_CLUSTER_SCOPED = frozenset({
    "namespaces", "nodes", "persistentvolumes", "componentstatuses", "clusterroles", "clusterrolebindings",
    "customresourcedefinitions", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
    "validatingadmissionpolicies", "validatingadmissionpolicybindings", "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings", "apiservices", "storageclasses", "priorityclasses", "csidrivers",
    "csinodes", "volumeattachments", "ingressclasses", "runtimeclasses", "certificatesigningrequests",
    "clusterpolicies", "constrainttemplates", "securitycontextconstraints",
})
# Rancher's own management kinds are cluster-scoped (users, clusters, global roles).
_CLUSTER_SCOPED_GROUPS = ("management.cattle.io",)


def steve_path(req: RequestView, segments: list[str], pinned: bool, core: frozenset[str]) -> list[str] | None:
    """The API server's segments after the version (`namespaces/prod/deployments/web`) for a
    Steve path on a Rancher server, else None. `core`: the core resources' names."""
    start = _steve_start(segments)
    if start is None:
        return None
    tail = segments[start + 1 :]
    if not 1 <= len(tail) <= 4 or not tail[0]:
        return None
    kind = tail[0].lower()
    group, _, resource = kind.rpartition(".")
    if not resource.isalnum() or (not group and kind not in core):
        return None
    if not (pinned or start > 0 or _shows_rancher(req)):
        return None
    if len(tail) == 1:
        namespace = _body_namespace(req)
        return ["namespaces", namespace, resource] if namespace and resource not in _CLUSTER_SCOPED else [resource]
    if len(tail) == 2:
        if resource in _CLUSTER_SCOPED or group in _CLUSTER_SCOPED_GROUPS:
            return [resource, tail[1]]
        return ["namespaces", tail[1], resource]
    return ["namespaces", tail[1], resource, *tail[2:]]


def _steve_start(segments: list[str]) -> int | None:
    # /v1/..., or /k8s/clusters/{id}/v1/... (Steve of a downstream cluster)
    if segments[0] == "v1":
        return 0
    if len(segments) > 4 and segments[:2] == ["k8s", "clusters"] and segments[3] == "v1":
        return 3
    return None


def _shows_rancher(req: RequestView) -> bool:
    if "rancher" in req.host:
        return True
    auth = req.header("authorization") or ""
    # Rancher's API keys are `token-<5 chars>:<secret>`, sent as a bearer token or basic auth.
    if auth[:13].lower() == "bearer token-" and ":" in auth:
        return True
    return "R_SESS=" in (req.header("cookie") or "")


def _body_namespace(req: RequestView) -> str | None:
    """metadata.namespace of a create posted to the type's collection: Steve creates there."""
    if req.method != "POST" or not req.body:
        return None
    body = json_body(req)
    meta = body.get("metadata") if isinstance(body, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


def steve_action(req: RequestView) -> str | None:
    """The action a Steve `?action=` POST runs (uninstall, redeploy, rollback, ...)."""
    return first(req.query, "action") if req.method == "POST" else None


# --- Argo CD

_ARGO_KINDS = frozenset({"applications", "applicationsets"})


def argocd(req: RequestView, segments: list[str]) -> Action | None:
    """Argo CD's API server: a sync (prune or force deletes), an Application written
    (turning automated prune on), an Application or ApplicationSet deleted."""
    if len(segments) == 2 and segments[0] in _ARGO_GRPC_SERVICES:
        return _argocd_grpc(req, segments[0], segments[1])
    if len(segments) < 3 or segments[:2] != ["api", "v1"] or segments[2] not in _ARGO_KINDS:
        return None
    kind, rest = segments[2], segments[3:]
    name = rest[0] if rest and rest[0] else None
    sub = rest[1] if len(rest) > 1 else None
    is_sync = kind == "applications" and sub == "sync" and len(rest) == 2 and req.method == "POST"
    if not is_sync and not _shows_argocd(req):
        return None
    body = json_body(req) if req.body else None
    flags = {"argocd"}
    if is_sync:
        dry = field(body, "dryRun") is True
        if _sync_deletes(body) and not dry:
            flags.add("prune")
        action_type = "read" if dry else "delete" if "prune" in flags else "update"
        operation = "sync"
    elif req.method == "DELETE" and name and sub is None:
        # cascade defaults to true; cascade=false orphans the objects (still a delete of the app)
        if (first(req.query, "cascade") or "true").lower() != "false":
            flags.add("prune")
        action_type, operation = "delete", "delete"
    elif req.method == "DELETE":
        action_type, operation = "delete", "delete"  # .../resource: one live object
    elif req.method in ("GET", "HEAD"):
        action_type, operation = "read", "get"
    else:
        action_type = "create" if req.method == "POST" and name is None else "update"
        operation = action_type
        if action_type == "update" and prunes_on_its_own(kind, body):
            flags.add("prune")
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=operation,
        resource_type=f"{kind}/{sub}" if sub else kind,
        namespace=first(req.query, "appNamespace") or None,
        resource_name=name,
        flags=frozenset(flags),
    )


# The argocd CLI speaks gRPC (or gRPC-web) to the same server: /application.ApplicationService/Sync.
_ARGO_GRPC_SERVICES = {"application.ApplicationService": "applications",
                       "applicationset.ApplicationSetService": "applicationsets"}


def _argocd_grpc(req: RequestView, service: str, method: str) -> Action | None:
    """The gRPC twins, read from the method name: Delete deletes (cascade is the default),
    a Sync whose protobuf body carries the sync option Prune=true or Force=true deletes.
    A Sync's `prune` boolean is a protobuf field this reader does not decode: read as an
    update (see the pack's comments)."""
    kind = _ARGO_GRPC_SERVICES[service]
    flags = {"argocd"}
    if method == "Delete":
        action_type = "delete"
        flags.add("prune")
    elif method == "Sync":
        body = req.body.replace(b" ", b"").lower()
        deletes = b"prune=true" in body or b"force=true" in body
        action_type = "delete" if deletes else "update"
        if deletes:
            flags.add("prune")
    elif method in ("Get", "List", "Watch", "ManagedResources", "ResourceTree", "PodLogs", "GetManifests"):
        action_type = "read"
    else:
        action_type = "update"
    return Action(service="kubernetes", action_type=action_type, operation=method.lower(),
                  resource_type=kind, flags=frozenset(flags))


def _shows_argocd(req: RequestView) -> bool:
    if "argo" in req.host:
        return True
    if "argocd.token=" in (req.header("cookie") or ""):
        return True
    return any(k in ("cascade", "propagationPolicy", "appNamespace") for k, _ in req.query)


def _operation_deletes(sync: dict[Any, Any]) -> bool:
    """An Application's operation.sync: prune, a Prune=true/Force=true option, a forced strategy."""
    body = {"prune": field(sync, "prune"), "syncOptions": {"items": field(sync, "syncOptions")},
            "strategy": field(sync, "syncStrategy")}
    return _sync_deletes(body) or field(sync, "prune") is UNKNOWN


def _sync_deletes(body: Any) -> bool:
    if field(body, "prune") is True:
        return True
    options = field(field(body, "syncOptions"), "items")
    if isinstance(options, list) and any(str(o).replace(" ", "").lower() in ("prune=true", "force=true")
                                         for o in options):
        return True
    strategy = field(body, "strategy")
    return any(field(field(strategy, kind), "force") is True for kind in ("apply", "hook"))


def prunes_on_its_own(resource: str, doc: Any) -> bool:
    """An Argo CD Application with automated prune, or a Flux Kustomization with prune:
    the controller then deletes, on its own, what leaves git. Written onto an existing
    object that is a delete of everything its source no longer has (a new object has
    nothing to prune yet, so only updates are asked about)."""
    spec = field(doc, "spec")
    if resource == "applications":
        # `kubectl patch app --type merge -p '{"operation": {"sync": {"prune": true}}}'` starts a
        # sync with prune, as the API's /sync does
        sync = field(field(doc, "operation"), "sync")
        if sync is UNKNOWN or (isinstance(sync, dict) and _operation_deletes(sync)):
            return True
        value = field(field(field(spec, "syncPolicy"), "automated"), "prune")
    elif resource == "kustomizations":
        # force recreates (deletes, then creates) what an immutable field change cannot patch
        if field(spec, "force") is True:
            return True
        value = field(spec, "prune")
    else:
        return False
    return value is True or value is UNKNOWN or (isinstance(value, str) and value.lower() == "true")


# What a JSON patch move or copy writes: a value the request does not show.
UNKNOWN = object()
