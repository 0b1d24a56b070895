"""How every AWS operation is classified: an action type, and the families rules hold.

The catalogue (aws_catalogue.py, from botocore's models) says which operations exist;
this module says what each one does, from its name, so a new botocore brings new
operations already classified. The rule of classification:

- The action type comes from the verb, the first word of the name (after `Batch`,
  `Transact` or `Admin`, which only say how: BatchDeleteImage deletes,
  AdminDeleteUser deletes). Every verb botocore uses is in `_VERBS_BY_TYPE` (a unit
  test fails when a new botocore brings a new verb); an unknown verb is `other`.
- Families are flags `aws:<family>` on the action. They come from the verb, from words
  in the name, and for a few services from the service (all writes to IAM are
  permission changes). `_EXCEPTIONS` names the operations whose name misleads.
- A few families depend on the request's parameters (public sharing, a backup
  retention of 0, protection turned off, Route 53 changes that delete or overwrite):
  `param_families` reads them, in aws.py's flat parameter form.
"""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from .common import strictest, words
from .destructive import destroys_shell

# Deactivate and Reset are updates: the thing stays and can be turned back on.
# Simulate and Generate only compute an answer from what exists: reads. Test is
# execute: TestInvokeMethod runs the API. Release gives a resource back (an Elastic IP
# another account can then take): delete. Close ends an account or a tunnel: delete.
_VERBS_BY_TYPE = {
    "delete": (
        "Delete", "Terminate", "Remove", "Purge", "Destroy", "Deregister", "Unregister", "Revoke", "Detach",
        "Abort", "Deprovision", "Expire", "Clear", "Flush", "Release", "Close", "Unsubscribe", "Deauthorize",
        "Drain", "Unassign", "Unlink", "Unshare", "Withdraw", "Discard", "Dispose", "Forget", "Undeploy", "Unpeer",
        "Retire", "Return", "Leave",
    ),
    "create": (
        "Create", "Put", "Run", "Add", "Attach", "Register", "Import", "Copy", "Upload", "Complete", "Post",
        "Allocate", "Purchase", "Provision", "Request", "Clone", "Submit", "Initiate", "Launch", "Build",
        "Ingest", "Replicate", "Issue", "Record", "Index", "Subscribe", "Invite", "Define", "Claim", "Report",
        "Reimport", "Advertise", "Grant", "Authorize", "Assign", "Populate", "Prepare", "Initialize",
        "Distribute", "Split", "Join", "Enter", "Open", "Checkout", "Acquire", "Begin", "Compose", "Convert",
        "Deliver", "Insight", "Provide", "Push", "Reserve", "Save", "Setup", "Link", "Label", "Group", "Peer",
        "Meter", "Bundle", "Reinvite", "Redeem", "Vote", "Share",
    ),
    "update": (
        "Update", "Modify", "Set", "Change", "Reboot", "Start", "Stop", "Enable", "Disable", "Deactivate",
        "Activate", "Reset", "Tag", "Untag", "Associate", "Disassociate", "Dissociate", "Write", "Restore",
        "Accept", "Reject", "Resume", "Pause", "Apply", "Confirm", "Replace", "Rotate", "Retry", "Merge",
        "Upgrade", "Configure", "Move", "Rollback", "Switchover", "Failover", "Promote", "Transfer", "Archive",
        "Unarchive", "Respond", "Restart", "Resolve", "Renew", "Refresh", "Acknowledge", "Approve", "Decline",
        "Suspend", "Increase", "Decrease", "Extend", "Lock", "Unlock", "Opt", "Override", "Rename", "Reorder",
        "Sync", "Resync", "Rebuild", "Reload", "Deprecate", "Undeprecate", "Quarantine", "Unquarantine",
        "Manage", "Commit", "Optimize", "Connect", "Disconnect", "Exit", "Logout", "Cancel", "End", "Schedule",
        "Deploy", "Continue", "Exchange", "Reverse", "Monitor", "Allow", "Amend", "Backtrack", "Deny", "Disallow",
        "Finalize", "Mark", "Migrate", "Rebalance", "Recall", "Regenerate", "Resize", "Shrink", "Skip", "Swap",
        "Synchronize", "Toggle", "Unsuspend", "Unlabel", "Ungroup", "Unmonitor", "User", "Invalidate", "Evict",
        "Dismiss", "Shutdown",
    ),
    "read": (
        "Get", "List", "Describe", "Head", "Scan", "Query", "Select", "Simulate", "Generate", "Search", "Check",
        "Validate", "Verify", "Detect", "Evaluate", "Preview", "Count", "Is", "Lookup", "Retrieve", "Calculate",
        "Compare", "Analyze", "Sample", "Discover", "Poll", "Receive", "Download", "Export", "Suggest", "Render",
        "Autocomplete", "Classify", "Contains", "Decode", "Domain", "Estimate", "Filter", "Forecast", "Geocode",
        "Introspect", "Phone", "Carrier", "Probe", "Read", "Snap", "View", "Traverse", "Rerank", "Rescore",
    ),
    "execute": (
        "Invoke", "Execute", "Send", "Publish", "Resend", "Signal", "Notify", "Converse", "Chat", "Agentic",
        "Encrypt", "Decrypt", "Re", "Sign", "Redact", "Infer", "Predict", "Recognize", "Translate", "Assume",
        "Test", "Capture", "Process", "Decapsulate", "Encapsulate", "Derive", "Synthesize", "Transcribe", "Channel",
        "Redrive", "Checkpoint", "Take", "Global", "Insert", "Install", "Forgot",
    ),
}
_VERB_TYPES = {verb: kind for kind, verbs in _VERBS_BY_TYPE.items() for verb in verbs}
# Words that say how, not what: the verb is the next word.
_MODIFIERS = ("Batch", "Transact", "Admin", "Bulk")
_VERB = re.compile(r"[A-Z][a-z]*")

