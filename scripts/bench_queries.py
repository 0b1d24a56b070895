#!/usr/bin/env python3
"""Query benchmark for the audit store: synthetic events, the real `shield` commands, and alternatives.

    python scripts/bench_queries.py [--events 10000000] [--dir DIR] [--keep] [--reuse] [--out FILE]

1. Generates `--events` synthetic events in DuckDB SQL alone (range() + hash()) into DIR/audit.duckdb,
   table `events` with exactly record.COLUMNS, in time order (seq follows ts), then lets `store.ingest`
   create the views and the checkpoints table as it does for a real trail, and makes an empty DIR/journal/.
   The data: 50 agents with a skewed load, kubernetes / sql / github REST / aws / SaaS+LLM calls,
   26 namespaces (prod-1..prod-8, staging, dev, system), ~30 days; one flow is a `request` row, a
   `decision` row when it was held, and a `response` (or `error`) row; bodies of a few hundred bytes.
   NOT real: row_hash/prev_hash are placeholders (they link, but are not the SHA-256 of the canonical
   form: `shield verify` fails and `shield show` reports hash_ok false), request/response sha256 are
   placeholders, the bodies are templates (they compress better than real traffic), and columns the
   model does not know (today hold_id, hold_key of retry-mode holds) stay NULL.
2. Times each query warm in-process (one store.connect_reader session, median/p90 of 5 runs after a
   warm-up) - the engine time, judged against the 300 ms target -, `cli.main()` in-process (reader
   setup + query + JSON rendering, no interpreter start), a new Python process's first query
   (connect + query, timed inside it: cold-ish, the OS page cache stays warm) and the `shield` command
   itself as a subprocess, next to `shield --version` (interpreter and import start-up).
3. Looks at why slow queries are slow (EXPLAIN ANALYZE) and measures alternatives built on the side:
   P1 a timeline query that filters events before grouping (CLI change only), P2 a per-flow summary
   table maintained at ingest (schema change), P3 an ART index on events.flow_id for `shield show`.
4. Times a full Parquet export (COPY ... PARTITION_BY (date), zstd) in a child process, again with a
   memory limit if it passes --rss-limit-gib, and `shield export` if it exists (same RSS guard).

Without --keep, DIR is deleted at the end (only a directory this script created and marked).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

if importlib.util.find_spec("shield_addon") is None:  # run from a checkout without installing it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from shield_addon import __version__, cli, record, store  # noqa: E402

TARGET_MS = 300.0
RUNS = 5
MARKER = ".shield-bench"
T0 = datetime(2026, 10, 1)
SPAN_DAYS = 30
CHAIN_ID = "5f0c2d1e-7a3b-4c9d-8e1f-2a3b4c5d6e7f"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
CHUNK = 1_000_000  # events per INSERT

# ================================================================ the synthetic world

ROLES = ("sre-copilot", "deploy-bot", "data-analyst", "support-agent", "code-reviewer")
AGENTS = [f"{ROLES[i % 5]}-{i // 5 + 1:02d}" for i in range(50)]  # index 0 is the busiest
K8S, SQL, GITHUB, AWS, SAAS = range(5)
HOME_KIND = (K8S, K8S, SQL, SAAS, GITHUB)  # per role: 60% of its calls, the rest from KIND_WEIGHTS
KIND_WEIGHTS = ((K8S, 0.35), (SQL, 0.20), (GITHUB, 0.20), (AWS, 0.15), (SAAS, 0.10))
NAMESPACES = ([f"prod-{i}" for i in range(1, 9)] + [f"staging-{i}" for i in range(1, 5)] + [f"dev-{i}" for i in range(1, 9)]
              + ["default", "kube-system", "monitoring", "argocd", "ingress-nginx", "cert-manager"])
APPS = ("api", "web", "worker", "payments", "checkout", "search", "auth", "billing", "ingest", "scheduler",
        "notifier", "reports", "catalog", "inventory", "gateway")
TEAMS = ("platform", "payments", "growth", "data", "core")
TABLES = ("orders", "customers", "payments", "invoices", "events", "sessions", "products", "inventory", "users", "refunds")
REGIONS = ("eu-west", "us-east", "apac")
REPOS = ("api", "web", "infra", "docs", "mobile", "ml-pipeline", "terraform", "helm-charts")
BUCKETS = ("acme-logs", "acme-backups", "acme-data-lake", "acme-artifacts")
REVIEWERS = ("alice", "bob", "carol", "dave", "erin", "frank")
DENY_COMMENTS = ("change freeze until Monday", "no ticket referenced", "wrong namespace", "ask in #sre first")
# name, weight, api prefix, kind, apiVersion
K8S_RESOURCES = (
    ("pods", 0.34, "/api/v1", "Pod", "v1"), ("deployments", 0.18, "/apis/apps/v1", "Deployment", "apps/v1"),
    ("services", 0.08, "/api/v1", "Service", "v1"), ("configmaps", 0.12, "/api/v1", "ConfigMap", "v1"),
    ("secrets", 0.035, "/api/v1", "Secret", "v1"), ("jobs", 0.08, "/apis/batch/v1", "Job", "batch/v1"),
    ("statefulsets", 0.05, "/apis/apps/v1", "StatefulSet", "apps/v1"),
    ("ingresses", 0.04, "/apis/networking.k8s.io/v1", "Ingress", "networking.k8s.io/v1"),
    ("rolebindings", 0.02, "/apis/rbac.authorization.k8s.io/v1", "RoleBinding", "rbac.authorization.k8s.io/v1"),
)
RULES = {  # id: (verdict, severity), as in the bundled rule files
    "k8s-delete-in-prod": ("hold", "critical"), "k8s-rbac-change": ("hold", "critical"), "k8s-exec": ("hold", "high"),
    "k8s-secret-read": ("hold", "high"), "k8s-scale-to-zero": ("hold", "high"), "k8s-delete": ("hold", "high"),
    "sql-drop-truncate": ("deny", "critical"), "sql-write-without-where": ("hold", "high"), "sql-alter": ("hold", "high"),
    "sql-grant-revoke": ("hold", "high"), "gh-repo-delete": ("deny", "critical"), "gh-branch-delete": ("hold", "medium"),
    "gh-branch-protection": ("hold", "high"), "gh-repo-settings": ("hold", "high"), "aws-iam-change": ("hold", "critical"),
    "aws-s3-delete": ("hold", "high"), "aws-terminate": ("hold", "critical"), "aws-stop": ("hold", "high"),
    "aws-delete": ("hold", "high"), "pay-refund": ("deny", "critical"), "msg-slack": ("hold", "medium"),
    "msg-sendgrid": ("hold", "medium"), "llm-provider": ("allow", None),
}
# decision of a held flow: code, name, share
HOLD_OUTCOMES = ((2, "approved", 0.72), (3, "denied", 0.14), (4, "timed_out", 0.09), (5, "killed", 0.03), (6, "abandoned", 0.02))
DECISIONS = ("allowed", "blocked", "approved", "denied", "timed_out", "killed", "abandoned")  # code = index
STAGES = ("request", "decision", "response", "error")  # code = index

K8S_OBJ = ('{"kind":"{k8skind}","apiVersion":"{apiver}","metadata":{"name":"{k8sname}","namespace":"{ns}","uid":"{uid}",'
           '"resourceVersion":"{n2}","creationTimestamp":"2026-09-{dd}T{hh}:12:09Z","labels":{"app":"{app}","team":"{team}",'
           '"app.kubernetes.io/version":"1.{n}.0"}},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"{app}",'
           '"image":"registry.acme.internal/{app}:{hex}","ports":[{"containerPort":8080}]}]}}},'
           '"status":{"phase":"Running","podIP":"10.{ip}"}}')
K8S_LIST = ('{"kind":"{k8skind}List","apiVersion":"{apiver}","metadata":{"resourceVersion":"{n2}"},"items":[{"metadata":'
            '{"name":"{app}-{hex}","namespace":"{ns}","uid":"{uid}","labels":{"app":"{app}","team":"{team}"}},"status":'
            '{"phase":"Running"}},{"metadata":{"name":"{app}-{hex2}","namespace":"{ns}","labels":{"app":"{app}"}},'
            '"status":{"phase":"Running","podIP":"10.{ip}"}}]}')
K8S_MANIFEST = ('{"apiVersion":"{apiver}","kind":"{k8skind}","metadata":{"name":"{k8sname}","namespace":"{ns}","labels":'
                '{"app":"{app}","team":"{team}","app.kubernetes.io/managed-by":"{agent}"}},"spec":{"replicas":{dd},'
                '"template":{"spec":{"containers":[{"name":"{app}","image":"registry.acme.internal/{app}:{hex}",'
                '"resources":{"limits":{"cpu":"500m","memory":"512Mi"}}}]}}}}')
K8S_STATUS = ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"{k8sname}",'
              '"kind":"{res}","uid":"{uid}"}}')
SQL_BODY = ('{"statement":"{stmt}","warehouse_id":"4b9d1c7e2a5f3e60","catalog":"main","schema":"sales",'
            '"wait_timeout":"30s","format":"JSON_ARRAY","disposition":"INLINE","parameters":[]}')
SQL_ROWS = ('{"statement_id":"01ef{hex}","status":{"state":"SUCCEEDED"},"manifest":{"format":"JSON_ARRAY","schema":'
            '{"column_count":5,"columns":[{"name":"order_id","type_name":"LONG"},{"name":"customer_id","type_name":"LONG"},'
            '{"name":"total_amount","type_name":"DECIMAL"},{"name":"status","type_name":"STRING"},{"name":"created_at",'
            '"type_name":"TIMESTAMP"}]},"total_row_count":{n}},"result":{"row_count":2,"data_array":[["{n2}","{n}",'
            '"{n}.{dd}","shipped","2026-09-{dd}T{hh}:04:11Z"],["{n}","{n2}","1{dd}.50","pending","2026-09-{dd}T{hh}:17:42Z"]]}}')
SQL_DONE = ('{"statement_id":"01ef{hex}","status":{"state":"SUCCEEDED"},"manifest":{"format":"JSON_ARRAY",'
            '"total_row_count":1},"result":{"row_count":1,"data_array":[["1"]]}}')
GH_PULL = ('{"url":"https://api.github.com/repos/acme/{repo}/pulls/{n}","id":{n2}{dd},"number":{n},"state":"open",'
           '"title":"Fix flaky {app} test","user":{"login":"{agent}","type":"Bot"},"head":{"ref":"fix/{app}-{hex}",'
           '"sha":"{hex}{hex2}"},"base":{"ref":"main"},"mergeable":true,"comments":{dd},"commits":3,"additions":{n},'
           '"deletions":{dd}}')
GH_OK = '{"id":{n2}{dd},"node_id":"PR_kwDO{hex}","html_url":"https://github.com/acme/{repo}/pull/{n}","updated_at":"2026-10-{dd}T{hh}:00:00Z"}'
AWS_XML = ('<?xml version="1.0" encoding="UTF-8"?><{op}Response xmlns="https://{svc}.amazonaws.com/doc/"><requestId>{uid}'
           '</requestId><item><id>i-0{hex}</id><state><name>running</name></state><tagSet><item><key>team</key><value>{team}'
           '</value></item><item><key>app</key><value>{app}</value></item></tagSet></item></{op}Response>')
AWS_DATA = ('{"run_id":"{hex}","rows":{n2},"status":"ok","metrics":{"p50_ms":{dd},"p99_ms":{n}},'
            '"source":"s3://{bucket}/{key}","schema":["id","ts","value","tags"]}')
DDB_ITEM = '{"Item":{"id":{"S":"o-{n2}"},"status":{"S":"shipped"},"total":{"N":"{n}.{dd}"},"customer":{"S":"c-{hex}"}}}'
LLM_CHAT = ('{"model":"gpt-4.1-mini","temperature":0.2,"max_tokens":800,"messages":[{"role":"system","content":"You are '
            '{agent}, an operations assistant for acme."},{"role":"user","content":"Summarise the last {dd} alerts for {app} '
            'in {ns} and propose a fix."}]}')
LLM_REPLY = ('{"id":"chatcmpl-{hex}","object":"chat.completion","model":"gpt-4.1-mini-2025-04-14","choices":[{"index":0,'
             '"message":{"role":"assistant","content":"The {app} alerts share one cause: the readiness probe times out after '
             'deploy {hex2}. Raise the timeout to 5s and roll back if errors persist."},"finish_reason":"stop"}],'
             '"usage":{"prompt_tokens":{n},"completion_tokens":{dd},"total_tokens":{n2}}}')
STRIPE_OBJ = ('{"id":"ch_{hex}","object":"charge","amount":{n},"currency":"eur","customer":"cus_{hex2}","status":"succeeded",'
              '"paid":true,"refunded":false,"description":"Order {n2}","metadata":{"order_id":"{n2}"}}')


def op(kind: int, w: float, key: str, method: str, operation: str, action_type: str, *, service: str | None = None,
       host: str, path: str, query: str = "", rtype: str | None = None, rname: str | None = None,
       tables: str | None = None, rule: str | None = None, req: str = "", resp: str = '{"ok":true}') -> dict[str, Any]:
    return dict(kind=kind, w=w, key=key, method=method, operation=operation, action_type=action_type,
                service=service or host, host=host, path=path, query=query, rtype=rtype, rname=rname,
                tables=tables, rule=rule, req=req, resp=resp)


def sql_op(w: float, operation: str, action_type: str, stmt: str, rule: str | None = None, rows: bool = False) -> dict[str, Any]:
    return op(SQL, w, operation, "POST", operation, action_type, service="sql", host="dbc-4f2a91c7-3b6e.cloud.databricks.com",
              path="/api/2.0/sql/statements", tables="sales.{tbl}", rule=rule, req=SQL_BODY.replace("{stmt}", stmt),
              resp=SQL_ROWS if rows else SQL_DONE)


def aws_op(w: float, svc: str, operation: str, action_type: str, rule: str | None = None, **kw: Any) -> dict[str, Any]:
    host = kw.pop("host", f"{svc}.us-east-1.amazonaws.com")
    kw.setdefault("path", "/")
    kw.setdefault("method", "POST")
    kw.setdefault("resp", AWS_XML.replace("{op}", operation).replace("{svc}", svc))
    return op(AWS, w, operation, kw.pop("method"), operation, action_type, service=f"aws:{svc}", host=host, rule=rule, **kw)


_K8S = dict(service="kubernetes", host="{k8shost}", path="{k8spath}", rtype="{res}", rname="{k8sname}")
_REPO = "/repos/acme/{repo}"
OPS: list[dict[str, Any]] = [
    op(K8S, 0.42, "get", "GET", "get", "read", **_K8S, resp=K8S_OBJ),
    op(K8S, 0.22, "list", "GET", "list", "read", **{**_K8S, "rname": None}, query="limit=500", resp=K8S_LIST),
    op(K8S, 0.05, "watch", "GET", "watch", "read", **{**_K8S, "rname": None}, query="watch=true&resourceVersion={n2}",
       resp=K8S_LIST),
    op(K8S, 0.09, "patch", "PATCH", "patch", "update", **_K8S, req=K8S_MANIFEST, resp=K8S_OBJ),
    op(K8S, 0.08, "create", "POST", "create", "create", **_K8S, req=K8S_MANIFEST, resp=K8S_OBJ),
    op(K8S, 0.05, "update", "PUT", "update", "update", **_K8S, req=K8S_MANIFEST, resp=K8S_OBJ),
    op(K8S, 0.035, "delete", "DELETE", "delete", "delete", **_K8S,
       req='{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}', resp=K8S_STATUS),
    op(K8S, 0.01, "exec", "POST", "create", "execute", **{**_K8S, "rtype": "pods/exec"},
       query="command=sh&command=-c&command=env&stdin=false&stdout=true&stderr=true", resp=""),
    sql_op(0.80, "SELECT", "read", "SELECT order_id, customer_id, total_amount, status, created_at FROM sales.{tbl} WHERE "
           "created_at >= '2026-09-{dd}' AND region = '{region}' ORDER BY created_at DESC LIMIT {n}", rows=True),
    sql_op(0.07, "INSERT", "create", "INSERT INTO sales.{tbl} (id, customer_id, amount, status, note) VALUES ({n2}, {n}, "
           "{n}.{dd}, 'pending', 'created by {agent}')"),
    sql_op(0.06, "UPDATE", "update", "UPDATE sales.{tbl} SET status = 'shipped', updated_at = now() WHERE id = {n2}"),
    sql_op(0.03, "DELETE", "delete", "DELETE FROM sales.{tbl} WHERE id = {n2} AND status = 'cancelled'"),
    sql_op(0.01, "UPDATE", "update", "UPDATE sales.{tbl} SET status = 'archived'", "sql-write-without-where"),
    sql_op(0.005, "DELETE", "delete", "DELETE FROM sales.{tbl}", "sql-write-without-where"),
    sql_op(0.006, "DROP", "delete", "DROP TABLE sales.{tbl}", "sql-drop-truncate"),
    sql_op(0.004, "TRUNCATE", "delete", "TRUNCATE TABLE sales.{tbl}", "sql-drop-truncate"),
    sql_op(0.006, "ALTER", "update", "ALTER TABLE sales.{tbl} ADD COLUMN note_{n} VARCHAR", "sql-alter"),
    sql_op(0.002, "GRANT", "update", "GRANT SELECT ON sales.{tbl} TO analyst_{n}", "sql-grant-revoke"),
    op(GITHUB, 0.30, "pull", "GET", "get", "read", host="api.github.com", path=_REPO + "/pulls/{n}", resp=GH_PULL),
    op(GITHUB, 0.20, "contents", "GET", "get", "read", host="api.github.com", path=_REPO + "/contents/src/{app}/main.py",
       resp='{"type":"file","encoding":"base64","size":{n2},"name":"main.py","path":"src/{app}/main.py","sha":"{hex}{hex2}",'
            '"content":"aW1wb3J0IG9zCmltcG9ydCBzeXMKZnJvbSBhcHAgaW1wb3J0IHNlcnZlCg{hex}"}'),
    op(GITHUB, 0.15, "runs", "GET", "get", "read", host="api.github.com", path=_REPO + "/actions/runs", query="branch=main&per_page=5",
       resp='{"total_count":{n},"workflow_runs":[{"id":{n2}{n},"name":"ci","head_branch":"main","head_sha":"{hex}{hex2}",'
            '"status":"completed","conclusion":"success","run_attempt":1}]}'),
    op(GITHUB, 0.08, "search", "GET", "get", "read", host="api.github.com", path="/search/issues",
       query="q=repo%3Aacme%2F{repo}+is%3Aopen+label%3Abug",
       resp='{"total_count":{dd},"incomplete_results":false,"items":[{"number":{n},"title":"{app} crashes on empty input",'
            '"state":"open","labels":[{"name":"bug"}]}]}'),
    op(GITHUB, 0.12, "comment", "POST", "post", "create", host="api.github.com", path=_REPO + "/issues/{n}/comments",
       req='{"body":"Automated review by {agent}: checked {dd} files in {app}, found 2 issues. Details: '
           'https://ci.acme.internal/runs/{hex}"}',
       resp='{"id":{n2}{dd},"html_url":"https://github.com/acme/{repo}/pull/{n}#issuecomment-{n2}{dd}","user":'
            '{"login":"{agent}"},"created_at":"2026-10-{dd}T{hh}:00:00Z","body":"Automated review by {agent}"}'),
    op(GITHUB, 0.03, "open-pr", "POST", "post", "create", host="api.github.com", path=_REPO + "/pulls",
       req='{"title":"Bump {app} to 1.{n}.0","head":"bump/{app}-{hex}","base":"main","body":"Automated dependency update.",'
           '"draft":false}', resp=GH_PULL),
    op(GITHUB, 0.05, "close-pr", "PATCH", "patch", "update", host="api.github.com", path=_REPO + "/pulls/{n}",
       req='{"state":"closed"}', resp=GH_PULL),
    op(GITHUB, 0.03, "merge", "PUT", "put", "update", host="api.github.com", path=_REPO + "/pulls/{n}/merge",
       req='{"merge_method":"squash","commit_title":"Merge #{n}"}', resp='{"sha":"{hex}{hex2}","merged":true,"message":"merged"}'),
    op(GITHUB, 0.005, "protection", "PUT", "put", "update", host="api.github.com", path=_REPO + "/branches/main/protection",
       req='{"required_status_checks":null,"enforce_admins":false,"required_pull_request_reviews":null,"restrictions":null}',
       rule="gh-branch-protection", resp=GH_OK),
    op(GITHUB, 0.01, "branch-delete", "DELETE", "delete", "delete", host="api.github.com",
       path=_REPO + "/git/refs/heads/fix/{app}-{hex}", rule="gh-branch-delete", resp=""),
    op(GITHUB, 0.002, "repo-delete", "DELETE", "delete", "delete", host="api.github.com", path=_REPO, rule="gh-repo-delete",
       resp=""),
    op(GITHUB, 0.004, "repo-settings", "PATCH", "patch", "update", host="api.github.com", path=_REPO,
       req='{"visibility":"public","has_issues":false}', rule="gh-repo-settings", resp=GH_OK),
    aws_op(0.30, "s3", "GetObject", "read", host="{bucket}.s3.us-east-1.amazonaws.com", method="GET", path="/{key}",
           rtype="object", rname="{bucket}/{key}", resp=AWS_DATA),
    aws_op(0.12, "s3", "PutObject", "create", host="{bucket}.s3.us-east-1.amazonaws.com", method="PUT", path="/{key}",
           rtype="object", rname="{bucket}/{key}", req=AWS_DATA, resp=""),
    aws_op(0.15, "s3", "ListObjectsV2", "read", host="{bucket}.s3.us-east-1.amazonaws.com", method="GET",
           query="list-type=2&prefix=exports%2F{app}%2F&max-keys=100", rtype="bucket", rname="{bucket}",
           resp='<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{bucket}</Name><KeyCount>1</KeyCount>'
                '<Contents><Key>{key}</Key><Size>{n2}</Size><ETag>&quot;{hex}{hex2}&quot;</ETag></Contents></ListBucketResult>'),
    aws_op(0.04, "s3", "DeleteObject", "delete", "aws-s3-delete", host="{bucket}.s3.us-east-1.amazonaws.com",
           method="DELETE", path="/{key}", rtype="object", rname="{bucket}/{key}", resp=""),
    aws_op(0.15, "ec2", "DescribeInstances", "read", rtype="instance",
           req="Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Ateam&Filter.1.Value.1={team}"),
    aws_op(0.015, "ec2", "StopInstances", "update", "aws-stop", rtype="instance", rname="i-0{hex}",
           req="Action=StopInstances&Version=2016-11-15&InstanceId.1=i-0{hex}"),
    aws_op(0.01, "ec2", "TerminateInstances", "delete", "aws-terminate", rtype="instance", rname="i-0{hex}",
           req="Action=TerminateInstances&Version=2016-11-15&InstanceId.1=i-0{hex}"),
    aws_op(0.05, "iam", "ListRoles", "read", host="iam.amazonaws.com", rtype="role",
           req="Action=ListRoles&Version=2010-05-08&MaxItems=100"),
    aws_op(0.008, "iam", "AttachRolePolicy", "update", "aws-iam-change", host="iam.amazonaws.com", rtype="role",
           rname="{app}-role", req="Action=AttachRolePolicy&Version=2010-05-08&RoleName={app}-role&PolicyArn="
                                  "arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FAdministratorAccess"),
    aws_op(0.06, "dynamodb", "GetItem", "read", rtype="table", rname="{tbl}", tables="{tbl}",
           req='{"TableName":"{tbl}","Key":{"id":{"S":"o-{n2}"}},"ConsistentRead":false}', resp=DDB_ITEM),
    aws_op(0.04, "dynamodb", "Query", "read", rtype="table", rname="{tbl}", tables="{tbl}",
           req='{"TableName":"{tbl}","KeyConditionExpression":"customer = :c","ExpressionAttributeValues":{":c":{"S":"c-{hex}"}}}',
           resp=DDB_ITEM),
    aws_op(0.005, "dynamodb", "DeleteItem", "delete", "aws-delete", rtype="table", rname="{tbl}", tables="{tbl}",
           req='{"TableName":"{tbl}","Key":{"id":{"S":"o-{n2}"}}}', resp="{}"),
    op(SAAS, 0.15, "slack-read", "GET", "get", "read", host="slack.com", path="/api/conversations.history",
       query="channel=C0{n2}&limit=50",
       resp='{"ok":true,"messages":[{"type":"message","user":"U0{n2}","text":"deploy of {app} {hex} finished","ts":"17{n2}.{n}"}],'
            '"has_more":false}'),
    op(SAAS, 0.05, "slack-post", "POST", "post", "create", host="slack.com", path="/api/chat.postMessage", rule="msg-slack",
       req='{"channel":"C0{n2}","text":"{agent}: {app} in {ns} is degraded, rolling back to {hex2}","unfurl_links":false}',
       resp='{"ok":true,"channel":"C0{n2}","ts":"17{n2}.{n}"}'),
    op(SAAS, 0.12, "stripe-charge", "GET", "get", "read", host="api.stripe.com", path="/v1/charges/ch_{hex}", resp=STRIPE_OBJ),
    op(SAAS, 0.08, "stripe-customer", "GET", "get", "read", host="api.stripe.com", path="/v1/customers/cus_{hex2}",
       resp='{"id":"cus_{hex2}","object":"customer","email":"[redacted:{hex}]","created":17{n2},"currency":"eur"}'),
    op(SAAS, 0.03, "stripe-refund", "POST", "post", "create", host="api.stripe.com", path="/v1/refunds", rule="pay-refund",
       req="charge=ch_{hex}&amount={n}&reason=requested_by_customer",
       resp='{"id":"re_{hex2}","object":"refund","amount":{n},"charge":"ch_{hex}","status":"succeeded"}'),
    op(SAAS, 0.35, "llm-chat", "POST", "post", "create", host="api.openai.com", path="/v1/chat/completions", rule="llm-provider",
       req=LLM_CHAT, resp=LLM_REPLY),
    op(SAAS, 0.13, "llm-embed", "POST", "post", "create", host="api.openai.com", path="/v1/embeddings", rule="llm-provider",
       req='{"model":"text-embedding-3-small","input":["{app} readiness probe timeout in {ns}","rollback {hex2}"]}',
       resp='{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0{n},-0.0{dd},0.0{n2}]}],'
            '"model":"text-embedding-3-small","usage":{"prompt_tokens":{dd},"total_tokens":{dd}}}'),
    op(SAAS, 0.05, "sendgrid", "POST", "post", "create", host="api.sendgrid.com", path="/v3/mail/send", rule="msg-sendgrid",
       req='{"personalizations":[{"to":[{"email":"[redacted:{hex}]"}]}],"from":{"email":"noreply@acme.example"},'
           '"subject":"Your order {n2}","content":[{"type":"text/plain","value":"Your order {n2} has shipped."}]}',
       resp=""),
]
USER_AGENTS = ("kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46", "databricks-sdk-py/0.38.0 python/3.12.7",
               "octokit-rest.js/21.0.2", "aws-sdk-go-v2/1.32.4 os/linux lang/go#1.23.3", "python-httpx/0.28.1")

# ---------------------------------------------------------------- SQL helpers


def lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def lst(values: Sequence[Any]) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"


def pick(u: str, choices: Sequence[tuple[Any, float]]) -> str:
    """CASE choosing a value with the given weights (normalised) from a uniform [0, 1) expression."""
    total = sum(w for _, w in choices)
    acc, parts = 0.0, []
    for value, w in choices[:-1]:
        acc += w / total
        parts.append(f"WHEN {u} < {acc:.6f} THEN {lit(value)}")
    return f"(CASE {' '.join(parts)} ELSE {lit(choices[-1][0])} END)"


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def tpl(template: str | None) -> str:
    """'a{x}b' -> SQL concat of literals and the layer-B columns p_x."""
    if template is None:
        return "NULL"
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            parts.append(lit(template[pos:m.start()]))
        parts.append(f"p_{m.group(1)}")
        pos = m.end()
    if pos < len(template):
        parts.append(lit(template[pos:]))
    return "(" + " || ".join(parts) + ")" if parts else "''"


def by_op(field: str, wrap: Callable[[Any], str] = tpl) -> str:
    """CASE over the flow's operation index (1-based into OPS)."""
    whens = " ".join(f"WHEN {i} THEN {wrap(o[field])}" for i, o in enumerate(OPS, 1))
    return f"(CASE oi {whens} END)"


