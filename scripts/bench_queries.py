#!/usr/bin/env python3
"""Query benchmark for the audit store (issue #5): synthetic events, then the `shield` commands an analyst runs.

    python scripts/bench_queries.py [--events 10000000] [--dir DIR] [--keep] [--reuse] [--out FILE]

1. Generates --events events in DuckDB SQL alone (range() + hash()) straight into DIR/audit.duckdb `events`
   (exactly record.COLUMNS, seq follows ts), and the next 5,000 into DIR/bench-tail.parquet for step 4: 50 agents
   with a skewed load, kubernetes / sql / github / aws / SaaS+LLM calls, 26 namespaces, ~30 days; a flow is a
   request row, a decision row when held, and a response (or error) row; bodies of a few hundred bytes. NOT real:
   row_hash/prev_hash link but are placeholders (`shield verify` fails, `shield show` says hash_ok false), so are
   the body sha256s; bodies are templates (they compress better than real traffic); hold_id/hold_key stay NULL.
2. store.ingest sets the file up as for a real trail and builds `flows` from the events: timed, it is what
   opening a file written before `flows` existed costs once (the upgrade).
3. Each command warm, on one store.connect_reader session with the statements the CLI runs (median/p90 of 7
   after a warm-up), and as a new `shield` process (wall time, median of 5 after a warm-up; `shield --version`
   is the interpreter's share): timeline by agent over an hour and by namespace over a day, counts by decision
   and by rule (`shield sql` on the timeline), `shield show` by full id and by an 8-char prefix. EXPLAIN ANALYZE
   of each statement of a command that misses 300 ms warm.
4. On a copy of the file (DIR/tail/, deleted after): 5,000 events written by journal.Journal, resuming from a
   segment that ends with the file's last row, so they chain on as the proxy's would; connect_reader with that
   unfolded tail and timelines over it; then store.Ingester folds the tail in 1,000-event batches (append + fold
   into `flows`, the proxy's per-batch cost). The tail's flows must be the same merged on read and folded.
5. `shield export --format parquet` of everything in a child process: wall time and peak RSS (VmHWM); killed
   when its RSS passes --rss-limit-gib.

Measured before with this script (10 M events, 2 cores), now gone from it: timeline was a view grouping every
event by flow, ~7 s a query (4.85 M groups), ~1 s for counts. Filtering events before grouping: 0.14-0.4 s. A
per-flow table folded at ingest: 7-40 ms warm, ~50 ms per 1,000-event batch folded through the PRIMARY KEY index
(INSERT ... ON CONFLICT joined all flows: ~450 ms), ~31 s to build once. An ART index on events(flow_id): show by
id 21 ms, +580 MiB, no help for prefixes. The per-flow table shipped as `flows` (84fba54): 7 s -> tens of ms.
Export no longer copies every event into a temp table (past 12 GiB RSS) but streams with a memory limit.

Without --keep, DIR is deleted at the end (only a directory this script created and marked).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
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

from shield_addon import __version__, cli, journal, record, store  # noqa: E402

TARGET_MS = 300.0
RUNS = 7  # warm runs, after one warm-up
PROC_RUNS = 5  # new processes, after one warm-up
TAIL = 5000  # journal events not yet in audit.duckdb
BATCH = 1000  # events per ingest (journal.MAX_BATCH: one group commit)
TAIL_FILE = "bench-tail.parquet"
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
    """Events 1..n_events into audit.duckdb; the next TAIL events into TAIL_FILE, for the journal tail."""
    db = audit_dir / store.DB_NAME
    db.unlink(missing_ok=True)
    total = n_events + TAIL
    n_flows = total // 2 + 1  # ~2.05 events per flow: the newest flows are cut, as if still in flight
    t_start = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("SET memory_limit = '12GB'")
    con.execute("SET preserve_insertion_order = true")
    con.execute(f"CREATE TEMP TABLE flowt AS {flows_sql(n_flows)}")
    # every event of every flow, in time order; rowid = seq - 1
    con.execute(f"""CREATE TEMP TABLE skel AS
        SELECT f, stage, ts, t_req, ai, kind, oi, nsi, ri, rule, dec FROM (
            SELECT *, 0 AS stage, t_req AS ts FROM flowt
            UNION ALL SELECT *, 1 AS stage, t_req + to_microseconds(wait_us) AS ts FROM flowt WHERE dec >= 2
            UNION ALL SELECT *, fin AS stage, t_req + to_microseconds(wait_us + dur_us) AS ts FROM flowt)
        ORDER BY ts, f, stage LIMIT {total}""")
    con.execute("DROP TABLE flowt")
    con.execute(getattr(store, "_CREATE_EVENTS"))  # noqa: B009 - the exact CREATE the ingester uses
    unknown = [n for n in record.COLUMN_NAMES if n not in MODELLED]
    if unknown:
        print(f"  columns left NULL (not modelled): {', '.join(unknown)}", flush=True)
    for lo in range(0, n_events, CHUNK):
        hi = min(lo + CHUNK, n_events) - 1
        t = time.perf_counter()
        con.execute(f"INSERT INTO events {events_sql(lo, hi)}")
        print(f"  events {hi + 1:>11,} / {n_events:,}  ({time.perf_counter() - t:.1f} s)", flush=True)
    con.execute(f"COPY ({events_sql(n_events, total - 1)}) TO {store.sql_str(str(audit_dir / TAIL_FILE))} (FORMAT parquet)")
    con.execute("DROP TABLE skel")
    con.execute("CHECKPOINT")
    bad = con.execute("SELECT count(*) FROM (SELECT seq, rowid, ts, lag(ts) OVER (ORDER BY rowid) AS prev FROM events) "
                      "WHERE seq <> rowid + 1 OR ts < prev").fetchone()[0]
    con.close()
    if bad:
        raise SystemExit(f"generated events are not in seq/ts order ({bad} rows)")
    return {"seconds": round(time.perf_counter() - t_start, 1), "bytes": db.stat().st_size}


# ================================================================ measuring


def stats(xs: Sequence[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "p90": xs[round(0.9 * (len(xs) - 1))], "max": xs[-1]}


def timed(fn: Callable[[], Any], runs: int = RUNS) -> tuple[dict[str, float], Any]:
    out = fn()  # warm-up
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        xs.append((time.perf_counter() - t) * 1000)
    return stats(xs), out


def fmt_ms(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


EXE = str(Path(sys.executable).with_name("shield")) if Path(sys.executable).with_name("shield").exists() else "shield"


def shield(argv: Sequence[str]) -> dict[str, float]:
    """`shield ARGV` as a new process: wall time in ms, median of PROC_RUNS after a warm-up."""
    def once() -> None:
        p = subprocess.run([EXE, *argv], capture_output=True, text=True)
        if p.returncode:
            raise RuntimeError(f"shield {' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return timed(once, PROC_RUNS)[0]


def work(argv: Sequence[str]) -> Callable[[Any], int]:
    """What `shield ARGV` runs on its reader, built by the CLI's own code: fn(con) -> rows."""
    args = cli.build_parser().parse_args(list(argv))
    if args.cmd == "timeline":  # cli.timeline_rows (no --limit)
        where, params = cli.where_clause(args)
        return lambda con: len(con.execute(f"SELECT * FROM timeline{where} ORDER BY ts, flow_id", params).fetchall())
    if args.cmd == "sql":
        return lambda con: len(con.execute(args.query).fetchall())

    def show(con: Any) -> int:  # cli.cmd_show
        found = store.find_flows(con, args.flow_id)
        if len(found) != 1:
            raise RuntimeError(f"{args.flow_id} found {found[:3]}")
        flow_id, first_seq, last_seq = found[0]
        rows = store.rows_as_dicts(con.execute(
            "SELECT * FROM events WHERE seq BETWEEN ? AND ? AND flow_id = ? ORDER BY seq", [first_seq, last_seq, flow_id]))
        store.chain_status(con, [r["seq"] for r in rows])
        return len(rows)
    return show