_FAMILY_BY_VERB = {
    "Terminate": "terminate",
    "Stop": "stop", "Pause": "stop", "Suspend": "stop", "Shutdown": "stop",
    "Backtrack": "data_loss",
    "Disable": "disable", "Deactivate": "disable", "Deprecate": "disable",
    "Authorize": "permission", "Revoke": "permission", "Grant": "permission", "Deauthorize": "permission",
    "Unshare": "permission", "Share": "permission", "Retire": "permission", "Leave": "permission",
}

# Services where every write changes who may do what.
_PERMISSION_SERVICES = frozenset({"iam", "sso-admin", "identitystore", "organizations", "ram", "lakeformation"})
# Services that watch the account: a write that is not a creation or a start can blind them.
_AUDIT_SERVICES = frozenset({
    "cloudtrail", "guardduty", "config", "securityhub", "inspector", "inspector2", "macie2", "detective",
    "accessanalyzer", "auditmanager", "logs", "cloudwatch", "monitoring", "events", "fms",
})
_AUDIT_HARMLESS_VERBS = frozenset({"Create", "Start", "Enable", "Tag", "Untag", "Accept", "Invite", "Activate",
                                   "Test", "Send", "Register"})
# Policies that govern something other than access.
_NOT_ACCESS_POLICIES = frozenset({
    "lifecycle", "reasoning", "traffic", "scaling", "firewall", "curation", "chain", "routing", "allocation",
    "ipam", "metering", "retention", "scheduling", "cache", "request", "headers", "stickiness", "feed",
    "termination", "recipe", "metric", "recommendation", "backup", "retrieval", "tier", "sink", "resiliency",
    "deployment", "snapmirror", "snapshot", "protection", "enforced", "rls", "placement", "patch",
})
_PERMISSION_WORDS = frozenset({"permission", "permissions", "acl", "acls", "grant", "grants", "password",
                               "mfa", "credential", "credentials", "login"})
_LOGGING_WORDS = frozenset({"logging", "trail", "trails", "recorder", "flow", "audit"})

