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

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from .base import Action, RequestView
from .common import field, first, json_body, json_documents, method_type
from .destructive import destructive_name
from .kubernetes_apis import UNKNOWN, argocd, prunes_on_its_own, steve_action, steve_path  # UNKNOWN: a value a JSON patch move/copy writes

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
_CORE = _CLUSTER_CORE | _NAMESPACED_CORE
_BUILTIN_GROUPS = frozenset({"apps", "batch", "autoscaling", "policy", "extensions"})
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?\Z")
_API_PORT = 6443
# The kubelet's API: it authorizes these paths as the `nodes/proxy` subresource, and they
# run or reach into containers (checkpoint dumps a container's memory to disk).
_KUBELET_PORT = 10250
_KUBELET_EXEC = frozenset({"run", "exec", "attach", "portforward", "checkpoint", "cri"})
_KUBELET_READS = {"stats": "nodes/stats", "metrics": "nodes/metrics", "logs": "nodes/log", "spec": "nodes/spec"}
# etcd's JSON gateway (port 2379), where the API server keeps every object under /registry/.
_ETCD_PORT = 2379
_ETCD_VERSIONS = frozenset({"v3", "v3beta", "v3alpha"})
_ETCD_TYPES = {"range": "read", "watch": "read", "put": "update", "deleterange": "delete", "compaction": "delete",
               "revoke": "delete", "remove": "delete"}


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    # The server splits the decoded path, so %2F and friends must not hide anything.
    path = unquote(req.path) if "%" in req.path else req.path
    segments = path.strip("/").split("/")
    flags = set()
    if "." in segments or ".." in segments:
        segments = _resolve_dots(segments)
        flags.add("dot_segments")
    if req.port == _KUBELET_PORT:
        return _kubelet(req, segments, flags)
    if req.port == _ETCD_PORT and segments[0] in _ETCD_VERSIONS:
        return _etcd(req, segments, flags)
    lenient = pinned or req.port == _API_PORT
    found = _api_tail(segments, lenient)
    if found is None:
        other = (_dashboard(req, segments, flags) if "api" in segments else None) or argocd(req, segments)
        if other is not None:
            return other
        steve = steve_path(req, segments, pinned, _CORE)
        if steve is not None:
            return _steve(req, steve, flags)
        # discovery documents and other non-resource paths of a pinned API server
        return _non_resource(req) if pinned else None
    start, rest = found
    if start:
        flags.add("k8s_prefixed")
    if any(name.startswith("impersonate-") for name, _ in req.headers):
        flags.add("impersonate")
    return _resource_action(req, rest, flags)


# The Kubernetes Dashboard's backend speaks for the API server under its own /api/v1/
# routes: `_raw/<kind>/namespace/<ns>/name/<name>` is any object (GET/PUT/DELETE), `secret/
# <ns>/<name>` answers with the Secret's data, `scale/<kind>/<ns>/<name>?scaleBy=N` scales,
# `pod/<ns>/<name>/shell/<container>` is exec. Read only at these distinctive shapes.
_DASHBOARD_ROUTES = frozenset({"_raw", "secret", "scale", "pod"})


def _steve(req: RequestView, rest: list[str], flags: set[str]) -> Action:
    """Rancher's Steve API, its path already turned into the API server's (see
    kubernetes_apis). A `?action=` POST runs an action on the object: one whose name
    deletes (uninstall of a Helm app) is a delete, any other an update."""
    flags.add("steve")
    action = _resource_action(req, rest, flags)
    name = steve_action(req)
    if name and action.resource_name:
        kind = "delete" if destructive_name(name) else "update"
        action = dataclasses.replace(action, action_type=kind, operation=f"action {name}")
    return action


def _plural(kind: str) -> str:
    kind = kind.lower()
    if kind.endswith("y"):
        return kind[:-1] + "ies"
    return kind + "es" if kind.endswith("s") else kind + "s"


