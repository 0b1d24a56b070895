"""Impact previews: the server's own dry run of a held request, for the reviewer. Pure: which
requests have a dry-run form, what that form is, and what its answer says in one line.

Only APIs with a native dry run are asked, so a preview can never do what the request
would: the Kubernetes API server's `dryRun=All` runs admission and validation and answers
with the object as it would be (or the Status of a refusal) without persisting anything;
EC2's `DryRun=true` checks the caller's permission and the parameters and answers
`DryRunOperation` (it would have succeeded) or the error the request would get.

An EC2 request is signed by the agent (SigV4) over its parameters, so its dry-run form cannot
carry the agent's signature: the proxy signs it with credentials of its own, and the answer
is about those credentials' permissions (docs/reviewers.md says how to make them the agent's).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from shield_addon.core.decoding import json_object
from shield_addon.record.text import safe_text

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers of the agent's request that the dry run does not carry: the proxy's, hop-by-hop,
# and the body's length (recomputed by the client).
DROPPED = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive", "te", "trailer",
                     "transfer-encoding", "upgrade", "content-length", "host", "expect",
                     "accept-encoding"})  # the answer is read as it comes: no compression
SUMMARY_LIMIT = 300  # characters of a preview line


# The API server's own paths for an object or a collection, or an object's status or scale:
# the writes that honour dryRun. Not `proxy`, `exec`, `attach` or `portforward` (the server
# passes the request on to a pod, a service or a kubelet, which never heard of dryRun), not
# other subresources, not a gateway's prefix, the kubelet, etcd or a dashboard: a preview
# that reached any of those would do what the held request does, before anyone decided.
_API_OBJECT = re.compile(r"/(?:api/v\d+(?:(?:alpha|beta)\d+)?|apis/[^/]+/v\d+(?:(?:alpha|beta)\d+)?)"
                         r"(?:/namespaces/[^/]+)?/[^/]+(?:/[^/]+(?:/(?:status|scale))?)?")
_API_PORT_NOT = frozenset({10250, 10255, 2379})  # the kubelet's and etcd's ports: never an API server


@dataclass(frozen=True)
class KubeDryRun:
    """A Kubernetes write's dry-run form, sent with the agent's own credentials."""

    url: str
    headers: list[tuple[str, str]]
    body: bytes


NOT_HONOURED = ("no dry run: the server does not honour dryRun there (a proxy, exec or other subresource, "
                "a gateway's prefix, the kubelet or etcd)")
OPTIONS_UNREADABLE = "no dry run: the DELETE's body is not JSON DeleteOptions, and the server reads dryRun only there"


def dry_run(service: str | None, method: str, url: str, headers: Iterable[tuple[str, str]],
            body: bytes = b"") -> KubeDryRun | str | None:
    """The dry-run form of a request; None when its API has none; why not (a line for the
    reviewer) when it cannot be made certainly dry. Any dryRun the agent sent is replaced by
    All, in the query and, for a DELETE with a body, in the body's DeleteOptions (the server
    then reads only those)."""
    if service != "kubernetes" or method.upper() not in MUTATING:
        return None
    parts = urlsplit(url)
    if not dry_run_honoured(parts.path, parts.port):
        return NOT_HONOURED
    kept = [(k, v) for k, v in headers if k.lower() not in DROPPED]
    if method.upper() == "DELETE" and body:
        options = _dry_delete_options(kept, body)
        if options is None:
            return OPTIONS_UNREADABLE
        kept = [(k, v) for k, v in kept if k.lower() != "content-type"] + [("Content-Type", "application/json")]
        body = options
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "dryrun"]
    query.append(("dryRun", "All"))
    return KubeDryRun(urlunsplit(parts._replace(query=urlencode(query))), kept, body)


NOT_AN_API_SERVER = ("no dry run: the server did not answer GET /version as a Kubernetes API server does, "
                     "so it may not honour dryRun")


def version_url(url: str) -> str:
    """Where a Kubernetes API server says what it is: asked before a dry run is sent, because the
    parser knows Kubernetes by its paths, and a server that only looks like one would take the
    dry run as the request itself."""
    return urlunsplit(urlsplit(url)._replace(path="/version", query="", fragment=""))


def is_api_server(status: int, body: bytes) -> bool:
    """Whether GET /version answered as the API server does: {"major": "1", "minor": "31",
    "gitVersion": "v1.31.2", ...}."""
    doc = json_object(body) if status == 200 else None
    return (doc is not None and all(isinstance(doc.get(k), str) for k in ("major", "minor", "gitVersion"))
            and doc["gitVersion"].startswith("v"))


def dry_run_honoured(path: str, port: int | None) -> bool:
    """Whether the path is one of the API server's whose writes honour dryRun, read as the
    server reads it: decoded (%2F is a slash to it), no dot segments."""
    if port in _API_PORT_NOT:
        return False
    decoded = unquote(path)
    segments = decoded.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        return False
    return _API_OBJECT.fullmatch(decoded) is not None


def _dry_delete_options(headers: list[tuple[str, str]], body: bytes) -> bytes | None:
    """The DeleteOptions of a DELETE's body with dryRun [All], or None when it is not plain
    JSON this can edit (protobuf, YAML, compressed): the server would read it, not the query."""
    if any(k.lower() == "content-encoding" and v.strip().lower() not in ("", "identity") for k, v in headers):
        return None
    doc = json_object(body)
    if doc is None:
        return None
    # Keys compared without case: a JSON decoder that folds case must find no other dryRun.
    doc = {k: v for k, v in doc.items() if k.lower() != "dryrun"}
    doc["dryRun"] = ["All"]
    return json.dumps(doc).encode()


@dataclass(frozen=True)
class Ec2DryRun:
    """An EC2 Query request's dry-run form, to be signed and sent by the proxy."""

    region: str
    operation: str
    params: tuple[tuple[str, str], ...]  # the agent's parameters as sent, DryRun=true last

    @property
    def body(self) -> bytes:
        return urlencode(self.params).encode()


