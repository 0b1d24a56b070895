"""Secrets out before anything is written: headers, fields, query parameters and token shapes
become `[redacted:<keyed fingerprint>]`.

Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

SECRET_HEADERS = {
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key",
    "x-auth-token", "x-amz-security-token", "x-goog-api-key", "x-csrf-token", "x-xsrf-token",
}
# Names are read as words (split on - _ . and camelCase), never searched for substrings:
# "X-Author" and "X-Monkey" are not secrets, "X-Auth-Token", "apiKey" and "client_secret" are.
SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "passcode", "passkey", "secret", "token", "credential", "credentials",
    "signature", "cookie", "auth", "authorization", "apikey", "apikeys", "accesskey", "privatekey", "secretkey",
    "clientsecret", "accesstoken", "refreshtoken", "authtoken", "bearer",
})
# "<qualifier> key" is a credential (x-functions-key, x-rapidapi-key, consumer_key, Ocp-Apim-Subscription-Key);
# any other word before "key" names a value that is not (primary_key, idempotency-key, sort_key, cache-key).
KEY_QUALIFIERS = frozenset({
    "api", "access", "private", "secret", "signing", "encryption", "master", "account", "client", "shared",
    "subscription", "session", "auth", "app", "ssh", "license", "admin", "service", "functions", "consumer",
    "user", "webhook", "hmac", "x",
})
SECRET_NAMES = frozenset({"key", "sig", "pass"})  # secret only as the whole name
# "token" beside one of these names a number or a setting, not a credential (token_count, token_url).
NOT_A_CREDENTIAL = frozenset({"count", "limit", "type", "usage", "length", "max", "min", "budget", "url", "uri",
                              "endpoint"})
# A session id is a credential when it looks like one; "session_id": 42 in a log line is not.
SESSION_WORDS = frozenset({"session", "sessionid", "sid"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_CREDENTIAL_SHAPE = re.compile(r"[A-Za-z0-9._~+/=%-]{16,}")  # long and token-like: 42 or "web-3" is not
SECRET, SESSION = "secret", "session"


def name_kind(name: str) -> str | None:
    """SECRET for a credential's name, SESSION for a session id's (secret if its value looks
    like a credential), None otherwise."""
    words = [w.lower() for w in _WORD.findall(name)]
    if not words:
        return None
    if "".join(words) in SECRET_NAMES and len(words) == 1:
        return SECRET
    found = set(words)
    if found & SECRET_WORDS and not ("token" in found and found & NOT_A_CREDENTIAL and not found & (SECRET_WORDS - {"token"})):
        return SECRET
    if any(b in ("key", "keys") and (a in KEY_QUALIFIERS or a.endswith("api")) for a, b in zip(words, words[1:])):
        return SECRET
    if found & SESSION_WORDS:
        return SESSION
    return None


def credential_shaped(value: str) -> bool:
    return bool(_CREDENTIAL_SHAPE.fullmatch(value.strip()))


# A token starts where a word does, or right after a JSON escape like \n in unparsed text.
_START = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrtbf]))"
_SECRET_VALUE = re.compile(
    r"(?x)("
    r"-----BEGIN[A-Z ]{0,40}PRIVATE\ KEY-----[\s\S]{0,20000}?-----END[A-Z ]{0,40}PRIVATE\ KEY-----"  # PEM keys
    r"|" + _START + r"(?:"
    r"sk-[A-Za-z0-9_-]{16,}"  # OpenAI / Anthropic-style keys
    r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{16,}"  # Stripe keys and webhook secrets
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"  # SendGrid keys
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWTs
    r")"
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r")"
)


@dataclass(frozen=True)
class Redactions:
    """Operator additions from the rule files' `redact:` block."""

    headers: tuple[str, ...] = ()
    fields: re.Pattern[str] | None = None  # JSON/form/query field names
    patterns: tuple[re.Pattern[str], ...] = ()


# `api_key=...` inside any text: echoed URLs, logs, error messages.
_SECRET_PAIR = re.compile(r"\b([\w.-]{1,64})=([^&\s\"'<>]+)")
# "password": "..." in JSON that did not parse (cut, or with stray control characters)
_JSON_FIELD = re.compile(r'"([^"\\\n]{1,64})"(\s*:\s*)"((?:[^"\\]|\\.)*)"')


# Every _SECRET_VALUE match contains one of these: a long text without any skips the regex.
_SECRET_LITERALS = ("-----BEGIN", "sk-", "sk_", "rk_", "whsec_", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_",
                    "ghr_", "github_pat_", "xox", "xapp-", "AIza", "SG.", "eyJ")
_PREFILTER_FROM = 64  # characters; below, the regex is cheaper than the literal checks
_CACHE_MAX = 4096  # names and header values remembered (they repeat on every request)
_CACHED_VALUE_MAX = 256  # longer header values are redacted each time, not remembered


def _may_hold_token(text: str) -> bool:
    if len(text) < _PREFILTER_FROM or any(lit in text for lit in _SECRET_LITERALS):
        return True
    low = text.lower()
    return "bearer" in low or "basic" in low