# Operations whose name misleads, by (service or "*", operation).
_EXCEPTIONS: dict[tuple[str, str], tuple[str, frozenset[str]]] = {
    # Deletion after a waiting period: the key and everything encrypted with it are lost.
    ("kms", "ScheduleKeyDeletion"): ("delete", frozenset({"schedule_deletion", "delete"})),
    ("secretsmanager", "DeleteSecret"): ("delete", frozenset({"schedule_deletion", "delete"})),
    ("acm-pca", "DeleteCertificateAuthority"): ("delete", frozenset({"schedule_deletion", "delete"})),
    ("payment-cryptography", "DeleteKey"): ("delete", frozenset({"schedule_deletion", "delete"})),
    ("organizations", "CloseAccount"): ("delete", frozenset({"schedule_deletion", "delete", "permission"})),
    # Items expire and are deleted once TTL is on.
    ("dynamodb", "UpdateTimeToLive"): ("update", frozenset({"data_loss"})),
    ("dynamodb", "UpdateContinuousBackups"): ("update", frozenset({"data_loss"})),
    # Shorter retention deletes what is older.
    ("logs", "PutRetentionPolicy"): ("update", frozenset({"data_loss", "logging_off"})),
    # Event selectors decide what CloudTrail records at all.
    ("cloudtrail", "PutEventSelectors"): ("update", frozenset({"logging_off"})),
    ("cloudtrail", "PutInsightSelectors"): ("update", frozenset({"logging_off"})),
    ("cognito-identity", "SetIdentityPoolRoles"): ("update", frozenset({"permission"})),
    # A registered domain given to another account, or all its DNS moved elsewhere at once.
    ("route53domains", "TransferDomainToAnotherAwsAccount"): ("update", frozenset({"data_loss", "permission"})),
    ("route53domains", "UpdateDomainNameservers"): ("update", frozenset({"data_loss"})),
    # SQS's ack of a consumed message: a delete by name, routine for any worker.
    ("sqs", "DeleteMessage"): ("delete", frozenset({"delete", "ack"})),
    ("sqs", "DeleteMessageBatch"): ("delete", frozenset({"delete", "ack"})),
}


def verb(operation: str) -> str:
    match = _VERB.match(operation)
    word = match.group() if match else ""
    if word in _MODIFIERS:
        match = _VERB.match(operation, len(word))
        word = match.group() if match else ""
    return word


def verb_type(operation: str) -> str:
    return _VERB_TYPES.get(verb(operation), "other")


def known_verb(operation: str) -> bool:
    return verb(operation) in _VERB_TYPES


@functools.lru_cache(maxsize=4096)
def classify(service: str, operation: str) -> tuple[str, frozenset[str]]:
    """(action type, families) of `operation` of `service` (botocore's name, or the
    signing name when the catalogue does not know it)."""
    exception = _EXCEPTIONS.get((service, operation))
    if exception is not None:
        return exception
    kind = verb_type(operation)
    return kind, frozenset(_families(service, operation, kind))


def classify_any(services: Iterable[str], operation: str) -> tuple[str, frozenset[str]]:
    """Several services may be meant (an unsigned request to an unknown host): the
    strictest type and every family of every reading."""
    results = [classify(s, operation) for s in services] or [classify("", operation)]
    return strictest(k for k, _ in results), frozenset().union(*(f for _, f in results))


def _families(service: str, operation: str, kind: str) -> set[str]:
    word0 = verb(operation)
    name = words(operation)
    found = set()
    if kind == "delete" and word0 not in ("Terminate", "Revoke", "Deauthorize", "Unshare"):
        found.add("delete")
    family = _FAMILY_BY_VERB.get(word0)
    if family:
        found.add(family)
    if "deletion" in name and word0 in ("Schedule", "Start"):
        found.add("schedule_deletion")
    if kind in ("read", "other"):
        return found
    if _is_permission_change(service, word0, name):
        found.add("permission")
    if _is_logging_off(service, word0, kind, name):
        found.add("logging_off")
    if word0 in ("Put", "Update", "Modify", "Set") and "ttl" in name:
        found.add("data_loss")
    if "retention" in name and word0 in ("Decrease", "Delete"):
        found.add("data_loss")
    if word0 in ("Put", "Update", "Set", "Delete", "Disable") and "protection" in name and (
            "deletion" in name or "termination" in name):
        found.add("protection_off")
    return found


