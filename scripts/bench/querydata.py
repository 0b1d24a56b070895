"""The synthetic trail of the query benchmark: events made in DuckDB SQL alone (range() + hash())
with exactly record.COLUMNS, seq following ts: 50 agents with a skewed load, kubernetes / sql /
github / aws / SaaS+LLM calls, 26 namespaces, ~30 days; a flow is a request row, a decision row
when held, and a response (or error) row. NOT real: row_hash/prev_hash are placeholders, so
are the body sha256s; bodies are templates. Mostly data tables; generate() is the entry."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from shield_addon import record, store

TAIL = 5000  # journal events not yet in audit.duckdb
BATCH = 1000  # events per ingest (journal.MAX_BATCH: one group commit)
TAIL = 5000  # journal events not yet in audit.duckdb (generated into TAIL_FILE)
TAIL_FILE = "bench-tail.parquet"
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




def generate(audit_dir: Path, n_events: int, tail: int = TAIL) -> dict[str, Any]:
    """Events 1..n_events into audit.duckdb; the next `tail` events into TAIL_FILE, for the journal tail."""
    db = audit_dir / store.DB_NAME
    db.unlink(missing_ok=True)
    total = n_events + tail
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

