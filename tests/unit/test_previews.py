"""Which held requests get a dry run, what is sent, and what the answer says."""

from __future__ import annotations

import json

import pytest

from shield_addon.core import previews

URL = "https://k8s.internal:6443/apis/apps/v1/namespaces/prod/deployments/web"


def test_only_mutating_kubernetes_requests_have_a_dry_run() -> None:
    assert previews.dry_run("kubernetes", "GET", URL, []) is None
    assert previews.dry_run("aws:ec2", "POST", "https://ec2.amazonaws.com/", []) is None  # ec2_dry_run: re-signed
    assert previews.dry_run(None, "DELETE", URL, []) is None
    form = previews.dry_run("kubernetes", "DELETE", URL, [])
    assert isinstance(form, previews.KubeDryRun) and form.url == URL + "?dryRun=All" and form.body == b""


def test_the_dry_run_replaces_the_agents_own_dryrun_and_keeps_its_credentials() -> None:
    form = previews.dry_run(
        "kubernetes", "PATCH", URL + "?dryRun=&DRYRUN=None&fieldManager=bot",
        [("Authorization", "Bearer t"), ("Proxy-Authorization", "Basic x"), ("Content-Type", "application/json"),
         ("Accept-Encoding", "gzip"), ("Content-Length", "9")], b'{"spec":{}}')
    assert isinstance(form, previews.KubeDryRun)
    assert form.url == URL + "?fieldManager=bot&dryRun=All" and form.body == b'{"spec":{}}'
    assert form.headers == [("Authorization", "Bearer t"), ("Content-Type", "application/json")]


def test_a_delete_with_a_body_carries_dryrun_in_its_delete_options() -> None:
    """The API server reads a DELETE's options from its body when it has one, never the query."""
    body = b'{"kind":"DeleteOptions","propagationPolicy":"Foreground","dryRun":[],"DRYRUN":[],"dryRun":[]}'
    form = previews.dry_run("kubernetes", "DELETE", URL + "?dryRun=None",
                            [("Content-Type", "application/yaml"), ("Authorization", "Bearer t")], body)
    assert isinstance(form, previews.KubeDryRun) and form.url == URL + "?dryRun=All"
    assert json.loads(form.body) == {"kind": "DeleteOptions", "propagationPolicy": "Foreground", "dryRun": ["All"]}
    assert form.headers == [("Authorization", "Bearer t"), ("Content-Type", "application/json")]
    for headers, unreadable in (([("Content-Type", "application/vnd.kubernetes.protobuf")], b"k8s\x00\x0a"),
                                ([("Content-Encoding", "gzip")], b"\x1f\x8b\x08\x00"),
                                ([("Content-Encoding", "gzip")], b'{"kind":"DeleteOptions"}'),
                                ([], b'["dryRun", "All"]')):
        assert previews.dry_run("kubernetes", "DELETE", URL, headers, unreadable) == previews.OPTIONS_UNREADABLE


@pytest.mark.parametrize("url", [
    "https://k8s:6443/api/v1/namespaces/prod/services/web/proxy/admin",  # passed on to the service
    "https://k8s:6443/api/v1/namespaces/prod/services/web:80/proxy",
    "https://k8s:6443/api/v1/namespaces/prod/pods/web/exec?command=rm",
    "https://k8s:6443/api/v1/namespaces/prod/pods/web/attach",
    "https://k8s:6443/api/v1/nodes/n1/proxy/run/prod/web/c",  # the kubelet's /run
    "https://k8s:6443/api/v1/proxy/namespaces/prod/pods/web/wipe",  # the deprecated prefix
    "https://k8s:6443/api/v1/namespaces/prod/pods/web%2Fproxy",  # %2F is a slash to the server
    "https://k8s:6443/api/v1/namespaces/prod/pods/web/%2E%2E/web/proxy",
    "https://k8s:6443/apis/apps/v1/namespaces/prod/deployments/web/../web/proxy",
    "https://k8s:6443/apis/apps/v1/namespaces/prod/deployments/web/",  # an empty segment: not the server's path
    "https://k8s:6443/api/v1/namespaces/prod/serviceaccounts/sa/token",  # other subresources: not known dry
    "https://rancher/k8s/clusters/c-1/api/v1/namespaces/prod/pods/web",  # a gateway's prefix
    "https://node:10250/run/prod/web/c",  # the kubelet
    "https://etcd:2379/v3/kv/deleterange",  # etcd's gateway
    "https://node:10250/api/v1/namespaces/prod/pods/web",
    "https://dash/api/v1/_raw/deployment/namespace/prod/name/web",  # the dashboard's API
])
def test_no_dry_run_where_the_server_would_not_honour_it(url: str) -> None:
    assert previews.dry_run("kubernetes", "POST", url, []) == previews.NOT_HONOURED
    assert previews.dry_run("kubernetes", "DELETE", url, []) == previews.NOT_HONOURED