def _is_permission_change(service: str, word0: str, name: list[str]) -> bool:
    if service in _PERMISSION_SERVICES:
        return True
    for i, w in enumerate(name):
        if w in ("policy", "policies") and (i == 0 or name[i - 1] not in _NOT_ACCESS_POLICIES):
            return True
        if w in ("role", "roles") and word0 in ("Set", "Attach", "Put", "Update", "Associate", "Assign", "Add"):
            return True
    if _PERMISSION_WORDS & set(name):
        return True
    if "access" in name and ("key" in name or "keys" in name):
        return True
    # EC2 and RDS share images and snapshots by changing their attributes.
    return word0 == "Modify" and name[-1] == "attribute" and bool({"snapshot", "image"} & set(name))


def _is_logging_off(service: str, word0: str, kind: str, name: list[str]) -> bool:
    if service in ("logs", "cloudwatch", "monitoring", "events"):
        # Their writes are mostly data (PutLogEvents, PutMetricData): only taking
        # things away blinds them.
        return kind == "delete" or word0 in ("Disable", "Stop")
    if service in _AUDIT_SERVICES:
        return kind in ("delete", "update") and word0 not in _AUDIT_HARMLESS_VERBS or word0 == "Put"
    if not _LOGGING_WORDS & set(name) and not ("flow" in name and "logs" in name):
        return False
    return kind in ("delete", "update") and word0 not in _AUDIT_HARMLESS_VERBS or word0 == "Put"


_FALSE = frozenset({"false", "0", "no", "off"})
# Values that switch a feature off: booleans, and the enums of Status/State members.
_OFF = frozenset({"false", "no", "off", "disabled", "disable", "paused", "suspended", "stopped", "none"})
# Members that say whether something is on.
_SWITCHES = frozenset({"enable", "enabled", "status", "state", "logging", "recording", "loglevel", "islogging"})
# Members that size a service: at 0 it runs nothing (the twin of Kubernetes replicas: 0).
# MinSize/MinCapacity are not among them: a floor of 0 still lets the group run.
_CAPACITY = frozenset({
    "desiredcapacity", "maxsize", "desiredcount", "desiredsize", "maxcapacity", "reservedconcurrentexecutions",
    "desiredinstancecount", "instancecount", "targetcapacity", "totaltargetcapacity", "desiredinstances",
    "desiredcopycount", "ratelimit", "burstlimit", "throttlingratelimit", "throttlingburstlimit",
})
# Verbs that make something new: a new group of size 0 or a new detector created off
# takes nothing down.
_CREATION_VERBS = frozenset({"Create", "Run", "Launch", "Request", "Import", "Copy", "Clone", "Describe", "Get",
                             "List"})
# Subtrees that hold the customer's data or labels, not the service's settings.
_DATA_MEMBERS = frozenset({"item", "items", "requestitems", "expressionattributevalues", "key", "keys", "tags",
                           "tag", "tagset", "tagging", "message", "messages", "body", "payload", "records",
                           "entries", "document", "content", "input", "parameters"})
_LOGGING_PARAM_WORDS = frozenset({"logging", "log", "logs", "trail", "audit", "recorder", "recording", "detector"})
_ROUTE53_SAFE = frozenset({"CREATE", "UPSERT"})
# Lifecycle rules that delete, in any service's spelling (S3 is read as XML instead).
_EXPIRY_WORDS = re.compile(r"expir|delet|purg|remov|retain|retention", re.IGNORECASE)
_XML_DECLS = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_S3_LIFECYCLE_OPS = frozenset({"PutBucketLifecycleConfiguration", "PutBucketLifecycle"})
_S3_EXPIRY = frozenset({"Expiration", "NoncurrentVersionExpiration", "ExpiredObjectDeleteMarker"})
_PUBLIC_BLOCKS = frozenset({"BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"})
# Where a flattened body stops: AWS request bodies are small; a huge one is data.
_MAX_PAIRS = 4096


