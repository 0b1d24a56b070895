"""Secrets planted everywhere a request and a response can carry them: none reaches disk."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

import httpx

from tests.e2e.conftest import curl
from tests.e2e.harness import Upstream, start_proxy

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
SECRETS = {
    "authorization": "Bearer tok-authz-8472619356",
    "cookie": "sessionid=cookie-val-5522",
    "x-api-key": "apikey-hdr-77123",
    "x-amz-security-token": "amz-sec-tok-99120",
    "x-custom-secret": "custom-hdr-31337",
    "x-internal-trace": "INTERNAL-424242",
    "query": "qry-secret-66011",
    "password": "pw-json-hunter2",
    "client_secret": "json-client-secret-4411",
    "nested_api_key": "nested-key-55109",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5" * 4,
    "stripe": "sk_live_" + "Z9y8X7w6V5u4T3s2",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXZhbHVl",
    "pem": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
    "form": "form-pass-00917",
    "operator": "INTERNAL-131313",
    "proxy_password": "proxy-pass-78787",
}


def test_no_planted_secret_reaches_the_audit_directory(tmp_path: Path, upstream: Upstream) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "version: 1\nredact:\n  headers: [x-internal-trace]\n  patterns: ['INTERNAL-[0-9]{6}']\nrules: []\n")
    proxy = start_proxy(tmp_path, "--set", f"shield_rules={rules}", "--set", "proxyauth=any", upstream_ca=upstream.ca_file)
    try:
        s = SECRETS
        headers = {k: v for k, v in s.items() if k.startswith(("authorization", "cookie", "x-"))}
        body = {"user": "bob", "password": s["password"], "client_secret": s["client_secret"],
                "config": {"api_key": s["nested_api_key"]},
                "note": f"keys {s['aws']} {s['github']} {s['stripe']} {s['jwt']} ref {s['operator']}\n{PEM}"}
        with httpx.Client(proxy=proxy.url("agent-x", s["proxy_password"]), trust_env=False,
                          verify=ssl.create_default_context(cafile=str(proxy.ca))) as c:
            r = c.post(upstream.url(f"/allowed/secrets?access_token={s['query']}&page=2", tls=True), json=body, headers=headers)
            assert r.status_code == 200
            r = c.post(upstream.url("/allowed/form"), content=f"user=bob&password={s['form']}",
                       headers={"content-type": "application/x-www-form-urlencoded"})
            assert r.status_code == 200
        cp = subprocess.run([curl(), "-sS", "--proxy", proxy.url("agent-curl", s["proxy_password"]), "--cacert", str(proxy.ca),
                             upstream.url("/allowed/curl-secret", tls=True)], capture_output=True, timeout=30)
        assert cp.returncode == 0
        proxy.flow_events("/allowed/curl-secret", "response")
        events = proxy.events("stage = 'request' AND path = '/allowed/secrets'")
        assert json.loads(events[0]["request_body"])["user"] == "bob"  # redaction keeps what is not secret
        assert "page=2" in events[0]["url"]
    finally:
        proxy.stop()
    files = [p for p in proxy.audit_dir.rglob("*") if p.is_file()]
    assert {"audit.duckdb", "checkpoints.log"} <= {p.name for p in files}
    blob = b"".join(p.read_bytes() for p in files)
    leaked = [name for name, secret in s.items() if secret.encode() in blob]
    assert leaked == [], f"secrets on disk: {leaked}"
    assert blob.count(b"[redacted:") >= len(SECRETS) - 2