def u(k: int, key: str = "f") -> str:
    """A uniform [0, 1) number from the flow number and a salt."""
    return f"((hash({key}, {k}) % 1000003) / 1000003.0)"


def h(k: int, n: int) -> str:
    """An integer in [0, n) from the flow number and a salt."""
    return f"(hash(f, {k}) % {n})::INTEGER"


# ---------------------------------------------------------------- generation


def flows_sql(n_flows: int) -> str:
    """One row per flow with everything that decides its events: who, what, verdict, decision, timing."""
    step_us = SPAN_DAYS * 86400 * 1e6 / n_flows
    kind_of_op = {K8S: [], SQL: [], GITHUB: [], AWS: [], SAAS: []}
    for i, o in enumerate(OPS, 1):
        kind_of_op[o["kind"]].append((i, o["w"]))
    oi = "(CASE kind " + " ".join(f"WHEN {k} THEN {pick(u(4), v)}" for k, v in kind_of_op.items()) + " END)"
    verb = by_op("key", lit)
    res = lst([r[0] for r in K8S_RESOURCES])
    k8s_rule = f"""(CASE WHEN {verb} = 'delete' AND ns LIKE 'prod-%' THEN 'k8s-delete-in-prod'
        WHEN {res}[ri + 1] = 'rolebindings' AND {verb} IN ('create', 'update', 'patch', 'delete') THEN 'k8s-rbac-change'
        WHEN {verb} = 'exec' THEN 'k8s-exec'
        WHEN {res}[ri + 1] = 'secrets' AND {verb} IN ('get', 'list', 'watch') THEN 'k8s-secret-read'
        WHEN {verb} = 'patch' AND {res}[ri + 1] = 'deployments' AND {u(11)} < 0.05 THEN 'k8s-scale-to-zero'
        WHEN {verb} = 'delete' THEN 'k8s-delete' END)"""
    verdict = "(CASE rule " + " ".join(f"WHEN {lit(r)} THEN {lit(v)}" for r, (v, _) in RULES.items()) + " ELSE 'allow' END)"
    hold = pick(u(7), [(c, w) for c, _, w in HOLD_OUTCOMES])
    return f"""
    SELECT f, ai, kind, oi, nsi, ri, rule, dec,
        TIMESTAMP '{T0.isoformat(sep=' ')}' + to_microseconds(((f + {u(8)}) * {step_us})::BIGINT) AS t_req,
        CASE dec WHEN 4 THEN 300000000
                 WHEN 5 THEN (5 + 115 * {u(9)}) * 1e6
                 WHEN 6 THEN (5 + 115 * {u(9)}) * 1e6
                 WHEN 2 THEN (3 + 297 * pow({u(9)}, 2.5)) * 1e6
                 WHEN 3 THEN (3 + 297 * pow({u(9)}, 2.5)) * 1e6
                 ELSE 0 END::BIGINT AS wait_us,
        CASE WHEN dec IN (0, 2) THEN (15 + 15 * exp({u(10)} * ln(120))) * 1000
             ELSE (1 + 3 * {u(10)}) * 1000 END::BIGINT AS dur_us,
        CASE WHEN dec IN (5, 6) OR (dec IN (0, 2) AND {u(12)} < 0.007) THEN 3 ELSE 2 END AS fin
    FROM (
        SELECT *, CASE {verdict} WHEN 'allow' THEN 0 WHEN 'deny' THEN 1 ELSE {hold} END AS dec
        FROM (
            SELECT *, CASE WHEN kind = {K8S} THEN {k8s_rule} ELSE {by_op('rule', lit)} END AS rule
            FROM (
                SELECT *, {lst(NAMESPACES)}[nsi + 1] AS ns
                FROM (
                    SELECT f, ai, kind, oi,
                        least({len(NAMESPACES) - 1}, floor({len(NAMESPACES)} * pow({u(5)}, 1.3)))::INTEGER AS nsi,
                        CASE WHEN {verb} = 'exec' THEN 0
                             ELSE {pick(u(6), [(i, r[1]) for i, r in enumerate(K8S_RESOURCES)])} END AS ri
                    FROM (
                        SELECT f, ai, kind, {oi} AS oi
                        FROM (
                            SELECT f, ai, CASE WHEN {u(2)} < 0.6 THEN {lst(HOME_KIND)}[ai % 5 + 1]
                                               ELSE {pick(u(3), KIND_WEIGHTS)} END AS kind
                            FROM (SELECT range AS f, least(49, floor(50 * pow({u(1, 'range')}, 1.8)))::INTEGER AS ai
                                  FROM range({n_flows}))))))))
    """