def param_families(
    operation: str,
    params: Iterable[tuple[str, str]],
    body_text: str = "",
    body: object = None,
    service: str = "",
) -> set[str]:
    """Families that depend on what the request asks. `params` are flat (name, value)
    pairs (query protocol keys, top-level JSON keys and REST query parameters); `body`
    is the decoded JSON body, read to any depth as dotted names."""
    found: set[str] = set()
    pairs = list(params)
    word0 = verb(operation)
    pairs += _named_pairs(pairs)
    if body is not None:
        pairs += flatten(body)
    for key, value in pairs:
        found |= _pair_families(key, value, operation, word0, service)
    found |= _body_families(operation, word0, body_text, body, pairs)
    return found


# Values some check below looks at; anything else is skipped before any other work,
# because every scalar of a body comes through here.
_WATCHED_VALUES = _OFF | _FALSE | {"all"}


def _pair_families(key: str, value: str, operation: str, word0: str, service: str) -> set[str]:
    low = value.strip().lower()
    if low in _OPEN_VALUES:
        opened = _opened(key, low, operation, word0)
        if opened or "isable" not in key:  # DisableLogging=true is read below
            return opened
    if low not in _WATCHED_VALUES and not (low[:1] and low[:1] in "-+0." and (_number(low) or 0) <= 0) and (
            "isable" not in key):
        return set()
    found = set()
    # EC2 wraps booleans: DisableApiTermination.Value=false
    parts = [p for p in re.split(r"[./]", key) if p and p != "*"]
    if len(parts) > 1 and parts[-1] == "Value":
        parts.pop()
    last = parts[-1].lower() if parts else ""
    if "retention" in last and _number(low) is not None and (_number(low) or 0) <= 0:
        # BackupRetentionPeriod, SnapshotRetentionLimit, AutomatedSnapshotRetentionPeriod,
        # AutomaticBackupRetentionDays: 0 turns automatic backups off and deletes them.
        found.add("data_loss")
    elif last == "disableapitermination" and low in _FALSE:
        found.add("protection_off")
    elif low == "all" and operation.startswith("Modify") and operation.endswith("Attribute"):
        found.add("public")
    elif last == "authtype" and low == "none" and "url" in words(operation):
        found.add("public")  # a Lambda function URL anyone can call
    if low not in _OFF and low not in _FALSE and _number(low) != 0 and not (low and "disable" in key.lower()):
        return found
    names = set(words(key))
    if names & {"tag", "tags"}:
        return found
    if "protection" in names and names & {"deletion", "termination"} and low in _FALSE:
        found.add("protection_off")
    if last in _CAPACITY and _number(low) == 0 and word0 not in _CREATION_VERBS:
        found |= {"stop", "scale_zero"}
    if _sending_off(names, last, low, operation, word0, service):
        found.add("stop")
    logging = bool(names & _LOGGING_PARAM_WORDS) or service in _AUDIT_SERVICES
    if logging and word0 not in _CREATION_VERBS:
        if last in _SWITCHES and low in _OFF:
            found.add("logging_off")
        elif "disable" in names and low:  # DisableLogTypes.member.1=audit
            found.add("logging_off")
    return found


def _sending_off(names: set[str], last: str, low: str, operation: str, word0: str, service: str) -> bool:
    """Sending switched off: SES UpdateAccountSendingEnabled / UpdateConfigurationSetSendingEnabled
    Enabled=false, SESv2 PutAccountSendingAttributes / PutConfigurationSetSendingOptions
    SendingEnabled false; a Pinpoint channel (UpdateEmailChannel, UpdateSmsChannel, ...)
    Enabled false. Every message of the account (or set, or channel) stops, as a scale to
    zero would."""
    if low not in _OFF or word0 in _CREATION_VERBS:
        return False
    if last == "sendingenabled":
        return True
    op_words = words(operation)
    return last in _SWITCHES and ("sending" in names or "sending" in op_words or (
        service in ("pinpoint", "mobiletargeting") and "channel" in op_words))