class Recorder:
    """A connection that notes each statement run through it, to EXPLAIN ANALYZE them afterwards."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con, self.seen = con, []

    def execute(self, sql: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        self.seen.append((sql, params))
        return self.con.execute(sql, params)


def explain(con: duckdb.DuckDBPyConnection, sql: str, params: Any, top: int = 6) -> list[str]:
    """EXPLAIN ANALYZE, condensed to the operators that took the time (summed over threads)."""
    plan = json.loads(con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchall()[0][1])
    nodes: list[tuple[float, str, int, str]] = []

    def walk(node: dict[str, Any]) -> None:
        info = node.get("extra_info") or {}
        extra = " ".join(f"{k}: {info[k]}" for k in ("Table", "Type", "Filters", "Groups") if k in info)
        nodes.append((float(node.get("timing") or 0), node.get("name", "?"), int(node.get("intermediate_rows") or 0), extra))
        for child in node.get("children", []):
            walk(child)

    for root in plan.get("operator", []):
        walk(root)
    q = plan.get("query", {})
    return [f"    {sql[:150]}{' ...' if len(sql) > 150 else ''}",
            f"    total {q.get('total_time', 0) * 1000:,.1f} ms, row groups {q.get('total_row_groups_scanned')} of "
            f"{q.get('total_row_groups_to_scan')}"] + \
        [f"    {t * 1000:8,.1f} ms {rows:>12,} rows  {name:<16} {extra[:150]}" for t, name, rows, extra in
         sorted(nodes, key=lambda n: -n[0])[:top]]


def figure(results: dict[str, Any], label: str, st: dict[str, float], rows: Any = "", note: str = "") -> None:
    results["figures"].append({"figure": label, **st, "rows": rows, "note": note, "load_1min": os.getloadavg()[0]})
    print(f"  {label:<46} median {fmt_ms(st['median']):>7} ms, p90 {fmt_ms(st['p90']):>7} ms  {rows} {note}", flush=True)


# ================================================================ the steps


def describe_data(con: duckdb.DuckDBPyConnection, results: dict[str, Any]) -> None:
    n, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchone()
    flows = con.execute("SELECT count(*) FROM flows").fetchone()[0]
    by_stage = dict(con.execute("SELECT stage, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC").fetchall())
    dec = con.execute("SELECT decision, round(100.0 * count(*) / sum(count(*)) OVER (), 2) FROM timeline "
                      "GROUP BY ALL ORDER BY 2 DESC").fetchall()
    svc = con.execute("SELECT service, round(100.0 * count(*) / sum(count(*)) OVER (), 1) FROM events "
                      "WHERE stage = 'request' GROUP BY ALL ORDER BY 2 DESC LIMIT 8").fetchall()
    body = con.execute("SELECT round(avg(strlen(request_body)) FILTER (WHERE stage = 'request')), "
                       "round(avg(strlen(response_body)) FILTER (WHERE stage = 'response')) FROM events").fetchone()
    results["data"] = {"events": n, "flows": flows, "first": first, "last": last, "stages": by_stage,
                       "decisions": {str(d): p for d, p in dec}, "avg_request_body": body[0], "avg_response_body": body[1]}
    print(f"  {n:,} events, {flows:,} flows, {first} .. {last}; stages {by_stage}")
    print("  decisions (% of flows): " + ", ".join(f"{d} {p}" for d, p in dec))
    print("  services (% of requests): " + ", ".join(f"{s} {p}" for s, p in svc))
    print(f"  average body: request {body[0]} B, response {body[1]} B")


def choose_queries(con: duckdb.DuckDBPyConnection, audit_dir: Path) -> list[tuple[str, list[str]]]:
    first, last = con.execute("SELECT min(ts), max(ts) FROM flows").fetchone()
    day = datetime.combine((first + (last - first) / 2).date(), datetime.min.time())
    hour = day + timedelta(hours=14)
    held = con.execute("SELECT flow_id FROM flows WHERE ts >= ? AND decision = 'approved' ORDER BY ts LIMIT 20", [hour])
    flow = next(f for (f,) in held.fetchall() if len(store.find_flows(con, f[:8])) == 1)  # a unique 8-char prefix
    d = ["--dir", str(audit_dir)]
    count = "SELECT {0}, count(*) AS flows FROM timeline GROUP BY {0} ORDER BY flows DESC"
    return [
        ("timeline-agent-1h", ["timeline", "--agent", AGENTS[0], "--since", hour.isoformat(),
                               "--until", (hour + timedelta(hours=1)).isoformat(), "--json", *d]),
        ("timeline-ns-day", ["timeline", "--namespace", "prod-3", "--since", day.isoformat(),
                             "--until", (day + timedelta(days=1)).isoformat(), "--json", *d]),
        ("count-by-decision", ["sql", count.format("decision"), "--json", *d]),
        ("count-by-rule", ["sql", count.format("rule_id"), "--json", *d]),
        ("show-id", ["show", flow, "--json", *d]),
        ("show-prefix8", ["show", flow[:8], "--json", *d]),
    ]


def commands(con: duckdb.DuckDBPyConnection, queries: list[tuple[str, list[str]]], results: dict[str, Any]) -> None:
    results["explain"] = {}
    for name, argv in queries:
        fn = work(argv)
        warm, rows = timed(lambda f=fn: f(con))
        figure(results, f"{name} warm", warm, rows)
        figure(results, f"{name} new process", shield(argv))
        if warm["median"] >= TARGET_MS:
            rec = Recorder(con)
            fn(rec)
            results["explain"][name] = lines = [ln for sql, params in rec.seen for ln in explain(con, sql, params)]
            print("\n".join(lines))


def journal_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the journal writes it: timestamps as record.utc_text does."""
    return {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v for k, v in row.items()}