# AWS region names (us-east-1, eu-central-2, us-gov-west-1, cn-north-1): only such a name may
# pick the endpoint that the proxy's own credentials sign for.
REGION = re.compile(r"[a-z]{2}(?:-[a-z0-9]+){1,3}")
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/ec2/aws4_request")
_HOST_REGION = re.compile(r"ec2(?:-fips)?\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)")
DEFAULT_REGION = "us-east-1"
EC2_API_VERSION = "2016-11-15"  # the Query API version of botocore's EC2 model (the only one since 2016)


def ec2_dry_run(method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes) -> Ec2DryRun | None:
    """The EC2 Query request's parameters (query string and form body, in the agent's order)
    with DryRun=true, or None when it names no single Action. The agent's own DryRun and
    presigning parameters are not carried: the proxy signs the dry run itself."""
    headers = list(headers)
    form = any(k.lower() == "content-type" and "x-www-form-urlencoded" in v.lower() for k, v in headers)
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True)
    if body and (form or method.upper() == "POST"):
        params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    names = {k: k.strip().lower() for k, _ in params}
    if any(n in ("action", "version") and k not in ("Action", "Version") for k, n in names.items()):
        return None  # `action=`, ` Version`: a spelling AWS might read and we would not
    kept = tuple((k, v) for k, v in params if names[k] != "dryrun" and not names[k].startswith("x-amz-"))
    actions = {v for k, v in kept if k == "Action"}
    if len(actions) != 1:
        return None  # none, or two that AWS and we might read differently
    return Ec2DryRun(ec2_region(parts.hostname or "", headers, params), actions.pop(), (*_pinned(kept), ("DryRun", "true")))