# Reachable from the whole internet: a database or cluster made PubliclyAccessible, a
# rule or endpoint opened to every address (the network twin of Principal "*").
_OPEN_VALUES = frozenset({"true", "0.0.0.0/0", "::/0"})
_EGRESS = re.compile(r"egress", re.IGNORECASE)


def _opened(key: str, low: str, operation: str, word0: str) -> set[str]:
    if word0 in _READ_VERBS_OPEN or _EGRESS.search(operation) or _EGRESS.search(key):
        return set()
    last = re.split(r"[./]", key)[-1].lower()
    if low == "true" and last in ("publiclyaccessible", "mappubliciponlaunch", "associatepublicipaddress"):
        return {"public"} if last == "publiclyaccessible" else set()
    # Only where the range lets traffic in: a security group rule, an endpoint's public
    # access list. A default route or a network ACL deny to 0.0.0.0/0 is ordinary.
    lowkey = key.lower()
    if low != "true" and "cidr" in lowkey and ("security" in words(operation) or "publicaccess" in lowkey):
        return {"public"}
    return set()


_READ_VERBS_OPEN = frozenset({"Describe", "Get", "List", "Search", "Check", "Validate", "Test", "Estimate"})


def _body_families(
    operation: str, word0: str, body_text: str, body: object, pairs: list[tuple[str, str]]
) -> set[str]:
    found = set()
    if operation == "ChangeResourceRecordSets":
        # Only CREATEs and UPSERTs lose nothing; a DELETE, anything else, or an
        # unreadable body deletes live DNS.
        root = _xml(body_text)
        actions = {(e.text or "").strip() for e in _elements(root, "Action")} if root is not None else set()
        if not actions or not actions <= _ROUTE53_SAFE:
            found.add("data_loss")
    elif operation in _S3_LIFECYCLE_OPS:
        root = _xml(body_text)
        if root is None or _local(root.tag) not in ("LifecycleConfiguration", "BucketLifecycleConfiguration") or any(
                _local(e.tag) in _S3_EXPIRY for e in root.iter()):
            found.add("data_loss")
    elif "lifecycle" in words(operation) and word0 in ("Put", "Update", "Modify", "Set"):
        # EFS lifecycle policies only move files between storage classes; ECR's and
        # Backup's expire. Without a body to read, assume the worst.
        if not body_text.strip() or _EXPIRY_WORDS.search(body_text):
            found.add("data_loss")
    if operation == "PutBucketVersioning":
        # Suspended versioning removes the undo of later deletes; MfaDelete Disabled
        # removes the second factor they need. Read as XML: &#83;uspended is Suspended.
        root = _xml(body_text)
        status = {(e.text or "").strip() for e in _elements(root, "Status")} if root is not None else {""}
        if status - {"Enabled"}:
            found.add("data_loss")
        if root is not None and any((e.text or "").strip() != "Enabled" for e in _elements(root, "MfaDelete")):
            found.add("protection_off")
    if operation in _CLOUDFRONT_FULL_CONFIGS:
        found |= _cloudfront_off(body_text)
    if operation == "ModifyInstanceAttribute" and _flat_attribute_off(pairs, "disableapitermination"):
        found.add("protection_off")  # Attribute=disableApiTermination&Value=false, the flat spelling
    if operation in _DYNAMODB_BATCHES and _dynamodb_deletes(operation, body):
        found.add("delete")
    if operation in _RUN_COMMAND_OPS and any(destroys_shell(c) for c in _run_commands(body)):
        found.add("delete")  # rm -rf through SSM Run Command is the MCP shell tool's twin
    if operation == "PutPublicAccessBlock":
        root = _xml(body_text)
        if root is None or any(_local(e.tag) in _PUBLIC_BLOCKS and (e.text or "").strip().lower() != "true"
                               for e in root.iter()):
            found.add("public")
    # The text is searched only when the body was not read whole as JSON (XML ACLs,
    # broken JSON, a body past the flattening bound): a regex over a large body is slow.
    textual = body is None or len(pairs) >= _MAX_PAIRS
    if _public_policy(pairs) or (textual and ("rincipal" in body_text or "acs.amazonaws.com" in body_text)
                                 and _PUBLIC_PRINCIPAL.search(body_text)):
        found.add("public")
    return found