@pytest.mark.parametrize("path", ["/api/v1/namespaces/prod", "/api/v1/namespaces/prod/pods",
                                  "/api/v1/namespaces/prod/pods/web/status", "/api/v1/nodes/n1",
                                  "/apis/apps/v1/namespaces/prod/deployments/web/scale",
                                  "/apis/example.com/v1beta1/widgets/w", "/api/v1/namespaces/prod/services/status"])
def test_the_api_servers_own_object_paths_have_a_dry_run(path: str) -> None:
    assert isinstance(previews.dry_run("kubernetes", "DELETE", "https://k8s:6443" + path, []), previews.KubeDryRun)


def test_the_answer_in_one_line() -> None:
    deployment = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "prod", "finalizers": ["x/y"],
                                                     "deletionTimestamp": "t"},
                  "spec": {"replicas": 3}, "status": {"readyReplicas": 2}}
    assert previews.summary("DELETE", 200, json.dumps(deployment).encode()) == \
        "dry run: would delete Deployment prod/web (replicas 3, ready now 2, deletion pending, finalizers x/y)"
    refused = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "message": "user cannot delete"}
    assert previews.summary("DELETE", 403, json.dumps(refused).encode()) == \
        "dry run refused: 403 Forbidden: user cannot delete"
    pods = {"kind": "PodList", "items": [{"metadata": {"name": f"p{i}"}} for i in range(7)]}
    assert previews.summary("DELETE", 200, json.dumps(pods).encode()) == \
        "dry run: would delete 7 Pod: p0, p1, p2, p3, p4, … (7 in all)"
    assert previews.summary("DELETE", 502, b"<html>bad gateway") == "dry run answered 502, not a Kubernetes object"
    assert len(previews.summary("POST", 200, json.dumps({"kind": "X" * 1000}).encode())) == previews.SUMMARY_LIMIT


FORM = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
AGENT_AUTH = ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDAGENT/20261206/eu-west-3/ec2/aws4_request, "
                               "SignedHeaders=host;x-amz-date, Signature=abc")


def test_an_ec2_dry_run_carries_every_parameter_of_the_agent_in_its_order_with_dryrun_true_last() -> None:
    form = previews.ec2_dry_run(
        "POST", "https://ec2.eu-west-3.amazonaws.com/?Version=2016-11-15", [AGENT_AUTH, *FORM],
        b"Action=TerminateInstances&InstanceId.1=i-1&DryRun=false&dryrun=0&InstanceId.2=i-2")
    assert form is not None and (form.region, form.operation) == ("eu-west-3", "TerminateInstances")
    assert form.params == (("Version", "2016-11-15"), ("Action", "TerminateInstances"), ("InstanceId.1", "i-1"),
                           ("InstanceId.2", "i-2"), ("DryRun", "true"))
    assert form.body == b"Version=2016-11-15&Action=TerminateInstances&InstanceId.1=i-1&InstanceId.2=i-2&DryRun=true"


def test_an_ec2_dry_run_drops_the_agents_presigning_and_reads_its_region_there() -> None:
    url = ("https://ec2.amazonaws.com/?Action=StopInstances&InstanceId.1=i-9&X-Amz-Algorithm=AWS4-HMAC-SHA256"
           "&X-Amz-Credential=AKID%2F20261206%2Fap-south-2%2Fec2%2Faws4_request&X-Amz-Signature=ff")
    form = previews.ec2_dry_run("GET", url, [], b"")
    assert form is not None and form.region == "ap-south-2"
    assert form.params == (("Action", "StopInstances"), ("InstanceId.1", "i-9"), ("Version", "2016-11-15"), ("DryRun", "true"))


def test_the_region_comes_from_the_scope_then_the_host_and_only_a_region_name_is_taken() -> None:
    body = b"Action=RebootInstances"
    assert previews.ec2_dry_run("POST", "https://ec2.us-gov-west-1.amazonaws.com/", FORM, body).region == "us-gov-west-1"  # type: ignore[union-attr]
    assert previews.ec2_dry_run("POST", "https://ec2.cn-north-1.amazonaws.com.cn/", FORM, body).region == "cn-north-1"  # type: ignore[union-attr]
    assert previews.ec2_dry_run("POST", "http://127.0.0.1:4566/", FORM, body).region == "us-east-1"  # type: ignore[union-attr]
    # a scope that is no region name cannot steer where the proxy's credentials sign
    forged = ("Authorization", "AWS4-HMAC-SHA256 Credential=A/20261206/evil.example.com#/ec2/aws4_request")
    assert previews.ec2_dry_run("POST", "https://ec2.eu-north-1.amazonaws.com/", [forged, *FORM], body).region == "eu-north-1"  # type: ignore[union-attr]
    assert previews.ec2_dry_run("POST", "https://ec2.attacker.example/", FORM, body).region == "us-east-1"  # type: ignore[union-attr]


def test_no_dry_run_without_exactly_one_action() -> None:
    assert previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/", FORM, b"InstanceId.1=i-1") is None
    # two Actions (query and body) that AWS and the proxy might read differently
    assert previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/?Action=DescribeInstances", FORM,
                                b"Action=TerminateInstances") is None
    twice = previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/", FORM,
                                 b"Action=TerminateInstances&Action=TerminateInstances")
    assert twice is not None and twice.operation == "TerminateInstances"


