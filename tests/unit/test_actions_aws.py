"""AWS: every protocol, operations from the botocore catalogue, families for rules."""

from __future__ import annotations

import json
import runpy
import time
from pathlib import Path

import pytest

from shield_addon.actions import Action, aws_catalogue, parse, parse_all, request_view
from shield_addon.actions.aws import verb_type
from shield_addon.actions.aws_families import classify, known_verb, param_families

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


# --- the catalogue (botocore's models, generated by scripts/aws_catalogue.py) -------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_catalogue_covers_every_service_and_operation_botocore_knows() -> None:
    cat = aws_catalogue.catalogue()
    operations = sum(len(s.operations) for s in cat.services.values())
    # botocore 1.44.18: 455 services, 20,730 operations
    assert len(cat.services) > 300 and operations > 10_000
    assert {"s3", "ec2", "iam", "kms", "route53", "cloudtrail", "dynamodb", "lambda", "sesv2"} <= set(cat.services)
    assert cat.botocore.count(".") == 2


def test_every_operation_has_a_known_verb_and_so_a_type() -> None:
    cat = aws_catalogue.catalogue()
    unknown = [f"{n}.{o}" for n, s in cat.services.items() for o in s.operations if not known_verb(o)]
    assert unknown == [], "new verbs: add them to _VERBS_BY_TYPE in aws_families.py"
    types = {classify(n, o)[0] for n, s in cat.services.items() for o in s.operations}
    assert types == {"read", "create", "update", "delete", "execute"}


@pytest.mark.parametrize(
    ("service", "operation", "action_type", "families"),
    [
        ("kms", "ScheduleKeyDeletion", "delete", {"schedule_deletion", "delete"}),
        ("secretsmanager", "DeleteSecret", "delete", {"schedule_deletion", "delete"}),
        ("cloudtrail", "StopLogging", "update", {"stop", "logging_off"}),
        ("cloudtrail", "DeleteTrail", "delete", {"delete", "logging_off"}),
        ("cloudtrail", "UpdateTrail", "update", {"logging_off"}),
        ("cloudtrail", "PutEventSelectors", "update", {"logging_off"}),
        ("guardduty", "DeleteDetector", "delete", {"delete", "logging_off"}),
        ("guardduty", "DisassociateMembers", "update", {"logging_off"}),
        ("config", "StopConfigurationRecorder", "update", {"stop", "logging_off"}),
        ("ec2", "DeleteFlowLogs", "delete", {"delete", "logging_off"}),
        ("s3", "PutBucketLogging", "create", {"logging_off"}),
        ("s3", "PutBucketPolicy", "create", {"permission"}),
        ("s3", "PutBucketAcl", "create", {"permission"}),
        ("s3", "PutBucketLifecycleConfiguration", "create", set()),  # the rules decide: param_families
        ("iam", "CreateAccessKey", "create", {"permission"}),
        ("iam", "UpdateAssumeRolePolicy", "update", {"permission"}),
        ("lambda", "AddPermission", "create", {"permission"}),
        ("cognito-identity", "SetIdentityPoolRoles", "update", {"permission"}),
        ("ec2", "ModifySnapshotAttribute", "update", {"permission"}),
        ("ec2", "AuthorizeSecurityGroupIngress", "create", {"permission"}),
        ("dynamodb", "UpdateTimeToLive", "update", {"data_loss"}),
        ("rds", "BacktrackDBCluster", "update", {"data_loss"}),
        ("ec2", "TerminateInstances", "delete", {"terminate"}),
        ("kms", "DisableKey", "update", {"disable"}),
        ("sqs", "DeleteMessage", "delete", {"delete", "ack"}),
        # benign twins: no family
        ("ec2", "DescribeInstances", "read", set()),
        ("kms", "ListKeys", "read", set()),
        ("s3", "GetObject", "read", set()),
        ("dynamodb", "Query", "read", set()),
        ("logs", "PutLogEvents", "create", set()),
        ("autoscaling", "PutScalingPolicy", "create", set()),
        ("cloudtrail", "CreateTrail", "create", set()),
        ("ec2", "RunInstances", "create", set()),
    ],
)
def test_classification_of_a_sample(service: str, operation: str, action_type: str, families: set[str]) -> None:
    assert operation in aws_catalogue.catalogue().services[service].operations  # a real operation
    assert classify(service, operation) == (action_type, frozenset(families))


