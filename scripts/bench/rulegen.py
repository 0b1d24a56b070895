"""Rule sets for the benchmarks: a copy of the bundled rules, plus n generated rules of every
kind a rule file may hold (hosts, path regexes with named groups, methods, SQL, Kubernetes,
headers, queries, JSON, agents, filters, bodies, `not`), none of which matches the load."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from shield_addon import paths


def _q(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def generated_rules(n: int, seed: int = 20261127) -> str:
    """A realistic rule file of n rules: hosts, path regexes with named groups, methods, SQL,
    Kubernetes, headers, queries, JSON, agents, filters, bodies, `not`; some in shadow mode."""
    rnd = random.Random(seed)
    kinds = [("host_tag", 10), ("host_method", 14), ("host_path", 20), ("path_only", 4), ("sql", 12), ("k8s", 15),
             ("header", 8), ("query", 4), ("json", 4), ("agent", 4), ("filter", 2), ("body", 1), ("not", 2)]
    names, weights = zip(*kinds)
    teams = ["payments", "search", "growth", "infra", "data", "identity", "billing", "ml", "mobile", "support"]
    lines = [
        "version: 1",
        "default: allow",
        "services:",
        "  kubernetes: [\"k8s-*.acme.internal\", \"*.eks.amazonaws.com\", \"kube-api.*.acme.cloud\"]",
        "  sql: [\"db-proxy-*.acme.internal\", \"warehouse.acme.internal\"]",
        "  graphql: [\"graphql.partner*.com\"]",
        "rules:",
    ]
    for i in range(n):
        kind = rnd.choices(names, weights)[0]
        team = teams[i % len(teams)]
        m: dict[str, Any] = {}
        action, sev = rnd.choice([("hold", "high"), ("hold", "medium"), ("deny", "critical"), ("hold", "low")])
        if kind == "host_tag":
            m["host"] = [f"api.vendor{i}.com", f"*.vendor{i}.io"]
            action, sev = "allow", "info"
        elif kind == "host_method":
            m["host"] = f"{team}-svc-{i}.acme.internal"
            m["method"] = rnd.choice([["POST", "PUT", "PATCH", "DELETE"], ["DELETE"], ["PUT", "PATCH"]])
        elif kind == "host_path":
            m["host"] = [f"*.{team}{i}.acme.internal", f"{team}-{i}.acme.cloud"]
            m["method"] = rnd.choice([["DELETE"], ["POST", "DELETE"], ["PUT", "PATCH", "DELETE"]])
            m["path"] = rnd.choice([
                r"^/api/v[0-9]+/projects/(?P<namespace>[a-z0-9-]+)/(?P<resource>builds|deploys|artifacts)/(?P<name>[^/]+)$",
                r"^/v1/tenants/(?P<namespace>[^/]+)/(?P<resource>users|keys|webhooks)(/(?P<name>[^/]+))?$",
                rf"^/admin/{team}/(?P<resource>[a-z]+)/(?P<name>[0-9]+)",
                r"^/db/(?P<table>[a-z_]+)/rows/[0-9]+$",
            ])
        elif kind == "path_only":
            m["path"] = rf"^/internal/{team}-{i}/(?P<resource>[a-z]+)/(?P<name>[^/]+)/(purge|wipe|reset)$"
            m["method"] = ["POST", "DELETE"]
        elif kind == "sql":
            m["service"] = "sql"
            m["sql"] = {"statement": rnd.choice([["drop", "truncate"], ["delete_without_where"], ["update_without_where"],
                                                 ["alter", "grant", "revoke"]])}
            m["table"] = [f"{team}_{i}_*", f"ledger_{i}"]
        elif kind == "k8s":
            m["service"] = "kubernetes"
            m["namespace"] = f"{team}-{i}-prod*"
            m["action_type"] = rnd.choice([["delete"], ["update", "delete"], ["execute"]])
            m["resource"] = rnd.choice([["deployments", "statefulsets"], ["pods", "pods/exec"], ["configmaps", "secrets"]])
        elif kind == "header":
            m["host"] = f"api.partner{i}.com"
            m["method"] = ["POST", "PUT", "DELETE"]
            m["header"] = {"x-tenant-id": f"^tenant-{i}$"}
        elif kind == "query":
            m["host"] = f"ops-{i}.acme.internal"
            m["query"] = {"dry_run": "^(false|0)$"}
        elif kind == "json":
            m["host"] = f"payments-{i}.acme.internal"
            m["method"] = "POST"
            m["json"] = {"$.action": "^(refund|void|chargeback)$"}
        elif kind == "agent":
            m["agent"] = [f"contractor-bot-{i}*"]
            m["method"] = ["DELETE", "PUT"]
        elif kind == "filter":
            m["filter"] = f"~m DELETE & ~d billing-{i}.acme.internal"
        elif kind == "body":
            m["host"] = f"db-console-{i}.acme.internal"
            m["body"] = rf"(?i)drop\s+database\s+tenant_{i}"
        elif kind == "not":
            m["host"] = f"*.corp-{i}.com"
            m["method"] = "DELETE"
            m["not"] = {"path": "^/sandbox/"}
        lines.append(f"  - id: gen-{i:04d}-{kind.replace('_', '-')}")
        lines.append(f"    description: {_q(f'generated {kind} rule for {team}')}")
        lines.append("    match:")
        for k, v in m.items():
            lines.append(f"      {k}: {_q(v)}")
        lines.append(f"    action: {action}")
        lines.append(f"    severity: {sev}")
        lines.append(f"    message: {_q(f'{team} guard {i}')}")
        if rnd.random() < 0.05:
            lines.append("    mode: shadow")
    return "\n".join(lines) + "\n"


def make_rules_dir(work: Path, n: int) -> Path:
    """A copy of the bundled rules (so an edit of the checkout cannot reload them mid-run),
    plus n generated rules when n > 0."""
    d = work / (f"rules-bundled+{n}" if n else "rules-bundled")
    d.mkdir()
    for f in sorted(paths.bundled_rules().glob("*.yaml")):
        shutil.copy(f, d / f.name)
    if n:
        (d / "80-generated.yaml").write_text(generated_rules(n))
    return d

