"""Who a request acts as, beyond the agent: the credential it carries to the server.

A retry-mode approval is bound to it, or a human's approval of a DELETE sent with a read-only
token would let the same DELETE through with an admin one. Only the part that names the
caller is bound, never what every send changes (a signature, its date): an SDK's retry must
still find its approval.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable

# Headers whose value says who the server will take the caller for. Other identity headers
# (Impersonate-*, X-Api-Key, Cookie) are bound with every other header already.
CREDENTIAL_HEADERS = ("authorization", "x-amz-security-token")

# AWS SigV4, Google's GOOG4 and HTTP Message Signatures name their key; the scope's date,
# the signed headers and the signature change on every send.
_KEY_NAMED = re.compile(r"(?:^|[\s,])(?:Credential|keyId)\s*=\s*\"?([^,\"\s/]+)", re.IGNORECASE)
# AWS v2 and Azure SharedKey: `key:signature`.
_KEY_COLON = frozenset({"aws", "sharedkey", "sharedkeylite"})
SUBJECT_MAX = 80


def credentials(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """(header, the credential in it) for every credential header, in a stable order."""
    found = [(k.lower(), caller(k.lower(), v)) for k, v in headers if k.lower() in CREDENTIAL_HEADERS]
    return tuple(sorted(found))


def caller(name: str, value: str) -> str:
    """The part of a credential header's value that names the caller."""
    if name != "authorization":
        return value.strip()
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if (m := _KEY_NAMED.search(rest)) is not None:
        return f"{scheme} key {m.group(1)}"
    if scheme in _KEY_COLON and ":" in rest:
        return f"{scheme} key {rest.split(':', 1)[0].strip()}"
    return f"{scheme} {rest.strip()}"


def subject(name: str, value: str) -> str | None:
    """Who the credential says it is, where it says so readably (a Basic user, a JWT's `sub`,
    a signing key's id). Read, not verified: it helps the reviewer tell two tokens apart."""
    if name != "authorization":
        return None
    scheme, _, rest = value.strip().partition(" ")
    scheme, rest = scheme.lower(), rest.strip()
    found: str | None = None
    if scheme == "basic":
        user = _b64(rest)
        found = user.split(b":", 1)[0].decode("utf-8", "replace") if user else None
    elif scheme == "bearer" and rest.count(".") == 2:
        found = _jwt_subject(rest)
    elif (m := _KEY_NAMED.search(rest)) is not None:
        found = f"key {m.group(1)}"
    elif scheme in _KEY_COLON and ":" in rest:
        found = f"key {rest.split(':', 1)[0].strip()}"
    return found[:SUBJECT_MAX] if found else None


def describe(headers: Iterable[tuple[str, str]], mark: Callable[[str], str]) -> str | None:
    """What the reviewer reads of the credentials: each one's fingerprint (`mark`, the same
    keyed one the trail's redacted headers carry) and subject."""
    parts = []
    for name, value in headers:
        if name.lower() not in CREDENTIAL_HEADERS:
            continue
        who = subject(name.lower(), value)
        parts.append(f"{name.lower()} {mark(value)}" + (f" ({who})" if who else ""))
    return ", ".join(parts) or None


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None)
    except (binascii.Error, ValueError):
        return None


def _jwt_subject(token: str) -> str | None:
    payload = _b64(token.split(".")[1])
    try:
        claims = json.loads(payload) if payload else None
    except (ValueError, UnicodeDecodeError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return f"sub {sub}" if isinstance(sub, str) and sub else None
