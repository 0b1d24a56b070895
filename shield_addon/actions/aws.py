"""AWS APIs, every protocol botocore speaks, operations named from botocore's models.

- query / ec2: `Action=` in the query string or a form body, keys and values
  percent-decoded as the server decodes them;
- json: `X-Amz-Target: Service_20120810.Operation`; smithy-rpc-v2-cbor:
  `POST /service/{target}/operation/{Operation}`;
- rest-json / rest-xml (S3, Lambda, Route 53, SES v2, ...): method and path matched
  against the request URI templates of the service's model (aws_catalogue.py).

The service comes first from the SigV4 credential scope, because it is signed and so
names the service that will really act; then from the host; then from the target.
Each operation is classified by aws_families.py: an action type, and families as flags
(`aws:delete`, `aws:logging_off`, ...) that rules match with `flag:`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

from . import aws_catalogue
from .aws_families import classify_any, param_families, verb_type
from .base import Action, RequestView
from .common import STRICTNESS, first, form_body, json_body, json_documents, method_type, text_body

__all__ = ["parse", "verb_type"]

_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")
# SigV4 and SigV4a (multi-region: the scope has no region, AKID/date/service/aws4_request).
_SIGV4 = ("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")
_TARGET_SERVICE = re.compile(r"^(?:amazon|aws)?([a-z0-9]+?)(?:_?v?\d{8})?$")
_RPC_V2 = re.compile(r"(?:/[^/]+)*/service/([^/]+)/operation/([^/?]+)/?")
# Host prefixes whose service signs under another name (botocore's endpointPrefix vs
# signingName). The SigV4 scope, read first, carries the signing name, so naming
# unsigned requests the same way gives each service one name. CloudWatch
# ("monitoring") and ELB ("elasticloadbalancing") sign under their prefix: unmapped.
_SIGNING_NAMES = {
    "email": "ses",  # SES v1 and v2
    "bedrock-runtime": "bedrock",
    "bedrock-agent": "bedrock",
    "bedrock-agent-runtime": "bedrock",
}
# Signing names of S3's other front doors: the same object API (S3 Express One Zone,
# Object Lambda, Outposts objects). Outposts' control API is /v20180820/..., as S3 Control's.
_S3_SCOPES = frozenset({"s3", "s3express", "s3-object-lambda", "s3-outposts"})
_S3_CONTROL_PATH = "/v20180820/"

# Query-protocol parameters that name what is acted on, with its resource type.
_RESOURCE_PARAMS = (
    ("InstanceId", "instance"),
    ("UserName", "user"),
    ("RoleName", "role"),
    ("GroupName", "group"),
    ("PolicyArn", "policy"),
    ("QueueUrl", "queue"),
    ("TopicArn", "topic"),
    ("DBInstanceIdentifier", "db-instance"),
    ("DBClusterIdentifier", "db-cluster"),
    ("StackName", "stack"),
    ("VolumeId", "volume"),
    ("SnapshotId", "snapshot"),
)
_RESOURCE_KINDS = dict(_RESOURCE_PARAMS)
# S3 canned ACLs and grants that open to everyone.
_PUBLIC_ACL = re.compile(r"public-read|authenticated-read|AllUsers|AuthenticatedUsers", re.IGNORECASE)


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    host = req.host.rstrip(".")  # a fully qualified name resolves the same
    aws_host = host.endswith(_AWS_HOSTS)
    form = _form(req, aws_host or pinned)
    if not (pinned or aws_host or _signals_aws(req, form)):
        return None
    target = req.header("x-amz-target")
    scope = _scope_service(req)
    bucket = _bucket_from_host(host) if aws_host else None
    label = host.split(".", 1)[0] if aws_host else None
    service = scope or (_host_service(host, bucket) if aws_host else None)
    if req.path.startswith(_S3_CONTROL_PATH) and (service in _S3_SCOPES or label == "s3-control"):
        # S3 Control signs as s3 on {account}.s3-control.{region}.amazonaws.com
        return _rest(req, "s3control", ("s3control",))
    params = list(req.query) + form
    # A key sent twice: the server reads one of them, we do not know which; judge all.
    operations = list(dict.fromkeys(v.strip() for k, v in params if k == "Action"))

    if target:
        prefix, _, operation = target.strip().rpartition(".")
        service = service or _target_service(target)
        candidates = aws_catalogue.catalogue().candidates(scope, label, prefix, service)
        return _rpc(req, service, candidates, [operation], _json_params(req))
    if operations:
        candidates = aws_catalogue.catalogue().candidates(scope, label, service)
        return _rpc(req, service, candidates, operations, params)
    rpc_v2 = _RPC_V2.fullmatch(req.path) if req.method == "POST" else None
    if rpc_v2:
        prefix, operation = unquote(rpc_v2.group(1)), unquote(rpc_v2.group(2))
        service = service or _target_service(prefix)
        candidates = aws_catalogue.catalogue().candidates(scope, label, prefix)
        return _rpc(req, service, candidates, [operation], list(req.query))
    if service in _S3_SCOPES or bucket is not None or (pinned and not aws_host):
        return _s3(req, bucket)
    candidates = aws_catalogue.catalogue().candidates(scope, label, service)
    return _rest(req, service or "unknown", candidates)


def _rpc(
    req: RequestView,
    service: str | None,
    candidates: tuple[str, ...],
    operations: list[str],
    params: list[tuple[str, str]],
) -> Action:
    """An operation named outright (query, JSON or RPC v2 protocols)."""
    cat = aws_catalogue.catalogue()
    readings = []
    for operation in operations:
        # An operation in another case than the model's is read as the model's: a
        # lenient server (an emulator, a gateway) may accept it; a strict one refuses it.
        operation = cat.canonical(operation)
        owners = cat.owners(candidates, operation) or ((service,) if service else ())
        kind, families = classify_any(owners, operation)
        readings.append((operation, kind, families))
    operation, kind, families = _strictest(readings)
    families |= _request_families(req, operation, params, service)
    resource_type, resource_name, tables = _resource(service, params, req)
    flags = {f"aws:{f}" for f in families}
    if len(readings) > 1:
        flags |= {f"aws:{f}" for _, _, fs in readings for f in fs} | {"aws:ambiguous"}
    return Action(
        service=f"aws:{service or 'unknown'}",
        action_type=kind,
        operation=operation,
        resource_type=resource_type,
        resource_name=resource_name,
        tables=tables,
        flags=frozenset(flags),
    )


def _rest(req: RequestView, service: str, candidates: tuple[str, ...]) -> Action:
    """An operation named by method and path (rest-json, rest-xml)."""
    action = _rest_match(req, candidates, req.path, service)
    if action is None:
        # No template matches: the parameters still say what the request asks.
        operation = req.method.lower()
        families = _request_families(req, operation, list(req.query), service)
        return Action(f"aws:{service}", method_type(req.method), operation,
                      flags=frozenset(f"aws:{f}" for f in families))
    operation, kind, families = action
    return Action(f"aws:{service}", kind, operation, flags=frozenset(f"aws:{f}" for f in families))


def _rest_match(
    req: RequestView, candidates: tuple[str, ...], path: str, service: str = ""
) -> tuple[str, str, frozenset[str]] | None:
    """(operation, type, families) of the templates `path` matches best; when several
    tie, the strictest names the action and it carries the families of all."""
    query = {}
    for k, v in req.query:
        query.setdefault(k, v)
    headers = frozenset(name for name, _ in req.headers)
    found = aws_catalogue.match_rest(candidates, req.method, path, query, headers)
    if not found:
        return None
    cat = aws_catalogue.catalogue()
    readings = [(op, *classify_any([svc], op)) for svc, op in found]
    current = [r for r, (svc, op) in zip(readings, found) if op not in cat.services[svc].deprecated]
    operation, kind, _ = _strictest(current or readings)
    families = frozenset().union(*(f for _, _, f in readings))
    families |= _request_families(req, operation, list(req.query), service or found[0][0])
    if any(_PUBLIC_ACL.search(v) for k, v in req.headers if k == "x-amz-acl" or k.startswith("x-amz-grant-")):
        families |= {"public"}
    return operation, kind, frozenset(families)


def _strictest(readings: list[tuple[str, str, frozenset[str]]]) -> tuple[str, str, frozenset[str]]:
    # The worst reading names the action; among equals the plainest name (ListBuckets
    # over ListDirectoryBuckets, which shares its route).
    return max(readings, key=lambda r: (STRICTNESS.index(r[1]), len(r[2]), -len(r[0]), r[0]))


def _form(req: RequestView, aws: bool) -> list[tuple[str, str]]:
    """The form body as the server reads it. AWS endpoints read a form whatever the
    content type says, so for them any body that is not JSON or XML is tried."""
    body = req.body
    if not body:
        return []
    if req.content_type == "multipart/form-data":  # frameworks read its text fields as a form
        return form_body(req)
    if req.content_type != "application/x-www-form-urlencoded":
        if not aws or body[:1] in (b"{", b"[", b"<") or b"=" not in body:
            return []
    try:
        return parse_qsl(text_body(req), keep_blank_values=True)
    except ValueError:
        return []


def _signals_aws(req: RequestView, form: list[tuple[str, str]]) -> bool:
    # One pass over headers and query: this runs for every request, so it must stay cheap.
    for name, value in req.headers:
        if name == "x-amz-target" or (name == "authorization" and value.startswith(_SIGV4)):
            return True
    for name, _ in req.query:
        if name == "Action" or name == "X-Amz-Credential":
            return True
    return any(name == "Action" for name, _ in form)


def _json_params(req: RequestView) -> list[tuple[str, str]]:
    """Top-level members of a JSON body as (name, text) pairs, as the query protocol
    would send them: booleans as true/false, numbers as written."""
    body = json_body(req)
    if not isinstance(body, dict):
        return []
    return [(str(k), _scalar(v)) for k, v in body.items() if not isinstance(v, (dict, list))]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _request_families(
    req: RequestView, operation: str, params: list[tuple[str, str]], service: str | None
) -> set[str]:
    """Families the parameters and body decide, the body read to any depth."""
    text = _body_for_params(req)
    is_json = text[:1] in ("{", "[") or req.content_type.endswith("json")
    # A repeated key: each way servers read it (last, first, Go's merge) is a document; any may decide.
    families: set[str] = set()
    for body in json_documents(req) if is_json else (None,):
        own = [p for p in params if p[0] not in body] if isinstance(body, dict) else params  # read with the body
        families |= param_families(operation, own, text, body, service or "")
    if (req.header("x-amz-bypass-governance-retention") or "").strip().lower() == "true":
        families.add("protection_off")  # S3 Object Lock in governance mode, overridden for this call
    return families


def _body_for_params(req: RequestView) -> str:
    ctype = req.content_type
    if not req.body or ctype.startswith(("image/", "video/", "audio/")) or ctype == "application/octet-stream":
        return ""
    return text_body(req)


def _resource(
    service: str | None, params: Iterable[tuple[str, str]], req: RequestView
) -> tuple[str | None, str | None, tuple[str, ...]]:
    if service == "dynamodb":
        tables = _dynamodb_tables(json_body(req))
        return ("table" if tables else None), (tables[0] if len(tables) == 1 else None), tables
    # EC2 lists are numbered: InstanceId.1=i-a&InstanceId.2=i-b. One pass over the
    # parameters: this runs for every query-protocol request.
    found: dict[str, list[tuple[int, str]]] = {}
    for k, v in params:
        base, dot, index = k.partition(".")
        if base in _RESOURCE_KINDS and (not dot or index.isdigit()):
            found.setdefault(base, []).append((int(index) if dot else 0, v))
    for param, kind in _RESOURCE_PARAMS:  # the first listed wins
        if param in found:
            return kind, ",".join(v for _, v in sorted(found[param])), ()
    return None, None, ()


def _s3(req: RequestView, bucket: str | None) -> Action:
    path = unquote(req.path)
    key = path.removeprefix("/")
    if bucket is None:  # path style: /bucket/key
        bucket, _, key = key.partition("/")
        route = req.path
    else:  # virtual-hosted: the model's templates start with /{Bucket}
        route = "/" + bucket + req.path
    match = _rest_match(req, ("s3",), route, "s3")
    if match is None:
        operation = "PostObject" if req.method == "POST" else req.method.lower()
        kind, families = method_type(req.method), frozenset()
    else:
        operation, kind, families = match
    return Action(
        service="aws:s3",
        action_type=kind,
        operation=operation,
        resource_type="object" if key else "bucket" if bucket else None,
        namespace=bucket or None,
        resource_name=key or bucket or None,
        flags=frozenset(f"aws:{f}" for f in families),
    )


def _scope_service(req: RequestView) -> str | None:
    # Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, ...
    # or the same scope in ?X-Amz-Credential= of a presigned URL.
    auth = req.header("authorization") or ""
    match = _CREDENTIAL.search(auth) if auth.startswith(_SIGV4) else None
    credential = match.group(1) if match else first(req.query, "X-Amz-Credential")
    parts = credential.split("/") if credential else []
    # The service is the next-to-last part in SigV4 (with a region) and SigV4a (without).
    if len(parts) < 4 or not parts[-2]:
        return None
    return parts[-2].lower()


def _bucket_from_host(host: str) -> str | None:
    """The bucket of a virtual-hosted S3 name (bucket.s3.us-east-1.amazonaws.com)."""
    labels = host.split(".")
    # From the right: bucket names may contain dots and even "s3-" labels.
    for i in range(len(labels) - 1, -1, -1):
        if _is_s3_label(labels[i]):
            return ".".join(labels[:i]) or None
    return None


def _is_s3_label(label: str) -> bool:
    # s3, s3-us-west-2 (legacy regional), s3-accelerate; not the S3 Control API.
    return label == "s3" or (label.startswith("s3-") and label != "s3-control")


def _host_service(host: str, bucket: str | None) -> str:
    label = host.split(".", 1)[0]  # ec2.us-east-1.amazonaws.com -> ec2
    return "s3" if bucket is not None or _is_s3_label(label) else _SIGNING_NAMES.get(label, label)


def _target_service(target: str) -> str | None:
    # "DynamoDB_20120810.DeleteTable" -> dynamodb, "AmazonSQS.SendMessage" -> sqs
    match = _TARGET_SERVICE.match(target.split(".", 1)[0].lower())
    return match.group(1) if match else None


def _dynamodb_tables(body: Any) -> tuple[str, ...]:
    if not isinstance(body, dict):
        return ()
    names: list[Any] = [body.get("TableName")]
    if isinstance(body.get("RequestItems"), dict):  # BatchGetItem, BatchWriteItem
        names += list(body["RequestItems"])
    transact = body.get("TransactItems")  # TransactWriteItems, TransactGetItems
    for item in transact if isinstance(transact, list) else ():
        if isinstance(item, dict):  # {"Delete": {"TableName": ...}}
            names += [v.get("TableName") for v in item.values() if isinstance(v, dict)]
    return tuple(dict.fromkeys(n for n in names if isinstance(n, str) and n))