def _dashboard(req: RequestView, segments: list[str], flags: set[str]) -> Action | None:
    i = segments.index("api")
    rest = segments[i + 1 :]
    if len(rest) < 3 or rest[0] != "v1" or rest[1] not in _DASHBOARD_ROUTES:
        return None
    route, tail = rest[1], rest[2:]
    verb = _VERBS.get(req.method, req.method.lower())
    namespace = name = None
    if route == "_raw":
        # _raw/<kind>/namespace/<ns>/name/<name>, or _raw/<kind>/name/<name> when cluster-scoped
        pairs = dict(zip(tail[1::2], tail[2::2], strict=False))
        if not set(pairs) <= {"namespace", "name"}:
            return None
        resource, namespace, name = _plural(tail[0]), pairs.get("namespace"), pairs.get("name")
    elif route == "secret" and len(tail) <= 2:
        resource, namespace = "secrets", tail[0]
        name = tail[1] if len(tail) > 1 else None
    elif route == "scale" and len(tail) == 3:
        resource, namespace, name = f"{_plural(tail[0])}/scale", tail[1], tail[2]
        if _is_zero_text(first(req.query, "scaleBy")):
            flags.add("scale_to_zero")
    elif route == "pod" and len(tail) >= 3 and tail[2] in ("shell", "exec"):
        resource, namespace, name, verb = "pods/exec", tail[0], tail[1], "create"
    else:
        return None
    if verb == "get" and name is None:
        verb = "list"
    flags.add("k8s_dashboard")
    action_type = "execute" if resource == "pods/exec" else _TYPES.get(verb, method_type(req.method))
    if action_type in ("create", "update") and req.body:
        flags |= body_risks(req, resource.split("/")[0], action_type == "update")
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=verb,
        resource_type=resource,
        namespace=namespace or None,
        resource_name=name or None,
        flags=frozenset(flags),
    )


def _is_zero_text(value: str | None) -> bool:
    try:
        return value is not None and float(value) == 0
    except ValueError:
        return False


def _kubelet(req: RequestView, segments: list[str], flags: set[str]) -> Action:
    endpoint = segments[0].lower()
    flags.add("kubelet")
    if endpoint in _KUBELET_EXEC:
        action_type, resource = "execute", "nodes/proxy"
    else:
        action_type, resource = method_type(req.method), _KUBELET_READS.get(endpoint, "nodes/proxy")
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=_VERBS.get(req.method, req.method.lower()),
        resource_type=resource,
        namespace=segments[1] if endpoint in _KUBELET_EXEC and len(segments) > 2 else None,
        resource_name=segments[2] if endpoint in _KUBELET_EXEC and len(segments) > 2 else None,
        flags=frozenset(flags),
    )


def _etcd(req: RequestView, segments: list[str], flags: set[str]) -> Action:
    """etcd's gateway: `POST /v3/kv/range` reads, `deleterange` deletes; a transaction
    is as strong as the strongest request in it. Keys are base64; a range that spans
    /registry/secrets/ reads Secrets, whatever else it reads."""
    flags.add("etcd")
    op = segments[-1].lower()
    body = json_body(req)
    action_type = _ETCD_TYPES.get(op, "update" if req.method != "GET" else "read")
    if op == "txn":
        text = req.body
        action_type = "delete" if b"delete_range" in text else "update" if b"request_put" in text else "read"
    resource, namespace = _registry_resource(body)
    return Action(
        service="kubernetes",
        action_type=action_type,
        operation=op,
        resource_type=resource or "etcd",
        namespace=namespace,
        flags=frozenset(flags),
    )