def events_sql(lo: int, hi: int) -> str:
    """SELECT of events lo..hi (skel rowids), columns in record.COLUMNS order, read in skel (= ts) order."""
    res = K8S_RESOURCES
    prod_host, other_host = "api.k8s-prod.acme.internal", "api.k8s-nonprod.acme.internal"
    k8sname = """(CASE ri WHEN 0 THEN p_app || '-' || substr(hy, 1, 10) || '-' || substr(hy, 11, 5)
        WHEN 3 THEN p_app || '-config' WHEN 4 THEN p_app || '-db-credentials'
        WHEN 5 THEN p_app || '-migrate-' || p_n WHEN 8 THEN p_app || '-deployer' ELSE p_app END)"""
    layer_b = {  # placeholders for the templates (all strings)
        "hy": "md5(f::VARCHAR || 'x')",
        "p_flow": ("substr(hx, 1, 8) || '-' || substr(hx, 9, 4) || '-4' || substr(hx, 14, 3) || '-' || "
                   f"['8', '9', 'a', 'b'][{h(30, 4)} + 1] || substr(hx, 18, 3) || '-' || substr(hx, 21, 12)"),
        "p_agent": f"{lst(AGENTS)}[ai + 1]",
        "p_ns": f"{lst(NAMESPACES)}[nsi + 1]",
        "p_n": f"({h(31, 9000)} + 100)::VARCHAR",
        "p_n2": f"({h(32, 900000)} + 100000)::VARCHAR",
        "p_dd": f"lpad(({h(33, 28)} + 1)::VARCHAR, 2, '0')",
        "p_hh": f"lpad({h(34, 24)}::VARCHAR, 2, '0')",
        "p_ip": f"{h(35, 250)} || '.' || {h(36, 250)} || '.' || {h(37, 250)}",
        "p_app": f"{lst(APPS)}[{h(38, len(APPS))} + 1]",
        "p_team": f"{lst(TEAMS)}[{h(39, len(TEAMS))} + 1]",
        "p_tbl": f"{lst(TABLES)}[{h(40, len(TABLES))} + 1]",
        "p_region": f"{lst(REGIONS)}[{h(41, len(REGIONS))} + 1]",
        "p_repo": f"{lst(REPOS)}[{h(42, len(REPOS))} + 1]",
        "p_bucket": f"{lst(BUCKETS)}[{h(43, len(BUCKETS))} + 1]",
        "p_res": f"{lst([r[0] for r in res])}[ri + 1]",
        "p_apiver": f"{lst([r[4] for r in res])}[ri + 1]",
        "p_k8skind": f"{lst([r[3] for r in res])}[ri + 1]",
        "p_prefix": f"{lst([r[2] for r in res])}[ri + 1]",
        "p_status": (f"CASE WHEN dec NOT IN (0, 2) THEN 403 WHEN {u(44)} < 0.90 THEN "
                     f"(CASE WHEN {by_op('action_type', lit)} = 'create' THEN 201 ELSE 200 END) "
                     f"ELSE {pick(u(45), [(404, 0.5), (409, 0.1), (429, 0.15), (500, 0.15), (503, 0.1)])} END"),
    }
    layer_b2 = {
        "p_hex": "substr(hy, 1, 12)", "p_hex2": "substr(hy, 13, 12)",
        "p_uid": "substr(hy, 1, 8) || '-' || substr(hy, 9, 4) || '-4' || substr(hy, 14, 3) || '-a' || substr(hy, 18, 3) "
                 "|| '-' || substr(hy, 21, 12)",
        "p_key": "'exports/' || p_app || '/2026-10-' || p_dd || '/part-' || substr(hy, 1, 12) || '.json'",
        "p_k8sname": k8sname,
        "p_k8shost": f"CASE WHEN p_ns LIKE 'prod-%' THEN '{prod_host}' ELSE '{other_host}' END",
        "edited": f"(stage = 1 AND dec = 2 AND {u(46)} < 0.03)",
    }
    layer_b3 = {
        "p_k8spath": ("p_prefix || '/namespaces/' || p_ns || '/' || p_res || CASE WHEN "
                      f"{by_op('key', lit)} IN ('get', 'patch', 'update', 'delete') THEN '/' || p_k8sname "
                      f"WHEN {by_op('key', lit)} = 'exec' THEN '/' || p_k8sname || '/exec' ELSE '' END"),
    }
    layer_c = {  # strings the columns are built from
        "p_host": by_op("host"),
        "p_query": by_op("query"),
        "rb": f"CASE WHEN stage = 0 OR edited THEN {by_op('req')} END",
    }
    layer_d = {"p_path": by_op("path")}
    refuse_error = "(CASE dec WHEN 1 THEN 'request blocked by rule' WHEN 3 THEN 'request denied by reviewer' " \
                   "ELSE 'no reviewer decided in time' END)"
    layer_d["sb"] = f"""CASE WHEN stage <> 2 THEN NULL
        WHEN dec NOT IN (0, 2) THEN '{{"error":"' || {refuse_error} || '","decision":"' || {lst(DECISIONS)}[dec + 1]
            || '","flow_id":"' || p_flow || '","rule":' || coalesce('"' || rule || '"', 'null')
            || ',"message":"","reviewer_comment":null}}'
        WHEN p_status >= 400 THEN '{{"error":{{"code":' || p_status || ',"message":"upstream answered ' || p_status
            || '","request_id":"' || p_uid || '"}}}}'
        ELSE {by_op('resp')} END"""
    decision_name = f"{lst(DECISIONS)}[dec + 1]"
    via = "(CASE dec WHEN 2 THEN 'shield.approve' WHEN 3 THEN 'shield.deny' WHEN 4 THEN 'timeout' WHEN 5 THEN 'flow.kill' " \
          "ELSE 'client_disconnected' END)"
    comment = (f"(CASE dec WHEN 3 THEN CASE WHEN {u(47)} < 0.4 THEN {lst(DENY_COMMENTS)}[{h(48, len(DENY_COMMENTS))} + 1] END "
               "WHEN 4 THEN 'no decision in time; deny by rule' WHEN 6 THEN 'the agent disconnected while held' END)")
    fake_sha = "md5(hy || '{salt}') || md5(hy || '{salt}2')"
    req_headers = ("'[[\"host\",\"' || p_host || '\"],[\"user-agent\",\"' || " + f"{lst(USER_AGENTS)}[kind + 1]"
                   " || '\"],[\"accept\",\"application/json\"],[\"authorization\",\"[redacted:' || substr(md5(p_agent), 1, 12)"
                   " || ']\"]' || CASE WHEN rb <> '' THEN ',[\"content-type\",\"application/json\"],[\"content-length\",\"'"
                   " || strlen(rb) || '\"]' ELSE '' END || ',[\"x-request-id\",\"' || p_uid || '\"]]'")
    resp_headers = ("'[[\"content-type\",\"application/json\"],[\"date\",\"' || strftime(ts, '%a, %d %b %Y %H:%M:%S GMT')"
                    " || '\"],[\"content-length\",\"' || strlen(sb) || '\"],[\"x-shield-flow-id\",\"' || p_flow || '\"]]'")
    url = ("'https://' || p_host || CASE WHEN kind = 0 THEN ':6443' ELSE '' END || p_path || "
           "CASE WHEN p_query = '' THEN '' ELSE '?' || p_query END")
    forwarded = ("json_object('method', " + by_op("method", lit) + ", 'url', " + url + ", 'headers', json(" + req_headers
                 + "), 'body', rb, 'body_sha256', " + fake_sha.format(salt="q") + ")")
    req, dec_stage, fin = "stage = 0", "stage = 1", "stage >= 2"
    severity = "(CASE rule " + " ".join(f"WHEN {lit(r)} THEN {lit(s)}" for r, (_, s) in RULES.items()) + " END)"
    cols = {
        "seq": "rowid + 1",
        "chain_id": lit(CHAIN_ID),
        "prev_hash": f"CASE WHEN rowid = 0 THEN '{record.GENESIS}' ELSE md5('r' || rowid) || md5('h' || rowid) END",
        "row_hash": "md5('r' || (rowid + 1)) || md5('h' || (rowid + 1))",
        "ts": "ts",
        "stage": f"{lst(STAGES)}[stage + 1]",
        "flow_id": "p_flow",
        "agent": "p_agent",
        "client_ip": "'10.42.' || (ai // 8) || '.' || (ai * 7 % 250 + 3)",
        "method": by_op("method", lit),
        "scheme": "'https'",
        "host": "p_host",
        "port": "CASE WHEN kind = 0 THEN 6443 ELSE 443 END",
        "path": "p_path",
        "url": url,
        "request_headers": f"CASE WHEN {req} THEN {req_headers} END",
        "request_body": f"CASE WHEN {req} THEN rb END",
        "request_body_size": f"CASE WHEN {req} THEN strlen(rb) END",
        "request_sha256": f"CASE WHEN {req} THEN CASE WHEN rb = '' THEN '{EMPTY_SHA256}' ELSE {fake_sha.format(salt='q')} END END",
        "service": f"CASE WHEN {req} THEN {by_op('service')} END",
        "action_type": f"CASE WHEN {req} THEN {by_op('action_type', lit)} END",
        "operation": f"CASE WHEN {req} THEN {by_op('operation', lit)} WHEN {dec_stage} THEN {via} END",
        "resource_type": f"CASE WHEN {req} THEN {by_op('rtype')} END",
        "namespace": f"CASE WHEN {req} AND kind = 0 THEN p_ns END",
        "resource_name": f"CASE WHEN {req} THEN {by_op('rname')} END",
        "tables": f"CASE WHEN {req} THEN CASE WHEN {by_op('tables')} IS NULL THEN []::VARCHAR[] ELSE [{by_op('tables')}] END END",
        "rule_id": f"CASE WHEN {req} OR {dec_stage} THEN rule END",
        "verdict": f"CASE WHEN {req} OR {dec_stage} THEN CASE dec WHEN 0 THEN 'allow' WHEN 1 THEN 'deny' ELSE 'hold' END END",
        "matched_rules": (f"CASE WHEN {req} THEN CASE WHEN rule IS NULL THEN []::VARCHAR[] "
                          f"WHEN {by_op('method', lit)} = 'DELETE' THEN [rule, 'http-delete'] ELSE [rule] END END"),
        "mode": f"CASE WHEN {req} OR {dec_stage} THEN 'enforce' END",
        "ruleset_sha256": (f"CASE WHEN {req} OR {dec_stage} THEN md5('rules' || (epoch(t_req)::BIGINT // 345600)) "
                           "|| md5('RULES' || (epoch(t_req)::BIGINT // 345600)) END"),
        "severity": f"CASE WHEN {req} THEN {severity} END",
        "decision": f"CASE WHEN {req} THEN CASE dec WHEN 0 THEN 'allowed' WHEN 1 THEN 'blocked' END "
                    f"WHEN {dec_stage} THEN {decision_name} END",
        "reviewer": f"CASE WHEN {dec_stage} AND dec IN (2, 3, 5) THEN {lst(REVIEWERS)}[{h(49, len(REVIEWERS))} + 1] END",
        "decided_at": f"CASE WHEN {dec_stage} THEN ts END",
        "reviewer_comment": f"CASE WHEN {dec_stage} THEN {comment} END",
        "edited": f"CASE WHEN {dec_stage} THEN edited END",
        "forwarded_request": f"CASE WHEN edited THEN {forwarded} END",
        "status_code": "CASE WHEN stage = 2 THEN p_status END",
        "response_headers": f"CASE WHEN stage = 2 THEN {resp_headers} END",
        "response_body": "CASE WHEN stage = 2 THEN sb END",
        "response_body_size": "CASE WHEN stage = 2 THEN strlen(sb) END",
        "response_sha256": (f"CASE WHEN stage = 2 THEN CASE WHEN sb = '' THEN '{EMPTY_SHA256}' "
                            f"ELSE {fake_sha.format(salt='s')} END END"),
        "outcome": f"CASE WHEN {fin} THEN CASE WHEN dec IN (0, 2) AND stage = 2 THEN 'forwarded' "
                   "WHEN stage = 3 AND dec IN (0, 2) THEN 'error' ELSE 'refused' END END",
        "error": ("CASE WHEN stage = 3 THEN CASE WHEN dec IN (5, 6) THEN 'Connection killed.' ELSE "
                  "'Server connection to (''' || p_host || ''', 443) failed: Connection timed out' END END"),
        "duration_ms": f"CASE WHEN {fin} THEN round(date_diff('microsecond', t_req, ts) / 1000.0, 3) END",
    }
    assert tuple(cols) == MODELLED
    gone = set(cols) - set(record.COLUMN_NAMES)
    if gone:
        raise SystemExit(f"record.COLUMNS no longer has {sorted(gone)}: update events_sql()")
    # columns this model does not know (newer features, e.g. retry-mode holds) stay NULL
    select = ",\n        ".join(f"CAST({cols.get(n, 'NULL')} AS {t}) AS {n}" for n, t in record.COLUMNS)

    def layer(src: str, exprs: dict[str, str]) -> str:
        return "SELECT *, " + ", ".join(f"{e} AS {n}" for n, e in exprs.items()) + f" FROM ({src})"

    src = f"SELECT rowid, *, md5(f::VARCHAR) AS hx FROM skel WHERE rowid BETWEEN {lo} AND {hi}"
    for exprs in (layer_b, layer_b2, layer_b3, layer_c, layer_d):
        src = layer(src, exprs)
    return f"SELECT {select}\n    FROM ({src})"