def tail(audit_dir: Path, queries: list[tuple[str, list[str]]], results: dict[str, Any]) -> None:
    src = audit_dir / TAIL_FILE
    if not src.exists():
        print(f"  no {TAIL_FILE} (a reused file from an older version of this script): skipped")
        return
    tdir = audit_dir / "tail"
    shutil.rmtree(tdir, ignore_errors=True)
    (tdir / store.JOURNAL_DIR).mkdir(parents=True)
    t = time.perf_counter()
    shutil.copyfile(audit_dir / store.DB_NAME, tdir / store.DB_NAME)
    print(f"  copied audit.duckdb to {tdir} in {time.perf_counter() - t:.1f} s")
    with duckdb.connect(str(tdir / store.DB_NAME), read_only=True) as c:
        last = store.rows_as_dicts(c.execute("SELECT * FROM events ORDER BY seq DESC LIMIT 1"))[0]
        events = store.rows_as_dicts(c.execute(f"SELECT * EXCLUDE (seq, chain_id, prev_hash, row_hash, ts) "
                                               f"FROM read_parquet({store.sql_str(str(src))}) ORDER BY seq"))
    # A journal ending where the file ends: Journal.open resumes seq, chain id and prev_hash from its last line.
    seg = tdir / store.JOURNAL_DIR / f"seg-{last['seq']:012d}.jsonl"
    seg.write_text(json.dumps(journal_row(last), ensure_ascii=False, separators=(",", ":")) + "\n")
    j = journal.Journal(tdir / store.JOURNAL_DIR)
    j.open()
    t = time.perf_counter()
    sealed = [f.result(60) for f in [j.submit(journal_row(e)) for e in events]]
    write_ms = (time.perf_counter() - t) * 1000
    j.close()
    assert sealed[0]["seq"] == last["seq"] + 1 and sealed[0]["prev_hash"] == last["row_hash"], "the tail does not chain"
    ids = list(dict.fromkeys(r["flow_id"] for r in sealed))
    print(f"  {len(sealed):,} events of {len(ids):,} flows written with journal.Journal in {write_ms:,.0f} ms, "
          f"seq {sealed[0]['seq']:,}..{sealed[-1]['seq']:,}")

    figure(results, f"connect_reader, {TAIL:,}-event tail", timed(lambda: store.connect_reader(tdir).close())[0])
    con = store.connect_reader(tdir)
    in_file = {r[0] for r in con.execute(f"SELECT flow_id FROM audit.flows WHERE flow_id IN {store.sql_list(ids)}").fetchall()}
    last_hour = ["timeline", "--since", "1h", "--json", "--dir", str(tdir)]
    for name, argv in [(n, a) for n, a in queries if n.startswith("timeline")] + [("timeline-last-hour", last_hour)]:
        fn = work(argv)
        st, rows = timed(lambda f=fn: f(con))
        figure(results, f"{name} warm, with tail", st, rows)
    figure(results, "timeline-last-hour new process, with tail", shield(last_hour))
    merged = con.execute(f"SELECT * FROM flows WHERE flow_id IN {store.sql_list(ids)} ORDER BY flow_id").fetchall()
    con.close()

    upto = [last["seq"]]
    ingester = store.Ingester(tdir, committed=lambda: upto[0])
    xs, parts = [], []
    for i in range(0, len(sealed), BATCH):
        batch = {r["flow_id"] for r in sealed[i:i + BATCH]}
        parts.append((len(batch), len(batch & in_file)))
        in_file |= batch
        upto[0] = sealed[min(i + BATCH, len(sealed)) - 1]["seq"]
        t = time.perf_counter()
        if not ingester.once():
            raise RuntimeError(f"ingest failed: {ingester.last_error}")
        xs.append((time.perf_counter() - t) * 1000)
    print(f"  Ingester.once per {BATCH:,}-event batch (append + fold into flows): "
          + ", ".join(f"{fmt_ms(x)} ms ({n} flows, {o} continued)" for x, (n, o) in zip(xs, parts)))
    figure(results, f"ingest of a {BATCH:,}-event batch", stats(xs), note="batches " + " / ".join(fmt_ms(x) for x in xs)
           + " ms (the first also runs set_up)")
    with store.connect_reader(tdir) as con:
        folded = con.execute(f"SELECT * FROM flows WHERE flow_id IN {store.sql_list(ids)} ORDER BY flow_id").fetchall()
        left = con.execute("SELECT count(*) FROM journal_tail").fetchone()[0]
    results["tail"] = {"events": len(sealed), "flows": len(ids), "journal_write_ms": write_ms, "ingest_ms": xs,
                       "batches_flows_continued": parts, "merged_equals_folded": merged == folded}
    print(f"  tail flows merged on read == folded at ingest: {merged == folded}; journal rows left unfolded: {left}")
    shutil.rmtree(tdir, ignore_errors=True)