def _registry_resource(body: Any) -> tuple[str | None, str | None]:
    key, end = _b64(field(body, "key")), _b64(field(body, "range_end"))
    if key is None:
        return None, None
    secrets = b"/registry/secrets/"
    # range_end "\0" means every key from `key` on; no range_end, the one key
    if end is not None and key <= secrets and (end == b"\0" or end > secrets):
        return "secrets", None
    parts = key.decode("utf-8", "replace").split("/")
    if len(parts) > 2 and parts[1] == "registry" and parts[2]:
        return parts[2], parts[3] if len(parts) > 4 and parts[3] else None
    return None, None


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None


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
    if verb == "create" and subresource is None and resource.startswith("delete"):
        # A request object a controller acts on by deleting: Velero's deletebackuprequests
        # deletes a backup and its snapshots. Creating it is the delete.
        action_type = "delete"
    if action_type in ("create", "update", "delete") and subresource in _DRY_RUN_SUBRESOURCES and _dry_run(req):
        flags.add("dry_run")
        action_type = "read"
    if action_type in ("create", "update") and req.body:
        flags |= body_risks(req, resource, verb != "create")
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


# --- What a write's body does, read from the parsed documents rather than their text, so
# no spelling the server accepts (YAML tags and aliases, JSON escapes, case-folded keys,
# a JSON patch instead of a merge patch) hides it.

# Keys compared without case, as Go's encoding/json sets struct fields.
_HOST_KEYS = frozenset({"privileged", "hostpid", "hostipc", "hostnetwork", "hostprocess"})
# Pod Security "baseline" lets a container add only these; any other is a privilege.
_BASELINE_CAPS = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
_PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
# Cheap gate before walking a body: none of these words, and no escape that could spell one.
_TRIGGERS = (
    b"privileged", b"hostpid", b"hostipc", b"hostnetwork", b"hostprocess", b"hostpath", b"capabilities",
    b"procmount", b"noexecute", b"reclaimpolicy", b"pod-security", b"finalizers", b"replicas", b"$patch",
    b"unconfined", b"selinuxoptions", b"sysctls", b"ownerreferences", b"conversion", b"externalips",
    b"claimretention", b"hostport", b"prune", b"force",
)
_KEY_LENGTHS = frozenset(len(k) for k in (
    *_HOST_KEYS, "hostpath", "procmount", "capabilities", "effect", "persistentvolumereclaimpolicy", "labels",
    "seccompprofile", "apparmorprofile", "selinuxoptions", "sysctls", "annotations", "ownerreferences",
    "conversion", "externalips"))
# Pod Security baseline: the SELinux types a pod may ask for, and the namespaced sysctls it
# may set; any other type, user or role, any other sysctl, and an unconfined seccomp or
# AppArmor profile, lift the confinement that keeps a container off the node.
_BASELINE_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
_SECCOMP_ANNOTATIONS = ("seccomp.security.alpha.kubernetes.io/", "container.seccomp.security.alpha.kubernetes.io/")
# KEDA scales its target to this many replicas and keeps it there.
_KEDA_PAUSED = "autoscaling.keda.sh/paused-replicas"


def body_risks(req: RequestView, resource: str, is_update: bool) -> frozenset[str]:
    """Flags for what a create or update does: `privileged_pod` (privileged, host
    namespaces, hostPath, a hostPort, capabilities beyond Pod Security baseline, unmasked /proc),
    `noexecute_taint` (a node taint that evicts every pod), `reclaim_delete` (a volume
    whose disk goes with its claim), `psa_privileged` (Pod Security admission switched
    off in a namespace), `conversion_webhook` (a CRD that sends its objects to a webhook),
    and on updates `finalizers_removed` and `scale_to_zero` as a JSON patch, strategic
    merge directives or KEDA's paused-replicas annotation spell them,
    `owner_references` (the garbage collector deletes an object whose owner is gone), and
    `prune` (an Argo CD Application or Flux Kustomization set to delete what leaves git)."""
    lowered = req.body.lower()
    if (req.content_type != "application/json-patch+json" and b"\\" not in lowered
            and not any(t in lowered for t in _TRIGGERS)):
        return frozenset()
    flags: set[str] = set()
    for doc in json_documents(req):
        patch = _json_patch(doc)
        if patch is not None:
            if is_update:
                flags |= _patch_flags(patch)
            docs: list[Any] = [_as_document(op) for op in patch]
        else:
            docs = [doc]
            if is_update:
                flags |= _merge_flags(doc)
        for d in docs:
            flags |= _walk_flags(d, resource)
            if is_update:
                flags |= _update_walk_flags(d)
                if prunes_on_its_own(resource, d):
                    flags.add("prune")
    return frozenset(flags)