MODELLED = ("seq", "chain_id", "prev_hash", "row_hash", "ts", "stage", "flow_id", "agent", "client_ip", "method", "scheme",
            "host", "port", "path", "url", "request_headers", "request_body", "request_body_size", "request_sha256",
            "service", "action_type", "operation", "resource_type", "namespace", "resource_name", "tables", "rule_id",
            "verdict", "matched_rules", "mode", "ruleset_sha256", "severity", "decision", "reviewer", "decided_at",
            "reviewer_comment", "edited", "forwarded_request", "status_code", "response_headers", "response_body",
            "response_body_size", "response_sha256", "outcome", "error", "duration_ms")


def generate(audit_dir: Path, n_events: int) -> dict[str, Any]:
    db = audit_dir / store.DB_NAME
    db.unlink(missing_ok=True)
    n_flows = n_events // 2 + 1  # ~2.05 events per flow: the newest flows are cut, as if still in flight
    t_start = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("SET memory_limit = '12GB'")
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"CREATE TEMP TABLE flowt AS {flows_sql(n_flows)}")
    t_flows = time.perf_counter()
    # every event of every flow, in time order; rowid = seq - 1
    con.execute(f"""CREATE TEMP TABLE skel AS
        SELECT f, stage, ts, t_req, ai, kind, oi, nsi, ri, rule, dec FROM (
            SELECT *, 0 AS stage, t_req AS ts FROM flowt
            UNION ALL SELECT *, 1 AS stage, t_req + to_microseconds(wait_us) AS ts FROM flowt WHERE dec >= 2
            UNION ALL SELECT *, fin AS stage, t_req + to_microseconds(wait_us + dur_us) AS ts FROM flowt)
        ORDER BY ts, f, stage LIMIT {n_events}""")
    con.execute("DROP TABLE flowt")
    t_skel = time.perf_counter()
    print(f"  flows {t_flows - t_start:.1f} s, time-ordered skeleton {t_skel - t_flows:.1f} s", flush=True)
    con.execute(getattr(store, "_CREATE_EVENTS"))  # noqa: B009 - the exact CREATE the ingester uses
    unknown = [n for n in record.COLUMN_NAMES if n not in MODELLED]
    if unknown:
        print(f"  columns left NULL (not modelled): {', '.join(unknown)}", flush=True)
    for lo in range(0, n_events, CHUNK):
        hi = min(lo + CHUNK, n_events) - 1
        t = time.perf_counter()
        con.execute(f"INSERT INTO events {events_sql(lo, hi)}")
        print(f"  events {hi + 1:>11,} / {n_events:,}  ({time.perf_counter() - t:.1f} s)", flush=True)
    con.execute("DROP TABLE skel")
    con.execute("CHECKPOINT")
    t_insert = time.perf_counter()
    bad = con.execute("SELECT count(*) FROM (SELECT seq, rowid, ts, lag(ts) OVER (ORDER BY rowid) AS prev FROM events) "
                      "WHERE seq <> rowid + 1 OR ts < prev").fetchone()[0]
    describe = con.execute("DESCRIBE events").fetchall()
    con.close()
    if bad:
        raise SystemExit(f"generated events are not in seq/ts order ({bad} rows)")
    if [(r[0], r[1]) for r in describe] != [(n, t) for n, t in record.COLUMNS]:
        raise SystemExit(f"events columns differ from record.COLUMNS: {describe}")
    (audit_dir / store.JOURNAL_DIR).mkdir(exist_ok=True)
    store.ingest(audit_dir)  # creates checkpoints and the views exactly as for a real trail
    return {"seconds": round(time.perf_counter() - t_start, 1), "insert_seconds": round(t_insert - t_skel, 1),
            "bytes": db.stat().st_size}