# CloudFront's updates send the whole config (XML): what they leave off or set false is off.
_CLOUDFRONT_FULL_CONFIGS = frozenset({"UpdateDistribution", "UpdateStreamingDistribution"})


def _cloudfront_off(body_text: str) -> set[str]:
    """Access logging turned off (a Logging element whose Enabled is not true), or the
    distribution itself disabled (its own Enabled false: the site stops being served).
    A config with no Logging element at all is not flagged: most distributions never log,
    and holding every update of theirs would teach reviewers to wave these through."""
    root = _xml(body_text)
    if root is None:
        return set()
    found = set()
    for logging in _elements(root, "Logging"):
        enabled = [e for e in logging if _local(e.tag) == "Enabled"]
        if not enabled or any((e.text or "").strip().lower() != "true" for e in enabled):
            found.add("logging_off")
    own = [e for e in root if _local(e.tag) == "Enabled"]
    if any((e.text or "").strip().lower() != "true" for e in own):
        found.add("stop")
    return found


def _flat_attribute_off(pairs: list[tuple[str, str]], attribute: str) -> bool:
    named = {k.lower(): v.strip().lower() for k, v in pairs if k.lower() in ("attribute", "value", "value.value")}
    return named.get("attribute") == attribute and (named.get("value") in _FALSE or named.get("value.value") in _FALSE)


# DynamoDB's batch and transaction forms of DeleteItem (and PartiQL's DELETE), which
# DeleteItem's own name cannot flag: the delete is in the body.
_DYNAMODB_BATCHES = frozenset({"BatchWriteItem", "TransactWriteItems", "ExecuteStatement",
                               "BatchExecuteStatement", "ExecuteTransaction"})
_PARTIQL_DELETE = re.compile(r"^(?:\s|--[^\n]*\n?|/\*.*?\*/)*delete\b", re.IGNORECASE | re.DOTALL)


def _dynamodb_deletes(operation: str, body: object) -> bool:
    if not isinstance(body, dict):
        return False
    if operation == "BatchWriteItem":
        tables = body.get("RequestItems")
        return isinstance(tables, dict) and any(
            isinstance(r, dict) and "DeleteRequest" in r
            for reqs in tables.values() if isinstance(reqs, list) for r in reqs)
    if operation == "TransactWriteItems":
        items = body.get("TransactItems")
        return isinstance(items, list) and any(isinstance(i, dict) and "Delete" in i for i in items)
    # ExecuteStatement has one Statement; the batch and transaction forms a list of them.
    statements = [body] + [s for k in ("Statements", "TransactStatements") if isinstance(body.get(k), list)
                           for s in body[k]]
    return any(isinstance(s, dict) and isinstance(s.get("Statement"), str) and _PARTIQL_DELETE.match(s["Statement"])
               for s in statements)


# Operations that run shell commands on a host: SSM Run Command (AWS-RunShellScript,
# AWS-RunPowerShellScript take Parameters.commands), ECS Exec.
_RUN_COMMAND_OPS = frozenset({"SendCommand", "ExecuteCommand", "StartAutomationExecution", "CreateAssociation"})


def _run_commands(body: object) -> list[str]:
    if not isinstance(body, dict):
        return []
    out = [body["command"]] if isinstance(body.get("command"), str) else []
    params = body.get("Parameters")
    if isinstance(params, dict):
        for value in params.values():
            values = value if isinstance(value, list) else [value]
            out += [v for v in values[:200] if isinstance(v, str)]
    return out