@pytest.mark.parametrize(
    ("operation", "params", "body", "expected"),
    [
        ("ModifyDBInstance", [("BackupRetentionPeriod", "0")], "", {"data_loss"}),
        ("ModifyDBInstance", [("BackupRetentionPeriod", "0.0")], "", {"data_loss"}),  # a number, not a string
        ("ModifyDBInstance", [("BackupRetentionPeriod", "00")], "", {"data_loss"}),
        ("ModifyDBInstance", [("BackupRetentionPeriod", "7")], "", set()),
        ("ModifyDBInstance", [("DeletionProtection", "False")], "", {"protection_off"}),
        ("UpdateTable", [("DeletionProtectionEnabled", "false")], "", {"protection_off"}),
        ("ModifyInstanceAttribute", [("DisableApiTermination.Value", "false")], "", {"protection_off"}),
        ("ModifyInstanceAttribute", [("DisableApiTermination.Value", "true")], "", set()),
        ("ModifyImageAttribute", [("LaunchPermission.Add.1.Group", "all")], "", {"public"}),
        ("ModifyDBSnapshotAttribute", [("ValuesToAdd.member.1", "all")], "", {"public"}),
        ("ChangeResourceRecordSets", [], "<Change><Action>DELETE</Action></Change>", {"data_loss"}),
        ("ChangeResourceRecordSets", [], "<Change><r:Action> upsert </r:Action></Change>", {"data_loss"}),
        ("ChangeResourceRecordSets", [], "<Change><Action>&#68;ELETE</Action></Change>", {"data_loss"}),
        ("ChangeResourceRecordSets", [], "not xml at all", {"data_loss"}),
        ("ChangeResourceRecordSets", [], "<Change><Action>CREATE</Action></Change>", set()),
        ("PutBucketVersioning", [], "<VersioningConfiguration><Status>Suspended</Status>", {"data_loss"}),
        ("PutBucketPolicy", [], '{"Statement":[{"Principal":{"AWS":["*"]}}]}', {"public"}),
        ("AddPermission", [], '{"Principal": "*", "Action": "lambda:InvokeFunction"}', {"public"}),
        # Route 53: only CREATE and UPSERT lose nothing; XML read as the server reads it
        ("ChangeResourceRecordSets", [], "<Changes><Change><Action>UPSERT</Action></Change></Changes>", set()),
        ("ChangeResourceRecordSets", [], "<C><Change><Action>CREATE</Action></Change>"
                                         "<Change><Action>UPSERT</Action></Change></C>", set()),
        ("ChangeResourceRecordSets", [], "<C><Change><Action>UPSERT</Action></Change>"
                                         "<Change><Action><![CDATA[DELETE]]></Action></Change></C>", {"data_loss"}),
        ("ChangeResourceRecordSets", [], "<Changes/>", {"data_loss"}),
        # S3 lifecycle: expiry loses data, aborting uploads and transitions do not
        ("PutBucketLifecycleConfiguration", [], "<LifecycleConfiguration><Rule><ID>expire-mpu</ID>"
         "<AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation>"
         "</AbortIncompleteMultipartUpload></Rule></LifecycleConfiguration>", set()),
        ("PutBucketLifecycleConfiguration", [], "<LifecycleConfiguration><Rule><Transition><Days>30</Days>"
         "<StorageClass>GLACIER</StorageClass></Transition></Rule></LifecycleConfiguration>", set()),
        ("PutBucketLifecycleConfiguration", [], "<LifecycleConfiguration xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
         "<Rule><NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>"
         "</Rule></LifecycleConfiguration>", {"data_loss"}),
        ("PutBucketLifecycleConfiguration", [], "<!DOCTYPE l [<!ENTITY e 'x'>]><LifecycleConfiguration/>", {"data_loss"}),
        ("PutBucketLifecycleConfiguration", [], "", {"data_loss"}),
        ("PutBucketLifecycleConfiguration", [], "<Other/>", {"data_loss"}),
        # other services' lifecycles: read as text, expiry words or no body mean loss
        ("PutLifecycleConfiguration", [], '{"LifecyclePolicies":[{"TransitionToIA":"AFTER_30_DAYS"}]}', set()),
        ("PutLifecyclePolicy", [], '{"lifecyclePolicyText":"{\\"rules\\":[{\\"action\\":{\\"type\\":\\"expire\\"}}]}"}',
         {"data_loss"}),
        ("PutLifecyclePolicy", [], "", {"data_loss"}),
        # scaled or throttled to zero, by value; a floor of 0 or a new empty group is not
        ("SetDesiredCapacity", [("DesiredCapacity", "0")], "", {"stop", "scale_zero"}),
        ("UpdateAutoScalingGroup", [("MaxSize", "-0.0")], "", {"stop", "scale_zero"}),
        ("UpdateAutoScalingGroup", [("MinSize", "0"), ("DesiredCapacity", "3")], "", set()),
        ("CreateAutoScalingGroup", [("MaxSize", "0")], "", set()),
        # logging off as a parameter; named Key/Value pairs read as one setting
        ("ModifyLoadBalancerAttributes", [("Attributes.member.1.Key", "access_logs.s3.enabled"),
                                          ("Attributes.member.1.Value", "false")], "", {"logging_off"}),
        ("ModifyLoadBalancerAttributes", [("Attributes.member.1.Key", "access_logs.s3.enabled"),
                                          ("Attributes.member.1.Value", "true")], "", set()),
        ("ModifyLoadBalancerAttributes", [("Attributes.member.1.Key", "deletion_protection.enabled"),
                                          ("Attributes.member.1.Value", "false")], "", {"protection_off"}),
        ("ModifyDBCluster", [("CloudwatchLogsExportConfiguration.DisableLogTypes.member.1", "audit")], "",
         {"logging_off"}),
        ("ModifyDBCluster", [("CloudwatchLogsExportConfiguration.EnableLogTypes.member.1", "audit")], "", set()),
        ("CreateTags", [("Tag.1.Key", "logging"), ("Tag.1.Value", "false")], "", set()),  # a label, not a setting
        # public
        ("PutPublicAccessBlock", [], "<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
         "<BlockPublicPolicy>false</BlockPublicPolicy></PublicAccessBlockConfiguration>", {"public"}),
        ("PutPublicAccessBlock", [], "<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
         "<BlockPublicPolicy>TRUE</BlockPublicPolicy></PublicAccessBlockConfiguration>", set()),
        ("PutBucketPolicy", [], '{"Statement":[{"Principal":{"AWS":["arn:aws:iam::1:root","*"]}}]}', {"public"}),
        ("PutBucketPolicy", [], '{"Statement":[{"Principal":{"AWS":"arn:aws:iam::*:root"}}]}', {"public"}),
        ("PutBucketPolicy", [], '{"Statement":[{"Principal":{"AWS":"arn:aws:iam::123456789012:root"}}]}', set()),
        ("PutKeyPolicy", [], '{"Policy":"{\\"Statement\\":[{\\"Principal\\":{\\"AWS\\":\\"\\\\u002a\\"}}]}"}',
         {"public"}),
    ],
)
def test_families_that_depend_on_the_request(
    operation: str, params: list[tuple[str, str]], body: str, expected: set[str]
) -> None:
    decoded = json.loads(body) if body.startswith("{") else None  # as aws.py passes it
    assert param_families(operation, params, body, decoded) == expected