def proc_status_bytes(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a live process, from /proc; 0 when it is gone."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith(field + ":")).split()[1]) * 1024
    return 0


def run_measured(cmd: Sequence[str], cwd: Path, rss_limit: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time and peak RSS of one child process, polled from its /proc VmHWM (ru_maxrss would
    include this parent's own peak: Linux carries it over the fork and exec). With rss_limit, the
    child is killed (SIGKILL, by its pid) once its RSS passes the limit."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=err, text=True, env=env)
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


def export(audit_dir: Path, results: dict[str, Any], rss_limit: int) -> None:
    out = audit_dir / "export-parquet"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [EXE, "export", "--format", "parquet", "--out", str(out), "--dir", str(audit_dir)]
    print(f"  {' '.join(cmd)}", flush=True)
    r = run_measured(cmd, audit_dir, rss_limit)
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
    files = list(out.rglob("*.parquet")) if out.exists() else []
    size = sum(f.stat().st_size for f in files)
    why = f"KILLED: RSS passed {rss_limit / 2**30:.0f} GiB (--rss-limit-gib)" if r["killed"] else \
        f"exit {r['rc']} {r['stderr'].strip()[-300:]}" if r["rc"] else "ok"
    results["export"] = {"cmd": cmd, "rc": r["rc"], "killed": r["killed"], "seconds": r["seconds"], "files": len(files),
                         "bytes": size, "events": manifest.get("events"), "max_rss_bytes": r["max_rss_bytes"]}
    note = f"{why}; {manifest.get('events') or 0:,} events, {len(files)} files, {size / 2**30:.2f} GiB, " \
           f"peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB"
    figure(results, "shield export --format parquet (all)", stats([r["seconds"] * 1000]), note=note)
    shutil.rmtree(out, ignore_errors=True)


# ================================================================ main


def used_bytes(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as c:
        return c.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchone()[0]


def prepare_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        d = Path(args.dir).expanduser().resolve()
        if d.exists() and any(d.iterdir()) and not (d / MARKER).exists():
            raise SystemExit(f"{d} exists, is not empty and was not made by this script: choose another --dir")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = Path(tempfile.mkdtemp(prefix="shield-bench-")).resolve()
    (d / MARKER).write_text("made by scripts/bench_queries.py; safe to delete\n")
    return d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="events to generate (default 10,000,000)")
    ap.add_argument("--dir", help="audit directory to create (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the directory (audit.duckdb and the tail source) afterwards")
    ap.add_argument("--reuse", action="store_true", help="reuse DIR/audit.duckdb if it already holds --events events")
    ap.add_argument("--out", help="also write every figure as JSON to this file")
    ap.add_argument("--rss-limit-gib", type=float, default=12.0,
                    help="kill the export process when its RSS passes this (default 12 GiB; the box is shared)")
    args = ap.parse_args()
    out = Path(args.out).resolve() if args.out else None
    audit_dir = prepare_dir(args)
    os.chdir(audit_dir)  # DuckDB may spill to ./.tmp: keep it out of the checkout
    cpu = next((ln.split(":")[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    m = {"python": platform.python_version(), "duckdb": duckdb.__version__, "agent_shield": __version__,
         "cores": len(os.sched_getaffinity(0)), "memory_gib": round(ram, 1), "cpu": cpu}
    results: dict[str, Any] = {"machine": m, "events": args.events, "dir": str(audit_dir), "figures": [],
                               "load_start": os.getloadavg()}
    print(f"Python {m['python']}, DuckDB {m['duckdb']}, agent-shield {m['agent_shield']}; {m['cores']} usable cores, "
          f"{ram:.1f} GiB; {cpu}\naudit dir: {audit_dir}; load average {results['load_start']}")
    t0 = time.perf_counter()
    try:
        run(args, audit_dir, results)
    finally:
        results["seconds"] = time.perf_counter() - t0
        results["load_end"] = os.getloadavg()
        if out:
            out.write_text(json.dumps(results, indent=2, default=str))
        os.chdir("/")
        if not args.keep:
            shutil.rmtree(audit_dir, ignore_errors=True)
            print(f"removed {audit_dir} (use --keep to keep it)")
    return 0


def run(args: argparse.Namespace, audit_dir: Path, results: dict[str, Any]) -> None:
    db = audit_dir / store.DB_NAME
    have, has_flows = 0, False
    if args.reuse and db.exists():
        with contextlib.suppress(duckdb.Error), duckdb.connect(str(db), read_only=True) as c:
            have = c.execute("SELECT count(*) FROM events").fetchone()[0]
            has_flows = "flows" in store.table_names(c)
            if [(r[0], r[1]) for r in c.execute("DESCRIBE events").fetchall()] != list(record.COLUMNS):
                print("  (existing events table differs from record.COLUMNS: regenerating)")
                have, has_flows = -1, False
    if have == args.events:
        print(f"\n== reusing {db} ({have:,} events, {db.stat().st_size / 2**30:.2f} GiB)")
        results["generation"] = {"reused": True, "bytes": db.stat().st_size}
    else:
        print(f"\n== generating {args.events:,} events into {db}", flush=True)
        results["generation"] = gen = generate(audit_dir, args.events)
        has_flows = False
        print(f"  done in {gen['seconds']:.1f} s; audit.duckdb {gen['bytes'] / 2**30:.2f} GiB "
              f"({gen['bytes'] / args.events:,.0f} bytes/event)")
    (audit_dir / store.JOURNAL_DIR).mkdir(exist_ok=True)
    size = used_bytes(db)
    # store.ingest in a child process (for its peak RSS): set_up makes the tables and views, and folds
    # `flows` from every event when the file has none
    r = run_measured([sys.executable, "-c", "import sys; from pathlib import Path; from shield_addon import store; "
                      "store.ingest(Path(sys.argv[1]))", str(audit_dir)], audit_dir, int(args.rss_limit_gib * 2**30),
                     env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if r["rc"]:
        raise SystemExit(f"store.ingest failed (killed: {r['killed']}): {r['stderr'][-800:]}")
    note = f"used blocks +{(used_bytes(db) - size) / 2**20:,.0f} MiB, peak RSS {r['max_rss_bytes'] / 2**30:.2f} GiB"
    figure(results, "flows built from the events (one-off upgrade)" if not has_flows else "store.ingest (flows already built)",
           stats([r["seconds"] * 1000]), args.events, note)
    if not has_flows:
        print(f"  flows built from {args.events:,} events in {r['seconds']:.1f} s")

    con = store.connect_reader(audit_dir)
    describe_data(con, results)
    queries = choose_queries(con, audit_dir)
    results["queries"] = dict(queries)
    print("\n== start-up and reader set-up")
    figure(results, "shield --version (interpreter + imports)", shield(["--version"]))
    figure(results, "connect_reader, empty journal", timed(lambda: store.connect_reader(audit_dir).close())[0])
    print("\n== the commands: warm (one reader, the CLI's statements) and as a new `shield` process")
    commands(con, queries, results)
    con.close()
    print(f"\n== a {TAIL:,}-event journal tail not yet in audit.duckdb (on a copy of the file)")
    tail(audit_dir, queries, results)
    print("\n== full export, in a child process")
    export(audit_dir, results, int(args.rss_limit_gib * 2**30))
    summary(results)


def summary(results: dict[str, Any]) -> None:
    m, d, figs = results["machine"], results["data"], results["figures"]
    print(f"\n== summary: {d['events']:,} events, {d['flows']:,} flows; Python {m['python']}, DuckDB {m['duckdb']}, "
          f"{m['cores']} cores; 1-min load average at start {results['load_start'][0]:.2f}, during "
          f"{min(f['load_1min'] for f in figs):.2f}..{max(f['load_1min'] for f in figs):.2f}, now {os.getloadavg()[0]:.2f}")
    print("   warm = one open reader running the CLI's statements (median/p90 of 7 after a warm-up); new process = the "
          "`shield` command, wall time (median/p90 of 5 after a warm-up)")
    print(f"   {'figure':<46} {'median ms':>10} {'p90 ms':>9} {'rows':>10}  vs {TARGET_MS:.0f} ms")
    for f in figs:
        ok = "PASS" if f["median"] < TARGET_MS else "over"
        rows = f"{f['rows']:,}" if isinstance(f["rows"], int) else f["rows"]
        print(f"   {f['figure']:<46} {fmt_ms(f['median']):>10} {fmt_ms(f['p90']):>9} {rows:>10}  {ok}  {f['note']}")


if __name__ == "__main__":
    sys.exit(main())