def flatten(body: object, prefix: str = "") -> list[tuple[str, str]]:
    """Every scalar of a JSON body as (dotted.name, text), breadth first, skipping
    the customer's data (items, tags, messages). A {Key|Name|path: n, Value|value: v}
    object is also read as the pair (n, v): ELBv2 attributes, JSON patch operations."""
    out: list[tuple[str, str]] = []
    queue: list[tuple[str, object]] = [(prefix, body)]
    for name, node in queue:
        if len(out) >= _MAX_PAIRS or len(queue) > _MAX_PAIRS:
            break
        if isinstance(node, dict):
            named = _named(node)
            if named:
                out.append((f"{name}.{named[0]}", named[1]))
            for k, v in node.items():
                key = str(k)
                if key.lower() in _DATA_MEMBERS:
                    continue
                child = f"{name}.{key}" if name else key
                if isinstance(v, (dict, list)):
                    queue.append((child, v))
                else:
                    out.append((child, _text(v)))
        elif isinstance(node, list):
            queue.extend((name, v) for v in node if isinstance(v, (dict, list)))
            out.extend((name, _text(v)) for v in node if not isinstance(v, (dict, list)))
    return out


def _named(node: dict) -> tuple[str, str] | None:
    name = next((node[k] for k in ("Key", "Name", "path", "AttributeName") if isinstance(node.get(k), str)), None)
    if name is None:
        return None
    if node.get("op") == "remove":
        # A JSON patch that removes a setting turns it off.
        return name + ".enabled", "false"
    value = next((node[k] for k in ("Value", "value") if k in node and not isinstance(node[k], (dict, list))), None)
    return None if value is None else (name, _text(value))


def _named_pairs(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Query protocol Key/Value siblings (Attributes.member.1.Key=x&...Value=v) as (x, v)."""
    values = {k[: -len("Value")]: v for k, v in params if k.endswith(".Value")}
    out = []
    for k, v in params:
        for suffix in (".Key", ".Name"):
            if k.endswith(suffix) and k[: -len(suffix) + 1] in values:
                out.append((f"{k[: -len(suffix)]}.{v}", values[k[: -len(suffix) + 1]]))
    return out


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _xml(text: str) -> ET.Element | None:
    """The XML body as the server reads it, or None when it cannot be read safely:
    declarations (entities) are refused, not expanded."""
    if not text.strip() or _XML_DECLS.search(text):
        return None
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        return None


def _local(tag: object) -> str:
    return str(tag).rpartition("}")[2]


def _elements(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if _local(e.tag) == name]


# A policy or ACL that names everyone.
_PUBLIC_PRINCIPAL = re.compile(
    r'"(?:Principal|AWS)"\s*:\s*(?:\[\s*)?"\*"|acs\.amazonaws\.com/groups/global/(?:AllUsers|AuthenticatedUsers)'
    r'|"Principal"\s*:\s*\{\s*"AWS"\s*:\s*(?:\[\s*)?"\*"')
_WILDCARD_PRINCIPAL = re.compile(r"^\*$|^arn:aws[\w-]*:iam::\*:")


def _public_policy(pairs: list[tuple[str, str]], depth: int = 0) -> bool:
    """A policy anywhere (the body at any depth, a JSON string inside it, a form value)
    whose Principal or NotPrincipal names everyone, however the JSON spells it. Reads
    the pairs `flatten` already made, so the body is walked once."""
    for key, value in pairs:
        if "rincipal" in key and {"Principal", "NotPrincipal"} & set(key.split(".")):
            if _WILDCARD_PRINCIPAL.match(value.strip()):
                return True
        elif depth < 3 and value[:1] == "{" and "rincipal" in value:
            try:
                inner = json.loads(value)
            except ValueError:
                continue
            if _public_policy(flatten(inner), depth + 1):
                return True
    return False


def _number(text: str) -> float | None:
    # "0", "0.0", "-1", "00", " 0 ": what a server's number parser accepts.
    try:
        return float(text)
    except ValueError:
        return None