class Redactor:
    """Replaces secrets by `[redacted:<keyed fingerprint>]`.

    The fingerprint is an HMAC under a key kept outside the audit directory, so the same
    secret always looks the same (analysts can tell credentials apart) but cannot be
    guessed from the trail."""

    def __init__(self, key: bytes, extra: Redactions | None = None):
        self.key = key
        extra = extra or Redactions()
        self.extra_headers = {h.lower() for h in extra.headers}
        self.extra_fields = extra.fields  # a compiled regex, or None
        self.extra_patterns = extra.patterns
        # Only verdicts on names and non-secret header values are remembered, never a secret.
        self._secret_names: dict[str, str | None] = {}
        self._header_texts: dict[str, str] = {}

    def name_kind(self, name: str) -> str | None:
        known = self._secret_names.get(name, "?")
        if known == "?":
            known = SECRET if self.extra_fields and self.extra_fields.search(name) else name_kind(name)
            _remember(self._secret_names, name, known)
        return known

    def secret_name(self, name: str, value: str | None = None) -> bool:
        """Is the value of a field, parameter or header of this name a secret?"""
        kind = self.name_kind(name)
        return kind == SECRET or kind == SESSION and value is not None and credential_shaped(value)

    def secret_header(self, name: str, value: str | None = None) -> bool:
        low = name.lower()
        if low in SECRET_HEADERS or low in self.extra_headers:
            return True
        return self.secret_name(low, value)

    def mark(self, secret: str) -> str:
        fp = hmac.new(self.key, secret.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()[:12]
        return f"[redacted:{fp}]"

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[list[str]]:
        out = []
        for name, value in headers:
            if self.secret_header(name, value):
                value = self.mark(value)
            elif (known := self._header_texts.get(value)) is not None:
                value = known
            else:
                redacted = self.text(value)
                if len(value) <= _CACHED_VALUE_MAX and redacted == value:  # nothing secret in it
                    _remember(self._header_texts, value, redacted)
                value = redacted
            out.append([name, value])
        return out

    def query(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, self.mark(v) if self.secret_name(k, v) else self.text(v)) for k, v in pairs]

    def text(self, text: str) -> str:
        if _may_hold_token(text):
            text = _SECRET_VALUE.sub(lambda m: self.mark(m.group(0)), text)
        for pattern in self.extra_patterns:
            text = pattern.sub(lambda m: self.mark(m.group(0)), text)
        if "=" in text:
            text = _SECRET_PAIR.sub(lambda m: self._pair(m.group(0), m.group(1), m.group(2), "="), text)
        if '"' in text:
            text = _JSON_FIELD.sub(lambda m: self._pair(m.group(0), f'"{m.group(1)}"', m.group(3), m.group(2) + '"', '"'), text)
        return text

    def _pair(self, whole: str, name: str, value: str, sep: str, end: str = "") -> str:
        if value.startswith("[redacted:") or not self.secret_name(name.strip('"'), value):
            return whole
        return f"{name}{sep}{self.mark(value)}{end}"

    def json(self, doc: Any, depth: int = 0) -> Any:
        if depth > 64:
            return "[truncated: nested too deep]"
        if isinstance(doc, dict):
            return {
                k: self.mark(_scalar(v)) if not isinstance(v, (dict, list)) and self.secret_name(str(k), _scalar(v))
                else self.json(v, depth + 1)
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.json(v, depth + 1) for v in doc]
        if isinstance(doc, str):
            return self.text(doc)
        return doc

    def body(self, raw: bytes | None, content_type: str, limit: int) -> str | None:
        """The body as stored: redacted, as text, cut to `limit` bytes. Binary bodies are
        stored as `base64:` text so nothing in the trail can be a terminal escape."""
        if raw is None:
            return None
        if not raw:
            return ""
        text = _decode(raw)
        if text is None:
            # Not UTF-8: redact what ASCII secrets the bytes carry, then store them as base64.
            import base64

            redacted = self.text(raw[:limit].decode("latin-1")).encode("latin-1", "replace")
            return "base64:" + base64.b64encode(redacted).decode()
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") and ("json" in content_type or not content_type):
            try:
                text = json.dumps(self.json(json.loads(text)), ensure_ascii=False, separators=(",", ":"))
            except (ValueError, RecursionError):
                text = self.text(text)
        elif "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(text, keep_blank_values=True)
            redacted = self.query(pairs)
            if redacted != pairs:  # re-encode only when something was redacted: keep the body as sent
                text = urlencode(redacted, quote_via=quote, safe="[]:")
        else:
            text = self.text(text)
        encoded = text.encode("utf-8", "surrogateescape")
        if len(encoded) > limit:
            text = encoded[:limit].decode("utf-8", "ignore") + f"…[cut at {limit} bytes]"
        return text


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # agents that send ever-new names get no memory, not unbounded growth
    cache[key] = value


def _scalar(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _decode(raw: bytes) -> str | None:
    """UTF-8 text, control characters and all (displays neutralise them); None otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def redact_url(redactor: Redactor, scheme: str, host: str, port: int, path: str, query: Iterable[tuple[str, str]]) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port != default:
        netloc += f":{port}"
    q = redactor.query(query)
    return f"{scheme}://{netloc}{path}" + ("?" + urlencode(q, quote_via=quote, safe="[]:/") if q else "")


def headers_json(headers: list[list[str]]) -> str:
    return json.dumps(headers, ensure_ascii=False, separators=(",", ":"))


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