# --- every protocol, every spelling --------------------------------------------------------

EC2 = "https://ec2.us-east-1.amazonaws.com/"


def test_a_percent_encoded_action_key_is_the_action_key() -> None:
    action = parse(request_view("POST", EC2, FORM, "%41ction=TerminateInstances&InstanceId.1=i-1"))
    assert (action.operation, action.action_type, "aws:terminate" in action.flags) == ("TerminateInstances", "delete", True)


def test_a_percent_encoded_action_key_is_seen_off_aws_hosts_too() -> None:
    action = parse(request_view("POST", "http://localhost:4566/", FORM, "%41ction=DeleteTrail&Name=t"))
    assert (action.operation, "aws:logging_off" in action.flags) == ("DeleteTrail", True)


def test_an_aws_host_reads_a_form_whatever_its_content_type() -> None:
    headers = [("Content-Type", "text/plain"), sigv4("ec2")]
    action = parse(request_view("POST", EC2, headers, "Action=TerminateInstances&InstanceId.1=i-1"))
    assert action.operation == "TerminateInstances"


@pytest.mark.parametrize("body", ["Action=DescribeInstances&Action=TerminateInstances",
                                  "Action=TerminateInstances&Action=DescribeInstances"])
def test_a_duplicated_action_is_judged_in_its_worst_reading(body: str) -> None:
    action = parse(request_view("POST", EC2, [*FORM, sigv4("ec2")], body))
    assert (action.operation, action.action_type) == ("TerminateInstances", "delete")
    assert {"aws:terminate", "aws:ambiguous"} <= action.flags


