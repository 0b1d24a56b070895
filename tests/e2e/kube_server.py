"""A fake Kubernetes API server that honours `dryRun=All` as the real one does (a DELETE with a
body reads it from the body's DeleteOptions, never the query): it answers with
the object as it would be and changes nothing. Every call is kept, so a test can prove that a
preview never did what the request would."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.e2e.fake_server import FakeHandler, serve

OBJECT = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)$")


@dataclass
class Kube:
    port: int = 0
    calls: list[tuple[str, str, bool]] = field(default_factory=list)  # (method, path, dry run)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    dry_runs_wait: threading.Event | None = None  # set: dry runs are answered only once it is set

    def deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.objects[(namespace, name)] = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "finalizers": ["example.com/guard"]},
            "spec": {"replicas": replicas}, "status": {"readyReplicas": replicas}}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def calls_for(self, path: str) -> list[tuple[str, str, bool]]:
        with self.lock:
            return [c for c in self.calls if c[1] == path]


def is_dry(method: str, query: str, body: bytes) -> bool:
    """As the API server reads it: a DELETE with a body takes its DeleteOptions (dryRun
    included) from the body alone and never looks at the query."""
    if method == "DELETE" and body:
        try:
            options = json.loads(body)
        except ValueError:
            return False
        return isinstance(options, dict) and options.get("dryRun") == ["All"]
    return parse_qs(query).get("dryRun") == ["All"]


def start_kube() -> tuple[Kube, Callable[[], None]]:
    kube = Kube()

    class Handler(FakeHandler):
        def reply(self, status: int, doc: dict[str, Any]) -> None:
            self.answer(status, json.dumps(doc).encode(), "application/json")

        def handle_any(self) -> None:
            body = self.body()
            parts = urlsplit(self.path)
            if parts.path == "/version":  # what the API server says it is
                return self.reply(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "platform": "linux/amd64"})
            dry = is_dry(self.command, parts.query, body)
            with kube.lock:
                kube.calls.append((self.command, parts.path, dry))
            if dry and kube.dry_runs_wait is not None:
                kube.dry_runs_wait.wait(20)
            with kube.lock:
                m = OBJECT.match(parts.path)
                obj = kube.objects.get((m.group(1), m.group(2))) if m else None
                if obj is None:
                    return self.reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound",
                                            "message": f"deployments.apps not found: {parts.path}", "code": 404})
                if self.command == "DELETE":
                    if not dry:
                        del kube.objects[(m.group(1), m.group(2))]  # type: ignore[union-attr]
                    return self.reply(200, {**obj, "metadata": {**obj["metadata"],
                                                                "deletionTimestamp": "2026-12-06T03:00:00Z"}})
                changed = {**obj, "spec": {**obj["spec"], **(json.loads(body or b"{}").get("spec") or {})}}
                if not dry:
                    kube.objects[(m.group(1), m.group(2))] = changed  # type: ignore[union-attr]
                return self.reply(200, changed)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = handle_any

    kube.port, stop = serve(Handler)
    return kube, stop
