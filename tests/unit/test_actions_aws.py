"""AWS: query protocol (Action=), JSON protocols (X-Amz-Target) and S3 REST."""

from __future__ import annotations

import json

import pytest

from shield_addon.actions import Action, parse, request_view
from shield_addon.actions.aws import verb_type

FORM = [("Content-Type", "application/x-www-form-urlencoded")]
AMZ_JSON = [("Content-Type", "application/x-amz-json-1.0")]


def sigv4(service: str) -> tuple[str, str]:
    scope = f"AKIDEXAMPLE/20260101/us-east-1/{service}/aws4_request"
    return ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature=abc")


def target(name: str, body: object, host: str = "dynamodb.us-east-1.amazonaws.com") -> Action:
    headers = [*AMZ_JSON, ("X-Amz-Target", name)]
    return parse(request_view("POST", f"https://{host}/", headers, json.dumps(body)))


def summary(action: Action) -> tuple[object, ...]:
    return (action.service, action.action_type, action.operation, action.resource_type, action.namespace, action.resource_name)


# --- query protocol ----------------------------------------------------------------------


def test_ec2_terminate_instances_in_a_form_body() -> None:
    body = "Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-0abc&InstanceId.2=i-0def"
    action = parse(request_view("POST", "https://ec2.us-east-1.amazonaws.com/", FORM, body))
    assert summary(action) == ("aws:ec2", "delete", "TerminateInstances", "instance", None, "i-0abc,i-0def")


def test_numbered_parameters_are_joined_in_numeric_order() -> None:
    body = "Action=StopInstances&InstanceId.10=i-10&InstanceId.2=i-2&InstanceId.1=i-1"
    action = parse(request_view("POST", "https://ec2.amazonaws.com/", FORM, body))
    assert (action.action_type, action.resource_name) == ("update", "i-1,i-2,i-10")


def test_action_in_the_query_string() -> None:
    action = parse(request_view("GET", "https://iam.amazonaws.com/?Action=DeleteUser&UserName=bob&Version=2010-05-08"))
    assert summary(action) == ("aws:iam", "delete", "DeleteUser", "user", None, "bob")


def test_service_comes_from_the_signed_credential_scope() -> None:
    # LocalStack and VPC endpoints: the host says nothing, the signature says sqs.
    body = "Action=PurgeQueue&QueueUrl=http://localhost:4566/000000000000/jobs"
    action = parse(request_view("POST", "http://localhost:4566/", [*FORM, sigv4("sqs")], body))
    assert summary(action)[:4] == ("aws:sqs", "delete", "PurgeQueue", "queue")


def test_credential_scope_wins_over_the_host() -> None:
    action = parse(request_view("GET", "https://vpce-1.ec2.us-east-1.vpce.amazonaws.com/?Action=DescribeInstances", [sigv4("ec2")]))
    assert (action.service, action.action_type) == ("aws:ec2", "read")


def test_action_parameter_outside_aws_is_still_read_as_aws() -> None:
    action = parse(request_view("GET", "https://legacy.example.com/api?Action=DeleteThing"))
    assert (action.service, action.action_type) == ("aws:unknown", "delete")


def test_lower_case_action_parameter_is_not_aws() -> None:
    assert parse(request_view("GET", "https://app.example.com/?action=delete")).service == "app.example.com"


# --- JSON protocols -------------------------------------------------------------------------


def test_dynamodb_delete_table_names_the_table() -> None:
    action = target("DynamoDB_20120810.DeleteTable", {"TableName": "orders"})
    assert summary(action) == ("aws:dynamodb", "delete", "DeleteTable", "table", None, "orders")
    assert action.tables == ("orders",)


def test_dynamodb_batch_write_names_every_table() -> None:
    body = {"RequestItems": {"orders": [{"DeleteRequest": {}}], "users": [{"PutRequest": {}}]}}
    action = target("DynamoDB_20120810.BatchWriteItem", body)
    assert (action.action_type, action.tables, action.resource_name) == ("update", ("orders", "users"), None)


def test_dynamodb_transact_write_names_every_table() -> None:
    body = {"TransactItems": [{"Delete": {"TableName": "a"}}, {"Put": {"TableName": "b"}}, "junk"]}
    assert target("DynamoDB_20120810.TransactWriteItems", body).tables == ("a", "b")


def test_batch_get_is_a_read() -> None:
    assert target("DynamoDB_20120810.BatchGetItem", {"RequestItems": {}}).action_type == "read"


def test_json_target_service_from_the_host() -> None:
    action = target("AmazonSQS.SendMessage", {"QueueUrl": "q"}, host="sqs.us-east-1.amazonaws.com")
    assert (action.service, action.action_type, action.operation) == ("aws:sqs", "execute", "SendMessage")