def test_action_in_the_query_string_and_the_body_are_both_read() -> None:
    action = parse(request_view("POST", f"{EC2}?Action=DescribeInstances", FORM, "Action=DeleteVolume&VolumeId=v-1"))
    assert (action.operation, "aws:delete" in action.flags) == ("DeleteVolume", True)


def test_json_protocol_with_a_long_target_prefix() -> None:
    action = target("com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.StopLogging", {"Name": "t"},
                    host="cloudtrail.us-east-1.amazonaws.com")
    assert (action.service, action.operation) == ("aws:cloudtrail", "StopLogging")
    assert {"aws:stop", "aws:logging_off"} <= action.flags


def test_json_protocol_families_read_booleans_and_numbers_as_the_server_does() -> None:
    action = target("DynamoDB_20120810.UpdateTable", {"TableName": "t", "DeletionProtectionEnabled": False})
    assert "aws:protection_off" in action.flags


def test_rpc_v2_cbor_operation_comes_from_the_path() -> None:
    url = "https://monitoring.us-east-1.amazonaws.com/service/GraniteServiceVersion20100801/operation/DeleteAlarms"
    headers = [("smithy-protocol", "rpc-v2-cbor"), ("Content-Type", "application/cbor"), sigv4("monitoring")]
    action = parse(request_view("POST", url, headers, b"\xa0"))
    assert (action.service, action.operation, action.action_type) == ("aws:monitoring", "DeleteAlarms", "delete")
    assert {"aws:delete", "aws:logging_off"} <= action.flags