def _json_patch(doc: Any) -> list[dict[str, Any]] | None:
    if isinstance(doc, list) and doc and all(isinstance(op, dict) and "op" in op for op in doc):
        return doc
    return None


def _pointer(path: Any) -> list[str] | None:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        return None
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _as_document(op: dict[str, Any]) -> Any:
    """One JSON patch operation as the merge patch it amounts to at its target: the
    checks below then read both forms alike. A removal writes null; a move or copy
    writes a value the request does not show."""
    kind = str(op.get("op", "")).lower()
    value = None if kind == "remove" else UNKNOWN if kind in ("move", "copy") else op.get("value")
    parts = _pointer(op.get("path"))
    if parts is None or kind == "test":
        return None
    for part in reversed(parts):
        value = [value] if part == "-" or part.isdigit() else {part: value}
    return value


def _patch_flags(patch: list[dict[str, Any]]) -> set[str]:
    flags = set()
    for op in patch:
        kind = str(op.get("op", "")).lower()
        sources = [op.get("path")] if kind in ("remove", "replace") else []
        if kind == "move":
            sources.append(op.get("from"))
        for source in sources:
            parts = _pointer(source)
            if parts is None:
                continue
            # the finalizers themselves, or /metadata or the whole object replaced or removed
            # by one that keeps none
            if parts[:2] == ["metadata", "finalizers"] or (
                len(parts) <= 1 and parts in ([], ["metadata"]) and not _keeps_finalizers(op, parts)
            ):
                flags.add("finalizers_removed")
        target = _pointer(op.get("path"))
        if target is not None and kind in ("add", "replace", "move", "copy") and target in ([], ["spec"], ["spec", "replicas"]):
            value = UNKNOWN if kind in ("move", "copy") else op.get("value")
            # reach spec.replicas inside what is written at / or /spec
            for key in ("spec", "replicas")[len(target):]:
                value = value if value is UNKNOWN else field(value, key)
            if value is UNKNOWN or _is_zero(value):
                flags.add("scale_to_zero")
    return flags


def _keeps_finalizers(op: dict[str, Any], parts: list[str]) -> bool:
    if str(op.get("op", "")).lower() != "replace":
        return False
    meta = op.get("value") if parts == ["metadata"] else field(op.get("value"), "metadata")
    return bool(field(meta, "finalizers"))


def _merge_flags(doc: Any) -> set[str]:
    """Strategic merge directives that remove finalizers: `$deleteFromPrimitiveList/finalizers`
    and `$patch: replace|delete` on metadata (a replace without finalizers keeps none)."""
    meta = field(doc, "metadata")
    if not isinstance(meta, dict):
        return set()
    for key, value in meta.items():
        k = str(key).lower()
        if k.startswith("$deletefromprimitivelist/finalizers"):
            return {"finalizers_removed"}
        if k == "$patch" and str(value).lower() in ("replace", "delete") and not field(meta, "finalizers"):
            return {"finalizers_removed"}
    return set()


