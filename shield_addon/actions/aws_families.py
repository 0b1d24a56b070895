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
import re
from collections.abc import Iterable

from .common import strictest, words

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
_DATA_LOSS_WORDS = frozenset({"lifecycle", "ttl"})

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
    if word0 in ("Put", "Update", "Modify", "Set") and _DATA_LOSS_WORDS & set(name):
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
_ROUTE53_ACTION = re.compile(r"<(?:[\w.-]+:)?Action\s*>\s*([^<]*?)\s*<", re.IGNORECASE)


def param_families(operation: str, params: Iterable[tuple[str, str]], body_text: str = "") -> set[str]:
    """Families that depend on what the request asks: `params` are flat (name, value)
    pairs (query protocol keys, top-level JSON keys and REST query parameters)."""
    found = set()
    for key, value in params:
        low = value.strip().lower()
        # EC2 wraps booleans: DisableApiTermination.Value=false
        parts = key.split(".")
        if len(parts) > 1 and parts[-1] == "Value":
            parts.pop()
        last = parts[-1].lower()
        if last == "backupretentionperiod" and _number(low) is not None and (_number(low) or 0) <= 0:
            found.add("data_loss")
        elif ("deletionprotection" in last or "terminationprotection" in last) and low in _FALSE:
            found.add("protection_off")
        elif last == "disableapitermination" and low in _FALSE:
            found.add("protection_off")
        elif low == "all" and operation.startswith("Modify") and operation.endswith("Attribute"):
            found.add("public")
    if operation == "ChangeResourceRecordSets":
        # Only a body made of CREATEs is harmless; anything else, or an unreadable
        # body, deletes or overwrites live DNS.
        actions = {a.upper() for a in _ROUTE53_ACTION.findall(body_text)}
        if actions != {"CREATE"}:
            found.add("data_loss")
    if operation == "PutBucketVersioning" and "suspended" in body_text.lower():
        found.add("data_loss")
    if _PUBLIC_PRINCIPAL.search(body_text):
        found.add("public")
    return found


# A policy or ACL that names everyone.
_PUBLIC_PRINCIPAL = re.compile(
    r'"(?:Principal|AWS)"\s*:\s*(?:\[\s*)?"\*"|acs\.amazonaws\.com/groups/global/(?:AllUsers|AuthenticatedUsers)'
    r'|"Principal"\s*:\s*\{\s*"AWS"\s*:\s*(?:\[\s*)?"\*"')


def _number(text: str) -> float | None:
    # "0", "0.0", "-1", "00", " 0 ": what a server's number parser accepts.
    try:
        return float(text)
    except ValueError:
        return None