@pytest.mark.parametrize(
    ("method", "url", "operation", "flag"),
    [
        ("POST", "https://route53.amazonaws.com/2013-04-01/hostedzone/Z1/rrset/", "ChangeResourceRecordSets", "aws:data_loss"),
        ("POST", "https://route53.amazonaws.com/2013-04-01/hostedzone/Z1/rrset", "ChangeResourceRecordSets", "aws:data_loss"),
        ("POST", "https://route53.amazonaws.com//2013-04-01/%68ostedzone/Z1/rrset/", "ChangeResourceRecordSets", "aws:data_loss"),
        ("DELETE", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/f", "DeleteFunction", "aws:delete"),
        ("PUT", "https://b.s3.amazonaws.com/?lifecycle", "PutBucketLifecycleConfiguration", "aws:data_loss"),
        ("PUT", "https://s3.amazonaws.com/b?lifecycle", "PutBucketLifecycleConfiguration", "aws:data_loss"),
        ("PUT", "https://b.s3.amazonaws.com/?logging", "PutBucketLogging", "aws:logging_off"),
        ("PUT", "https://b.s3.amazonaws.com/?acl", "PutBucketAcl", "aws:permission"),
        ("DELETE", "https://b.s3.amazonaws.com/k?uploadId=u", "AbortMultipartUpload", "aws:delete"),
    ],
)
def test_rest_operations_from_path_templates(method: str, url: str, operation: str, flag: str) -> None:
    host = url.split("/")[2]
    service = "s3" if "s3" in host else host.split(".")[0]
    action = parse(request_view(method, url, [sigv4(service)], "<x/>"))
    assert (action.operation, flag in action.flags) == (operation, True)


def test_s3_public_canned_acl_on_an_upload_is_public() -> None:
    action = parse(request_view("PUT", f"{BUCKET_HOST}/cat.jpg", [("x-amz-acl", "public-read")], b"jpg"))
    assert (action.operation, "aws:public" in action.flags) == ("PutObject", True)


def test_path_matching_stays_cheap() -> None:
    req = request_view("POST", "https://route53.amazonaws.com/2013-04-01/hostedzone/Z1/rrset/", [sigv4("route53")], "<a/>")
    parse(req)  # load the catalogue and this service's templates
    start = time.perf_counter()
    for _ in range(200):
        parse(req)
    per_call = (time.perf_counter() - start) / 200
    assert per_call < 0.001  # ~tens of µs in practice; generous for a loaded CI machine


# --- the generator -----------------------------------------------------------------------


def test_the_generator_reproduces_the_committed_file(tmp_path: Path) -> None:
    botocore = pytest.importorskip("botocore")
    committed = ROOT / "shield_addon" / "actions" / aws_catalogue.DATA
    recorded = aws_catalogue.load(committed.read_bytes()).botocore
    if botocore.__version__ != recorded:
        pytest.skip(f"botocore {botocore.__version__} installed, the file records {recorded}: regenerate to compare")
    script = runpy.run_path(str(ROOT / "scripts" / "aws_catalogue.py"))
    out = tmp_path / "out.json.gz"
    script["write"](script["build"](), out)
    assert out.read_bytes() == committed.read_bytes()


# --- red team, wave 2: spellings of the same call -------------------------------------------


def sigv4a(service: str) -> tuple[str, str]:
    scope = f"AKIDEXAMPLE/20260101/{service}/aws4_request"  # SigV4a: no region
    return ("Authorization", f"AWS4-ECDSA-P256-SHA256 Credential={scope}, SignedHeaders=host, Signature=abc")


def test_sigv4a_names_the_service_on_any_host() -> None:
    action = parse(request_view("PUT", "https://files.corp.example/b?lifecycle", [sigv4a("s3")], "<x/>"))
    assert (action.service, action.operation, "aws:data_loss" in action.flags) == (
        "aws:s3", "PutBucketLifecycleConfiguration", True)


def test_a_presigned_sigv4a_url_names_the_service() -> None:
    url = ("https://files.corp.example/b/k?X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256"
           "&X-Amz-Credential=AKID%2F20260101%2Fs3%2Faws4_request&X-Amz-Signature=abc")
    assert parse(request_view("DELETE", url)).operation == "DeleteObject"


@pytest.mark.parametrize("spelling", ["terminateinstances", "TERMINATEINSTANCES", " TerminateInstances "])
def test_an_operation_in_another_case_is_the_models_operation(spelling: str) -> None:
    action = parse(request_view("POST", EC2, [*FORM, sigv4("ec2")], f"Action={spelling}&InstanceId.1=i-1"))
    assert (action.operation, "aws:terminate" in action.flags) == ("TerminateInstances", True)


def test_a_json_target_in_another_case_is_the_models_operation() -> None:
    action = target("DynamoDB_20120810.deletetable", {"TableName": "orders"})
    assert (action.operation, action.action_type) == ("DeleteTable", "delete")


@pytest.mark.parametrize("url, scope", [
    ("https://123456789012.s3-control.us-east-1.amazonaws.com/v20180820/configuration/publicAccessBlock", "s3"),
    ("https://s3-outposts.us-east-1.amazonaws.com/v20180820/configuration/publicAccessBlock", "s3-outposts"),
])
def test_s3_control_is_read_as_s3_control_though_it_signs_as_s3(url: str, scope: str) -> None:
    action = parse(request_view("DELETE", url, [sigv4(scope), ("x-amz-account-id", "123456789012")]))
    assert (action.service, action.operation) == ("aws:s3control", "DeletePublicAccessBlock")


@pytest.mark.parametrize("scope", ["s3express", "s3-object-lambda"])
def test_s3_front_doors_read_the_object_api(scope: str) -> None:
    action = parse(request_view("DELETE", "https://s3express-control.us-east-1.amazonaws.com/logs--use1-az4--x-s3",
                                [sigv4(scope)]))
    assert (action.service, action.operation) == ("aws:s3", "DeleteBucket")


def test_a_fully_qualified_host_is_the_same_host() -> None:
    action = parse(request_view("DELETE", "https://b.s3.us-east-1.amazonaws.com./k", [sigv4("s3")]))
    assert (action.namespace, action.operation) == ("b", "DeleteObject")


def test_nested_json_parameters_are_read_at_any_depth() -> None:
    url = "https://eks.us-east-1.amazonaws.com/clusters/prod/node-groups/workers/update-config"
    body = json.dumps({"scalingConfig": {"minSize": 0, "maxSize": 1, "desiredSize": 0.0}})
    action = parse(request_view("POST", url, [("Content-Type", "application/json"), sigv4("eks")], body))
    assert (action.operation, {"aws:stop", "aws:scale_zero"} <= action.flags) == ("UpdateNodegroupConfig", True)


def test_customer_data_in_a_body_is_not_read_as_settings() -> None:
    item = {"TableName": "t", "Item": {"status": {"S": "disabled"}, "desiredCount": {"N": "0"}}}
    assert target("DynamoDB_20120810.PutItem", item).flags == frozenset()


def test_a_request_no_template_matches_is_still_judged_by_its_parameters() -> None:
    url = "https://guardduty.us-east-1.amazonaws.com/detector/d1/update"  # no such route
    action = parse(request_view("POST", url, [("Content-Type", "application/json"), sigv4("guardduty")],
                                json.dumps({"enable": False})))
    assert (action.operation, "aws:logging_off" in action.flags) == ("post", True)


def test_a_json_patch_removing_access_logs_turns_logging_off() -> None:
    url = "https://apigateway.us-east-1.amazonaws.com/restapis/a1/stages/prod"
    body = json.dumps({"patchOperations": [{"op": "remove", "path": "/accessLogSettings"}]})
    action = parse(request_view("PATCH", url, [("Content-Type", "application/json"), sigv4("apigateway")], body))
    assert (action.operation, "aws:logging_off" in action.flags) == ("UpdateStage", True)


def test_a_large_json_body_stays_cheap() -> None:
    items = [{"PutRequest": {"Item": {"id": {"S": str(i)}, "v": {"S": "x" * 20}}}} for i in range(3000)]
    body = json.dumps({"RequestItems": {"t": items}, "ReturnConsumedCapacity": "NONE"})
    assert len(body) > 200_000
    req = request_view("POST", "https://dynamodb.us-east-1.amazonaws.com/",
                       [*AMZ_JSON, ("X-Amz-Target", "DynamoDB_20120810.BatchWriteItem"), sigv4("dynamodb")], body)
    parse(req)
    start = time.perf_counter()
    for _ in range(5):
        parse(req)
    assert (time.perf_counter() - start) / 5 < 0.02  # generous for a loaded CI machine


# --- deletes carried in the body: DynamoDB batches, run-command APIs ----------------------

def aws_flags(name: str, body: object, host: str = "dynamodb.us-east-1.amazonaws.com") -> frozenset[str]:
    """The AWS parser's flags (the SQL parser also reads a PartiQL body, and parse() may answer with it)."""
    headers = [*AMZ_JSON, ("X-Amz-Target", name)]
    found = parse_all(request_view("POST", f"https://{host}/", headers, json.dumps(body)))
    return next(a for a in found if a.service.startswith("aws:")).flags


@pytest.mark.parametrize(
    ("name", "body", "deletes"),
    [
        ("DynamoDB_20120810.BatchWriteItem", {"RequestItems": {"t": [{"DeleteRequest": {"Key": {"id": {"S": "1"}}}}]}}, True),
        ("DynamoDB_20120810.BatchWriteItem", {"RequestItems": {"t": [{"PutRequest": {"Item": {"id": {"S": "1"}}}}]}}, False),
        ("DynamoDB_20120810.TransactWriteItems", {"TransactItems": [{"Put": {}}, {"Delete": {"TableName": "t"}}]}, True),
        ("DynamoDB_20120810.TransactWriteItems", {"TransactItems": [{"Update": {"TableName": "t"}}]}, False),
        ("DynamoDB_20120810.ExecuteStatement", {"Statement": " /* x */ delete FROM \"t\" WHERE id = '1'"}, True),
        ("DynamoDB_20120810.ExecuteStatement", {"Statement": "SELECT * FROM \"t\" WHERE s = 'delete'"}, False),
        ("DynamoDB_20120810.BatchExecuteStatement", {"Statements": [{"Statement": "INSERT INTO t VALUE {'a': 1}"},
                                                                   {"Statement": "DELETE FROM t WHERE id = '1'"}]}, True),
        ("DynamoDB_20120810.ExecuteTransaction", {"TransactStatements": [{"Statement": "DELETE FROM t WHERE id = 1"}]}, True),
    ],
)
def test_dynamodb_batch_and_transaction_deletes_are_the_delete_family(name: str, body: object, deletes: bool) -> None:
    assert ("aws:delete" in aws_flags(name, body)) is deletes


@pytest.mark.parametrize(
    ("commands", "deletes"),
    [(["rm -rf /var/lib/postgresql"], True), (["df -h", "ls -la /var/log"], False), ("shred -u /etc/ssl/key.pem", True)],
)
def test_ssm_run_command_is_read_as_a_shell(commands: object, deletes: bool) -> None:
    body = {"DocumentName": "AWS-RunShellScript", "InstanceIds": ["i-1"], "Parameters": {"commands": commands}}
    assert ("aws:delete" in aws_flags("AmazonSSM.SendCommand", body, host="ssm.us-east-1.amazonaws.com")) is deletes


def test_ecs_exec_command_is_read_as_a_shell() -> None:
    body = {"cluster": "prod", "task": "t1", "command": "rm -rf /data", "interactive": True}
    assert "aws:delete" in aws_flags("AmazonEC2ContainerServiceV20141113.ExecuteCommand", body,
                                    host="ecs.us-east-1.amazonaws.com")


def query_flags(body: str, service: str = "ec2") -> frozenset[str]:
    headers = [sigv4(service), ("Content-Type", "application/x-www-form-urlencoded")]
    return parse(request_view("POST", f"https://{service}.us-east-1.amazonaws.com/", headers, body)).flags


@pytest.mark.parametrize(
    ("service", "body", "public"),
    [
        ("rds", "Action=ModifyDBInstance&DBInstanceIdentifier=p&PubliclyAccessible=true", True),
        ("rds", "Action=ModifyDBInstance&DBInstanceIdentifier=p&PubliclyAccessible=false", False),
        ("rds", "Action=DescribeDBInstances&PubliclyAccessible=true", False),
        ("redshift", "Action=ModifyCluster&ClusterIdentifier=p&PubliclyAccessible=true", True),
        ("ec2", "Action=ModifySecurityGroupRules&GroupId=sg-1&SecurityGroupRule.1.SecurityGroupRule.CidrIpv4=0.0.0.0/0", True),
        ("ec2", "Action=ModifySecurityGroupRules&GroupId=sg-1&SecurityGroupRule.1.SecurityGroupRule.CidrIpv4=10.0.0.0/8", False),
        ("ec2", "Action=AuthorizeSecurityGroupEgress&GroupId=sg-1&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0", False),
    ],
)
def test_opening_to_the_internet_is_public(service: str, body: str, public: bool) -> None:
    assert ("aws:public" in query_flags(body, service)) is public


def test_flat_disable_api_termination_is_protection_off() -> None:
    body = "Action=ModifyInstanceAttribute&InstanceId=i-1&Attribute=disableApiTermination&Value=false"
    assert "aws:protection_off" in query_flags(body)
    assert "aws:protection_off" not in query_flags(body.replace("=false", "=true"))


def test_s3_governance_bypass_header_is_protection_off() -> None:
    headers = [sigv4("s3"), ("x-amz-bypass-governance-retention", "true"), ("Content-Type", "application/xml")]
    body = "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-06T00:00:00Z</RetainUntilDate></Retention>"
    action = parse(request_view("PUT", "https://b.s3.us-east-1.amazonaws.com/k?retention", headers, body))
    assert "aws:protection_off" in action.flags


@pytest.mark.parametrize(
    "body",
    [
        "Action=CreateRoute&RouteTableId=rtb-1&DestinationCidrBlock=0.0.0.0/0&GatewayId=igw-1",
        "Action=CreateNetworkAclEntry&NetworkAclId=acl-1&RuleNumber=100&Protocol=-1&RuleAction=deny&CidrBlock=0.0.0.0/0",
    ],
)
def test_a_default_route_or_acl_entry_is_not_public(body: str) -> None:
    assert "aws:public" not in query_flags(body)


# --- logging or sending turned off inside a full config ----------------------------------

CF_URL = "https://cloudfront.amazonaws.com/2020-05-31/distribution/E2Q/config"


def cloudfront_config(enabled: str, logging: str | None) -> str:
    log = "" if logging is None else f"<Logging><Enabled>{logging}</Enabled><Bucket>b</Bucket></Logging>"
    return (f'<DistributionConfig xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">'
            f"<CallerReference>x</CallerReference><Enabled>{enabled}</Enabled>{log}</DistributionConfig>")


@pytest.mark.parametrize(("enabled", "logging", "flags"), [
    ("true", "false", {"aws:logging_off"}),
    ("false", "true", {"aws:stop"}),
    ("true", "true", set()),
    ("true", None, set()),  # no Logging element: not flagged (see _cloudfront_off)
])
def test_cloudfront_update_distribution_reads_the_whole_config(enabled: str, logging: str | None, flags: set[str]) -> None:
    action = parse(request_view("PUT", CF_URL, [sigv4("cloudfront"), ("Content-Type", "text/xml")],
                                cloudfront_config(enabled, logging)))
    assert action.operation == "UpdateDistribution"
    assert {f for f in action.flags if f in ("aws:logging_off", "aws:stop")} == flags


@pytest.mark.parametrize(("operation", "value", "stopped"), [
    ("UpdateAccountSendingEnabled", "false", True),
    ("UpdateConfigurationSetSendingEnabled", "false", True),
    ("UpdateAccountSendingEnabled", "true", False),
])
def test_ses_sending_switched_off_is_a_stop(operation: str, value: str, stopped: bool) -> None:
    body = f"Action={operation}&Version=2010-12-01&ConfigurationSetName=t&Enabled={value}"
    action = parse(request_view("POST", "https://email.us-east-1.amazonaws.com/", [*FORM, sigv4("ses")], body))
    assert action.operation == operation
    assert ("aws:stop" in action.flags) is stopped


@pytest.mark.parametrize("path", ["/v2/email/account/sending", "/v2/email/configuration-sets/t/sending"])
def test_sesv2_sending_enabled_false_is_a_stop(path: str) -> None:
    headers = [("Content-Type", "application/json"), sigv4("ses")]
    off = parse(request_view("PUT", f"https://email.us-east-1.amazonaws.com{path}", headers, '{"SendingEnabled": false}'))
    on = parse(request_view("PUT", f"https://email.us-east-1.amazonaws.com{path}", headers, '{"SendingEnabled": true}'))
    assert ("aws:stop" in off.flags, "aws:stop" in on.flags) == (True, False)


def test_a_pinpoint_channel_switched_off_is_a_stop() -> None:
    headers = [("Content-Type", "application/json"), sigv4("mobiletargeting")]
    url = "https://pinpoint.us-east-1.amazonaws.com/v1/apps/abc/channels/sms"
    assert "aws:stop" in parse(request_view("PUT", url, headers, '{"Enabled": false}')).flags
    assert "aws:stop" not in parse(request_view("PUT", url, headers, '{"Enabled": true}')).flags