def _walk_flags(doc: Any, resource: str) -> set[str]:
    flags: set[str] = set()
    for obj in _objects(doc):
        for key, value in obj.items():
            # most keys are none of ours: their length rules them out before any lower()
            if not isinstance(key, str) or len(key) not in _KEY_LENGTHS:
                continue
            k = key.lower()
            if k in _HOST_KEYS and (value is True or value is UNKNOWN):
                flags.add("privileged_pod")
            elif k == "hostpath" and value is not None:
                flags.add("privileged_pod")
            elif k == "hostport" and _binds_port(value):
                # a node port: Pod Security baseline forbids it as it forbids hostNetwork
                flags.add("privileged_pod")
            elif k == "procmount" and value == "Unmasked":
                flags.add("privileged_pod")
            elif k == "capabilities" and _adds_capability(value):
                flags.add("privileged_pod")
            elif k == "effect" and value == "NoExecute" and resource == "nodes":
                flags.add("noexecute_taint")
            elif k == "persistentvolumereclaimpolicy" and value == "Delete" and resource == "persistentvolumes":
                flags.add("reclaim_delete")
            elif k == "labels" and resource == "namespaces" and isinstance(value, dict) and _PSA_ENFORCE in value:
                if value[_PSA_ENFORCE] in ("privileged", None, UNKNOWN):
                    flags.add("psa_privileged")
            elif k in ("seccompprofile", "apparmorprofile") and field(value, "type") in ("Unconfined", UNKNOWN):
                flags.add("privileged_pod")
            elif k == "selinuxoptions" and _unconfined_selinux(value):
                flags.add("privileged_pod")
            elif k == "sysctls" and _unsafe_sysctls(value):
                flags.add("privileged_pod")
            elif k == "annotations" and isinstance(value, dict) and _unconfined_annotation(value):
                flags.add("privileged_pod")
            elif k == "externalips" and resource == "services" and (value is UNKNOWN or (isinstance(value, list) and value)):
                # any IP may be claimed: the node then routes the cluster's traffic for it here
                flags.add("external_ips")
            elif k == "conversion" and resource == "customresourcedefinitions" and field(value, "strategy") in (
                    "Webhook", UNKNOWN):
                flags.add("conversion_webhook")
    return flags


def _update_walk_flags(doc: Any) -> set[str]:
    """What only an update of an existing object does: an owner reference written onto it
    (an owner that does not exist, and the garbage collector deletes it), KEDA paused at
    zero replicas."""
    flags: set[str] = set()
    for obj in _objects(doc):
        for key, value in obj.items():
            if not isinstance(key, str) or len(key) not in (11, 15, 36):
                continue
            k = key.lower()
            if k == "ownerreferences" and (value is UNKNOWN or (isinstance(value, list) and value)):
                flags.add("owner_references")
            elif k == "persistentvolumeclaimretentionpolicy" and isinstance(value, dict) and "Delete" in value.values():
                # a StatefulSet that deletes its volumes' claims when scaled down or deleted
                flags.add("reclaim_delete")
            elif k == "annotations" and isinstance(value, dict) and _KEDA_PAUSED in value:
                paused = value[_KEDA_PAUSED]
                if paused is UNKNOWN or _is_zero(paused) or (isinstance(paused, str) and paused.strip() in ("0", "")):
                    flags.add("scale_to_zero")
    return flags


def _binds_port(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip() not in ("", "0")


def _unconfined_selinux(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if not isinstance(value, dict):
        return False
    kind = field(value, "type")
    return (kind is UNKNOWN or (kind is not None and kind not in _BASELINE_SELINUX_TYPES)
            or bool(field(value, "user")) or bool(field(value, "role")))


def _unsafe_sysctls(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if not isinstance(value, list):
        return False
    return any(isinstance(s, dict) and field(s, "name") not in _SAFE_SYSCTLS for s in value)


def _unconfined_annotation(value: dict[Any, Any]) -> bool:
    for key, text in value.items():
        k = str(key)
        if (k.startswith(_APPARMOR_ANNOTATION) or k.startswith(_SECCOMP_ANNOTATIONS)) and (
                text is UNKNOWN or str(text).lower() == "unconfined"):
            return True
    return False


def _adds_capability(value: Any) -> bool:
    added = field(value, "add")
    if isinstance(added, list):
        return any(_cap(c) not in _BASELINE_CAPS for c in added)
    return added is UNKNOWN


def _cap(name: Any) -> str:
    text = str(name).upper()
    return text[4:] if text.startswith("CAP_") else text


def _objects(doc: Any) -> Iterator[dict[Any, Any]]:
    stack = [doc]
    pop, push = stack.pop, stack.extend
    while stack:
        node = pop()
        if type(node) is dict:
            yield node
            push([v for v in node.values() if type(v) is dict or type(v) is list])
        elif type(node) is list:
            push([v for v in node if type(v) is dict or type(v) is list])




def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0
