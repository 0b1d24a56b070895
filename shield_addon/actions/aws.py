"""AWS APIs: the query protocol (Action=), JSON protocols (X-Amz-Target) and S3 REST.

The service comes first from the SigV4 credential scope, because it is signed and so
names the service that will really act; then from the host; then from the target.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from .base import Action, RequestView
from .common import first, form_body, json_body, method_type

_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn")
_SIGV4 = "AWS4-HMAC-SHA256"
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")
_TARGET_SERVICE = re.compile(r"^(?:amazon|aws)?([a-z0-9]+?)(?:_?v?\d{8})?$")
_VERB = re.compile(r"[A-Z][a-z]*")

# Deactivate (IAM's DeactivateMFADevice) and Reset (ResetServiceSpecificCredential,
# ResetDBParameterGroup) are updates: the thing stays and can be turned back on, like
# Disable. Simulate and Generate (IAM's SimulatePrincipalPolicy,
# GenerateCredentialReport) only compute an answer from what exists: reads.
_VERBS_BY_TYPE = {
    "delete": ("Delete", "Terminate", "Remove", "Purge", "Destroy", "Deregister", "Revoke", "Detach", "Abort"),
    "create": ("Create", "Put", "Run", "Add", "Attach", "Register", "Import", "Copy", "Upload", "Complete", "Post"),
    "update": (
        "Update", "Modify", "Set", "Change", "Reboot", "Start", "Stop", "Enable", "Disable", "Deactivate",
        "Reset", "Tag", "Untag", "Associate", "Disassociate", "Write", "Restore",
    ),
    "read": ("Get", "List", "Describe", "Head", "Scan", "Query", "Select", "Simulate", "Generate"),
    "execute": ("Invoke", "Execute", "Send", "Publish"),
}
_VERB_TYPES = {verb: kind for kind, verbs in _VERBS_BY_TYPE.items() for verb in verbs}

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

# REST-JSON APIs name their operation only in the path; a few worth a rule.
_REST_OPERATIONS = {
    ("ses", "POST", "/v2/email/outbound-emails"): "SendEmail",
    ("ses", "POST", "/v2/email/outbound-bulk-emails"): "SendBulkEmail",
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

# S3 subresources (?acl, ?policy, ...) that make a bucket or object request a
# different operation; the rest of the name is built as GetBucketPolicy etc.
_BUCKET_SUBRESOURCES = (
    "acl", "cors", "encryption", "lifecycle", "location", "logging", "notification",
    "ownershipControls", "policy", "publicAccessBlock", "replication", "tagging", "versioning", "website",
)
_OBJECT_SUBRESOURCES = {"acl": "Acl", "tagging": "Tagging", "retention": "Retention", "legal-hold": "LegalHold"}
_S3_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head"}


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    aws_host = req.host.endswith(_AWS_HOSTS)
    if not (pinned or aws_host or _signals_aws(req)):
        return None
    target = req.header("x-amz-target")
    scope = _scope_service(req)
    action = first(req.query, "Action")
    if action is None:  # the form decoded, as AWS does: `%41ction=` is `Action=` to it
        action = first(form_body(req), "Action")

    bucket = _bucket_from_host(req.host) if aws_host else None
    service = scope or (_host_service(req.host, bucket) if aws_host else None)
    if target:
        service = service or _target_service(target)
        return _json_protocol(req, service or "unknown", target)
    if action:
        return _query_protocol(req, service or "unknown", action)
    if service == "s3" or bucket is not None or (pinned and not aws_host):
        return _s3(req, bucket)
    # A REST-JSON API (Lambda, EKS, ...): we know the service, rarely the operation.
    operation = _REST_OPERATIONS.get((service, req.method, req.path.rstrip("/")))
    if operation:
        return Action(f"aws:{service}", verb_type(operation), operation)
    return Action(f"aws:{service or 'unknown'}", method_type(req.method), req.method.lower())


def verb_type(operation: str) -> str:
    verb = _VERB.match(operation)
    word = verb.group() if verb else ""
    if word in ("Batch", "Transact"):  # BatchGetItem reads, BatchDeleteImage deletes
        verb = _VERB.match(operation, len(word))
        word = verb.group() if verb else ""
    return _VERB_TYPES.get(word, "other")


def _signals_aws(req: RequestView) -> bool:
    # One pass over headers and query: this runs for every request nobody claimed yet,
    # so it must stay cheap.
    for name, value in req.headers:
        if name == "x-amz-target" or (name == "authorization" and value.startswith(_SIGV4)):
            return True
    for name, _ in req.query:
        if name == "Action" or name == "X-Amz-Credential":
            return True
    return b"Action=" in req.body and req.content_type == "application/x-www-form-urlencoded"


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


def _json_protocol(req: RequestView, service: str, target: str) -> Action:
    operation = target.rsplit(".", 1)[-1]
    tables: tuple[str, ...] = ()
    if service == "dynamodb":
        tables = _dynamodb_tables(json_body(req))
    return Action(
        service=f"aws:{service}",
        action_type=verb_type(operation),
        operation=operation,
        resource_type="table" if tables else None,
        resource_name=tables[0] if len(tables) == 1 else None,
        tables=tables,
    )


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


def _query_protocol(req: RequestView, service: str, operation: str) -> Action:
    params = list(req.query) + form_body(req)
    resource_type = resource_name = None
    for param, kind in _RESOURCE_PARAMS:
        # EC2 lists are numbered: InstanceId.1=i-a&InstanceId.2=i-b
        values = sorted(
            (int(k[len(param) + 1 :]) if k != param else 0, v)
            for k, v in params
            if k == param or (k.startswith(param + ".") and k[len(param) + 1 :].isdigit())
        )
        if values:
            resource_type, resource_name = kind, ",".join(v for _, v in values)
            break
    return Action(
        service=f"aws:{service}",
        action_type=verb_type(operation),
        operation=operation,
        resource_type=resource_type,
        resource_name=resource_name,
    )


def _s3(req: RequestView, bucket: str | None) -> Action:
    path = unquote(req.path)
    key = path.removeprefix("/")
    if bucket is None:  # path style: /bucket/key
        bucket, _, key = key.partition("/")
    keys = {k for k, _ in req.query}
    operation = _s3_object_operation(req, keys) if key else _s3_bucket_operation(req, keys, bucket)
    return Action(
        service="aws:s3",
        action_type=verb_type(operation) if operation[:1].isupper() else method_type(req.method),
        operation=operation,
        resource_type="object" if key else "bucket" if bucket else None,
        namespace=bucket or None,
        resource_name=key or bucket or None,
    )


def _s3_bucket_operation(req: RequestView, keys: set[str], bucket: str) -> str:
    method = req.method
    if not bucket:
        return "ListBuckets" if method == "GET" else method.lower()
    if method == "POST":
        return "DeleteObjects" if "delete" in keys else "PostObject"
    if method == "GET" and "versions" in keys:
        return "ListObjectVersions"
    if method == "GET" and "uploads" in keys:
        return "ListMultipartUploads"
    verb = _S3_VERBS.get(method)
    if verb is None:
        return method.lower()
    for sub in _BUCKET_SUBRESOURCES:
        if sub in keys:
            return f"{verb}Bucket{sub[0].upper()}{sub[1:]}"
    if method == "GET":
        return "ListObjectsV2" if first(req.query, "list-type") == "2" else "ListObjects"
    return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}[method]


def _s3_object_operation(req: RequestView, keys: set[str]) -> str:
    method = req.method
    if method == "POST":
        if "uploads" in keys:
            return "CreateMultipartUpload"
        if "uploadId" in keys:
            return "CompleteMultipartUpload"
        if "restore" in keys:
            return "RestoreObject"
        return "SelectObjectContent" if "select" in keys else "PostObject"
    if "uploadId" in keys:
        parts = {"GET": "ListParts", "PUT": "UploadPart", "DELETE": "AbortMultipartUpload"}
        return parts.get(method, method.lower())
    verb = _S3_VERBS.get(method)
    if verb is None:
        return method.lower()
    for sub, name in _OBJECT_SUBRESOURCES.items():
        if sub in keys:
            return f"{verb}Object{name}"
    if method == "PUT" and req.header("x-amz-copy-source"):
        return "CopyObject"
    return f"{verb}Object"