def _pinned(params: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The parameters with Version EC2_API_VERSION, once, where the agent put its own: whether an
    operation has DryRun is read from that version's model, and an older API version (from
    before DryRun existed) might not honour it."""
    out = [(k, EC2_API_VERSION if k == "Version" else v) for k, v in params]
    first = next((i for i, (k, _) in enumerate(out) if k == "Version"), None)
    if first is None:
        return (*out, ("Version", EC2_API_VERSION))
    return tuple(p for i, p in enumerate(out) if p[0] != "Version" or i == first)


def ec2_region(host: str, headers: Iterable[tuple[str, str]], params: Iterable[tuple[str, str]]) -> str:
    """The region the agent signed for (its credential scope), else its host's, else us-east-1."""
    scopes = [v for k, v in headers if k.lower() == "authorization"]
    scopes += ["Credential=" + v for k, v in params if k.lower() == "x-amz-credential"]
    for text in scopes:
        if (m := _SCOPE.search(text)) and REGION.fullmatch(m.group(1)):
            return m.group(1)
    m = _HOST_REGION.fullmatch(host.lower())
    return m.group(1) if m and REGION.fullmatch(m.group(1)) else DEFAULT_REGION


def ec2_summary(operation: str, status: int, body: bytes, signer: str) -> str:
    """One line: whether EC2 says the request would succeed for the signer, or why not."""
    text = body.decode("utf-8", "replace")
    code, message = _xml(text, "Code"), _xml(text, "Message")
    if code == "DryRunOperation":
        return _cut(f"dry run as {signer}: {operation} would succeed")
    if code:
        return _cut(f"dry run as {signer} refused: {status} {code}: {message}".rstrip(": "))
    if 200 <= status < 300:  # an endpoint that ignored DryRun: the reviewer must know
        return _cut(f"dry run answered {status} without DryRunOperation: the endpoint may not honour DryRun")
    return _cut(f"dry run answered {status}, not an EC2 error")


def _xml(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>([^<]*)</{tag}>", text)
    return " ".join(html.unescape(m.group(1)).split()) if m else ""


def summary(method: str, status: int, body: bytes) -> str:
    """One line: what the server says the request would do, or why it would refuse it."""
    doc = json_object(body)
    if doc is None:
        return _cut(f"dry run answered {status}, not a Kubernetes object")
    if doc.get("kind") == "Status":
        if doc.get("status") == "Success":
            d = doc.get("details") or {}
            return _cut(f"dry run: {_verb(method)} {d.get('kind') or 'object'} {d.get('name') or ''}".rstrip())
        return _cut(f"dry run refused: {status} {doc.get('reason') or ''}: {doc.get('message') or ''}")
    if not 200 <= status < 300:
        return _cut(f"dry run answered {status}")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if isinstance(doc.get("items"), list):
        names = [i.get("metadata", {}).get("name") for i in doc["items"] if isinstance(i, dict)]
        shown = ", ".join(str(n) for n in names[:5]) + (f", … ({len(names)} in all)" if len(names) > 5 else "")
        return _cut(f"dry run: {_verb(method)} {len(names)} {doc.get('kind', 'items').removesuffix('List')}: {shown}")
    name = "/".join(str(x) for x in (meta.get("namespace"), meta.get("name")) if x)
    text = f"dry run: {_verb(method)} {doc.get('kind') or 'object'} {name}".rstrip()
    details = _details(doc)
    return _cut(f"{text} ({details})" if details else text)


def _verb(method: str) -> str:
    return {"DELETE": "would delete", "POST": "would create", "PUT": "would replace",
            "PATCH": "would change"}.get(method.upper(), "would touch")


def _details(doc: dict) -> str:
    """What a reviewer wants to know of the object as it would be."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    status = doc.get("status") if isinstance(doc.get("status"), dict) else {}
    found = []
    if "replicas" in spec:
        found.append(f"replicas {spec['replicas']}")
    if "readyReplicas" in status:
        found.append(f"ready now {status['readyReplicas']}")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if meta.get("deletionTimestamp"):
        found.append("deletion pending")
    if meta.get("finalizers"):
        found.append(f"finalizers {', '.join(map(str, meta['finalizers']))}")
    return ", ".join(found)


def shown(text: str) -> str:
    """A preview line as the reviewer sees it: no control characters, and no `|`, which parts a
    hold's comment: a server's answer (a Kubernetes preview goes to the host the agent named)
    must not look like a decision or a note appended after it."""
    return safe_text(text).replace("|", "¦")


def _cut(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"