def test_json_target_service_from_the_target_when_nothing_else_says() -> None:
    action = target("DynamoDB_20120810.Scan", {"TableName": "t"}, host="localhost")
    assert (action.service, action.action_type, action.tables) == ("aws:dynamodb", "read", ("t",))


def test_dynamodb_body_that_is_not_json_names_no_table() -> None:
    headers = [*AMZ_JSON, ("X-Amz-Target", "DynamoDB_20120810.DeleteTable")]
    action = parse(request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/", headers, b"\xff{"))
    assert (action.operation, action.tables) == ("DeleteTable", ())


def test_rest_json_operation_comes_from_the_models_path_templates() -> None:
    action = parse(request_view("DELETE", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f"))
    assert (action.service, action.action_type, action.operation) == ("aws:lambda", "delete", "DeleteFunction")
    assert "aws:delete" in action.flags


def test_rest_path_no_template_matches_falls_back_to_the_method() -> None:
    action = parse(request_view("DELETE", "https://lambda.us-east-1.amazonaws.com/no/such/route"))
    assert (action.service, action.action_type, action.operation) == ("aws:lambda", "delete", "delete")


# --- service names and REST-JSON operations ------------------------------------------

SES = "https://email.us-east-1.amazonaws.com"
CLOUDWATCH = "https://monitoring.us-east-1.amazonaws.com/"


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "expected"),
    [
        # Hosts whose service signs under another name get that name, signed or not.
        ("POST", f"{SES}/", FORM, "Action=SendEmail", ("aws:ses", "execute", "SendEmail")),
        ("POST", f"{SES}/", [*FORM, sigv4("ses")], "Action=GetSendQuota", ("aws:ses", "read", "GetSendQuota")),
        ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse", [], "{}", ("aws:bedrock", "execute", "Converse")),
        # CloudWatch signs as "monitoring": renaming only unsigned requests would split it.
        ("POST", CLOUDWATCH, FORM, "Action=PutMetricData", ("aws:monitoring", "create", "PutMetricData")),
        ("POST", CLOUDWATCH, [*FORM, sigv4("monitoring")], "Action=ListMetrics", ("aws:monitoring", "read", "ListMetrics")),
        # SES v2 is REST-JSON: its operations are named from the path.
        ("POST", f"{SES}/v2/email/outbound-emails", [], "{}", ("aws:ses", "execute", "SendEmail")),
        ("POST", f"{SES}/v2/email/outbound-emails/", [sigv4("ses")], "{}", ("aws:ses", "execute", "SendEmail")),
        ("POST", "https://email.eu-west-1.amazonaws.com/v2/email/outbound-bulk-emails", [], "{}", ("aws:ses", "execute", "SendBulkEmail")),
        ("GET", f"{SES}/v2/email/account", [], "", ("aws:ses", "read", "GetAccount")),
        ("POST", f"{SES}/v2/email/templates", [], "{}", ("aws:ses", "create", "CreateEmailTemplate")),
    ],
)
def test_service_names_and_rest_json_operations(
    method: str, url: str, headers: list[tuple[str, str]], body: str, expected: tuple[str, str, str]
) -> None:
    action = parse(request_view(method, url, headers, body))
    assert (action.service, action.action_type, action.operation) == expected


# --- S3 ------------------------------------------------------------------------------------

BUCKET_HOST = "https://photos.s3.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("method", "url", "headers", "expected"),
    [
        ("GET", f"{BUCKET_HOST}/2024/cat.jpg", [], ("read", "GetObject", "object", "photos", "2024/cat.jpg")),
        ("HEAD", f"{BUCKET_HOST}/cat.jpg", [], ("read", "HeadObject", "object", "photos", "cat.jpg")),
        ("PUT", f"{BUCKET_HOST}/cat.jpg", [], ("create", "PutObject", "object", "photos", "cat.jpg")),
        ("PUT", f"{BUCKET_HOST}/copy.jpg", [("x-amz-copy-source", "/b/k")], ("create", "CopyObject", "object", "photos", "copy.jpg")),
        ("DELETE", f"{BUCKET_HOST}/cat.jpg", [], ("delete", "DeleteObject", "object", "photos", "cat.jpg")),
        ("DELETE", f"{BUCKET_HOST}/big.bin?uploadId=u1", [], ("delete", "AbortMultipartUpload", "object", "photos", "big.bin")),
        ("POST", f"{BUCKET_HOST}/big.bin?uploads", [], ("create", "CreateMultipartUpload", "object", "photos", "big.bin")),
        ("PUT", f"{BUCKET_HOST}/cat.jpg?tagging", [], ("create", "PutObjectTagging", "object", "photos", "cat.jpg")),
        ("GET", f"{BUCKET_HOST}/", [], ("read", "ListObjects", "bucket", "photos", "photos")),
        ("GET", f"{BUCKET_HOST}/?list-type=2&prefix=a", [], ("read", "ListObjectsV2", "bucket", "photos", "photos")),
        ("GET", f"{BUCKET_HOST}/?versions", [], ("read", "ListObjectVersions", "bucket", "photos", "photos")),
        ("PUT", f"{BUCKET_HOST}/", [], ("create", "CreateBucket", "bucket", "photos", "photos")),
        ("DELETE", f"{BUCKET_HOST}/", [], ("delete", "DeleteBucket", "bucket", "photos", "photos")),
        ("POST", f"{BUCKET_HOST}/?delete", [], ("delete", "DeleteObjects", "bucket", "photos", "photos")),
        ("PUT", f"{BUCKET_HOST}/?policy", [], ("create", "PutBucketPolicy", "bucket", "photos", "photos")),
        ("DELETE", f"{BUCKET_HOST}/?publicAccessBlock", [], ("delete", "DeletePublicAccessBlock", "bucket", "photos", "photos")),
        ("GET", "https://s3.amazonaws.com/", [], ("read", "ListBuckets", None, None, None)),
    ],
)
def test_s3_operations(method: str, url: str, headers: list[tuple[str, str]], expected: tuple[object, ...]) -> None:
    action = parse(request_view(method, url, headers))
    assert action.service == "aws:s3"
    assert summary(action)[1:] == expected


def test_s3_path_style() -> None:
    action = parse(request_view("DELETE", "https://s3.us-west-2.amazonaws.com/backups/2024/db.dump"))
    assert summary(action) == ("aws:s3", "delete", "DeleteObject", "object", "backups", "2024/db.dump")


def test_s3_legacy_regional_path_style() -> None:
    action = parse(request_view("DELETE", "https://s3-eu-west-1.amazonaws.com/backups/"))
    assert summary(action)[2:] == ("DeleteBucket", "bucket", "backups", "backups")


def test_s3_bucket_names_may_contain_dots_and_s3_labels() -> None:
    action = parse(request_view("GET", "https://logs.s3-archive.example.s3.amazonaws.com/k"))
    assert (action.namespace, action.resource_name) == ("logs.s3-archive.example", "k")


def test_s3_key_is_percent_decoded() -> None:
    assert parse(request_view("GET", f"{BUCKET_HOST}/a%20b/c%2Bd.txt")).resource_name == "a b/c+d.txt"


def test_s3_compatible_store_recognised_by_its_signature() -> None:
    action = parse(request_view("DELETE", "https://acct.r2.cloudflarestorage.com/bucket/key", [sigv4("s3")]))
    assert summary(action) == ("aws:s3", "delete", "DeleteObject", "object", "bucket", "key")


def test_s3_presigned_url_recognised_by_its_credential_parameter() -> None:
    url = f"{BUCKET_HOST}/cat.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    assert parse(request_view("GET", url)).operation == "GetObject"


def test_s3_compatible_store_pinned_to_aws_is_path_style_s3() -> None:
    action = parse(request_view("PUT", "http://minio.local:9000/backups/db.dump"), {"aws": ["minio.local"]})
    assert summary(action) == ("aws:s3", "create", "PutObject", "object", "backups", "db.dump")


@pytest.mark.parametrize(
    ("operation", "action_type"),
    [
        ("TerminateInstances", "delete"),
        ("DeregisterImage", "delete"),
        ("RevokeSecurityGroupIngress", "delete"),
        ("DetachVolume", "delete"),
        ("RunInstances", "create"),
        ("PutObject", "create"),
        ("AttachRolePolicy", "create"),
        ("ImportKeyPair", "create"),
        ("ModifyDBInstance", "update"),
        ("RebootInstances", "update"),
        ("StartInstances", "update"),
        ("UntagResource", "update"),
        ("AssociateAddress", "update"),
        ("DescribeInstances", "read"),
        ("ListBuckets", "read"),
        ("HeadObject", "read"),
        ("Query", "read"),
        ("BatchGetItem", "read"),
        ("BatchDeleteImage", "delete"),
        ("TransactWriteItems", "update"),
        ("SimulatePrincipalPolicy", "read"),
        ("SimulateCustomPolicy", "read"),
        ("GenerateCredentialReport", "read"),
        ("GenerateServiceLastAccessedDetails", "read"),
        ("DeactivateMFADevice", "update"),  # reversible, like Disable: not a delete
        ("ResetServiceSpecificCredential", "update"),
        ("Invoke", "execute"),
        ("SendCommand", "execute"),
        ("Publish", "execute"),
        ("AssumeRole", "execute"),  # new credentials: runs with another identity
        ("AdminDeleteUser", "delete"),
        ("Frobnicate", "other"),
        ("", "other"),
        ("deleteThing", "other"),
    ],
)
def test_verb_prefix_decides_the_action_type(operation: str, action_type: str) -> None:
    assert verb_type(operation) == action_type
