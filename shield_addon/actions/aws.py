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
from .common import STRICTNESS, first, json_body, method_type, text_body

__all__ = ["parse", "verb_type"]

_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")
_SIGV4 = "AWS4-HMAC-SHA256"
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
# S3 canned ACLs and grants that open to everyone.
_PUBLIC_ACL = re.compile(r"public-read|authenticated-read|AllUsers|AuthenticatedUsers", re.IGNORECASE)


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    aws_host = req.host.endswith(_AWS_HOSTS)
    form = _form(req, aws_host or pinned)
    if not (pinned or aws_host or _signals_aws(req, form)):
        return None
    target = req.header("x-amz-target")
    scope = _scope_service(req)
    bucket = _bucket_from_host(req.host) if aws_host else None
    label = req.host.split(".", 1)[0] if aws_host else None
    service = scope or (_host_service(req.host, bucket) if aws_host else None)
    params = list(req.query) + form
    # A key sent twice: the server reads one of them, we do not know which; judge all.
    operations = list(dict.fromkeys(v for k, v in params if k == "Action"))

    if target:
        prefix, _, operation = target.rpartition(".")
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
    if service == "s3" or bucket is not None or (pinned and not aws_host):
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
        owners = cat.owners(candidates, operation) or ((service,) if service else ())
        kind, families = classify_any(owners, operation)
        readings.append((operation, kind, families))
    operation, kind, families = _strictest(readings)
    families |= param_families(operation, params, _body_for_params(req))
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
    action = _rest_match(req, candidates, req.path)
    if action is None:
        return Action(f"aws:{service}", method_type(req.method), req.method.lower())
    operation, kind, families = action
    return Action(f"aws:{service}", kind, operation, flags=frozenset(f"aws:{f}" for f in families))


def _rest_match(
    req: RequestView, candidates: tuple[str, ...], path: str
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
    params = list(req.query) + _json_params(req)
    families |= param_families(operation, params, _body_for_params(req))
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
    params = list(params)
    for param, kind in _RESOURCE_PARAMS:
        # EC2 lists are numbered: InstanceId.1=i-a&InstanceId.2=i-b
        values = sorted(
            (int(k[len(param) + 1 :]) if k != param else 0, v)
            for k, v in params
            if k == param or (k.startswith(param + ".") and k[len(param) + 1 :].isdigit())
        )
        if values:
            return kind, ",".join(v for _, v in values), ()
    return None, None, ()


def _s3(req: RequestView, bucket: str | None) -> Action:
    path = unquote(req.path)
    key = path.removeprefix("/")
    if bucket is None:  # path style: /bucket/key
        bucket, _, key = key.partition("/")
        route = req.path
    else:  # virtual-hosted: the model's templates start with /{Bucket}
        route = "/" + bucket + req.path
    match = _rest_match(req, ("s3",), route)
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
    if len(parts) < 5 or not parts[3]:
        return None
    return parts[3].lower()


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