# ================================================================ measuring


def stats(xs: Sequence[float]) -> dict[str, float]:
    xs = sorted(xs)
    p90 = statistics.quantiles(xs, n=10, method="inclusive")[-1] if len(xs) > 1 else xs[0]
    return {"median": statistics.median(xs), "p90": p90, "min": xs[0], "max": xs[-1]}


def timed(fn: Callable[[], Any], runs: int = RUNS, warmup: int = 1) -> tuple[dict[str, float], Any]:
    out = None
    for _ in range(warmup):
        out = fn()
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        xs.append((time.perf_counter() - t) * 1000)
    return stats(xs), out


def engine_statements(argv: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """The statements a `shield` command runs on its reader, built by the CLI's own code."""
    args = cli.build_parser().parse_args(list(argv))
    if args.cmd == "timeline":
        where, params = cli.where_clause(args)
        return [(f"SELECT * FROM timeline{where} ORDER BY ts, flow_id", params)]
    if args.cmd == "show":  # cmd_show resolves the id (a prefix is enough), then reads the flow's events
        return [("SELECT DISTINCT flow_id FROM events WHERE starts_with(flow_id, ?)", [args.flow_id]),
                ("SELECT * FROM events WHERE flow_id = ? ORDER BY seq", [args.flow_id])]
    if args.cmd == "sql":
        return [(args.query, [])]
    raise ValueError(args.cmd)


def run_statements(con: duckdb.DuckDBPyConnection, stmts: Sequence[tuple[str, list[Any]]]) -> int:
    rows = 0
    for sql, params in stmts:
        rows = len(con.execute(sql, params).fetchall())
    return rows


def show_work(con: duckdb.DuckDBPyConnection, resolve: tuple[str, list[Any]]) -> int:
    """What cmd_show does on its reader: resolve the id, read the flow's events, check their chain links."""
    ids = [r[0] for r in con.execute(*resolve).fetchall()]
    if len(ids) != 1:
        raise RuntimeError(f"flow id resolved to {ids[:3]}")
    rows = con.execute("SELECT * FROM events WHERE flow_id = ? ORDER BY seq", [ids[0]]).fetchall()
    if hasattr(store, "chain_status"):  # newer cmd_show also recomputes the rows' hashes and links
        store.chain_status(con, [r[0] for r in rows])
    return len(rows)


def engine_run(con: duckdb.DuckDBPyConnection, argv: Sequence[str]) -> int:
    """The command's work on an open reader, without rendering; returns the row count."""
    stmts = engine_statements(argv)
    if argv[0] == "show":
        return show_work(con, stmts[0])
    return run_statements(con, stmts)


def run_cli_inprocess(argv: Sequence[str]) -> int:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(list(argv))
    if rc:
        raise RuntimeError(f"shield {' '.join(argv)} exited {rc}")
    return out.getvalue().count("\n")


def shield_exe() -> str:
    beside = Path(sys.executable).with_name("shield")
    return str(beside) if beside.exists() else (shutil.which("shield") or "shield")


def run_subprocess(cmd: Sequence[str], cwd: Path) -> tuple[float, int, str]:
    t = time.perf_counter()
    p = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    ms = (time.perf_counter() - t) * 1000
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[:500]}")
    return ms, p.stdout.count("\n"), p.stdout