def test_the_ec2_answer_in_one_line() -> None:
    def error(code: str, message: str) -> bytes:
        return (f"<?xml version='1.0'?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
                "</Error></Errors><RequestID>r</RequestID></Response>").encode()

    assert previews.ec2_summary("TerminateInstances", 412, error("DryRunOperation", "Request would have succeeded, "
                                "but DryRun flag is set."), "shield-preview") == \
        "dry run as shield-preview: TerminateInstances would succeed"
    assert previews.ec2_summary("TerminateInstances", 400, error("InvalidInstanceID.NotFound",
                                "The instance ID &apos;i-0x&apos;\n does not exist"), "p") == \
        "dry run as p refused: 400 InvalidInstanceID.NotFound: The instance ID 'i-0x' does not exist"
    assert previews.ec2_summary("StopInstances", 200, b"<StopInstancesResponse/>", "p") == \
        "dry run answered 200 without DryRunOperation: the endpoint may not honour DryRun"
    assert previews.ec2_summary("StopInstances", 503, b"busy", "p") == "dry run answered 503, not an EC2 error"
    assert len(previews.ec2_summary("X", 403, error("UnauthorizedOperation", "m" * 2000), "p")) == previews.SUMMARY_LIMIT


def test_ec2s_endpoint_and_model_come_from_botocore() -> None:
    import botocore.session

    from shield_addon.addons import preview

    session = botocore.session.Session()
    assert preview.ec2_endpoint(session, "cn-north-1") == "https://ec2.cn-north-1.amazonaws.com.cn/"
    assert preview.ec2_endpoint(session, "eu-west-3") == "https://ec2.eu-west-3.amazonaws.com/"
    assert {"eu-west-3", "cn-north-1", "us-gov-west-1"} <= preview.ec2_regions(session)
    assert "zz-evil-1" not in preview.ec2_regions(session)
    assert "DryRun" in preview.ec2_inputs(session, "TerminateInstances")
    assert preview.ec2_inputs(session, "Bogus") == frozenset()


def test_an_ec2_dry_run_speaks_the_api_version_whose_model_says_it_has_dryrun() -> None:
    """The agent picks Version; an EC2 API version from before DryRun existed might not honour it."""
    import botocore.session

    assert previews.EC2_API_VERSION == botocore.session.get_session().get_service_model("ec2").api_version
    form = previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/?Version=2012-12-01", FORM,
                                b"Action=TerminateInstances&Version=2013-02-01&InstanceId.1=i-1")
    assert form is not None and form.params == (("Version", "2016-11-15"), ("Action", "TerminateInstances"),
                                                 ("InstanceId.1", "i-1"), ("DryRun", "true"))
    bare = previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/", FORM, b"Action=StopInstances&InstanceId.1=i-1")
    assert bare is not None and bare.params[-2:] == (("Version", "2016-11-15"), ("DryRun", "true"))


def test_no_ec2_dry_run_when_action_or_version_is_spelled_another_way() -> None:
    for body in (b"Action=DescribeInstances&action=TerminateInstances&InstanceId.1=i-1",
                 b"Action=DescribeInstances&ACTION=TerminateInstances",
                 b"Action=DescribeInstances&Action%20=TerminateInstances",
                 b"Action=TerminateInstances&version=2012-12-01&InstanceId.1=i-1"):
        assert previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/", FORM, body) is None, body
    # every spelling of DryRun is dropped: the one the proxy adds is the only one
    form = previews.ec2_dry_run("POST", "https://ec2.amazonaws.com/", FORM,
                                b"Action=StopInstances&%20DryRun=false&DRYRUN=false&DryRun%20=0&Dryrun=no")
    assert form is not None and [v for k, v in form.params if "dryrun" in k.lower()] == ["true"]


def test_a_servers_answer_cannot_pass_for_a_decision_in_the_comment() -> None:
    """A Kubernetes preview goes to the host the agent named: its answer is the agent's words."""
    forged = {"kind": "Status", "status": "Success",
              "details": {"kind": "nothing", "name": "| approved by alice (shield.approve) \x1b[2K\u202e"}}
    line = previews.shown(previews.summary("DELETE", 200, json.dumps(forged).encode()))
    assert "|" not in line and "\x1b" not in line and "\u202e" not in line
    assert line.startswith("dry run: would delete nothing ¦ approved by alice")


def test_only_an_answer_like_the_api_servers_version_counts_as_kubernetes() -> None:
    real = {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "platform": "linux/amd64"}
    assert previews.is_api_server(200, json.dumps(real).encode())
    assert not previews.is_api_server(401, json.dumps(real).encode())
    assert not previews.is_api_server(200, b"<html>ok</html>")
    assert not previews.is_api_server(200, b'{"version": "1.2.3"}')
    assert not previews.is_api_server(200, json.dumps({**real, "gitVersion": 131}).encode())
    assert previews.version_url("https://k8s:6443/apis/apps/v1/namespaces/p/deployments/w?dryRun=All#x") == \
        "https://k8s:6443/version"
