"""A fake EC2 Query API that checks every SigV4 signature against the secret of the access key
that made it (botocore's own signer recomputes it) and honours `DryRun=true` as EC2 does: a
caller allowed to act gets `412 DryRunOperation`, one that is not `403 UnauthorizedOperation`,
an unknown instance `400 InvalidInstanceID.NotFound`, and nothing changes. Every call is
kept, so a test can prove whose key signed what, and that a preview never did what the
request would."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.fake_server import FakeHandler, serve

AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
                  r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]+)")


@dataclass(frozen=True)
class Call:
    action: str
    dry_run: bool
    key: str  # the access key whose valid signature it carried
    region: str
    params: tuple[tuple[str, str], ...]


@dataclass
class Ec2:
    port: int = 0
    keys: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)  # key -> (secret, actions allowed)
    instances: dict[str, str] = field(default_factory=dict)  # id -> state
    calls: list[Call] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why signatures were refused
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def calls_for(self, action: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.action == action]

    def signer(self, headers: Any, method: str, path: str, body: bytes) -> tuple[str, str] | None:
        """(access key, region) of a valid signature, or None."""
        m = AUTH.fullmatch(headers.get("Authorization") or "")
        if not m or m["key"] not in self.keys:
            return None
        signed = m["signed"].split(";")
        request = AWSRequest(method, f"http://{headers['Host']}{path}", data=body,
                             headers={h: headers[h] for h in signed if h != "host" and headers.get(h) is not None})
        request.context["timestamp"] = headers.get("X-Amz-Date") or ""
        auth = SigV4Auth(Credentials(m["key"], self.keys[m["key"]][0]), m["service"], m["region"])
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        return (m["key"], m["region"]) if expected == m["signature"] else None


def error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>fake</RequestID></Response>").encode()


def start_ec2() -> tuple[Ec2, Callable[[], None]]:
    ec2 = Ec2()

    class Handler(FakeHandler):
        def reply(self, status: int, payload: bytes) -> None:
            self.answer(status, payload, "text/xml;charset=UTF-8")

        def handle_any(self) -> None:
            body = self.body()
            params = tuple(parse_qsl(urlsplit(self.path).query) + parse_qsl(body.decode()))
            action = dict(params).get("Action", "")
            dry = dict(params).get("DryRun") == "true"
            with ec2.lock:
                who = ec2.signer(self.headers, self.command, self.path, body)
                if who is None:
                    ec2.refused.append(f"{action}: {self.headers.get('Authorization')}")
                    return self.reply(403, error("SignatureDoesNotMatch", "The request signature we calculated "
                                                 "does not match the signature you provided."))
                ec2.calls.append(Call(action, dry, *who, params))
                if action not in ec2.keys[who[0]][1]:
                    return self.reply(403, error("UnauthorizedOperation",
                                                 "You are not authorized to perform this operation."))
                ids = [v for k, v in params if k.startswith("InstanceId.")]
                if missing := [i for i in ids if i not in ec2.instances]:
                    return self.reply(400, error("InvalidInstanceID.NotFound",
                                                 f"The instance ID '{missing[0]}' does not exist"))
                if dry:
                    return self.reply(412, error("DryRunOperation",
                                                 "Request would have succeeded, but DryRun flag is set."))
                for i in ids:
                    ec2.instances[i] = "shutting-down"
            items = "".join(f"<item><instanceId>{i}</instanceId><currentState><name>shutting-down</name>"
                            "</currentState></item>" for i in ids)
            self.reply(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response><requestId>fake</requestId>'
                            f"<instancesSet>{items}</instancesSet></{action}Response>".encode())

        do_GET = do_POST = handle_any

    ec2.port, stop = serve(Handler)
    return ec2, stop