def child_first_query(audit_dir: Path, argv: Sequence[str]) -> dict[str, float]:
    """A new Python process: connect_reader, then the command's statements once (timed inside it)."""
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps(list(argv)), "--dir", str(audit_dir)],
                       cwd=audit_dir, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"child failed: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def child_main(audit_dir: Path, argv: list[str]) -> None:
    t0 = time.perf_counter()
    con = store.connect_reader(audit_dir)
    t1 = time.perf_counter()
    rows = engine_run(con, argv)
    t2 = time.perf_counter()
    print(json.dumps({"connect_ms": (t1 - t0) * 1000, "query_ms": (t2 - t1) * 1000, "rows": rows}))


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def profile(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any], top: int = 8) -> list[str]:
    """EXPLAIN ANALYZE, condensed: the operators that took the time, with their row counts."""
    text = con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, list(params)).fetchall()[0][1]
    plan = json.loads(text)
    nodes: list[tuple[float, str, int, str]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        info = node.get("extra_info") or {}
        extra = ""
        if isinstance(info, dict):
            keep = {k: v for k, v in info.items() if k in ("Table", "Filters", "Groups", "Aggregates", "Join Type",
                                                           "Conditions", "Scanning Files", "Total Files Read")}
            extra = json.dumps(keep, ensure_ascii=False)[:160] if keep else ""
        nodes.append((float(node.get("timing") or 0), "  " * depth + str(node.get("name", "?")),
                      int(node.get("intermediate_rows") or node.get("operator_cardinality") or 0), extra))
        for c in node.get("children", []):
            walk(c, depth + 1)

    for root in plan.get("operator", plan.get("children", [])):
        walk(root, 0)
    total = float(plan.get("latency") or sum(n[0] for n in nodes))
    lines = [f"    total {total * 1000:,.0f} ms (profiling on; operator times are summed over threads)"]
    shown = sorted(nodes, key=lambda n: -n[0])[:top]
    for t, name, rows, extra in nodes:
        if (t, name, rows, extra) in shown:
            lines.append(f"    {t * 1000:8,.0f} ms {rows:>12,} rows  {name.strip():<22} {extra}")
    return lines


# ---------------------------------------------------------------- the alternatives

def timeline_parts() -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """The timeline's columns in order, and by how they merge: first non-NULL (arg_min by seq), last
    non-NULL (arg_max by seq, FILTER NOT NULL) and min/max; read from store.TIMELINE_SQL itself."""
    order, first, last, minmax = [], [], [], []
    for expr in re.findall(r"^\s*(.+?),?$", store.TIMELINE_SQL.split("FROM events")[0].split("SELECT", 1)[1], re.M):
        order.append(expr.rsplit(" ", 1)[-1])
        if expr == "flow_id":
            continue
        if m := re.fullmatch(r"arg_min\((\w+), seq\) AS (\w+)", expr):
            first.append(m.group(2))
        elif m := re.fullmatch(r"arg_max\((\w+), seq\) FILTER \(WHERE \1 IS NOT NULL\) AS (\w+)", expr):
            last.append(m.group(2))
        elif m := re.fullmatch(r"(min|max)\((\w+)\) AS (\w+)", expr):
            minmax.append(("least" if m.group(1) == "min" else "greatest", m.group(3)))
        else:
            raise SystemExit(f"timeline column {expr!r}: unknown aggregate, update timeline_parts()")
    return order, first, last, minmax


def timeline_over(source: str) -> str:
    """store.TIMELINE_SQL, reading `source` instead of the events view."""
    sql = store.TIMELINE_SQL.replace("FROM events\n", f"FROM {source}\n", 1)
    assert sql != store.TIMELINE_SQL, "TIMELINE_SQL changed shape: update timeline_over()"
    return sql


def pushdown_statements(argv: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """P1: the same answer as `SELECT * FROM timeline WHERE ...` but grouping only the flows whose
    request is in the window: the time (and agent) filter goes to events first, where zone maps prune.
    Later events of a flow are never older than its request, so `ts >= since` is exact for them."""
    args = cli.build_parser().parse_args(list(argv))
    where, params = cli.where_clause(args)
    since = cli.parse_time(args.since, "since")
    until = cli.parse_time(args.until, "until") if args.until else None
    req_filter = "stage = 'request' AND ts >= ?" + (" AND ts < ?" if until else "")
    req_params: list[Any] = [since] + ([until] if until else [])
    if args.agent:  # agent is a base column: the same on every event of a flow
        req_filter += " AND agent GLOB ?"
        req_params.append(args.agent)
    source = (f"(SELECT * FROM events WHERE ts >= ? AND flow_id IN "
              f"(SELECT flow_id FROM events WHERE {req_filter}))")
    sql = f"SELECT * FROM ({timeline_over(source)}){where} ORDER BY ts, flow_id"
    return [(sql, [since, *req_params, *params])]


def merged_select(tail: str, base: str) -> str:
    """Per-flow rows of `base` (older events) merged with partial aggregates `tail` (newer events)."""
    order, first, last, minmax = timeline_parts()
    cols = {"flow_id": "flow_id"} | {c: f"{fn}(o.{c}, t.{c})" for fn, c in minmax}
    cols |= {c: f"coalesce(o.{c}, t.{c})" for c in first} | {c: f"coalesce(t.{c}, o.{c})" for c in last}
    return f"SELECT {', '.join(f'{cols[c]} AS {c}' for c in order)} FROM {tail} t LEFT JOIN {base} o USING (flow_id)"


def upsert_sql(batch_view: str) -> str:
    """What the ingester would run after appending a batch: fold the batch into flows (PRIMARY KEY flow_id)."""
    _, first, last, minmax = timeline_parts()
    sets = [f"{c} = {fn}(flows.{c}, excluded.{c})" for fn, c in minmax]
    sets += [f"{c} = coalesce(flows.{c}, excluded.{c})" for c in first]
    sets += [f"{c} = coalesce(excluded.{c}, flows.{c})" for c in last]
    return (f"INSERT INTO flows SELECT * FROM ({timeline_over(batch_view)}) "
            f"ON CONFLICT (flow_id) DO UPDATE SET {', '.join(sets)}")


def sql_list(values: Sequence[str]) -> str:
    """A literal IN list: DuckDB 2.0.1 answers `x IN ('a', 'b')` from an ART index, not `x IN (subquery)`."""
    return "(" + ", ".join(lit(v) for v in values) + ")" if values else "(NULL)"


def fold_batch(w: duckdb.DuckDBPyConnection, batch_view: str) -> tuple[int, int]:
    """Fold a batch of events into flows using the PRIMARY KEY index: (new flows, updated flows)."""
    _, first, last, minmax = timeline_parts()
    w.execute(f"CREATE OR REPLACE TEMP TABLE batch_flows AS {timeline_over(batch_view)}")
    ids = [r[0] for r in w.execute("SELECT flow_id FROM batch_flows").fetchall()]
    old = [r[0] for r in w.execute(f"SELECT flow_id FROM flows WHERE flow_id IN {sql_list(ids)}").fetchall()]
    if old:
        sets = [f"{c} = {fn}(flows.{c}, b.{c})" for fn, c in minmax]
        sets += [f"{c} = coalesce(flows.{c}, b.{c})" for c in first] + [f"{c} = coalesce(b.{c}, flows.{c})" for c in last]
        w.execute(f"UPDATE flows SET {', '.join(sets)} FROM batch_flows b "
                  f"WHERE flows.flow_id = b.flow_id AND flows.flow_id IN {sql_list(old)}")
    w.execute("INSERT INTO flows SELECT * FROM batch_flows" + (f" WHERE flow_id NOT IN {sql_list(old)}" if old else ""))
    return len(ids) - len(old), len(old)


# ================================================================ main


def machine() -> dict[str, Any]:
    mem = ""
    with contextlib.suppress(OSError):
        mem = next(line.split(":")[1].strip() for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    return {"python": platform.python_version(), "duckdb": duckdb.__version__, "agent_shield": __version__,
            "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory": mem, "cpu": cpu, "platform": platform.platform()}


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    if args.dir:
        d = Path(args.dir).expanduser().resolve()
        if d.exists() and any(d.iterdir()) and not (d / MARKER).exists():
            raise SystemExit(f"{d} exists, is not empty and was not made by this script: choose another --dir")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = Path(tempfile.mkdtemp(prefix="shield-bench-")).resolve()
    (d / MARKER).write_text("made by scripts/bench_queries.py; safe to delete\n")
    return d, True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="events to generate (default 10,000,000)")
    ap.add_argument("--dir", help="audit directory to create (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the directory (audit.duckdb, export) afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse DIR/audit.duckdb if it already holds --events events")
    ap.add_argument("--out", help="also write every figure as JSON to this file")
    ap.add_argument("--rss-limit-gib", type=float, default=12.0,
                    help="kill an export process whose RSS passes this (default 12 GiB; the box is shared)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-export", help=argparse.SUPPRESS)
    ap.add_argument("--child-setting", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(Path(args.dir), json.loads(args.child))
        return 0
    if args.child_export:
        child_export(Path(args.dir), args.child_export, args.child_setting)
        return 0

    audit_dir, owned = prepare_dir(args)
    os.chdir(audit_dir)  # DuckDB may spill to ./.tmp: keep it out of the checkout
    results: dict[str, Any] = {"machine": machine(), "events": args.events, "dir": str(audit_dir)}
    m = results["machine"]
    print(f"Python {m['python']}, DuckDB {m['duckdb']}, agent-shield {m['agent_shield']}; {m['cores']} cores "
          f"({m['usable_cores']} usable), {m['memory']}; {m['cpu']}")
    print(f"audit dir: {audit_dir}")
    try:
        run(args, audit_dir, results)
    finally:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2, default=str))
        os.chdir("/")
        if owned and not args.keep:
            shutil.rmtree(audit_dir, ignore_errors=True)
            print(f"removed {audit_dir} (use --keep to keep it)")
    return 0


def run(args: argparse.Namespace, audit_dir: Path, results: dict[str, Any]) -> None:
    db = audit_dir / store.DB_NAME
    have = 0
    if args.reuse and db.exists():
        with contextlib.suppress(duckdb.Error):
            with duckdb.connect(str(db), read_only=True) as c:
                have = c.execute("SELECT count(*) FROM events").fetchone()[0]
                if [(r[0], r[1]) for r in c.execute("DESCRIBE events").fetchall()] != list(record.COLUMNS):
                    print("  (existing events table differs from record.COLUMNS: regenerating)")
                    have = -1
    if have == args.events:
        print(f"\n== reusing {db} ({have:,} events, {db.stat().st_size / 2**30:.2f} GiB)")
        results["generation"] = {"reused": True, "bytes": db.stat().st_size}
    else:
        print(f"\n== generating {args.events:,} events into {db}")
        results["generation"] = gen = generate(audit_dir, args.events)
        print(f"  done in {gen['seconds']:.1f} s (inserts {gen['insert_seconds']:.1f} s); "
              f"audit.duckdb {gen['bytes'] / 2**30:.2f} GiB ({gen['bytes'] / args.events:,.0f} bytes/event)")
    (audit_dir / store.JOURNAL_DIR).mkdir(exist_ok=True)

    con = store.connect_reader(audit_dir)
    describe_data(con, results)
    queries = choose_queries(con, audit_dir)
    results["queries"] = {name: argv for name, argv in queries}

    print("\n== start-up: `shield --version` (interpreter + imports, no query)")
    exe = shield_exe()
    run_subprocess([exe, "--version"], audit_dir)  # warm-up
    startup = stats([run_subprocess([exe, "--version"], audit_dir)[0] for _ in range(RUNS)])
    results["startup_ms"] = startup
    print(f"  median {fmt_ms(startup['median'])} ms, p90 {fmt_ms(startup['p90'])} ms")

    print("\n== the queries as they are")
    base = results["baseline"] = {}
    for name, argv in queries:
        base[name] = measure(con, audit_dir, exe, argv)
        b = base[name]
        print(f"  {name:<18} engine {fmt_ms(b['engine']['median'])} ms, in-proc CLI {fmt_ms(b['inproc']['median'])} ms, "
              f"new proc {fmt_ms(b['child']['median'])} ms, shield {fmt_ms(b['shield']['median'])} ms; {b['rows']} rows "
              f"(load average {b['loadavg_1min']:.1f})", flush=True)

    print("\n== why: EXPLAIN ANALYZE (engine, warm)")
    results["explain"] = {}
    for name, argv in queries:
        if base[name]["engine"]["median"] < TARGET_MS:
            continue
        stmts = engine_statements(argv)
        sql, params = max(stmts, key=lambda s: len(s[0]))
        print(f"  {name}:")
        lines = profile(con, sql, params)
        results["explain"][name] = lines
        print("\n".join(lines))

    alternatives(con, audit_dir, exe, queries, results)
    con.close()
    export(audit_dir, exe, results, int(args.rss_limit_gib * 2**30))
    summary(results, queries)


def describe_data(con: duckdb.DuckDBPyConnection, results: dict[str, Any]) -> None:
    r = con.execute("SELECT count(*), count(DISTINCT flow_id), min(ts), max(ts) FROM events").fetchone()
    by_stage = dict(con.execute("SELECT stage, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC").fetchall())
    dec = con.execute("SELECT decision, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 2) FROM timeline "
                      "GROUP BY ALL ORDER BY 2 DESC").fetchall()
    svc = con.execute("SELECT service, round(100.0 * count(*) / sum(count(*)) OVER (), 1) FROM events "
                      "WHERE stage = 'request' GROUP BY ALL ORDER BY 2 DESC LIMIT 8").fetchall()
    body = con.execute("SELECT round(avg(strlen(request_body)) FILTER (WHERE stage = 'request')), "
                       "round(avg(strlen(response_body)) FILTER (WHERE stage = 'response')) FROM events").fetchone()
    results["data"] = {"events": r[0], "flows": r[1], "first": r[2], "last": r[3], "stages": by_stage,
                       "decisions": {str(d): p for d, _, p in dec}, "avg_request_body": body[0], "avg_response_body": body[1]}
    print(f"\n  {r[0]:,} events, {r[1]:,} flows, {r[2]} .. {r[3]}; stages {by_stage}")
    print("  decisions (% of flows): " + ", ".join(f"{d} {p}" for d, _, p in dec))
    print("  services (% of requests): " + ", ".join(f"{s} {p}" for s, p in svc))
    print(f"  average body: request {body[0]} B, response {body[1]} B")


def choose_queries(con: duckdb.DuckDBPyConnection, audit_dir: Path) -> list[tuple[str, list[str]]]:
    first, last = con.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    mid_day = datetime.combine((first + (last - first) / 2).date(), datetime.min.time())
    hour = mid_day + timedelta(hours=14)
    agent = AGENTS[0]  # the busiest agent
    flow = con.execute("SELECT flow_id FROM events WHERE stage = 'decision' AND ts >= ? ORDER BY seq LIMIT 1",
                       [hour]).fetchone()[0]
    d = ["--dir", str(audit_dir)]
    return [
        ("timeline-agent-1h", ["timeline", "--agent", agent, "--since", hour.isoformat(),
                               "--until", (hour + timedelta(hours=1)).isoformat(), "--json", *d]),
        ("timeline-ns-day", ["timeline", "--namespace", "prod-3", "--since", mid_day.isoformat(),
                             "--until", (mid_day + timedelta(days=1)).isoformat(), "--json", *d]),
        ("show-flow", ["show", flow, "--json", *d]),
        ("count-decision-rule", ["sql", "select decision, rule_id, count(*) from timeline group by all", "--json", *d]),
    ]


def measure(con: duckdb.DuckDBPyConnection, audit_dir: Path, exe: str, argv: list[str]) -> dict[str, Any]:
    engine, rows = timed(lambda: engine_run(con, argv))
    inproc, _ = timed(lambda: run_cli_inprocess(argv))
    kids = [child_first_query(audit_dir, argv) for _ in range(RUNS)]
    child = stats([k["connect_ms"] + k["query_ms"] for k in kids])
    child["connect_median"] = statistics.median(k["connect_ms"] for k in kids)
    shield, out = timed(lambda: run_subprocess([exe, *argv], audit_dir)[1])
    return {"engine": engine, "inproc": inproc, "child": child, "shield": shield, "rows": rows, "cli_lines": out,
            "loadavg_1min": os.getloadavg()[0]}


def alternatives(con: duckdb.DuckDBPyConnection, audit_dir: Path, exe: str, queries: list[tuple[str, list[str]]],
                 results: dict[str, Any]) -> None:
    alt = results["alternatives"] = {}
    q = dict(queries)
    timeline_queries = [n for n in q if q[n][0] == "timeline"]

    print("\n== P1: filter events before grouping (CLI/view change only, no schema change)")
    last = con.execute("SELECT max(ts) FROM events").fetchone()[0]
    newest = last.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    recent = list(q["timeline-agent-1h"])
    recent[recent.index("--since") + 1] = newest.isoformat()
    recent[recent.index("--until") + 1] = (newest + timedelta(hours=1)).isoformat()
    cases = [(n, q[n]) for n in timeline_queries] + [("timeline-agent-1h, newest full hour", recent)]
    for name, argv in cases:
        stmts = pushdown_statements(argv)
        st, rows = timed(lambda s=stmts: run_statements(con, s))
        t = time.perf_counter()
        expect = con.execute(*engine_statements(argv)[0]).fetchall()
        base_ms = (time.perf_counter() - t) * 1000
        same = con.execute(*stmts[0]).fetchall() == expect
        alt[f"P1 {name}"] = {"engine": st, "rows": rows, "same_result": same, "argv": argv}
        print(f"  {name:<18} {fmt_ms(st['median'])} ms (p90 {fmt_ms(st['p90'])}), {rows} rows, same result: {same} "
              f"(the view as is, once: {fmt_ms(base_ms)} ms)")

    print("\n== P2: per-flow summary table `flows` maintained at ingest (side file DIR/side-flows.duckdb)")
    side = audit_dir / "side-flows.duckdb"
    side.unlink(missing_ok=True)
    n_tail = 5000
    max_seq = con.execute("SELECT max(seq) FROM events").fetchone()[0]
    cut = max_seq - n_tail
    w = duckdb.connect(str(side))
    w.execute(f"ATTACH '{audit_dir / store.DB_NAME}' AS audit (READ_ONLY)")
    t = time.perf_counter()
    cols = w.execute(f"DESCRIBE SELECT * FROM ({timeline_over('audit.events')})").fetchall()
    w.execute("CREATE TABLE flows (" + ", ".join(f"{c[0]} {c[1]}" + (" PRIMARY KEY" if c[0] == "flow_id" else "")
                                              for c in cols) + ")")
    w.execute(f"INSERT INTO flows SELECT * FROM ({timeline_over(f'(SELECT * FROM audit.events WHERE seq <= {cut})')}) "
              "ORDER BY ts, flow_id")
    w.execute("CHECKPOINT")
    build_s = time.perf_counter() - t
    assert [c[0] for c in cols] == timeline_parts()[0]
    w.close()
    alt["P2 build"] = {"seconds": build_s, "bytes": side.stat().st_size, "up_to_seq": cut}
    print(f"  full build from {cut:,} events (PRIMARY KEY flow_id, ordered by ts): {build_s:.1f} s, "
          f"{side.stat().st_size / 2**20:,.0f} MiB")

    con.execute(f"ATTACH '{side}' AS side (READ_ONLY)")
    # The reader's timeline while the journal tail (here: the newest n_tail events) is not folded in yet.
    # (a) naive: tail LEFT JOIN flows, flows anti-joined with the tail: hash joins over all of flows;
    # (b) what connect_reader should do: fetch the tail's flows by id through the PRIMARY KEY index
    #     (a literal IN list is an index scan in DuckDB 2.0.1; IN (subquery) and = ANY(?) are not),
    #     merge them with the tail, and hide the fetched rows from flows by rowid (integers: cheap).
    tail = f"(SELECT * FROM events WHERE seq > {cut})"
    con.execute(f"CREATE OR REPLACE TEMP VIEW tail_flows_v AS {timeline_over(tail)}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW timeline_p2_naive AS {merged_select('tail_flows_v', 'side.flows')} "
                "UNION ALL BY NAME SELECT * FROM side.flows WHERE flow_id NOT IN (SELECT flow_id FROM tail_flows_v)")

    def reader_setup(c: duckdb.DuckDBPyConnection, db: str) -> None:
        c.execute(f"CREATE OR REPLACE TEMP TABLE tail_flows AS {timeline_over(tail)}")
        ids = [r[0] for r in c.execute("SELECT flow_id FROM tail_flows").fetchall()]
        c.execute(f"CREATE OR REPLACE TEMP TABLE tail_base AS SELECT rowid AS base_rowid, * FROM {db}.flows "
                  f"WHERE flow_id IN {sql_list(ids)}")
        rowids = sorted(r[0] for r in c.execute("SELECT base_rowid FROM tail_base").fetchall())
        c.execute(f"CREATE OR REPLACE TEMP TABLE tail_merged AS "
                  f"{merged_select('tail_flows', '(SELECT * EXCLUDE (base_rowid) FROM tail_base)')}")
        keep = f" WHERE rowid < {rowids[0]} OR rowid NOT IN ({', '.join(map(str, rowids))})" if rowids else ""
        c.execute(f"CREATE OR REPLACE TEMP VIEW timeline_p2 AS SELECT * FROM tail_merged UNION ALL BY NAME "
                  f"SELECT * FROM {db}.flows{keep}")

    setup, _ = timed(lambda: reader_setup(con, "side"))
    alt["P2 reader setup for the tail"] = {"ms": setup, "tail_events": n_tail}
    print(f"  reader setup with a {n_tail:,}-event unfolded tail (aggregate it, fetch its flows by id, merge): "
          f"{fmt_ms(setup['median'])} ms (p90 {fmt_ms(setup['p90'])})")
    p2_queries = [n for n in q if q[n][0] in ("timeline", "sql")]

    def p2(name: str, view: str) -> list[tuple[str, list[Any]]]:
        out = [(re.sub(r"(?i)\bfrom\s+timeline\b", f"FROM {view}", sql), params) for sql, params in engine_statements(q[name])]
        assert all(view in sql for sql, _ in out), out
        return out

    for view, label in (("timeline_p2_naive", "naive LEFT JOIN"), ("timeline_p2", "tail merged by id")):
        for name in p2_queries:
            stmts = p2(name, view)
            st, rows = timed(lambda s=stmts: run_statements(con, s))
            same = sorted(map(repr, con.execute(*stmts[0]).fetchall())) == \
                sorted(map(repr, con.execute(*engine_statements(q[name])[0]).fetchall()))
            alt[f"P2 {name} (+{n_tail} tail events, {label})"] = {"engine": st, "rows": rows, "same_result": same}
            print(f"  {name:<18} {n_tail:,}-event unfolded tail, {label}: {fmt_ms(st['median'])} ms "
                  f"(p90 {fmt_ms(st['p90'])}), {rows} rows, same result: {same}")
    con.execute("DETACH side")

    # ingest: fold the tail into flows batch by batch, as store.ingest would right after appending a batch
    w = duckdb.connect(str(side))
    w.execute(f"ATTACH '{audit_dir / store.DB_NAME}' AS audit (READ_ONLY)")
    n_batches = 5
    per = n_tail // n_batches
    batches = [(cut + i * per, cut + (i + 1) * per if i < n_batches - 1 else max_seq) for i in range(n_batches)]
    w.execute("BEGIN")  # ON CONFLICT DO UPDATE, measured on two batches and rolled back
    xs = []
    for lo, hi in batches[:2]:
        t = time.perf_counter()
        w.execute(upsert_sql(f"(SELECT * FROM audit.events WHERE seq > {lo} AND seq <= {hi})"))
        xs.append((time.perf_counter() - t) * 1000)
    w.execute("ROLLBACK")
    alt["P2 ingest ON CONFLICT"] = {"batch_events": per, "ms": stats(xs)}
    print(f"  ingest, INSERT ... ON CONFLICT DO UPDATE per {per:,}-event batch: {', '.join(fmt_ms(x) for x in xs)} ms "
          "(planned as MERGE INTO with a hash join over all of flows: a full scan per batch)")
    xs, parts = [], []
    for lo, hi in batches:
        t = time.perf_counter()
        w.execute("BEGIN")
        parts.append(fold_batch(w, f"(SELECT * FROM audit.events WHERE seq > {lo} AND seq <= {hi})"))
        w.execute("COMMIT")
        xs.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    w.execute("CHECKPOINT")
    ckpt = (time.perf_counter() - t) * 1000
    w.close()
    alt["P2 ingest fold"] = {"batch_events": per, "ms": stats(xs), "checkpoint_ms": ckpt, "flows_new_updated": parts}
    print(f"  ingest, fold by id (index lookup, UPDATE the open flows, INSERT the new ones) per {per:,}-event batch: "
          f"median {fmt_ms(statistics.median(xs))} ms, max {fmt_ms(max(xs))} ms ({parts[0][0]} new / {parts[0][1]} updated "
          f"flows in the first); CHECKPOINT after {n_batches} batches {fmt_ms(ckpt)} ms")

    con.execute(f"ATTACH '{side}' AS side (READ_ONLY)")
    diff = con.execute("SELECT (SELECT count(*) FROM (SELECT * FROM side.flows EXCEPT ALL SELECT * FROM timeline)) + "
                       "(SELECT count(*) FROM (SELECT * FROM timeline EXCEPT ALL SELECT * FROM side.flows))").fetchone()[0]
    alt["P2 equals timeline"] = diff == 0
    print(f"  after folding, flows == timeline view: {diff == 0} ({diff} differing rows)")
    for name in p2_queries:
        stmts = p2(name, "side.flows")
        st, rows = timed(lambda s=stmts: run_statements(con, s))
        kids = []
        for _ in range(RUNS):
            tq = time.perf_counter()
            c2 = store.connect_reader(audit_dir)
            c2.execute(f"ATTACH '{side}' AS side (READ_ONLY)")
            run_statements(c2, stmts)
            c2.close()
            kids.append((time.perf_counter() - tq) * 1000)
        alt[f"P2 {name} (tail folded)"] = {"engine": st, "fresh_reader": stats(kids), "rows": rows}
        print(f"  {name:<18} tail folded: {fmt_ms(st['median'])} ms (p90 {fmt_ms(st['p90'])}); "
              f"fresh reader + attach + query {fmt_ms(statistics.median(kids))} ms; {rows} rows")
    con.execute("DETACH side")

    print("\n== P3: ART index on events.flow_id for `shield show`")
    show = q["show-flow"]
    flow_id = show[1]
    con.close()
    w = duckdb.connect(str(audit_dir / store.DB_NAME))
    used = "SELECT used_blocks * block_size FROM pragma_database_size()"
    before = w.execute(used).fetchone()[0]
    t = time.perf_counter()
    w.execute("CREATE INDEX events_flow_id ON events (flow_id)")
    w.execute("CHECKPOINT")
    idx_s = time.perf_counter() - t
    grew = w.execute(used).fetchone()[0] - before
    w.close()
    print(f"  CREATE INDEX: {idx_s:.1f} s, +{grew / 2**20:,.0f} MiB of used blocks")
    con2 = store.connect_reader(audit_dir)
    prefix = flow_id[:8]
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    variants = {  # each followed by the flow's events (flow_id = ?) and chain_status, as cmd_show does
        "as the CLI runs it (starts_with)": engine_statements(show)[0],
        "full id resolved with =": ("SELECT DISTINCT flow_id FROM events WHERE flow_id = ?", [flow_id]),
        "8-char prefix as a range": ("SELECT DISTINCT flow_id FROM events WHERE flow_id >= ? AND flow_id < ?", [prefix, upper]),
    }
    p3 = alt["P3"] = {"index_seconds": idx_s, "index_bytes": grew}
    for label, resolve in variants.items():
        st, rows = timed(lambda r=resolve: show_work(con2, r))
        plan = con2.execute("EXPLAIN ANALYZE " + resolve[0], resolve[1]).fetchall()[0][1]
        scan = "Index Scan" if "Index Scan" in plan else "Seq Scan"
        p3[label] = {"engine": st, "rows": rows, "first_statement": scan}
        print(f"  {label:<38} {fmt_ms(st['median'])} ms (p90 {fmt_ms(st['p90'])}), {rows} rows, resolve: {scan}")
    plan = con2.execute("EXPLAIN ANALYZE SELECT * FROM events WHERE flow_id = ? ORDER BY seq", [flow_id]).fetchall()[0][1]
    p3["events by flow_id = ?"] = "Index Scan" if "Index Scan" in plan else "Seq Scan"
    print(f"  reading the events with flow_id = ?: {p3['events by flow_id = ?']}")
    con2.close()
    kids = [child_first_query(audit_dir, ["show", flow_id, "--json", "--dir", str(audit_dir)]) for _ in range(RUNS)]
    sh, _ = timed(lambda: run_subprocess([exe, *show], audit_dir)[1])
    p3["shield show (with index)"] = {"child": stats([k["connect_ms"] + k["query_ms"] for k in kids]), "shield": sh}
    print(f"  `shield show` with the index: new proc {fmt_ms(p3['shield show (with index)']['child']['median'])} ms, "
          f"subprocess {fmt_ms(sh['median'])} ms")
    w = duckdb.connect(str(audit_dir / store.DB_NAME))
    w.execute("DROP INDEX events_flow_id")
    w.execute("CHECKPOINT")
    w.close()


EXPORT_SQL = ("COPY (SELECT *, ts::DATE AS date FROM events) TO '{out}' "
              "(FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)")


# default: memory_limit 80% of RAM, and up to 524,288 rows buffered per open partition
EXPORT_BOUNDED = ("SET memory_limit = '4GB'", "SET partitioned_write_flush_threshold = 100000")


def child_export(audit_dir: Path, out: str, settings: Sequence[str]) -> None:
    con = store.connect_reader(audit_dir)
    for setting in settings:
        con.execute(setting)
    t = time.perf_counter()
    con.execute(EXPORT_SQL.format(out=out))
    print(json.dumps({"seconds": time.perf_counter() - t}))


def proc_status_bytes(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a live process, from /proc; 0 when it is gone."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith(field + ":")).split()[1]) * 1024
    return 0


def run_measured(cmd: Sequence[str], cwd: Path, rss_limit: int = 0) -> dict[str, Any]:
    """Wall time and peak RSS of one child process, polled from its /proc VmHWM (ru_maxrss would
    include this parent's own peak: Linux carries it over the fork and exec). With rss_limit, the
    child is killed (SIGKILL, by its pid) once its RSS passes the limit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=err, text=True)
        killed, peak = False, 0
        while True:
            peak = max(peak, proc_status_bytes(p.pid, "VmHWM"))
            pid, status = os.waitpid(p.pid, os.WNOHANG)
            if pid:
                break
            if rss_limit and not killed and proc_status_bytes(p.pid, "VmRSS") > rss_limit:
                os.kill(p.pid, 9)
                killed = True
            time.sleep(0.05)
        secs = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"seconds": secs, "rc": p.returncode, "max_rss_bytes": peak, "killed": killed,
                "stdout": out.read()[-2000:], "stderr": err.read()[-2000:]}


def export(audit_dir: Path, exe: str, results: dict[str, Any], rss_limit: int) -> None:
    print(f"\n== full Parquet export: {EXPORT_SQL.format(out='DIR/export-parquet')}")
    out = audit_dir / "export-parquet"
    exports = results["export"] = []
    for settings in ([], list(EXPORT_BOUNDED)):
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child-export", str(out), "--dir", str(audit_dir)]
        r = run_measured(cmd + [a for s in settings for a in ("--child-setting", s)], audit_dir, rss_limit)
        label = "; ".join(settings) or "default session settings"
        if r["rc"] or r["killed"]:
            why = f"KILLED when its RSS passed {rss_limit / 2**30:.0f} GiB (--rss-limit-gib)" if r["killed"] else \
                f"exit {r['rc']}: {r['stderr'].strip()[-300:]}"
            exports.append({"settings": label, "failed": why, "seconds": r["seconds"], "max_rss_bytes": r["max_rss_bytes"]})
            print(f"  {label}: {why} after {r['seconds']:.0f} s")
            continue
        secs = json.loads(r["stdout"].strip().splitlines()[-1])["seconds"]
        con = duckdb.connect()
        n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)").fetchone()[0]
        con.close()
        files = list(out.rglob("*.parquet"))
        size = dir_size(out)
        exports.append({"settings": label, "seconds": secs, "bytes": size, "files": len(files), "rows": n,
                        "max_rss_bytes": r["max_rss_bytes"]})
        print(f"  {label}: {secs:.1f} s (the COPY on a fresh reader), {len(files)} files, {size / 2**30:.2f} GiB, "
              f"{n:,} rows read back; peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB")
        shutil.rmtree(out, ignore_errors=True)
        break  # the bounded run is only needed when the default one could not finish
    p = subprocess.run([exe, "export", "--help"], cwd=audit_dir, capture_output=True, text=True)
    if p.returncode != 0:
        results["shield_export"] = "absent"
        print("  `shield export`: not in this version (`shield export --help` fails)")
        return
    out2 = audit_dir / "export-shield"
    shutil.rmtree(out2, ignore_errors=True)
    cmd = [exe, "export", "--format", "parquet", "--dir", str(audit_dir)]
    cmd += ["--out", str(out2)] if "--out" in p.stdout else ["--output", str(out2)] if "--output" in p.stdout else [str(out2)]
    r = run_measured(cmd, audit_dir, rss_limit)
    size = dir_size(out2) if out2.exists() else 0
    files = len(list(out2.rglob("*.parquet"))) if out2.exists() else 0
    results["shield_export"] = {"cmd": cmd, "rc": r["rc"], "seconds": r["seconds"], "bytes": size, "files": files,
                                "max_rss_bytes": r["max_rss_bytes"], "killed": r["killed"], "stderr": r["stderr"][-500:]}
    why = f" KILLED: RSS passed the {rss_limit / 2**30:.0f} GiB limit (--rss-limit-gib)" if r["killed"] else ""
    print(f"  {' '.join(cmd)}\n  -> exit {r['rc']}, {r['seconds']:.1f} s wall, {files} Parquet files, {size / 2**30:.2f} GiB, "
          f"peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB{why} {r['stderr'].strip()[-300:] if not r['killed'] else ''}")
    shutil.rmtree(out2, ignore_errors=True)


def summary(results: dict[str, Any], queries: list[tuple[str, list[str]]]) -> None:
    m, n = results["machine"], results["events"]
    gen = results["generation"]
    print(f"\n== summary: {n:,} events; Python {m['python']}, DuckDB {m['duckdb']}, {m['cores']} cores")
    if not gen.get("reused"):
        print(f"   generation {gen['seconds']:.0f} s, audit.duckdb {gen['bytes'] / 2**30:.2f} GiB")
    print(f"   `shield --version` (start-up only): median {fmt_ms(results['startup_ms']['median'])} ms, "
          f"p90 {fmt_ms(results['startup_ms']['p90'])} ms")
    print("   times in ms; engine = warm query on an open reader (median/p90 of 5 after 1 warm-up); in-proc CLI = cli.main()"
          " (reader setup + query + JSON);\n   new proc = first query of a new process incl. connect_reader (median of 5);"
          " shield = the command as a subprocess (median/p90 of 5 after 1 warm-up)")
    head = f"   {'query':<20} {'engine med':>10} {'p90':>7} {'in-proc med':>11} {'p90':>7} {'new proc':>9} " \
           f"{'shield med':>10} {'p90':>7} {'rows':>7}  target {TARGET_MS:.0f} ms (engine)"
    print(head)
    for name, _ in queries:
        b = results["baseline"][name]
        ok = "PASS" if b["engine"]["median"] < TARGET_MS else "FAIL"
        ok_cli = "" if b["inproc"]["median"] < TARGET_MS else " (in-proc CLI over)"
        print(f"   {name:<20} {fmt_ms(b['engine']['median']):>10} {fmt_ms(b['engine']['p90']):>7} "
              f"{fmt_ms(b['inproc']['median']):>11} {fmt_ms(b['inproc']['p90']):>7} {fmt_ms(b['child']['median']):>9} "
              f"{fmt_ms(b['shield']['median']):>10} {fmt_ms(b['shield']['p90']):>7} {b['rows']:>7}  {ok}{ok_cli}")
    print("   alternatives (engine, warm):")
    for name, a in results["alternatives"].items():
        if isinstance(a, dict) and "engine" in a:
            ok = "PASS" if a["engine"]["median"] < TARGET_MS else "FAIL"
            extra = f", same result: {a['same_result']}" if "same_result" in a else ""
            extra += f", fresh reader {fmt_ms(a['fresh_reader']['median'])}" if "fresh_reader" in a else ""
            print(f"   {name:<64} {fmt_ms(a['engine']['median']):>8} / p90 {fmt_ms(a['engine']['p90']):>7}  {ok}{extra}")
    alt = results["alternatives"]
    if "P2 build" in alt:
        print(f"   P2 full build of flows: {alt['P2 build']['seconds']:.1f} s, {alt['P2 build']['bytes'] / 2**20:,.0f} MiB file; "
              f"flows == timeline after folding: {alt.get('P2 equals timeline')}")
    if "P2 reader setup for the tail" in alt:
        a = alt["P2 reader setup for the tail"]
        print(f"   P2 reader setup with a {a['tail_events']:,}-event unfolded tail: {fmt_ms(a['ms']['median'])} ms")
    for key in ("P2 ingest ON CONFLICT", "P2 ingest fold"):
        if key in alt:
            print(f"   {key} per {alt[key]['batch_events']:,}-event batch: median {fmt_ms(alt[key]['ms']['median'])} ms, "
                  f"max {fmt_ms(alt[key]['ms']['max'])} ms")
    if "P3" in alt:
        print(f"   P3 CREATE INDEX on events(flow_id): {alt['P3']['index_seconds']:.1f} s, "
              f"+{alt['P3']['index_bytes'] / 2**20:,.0f} MiB")
    for label, a in results["alternatives"].get("P3", {}).items():
        if isinstance(a, dict) and "engine" in a:
            ok = "PASS" if a["engine"]["median"] < TARGET_MS else "FAIL"
            print(f"   P3 show with ART: {label:<34} {fmt_ms(a['engine']['median']):>8} / p90 "
                  f"{fmt_ms(a['engine']['p90']):>7}  {ok} ({a['first_statement']})")
    for e in results.get("export", []):
        if "failed" in e:
            print(f"   full Parquet export ({e['settings']}): {e['failed']} after {e['seconds']:.0f} s")
        else:
            print(f"   full Parquet export ({e['settings']}): {e['seconds']:.1f} s, {e['files']} files, "
                  f"{e['bytes'] / 2**30:.2f} GiB, peak RSS {e['max_rss_bytes'] / 2**30:.2f} GiB")
    se = results.get("shield_export")
    if isinstance(se, dict):
        print(f"   `shield export --format parquet`: exit {se['rc']}, {se['seconds']:.1f} s wall, {se['files']} files, "
              f"{se['bytes'] / 2**30:.2f} GiB, peak RSS {se['max_rss_bytes'] / 2**30:.2f} GiB"
              + (" - killed at the RSS limit" if se.get("killed") else ""))
    elif se:
        print("   `shield export`: absent")


if __name__ == "__main__":
    sys.exit(main())
