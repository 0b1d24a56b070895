"""Secrets out before anything is written: headers, fields, query parameters and token shapes
become `[redacted:<keyed fingerprint>]`.

Pure: no mitmproxy, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring  # json.dumps(s, ensure_ascii=False) of a str, without the dumps
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


# Which provider a _SECRET_VALUE match belongs to, by how it starts: the `secrets:` match key
# names these kinds. A prefix table beside the one regex, never a second set of regexes.
SECRET_KINDS = ("aws", "github", "slack", "stripe", "openai", "private_key", "jwt", "google", "sendgrid")
_KIND_PREFIXES = (
    ("-----BEGIN", "private_key"), ("sk-", "openai"), ("sk_", "stripe"), ("rk_", "stripe"), ("whsec_", "stripe"),
    ("AKIA", "aws"), ("ASIA", "aws"), ("gh", "github"), ("xox", "slack"), ("xapp-", "slack"), ("AIza", "google"),
    ("SG.", "sendgrid"), ("eyJ", "jwt"),
)
_SCHEME = re.compile(r"(?i:bearer|basic)\s+")


def secret_kinds(text: str) -> set[str]:
    """The kinds of credential (SECRET_KINDS) the redaction detectors find in `text`. A token
    after `Bearer ` counts by its own shape; a Basic pair or a bearer of no known shape is
    redacted in the trail but has no kind."""
    found: set[str] = set()
    # Every shape with a kind holds one of these literals (a Bearer's token too): a text
    # without any skips the regex, however short (the regex costs ~0.2 µs a character).
    if not any(lit in text for lit in _SECRET_LITERALS):
        return found
    for m in _SECRET_VALUE.finditer(text):
        token = m.group(0)
        scheme = _SCHEME.match(token)
        if scheme:
            inner = _SECRET_VALUE.search(token, scheme.end())
            if inner is None:
                continue
            token = inner.group(0)
        kind = next((k for prefix, k in _KIND_PREFIXES if token.startswith(prefix)), None)
        if kind:
            found.add(kind)
    return found


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
# The stored part of a body is `limit` bytes; redaction reads this many characters past it (and
# on to the next delimiter), so a secret across the cut is still seen whole: a PEM block is at
# most ~20 KB, and a window that redaction shrank below the cut is read again, wider.
CUT_MARGIN = 32 * 1024
# No token, key=value pair or field name runs across one of these: a window ends just after one.
_DELIMITERS = " \t\n\r\f\v\"'<>&"
_DELIMITER = re.compile(r"[\s\"'<>&]")
_NEAR = 2048  # bytes each side of a binary body's cut redacted together (tokens and pairs are shorter)
# A window that ends inside a field's value or a private key: the rest of it is hidden too.
_OPEN_FIELD = re.compile(r'"([^"\\\n]{1,64})"\s*:\s*\Z')
_PEM_BEGIN = re.compile(r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----")
_TOO_DEEP = "[truncated: nested too deep]"
_MAX_DEPTH = 64
_PREFILTER_FROM = 64  # characters; below, the regex is cheaper than the literal checks
_CACHE_MAX = 4096  # names and header values remembered (they repeat on every request)
_CACHED_VALUE_MAX = 256  # longer header values and names are redacted each time, not remembered
# The record of one value an agent chose (path, URL, method, a header's name or value) and of a
# request's or response's headers together: past these, the stored text is cut and marked
# `…[cut at LIMIT of SIZE bytes, sha256 HEX]` (size and digest of the value as sent). The rules
# always judge the whole request; only the record is bounded.
VALUE_LIMIT = 8 * 1024
HEADERS_LIMIT = 64 * 1024


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
            if len(name) <= _CACHED_VALUE_MAX:  # a megabyte-long name is not kept for the next request
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
        fp = hmac.new(self.key, _utf8(secret), hashlib.sha256).hexdigest()[:12]
        return f"[redacted:{fp}]"

    def headers(self, headers: Iterable[tuple[str, str]], value_limit: int = VALUE_LIMIT,
                block_limit: int = HEADERS_LIMIT) -> list[list[str]]:
        """Redacted [name, value] pairs; a name or value past `value_limit` bytes is cut and
        marked, and once the names and values stored reach `block_limit` bytes the rest are
        left out for one last pair: the cut marker of the whole block (its size and digest as
        an HTTP/1.1 header block, `name: value` lines) and how many were left out."""
        headers = headers if isinstance(headers, (list, tuple)) else list(headers)
        out = []
        used = 0
        for i, (name, value) in enumerate(headers):
            if self.secret_header(name, value):
                value = self.mark(value)
            elif (known := self._header_texts.get(value)) is not None:
                value = known
            elif len(value) > value_limit // 4:  # may be past the limit: redacted only as far as it is stored
                value = self.capped(value, value_limit)
            else:
                redacted = self.text(value)
                if len(value) <= _CACHED_VALUE_MAX and redacted == value:  # nothing secret in it
                    _remember(self._header_texts, value, redacted)
                value = redacted
            if len(name) > value_limit // 4:
                name = self.capped(name, value_limit)
            used += _size(name) + _size(value)
            if used > block_limit:
                out.append([cut_mark(block_limit, header_block(headers)), f"{len(headers) - i} more headers"])
                break
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
        if depth > _MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(doc, dict):
            return {
                k: self.mark(_scalar(v)) if not isinstance(v, (dict, list)) and self._secret_field(str(k), v)
                else self.json(v, depth + 1)
                for k, v in doc.items()
            }
        if isinstance(doc, list):
            return [self.json(v, depth + 1) for v in doc]
        if isinstance(doc, str):
            return self.text(doc)
        return doc

    def _secret_field(self, name: str, value: Any) -> bool:
        """secret_name(name, _scalar(value)), with the value written out only for a session id."""
        kind = self.name_kind(name)
        return kind == SECRET or kind == SESSION and credential_shaped(_scalar(value))

    def json_text(self, doc: Any, limit: int | None = None) -> str:
        """json.dumps(self.json(doc), ensure_ascii=False, separators=(",", ":")), redacted and
        written only until more than `limit` characters are out: every character is at least a
        byte, so what would follow is past the cut. The same pieces as json.dumps, in its order."""
        out: list[str] = []
        try:
            self._emit(doc, 0, out, sys.maxsize if limit is None else limit)
        except _Full:
            pass
        return "".join(out)

    def _emit(self, v: Any, depth: int, out: list[str], left: int) -> int:
        """Append v, redacted and encoded, to out; return how many characters are still wanted
        (_Full when none are). As json(): a value past depth 64 is the truncation mark, and a
        secret field's scalar value is its fingerprint."""
        if depth > _MAX_DEPTH:
            piece = encode_basestring(_TOO_DEEP)
        elif type(v) is str:
            piece = encode_basestring(self.text(v))
        elif type(v) is dict:
            if not v:
                piece = "{}"
            else:
                sep = "{"
                for k, x in v.items():
                    left = _spend(out, sep + encode_basestring(k) + ":", left)
                    if type(x) is not dict and type(x) is not list and self._secret_field(k, x):
                        left = _spend(out, encode_basestring(self.mark(_scalar(x))), left)
                    else:
                        left = self._emit(x, depth + 1, out, left)
                    sep = ","
                piece = "}"
        elif type(v) is list:
            if not v:
                piece = "[]"
            else:
                sep = "["
                for x in v:
                    left = self._emit(x, depth + 1, out, _spend(out, sep, left))
                    sep = ","
                piece = "]"
        else:
            piece = _scalar_json(v)
        return _spend(out, piece, left)

    def body(self, raw: bytes | None, content_type: str, limit: int, margin: int = CUT_MARGIN) -> str | None:
        """The body as stored: redacted, as text, cut to `limit` bytes. Binary bodies are
        stored as `base64:` text so nothing in the trail can be a terminal escape.
        Only what is stored is redacted (plus `margin` characters past the cut): the same
        text as redacting the whole body and cutting it, but for a secret that runs past the
        margin, which is then hidden from where it starts."""
        if raw is None:
            return None
        if not raw:
            return ""
        text = _decode(raw)
        if text is None:
            return "base64:" + base64.b64encode(self._binary(raw, limit, margin)).decode()
        stripped = text.lstrip()
        if stripped[:1] in ("{", "[") and ("json" in content_type or not content_type):
            try:
                text = self.json_text(json.loads(text), limit)
            except (ValueError, RecursionError):
                text = self._bounded_text(text, limit, margin)
        elif "x-www-form-urlencoded" in content_type:
            pairs = parse_qsl(text, keep_blank_values=True)
            redacted = self.query(pairs)
            if redacted != pairs:  # re-encode only when something was redacted: keep the body as sent
                text = urlencode(redacted, quote_via=quote, safe="[]:")
        else:
            text = self._bounded_text(text, limit, margin)
        encoded = _utf8(text)  # a JSON "\ud800" escape has no byte of its own: the cut drops it
        if len(encoded) > limit:
            text = encoded[:limit].decode("utf-8", "ignore") + f"…[cut at {limit} bytes]"
        return text

    def capped(self, value: str, limit: int = VALUE_LIMIT, margin: int = CUT_MARGIN) -> str:
        """One value as stored (a path, a header): redacted, at most `limit` bytes of it, then
        the cut marker with the size and SHA-256 of the value as sent."""
        return cut(self.window(value, limit, margin), limit, value)

    def window(self, text: str, limit: int, margin: int = CUT_MARGIN) -> str:
        """self.text(text), or for a text past `limit` bytes as much of it as makes its first
        `limit` bytes the same (a secret across the cut redacted whole, as for bodies)."""
        if len(text) <= limit:
            return self.text(text)
        return self._bounded_text(text, limit, margin)

    def _bounded_text(self, text: str, limit: int, margin: int) -> str:
        """self.text(text) as far as its first `limit` bytes go: redacted from a window that
        ends past the cut at a delimiter, widened while redaction leaves it too short."""
        n = limit + margin
        while n < len(text):
            end = _DELIMITER.search(text, n)
            if end is None:
                break  # no delimiter left: the window would be the whole text
            window = self._close_tail(self.text(text[: end.end()]))
            if len(window) > limit + margin // 2:
                return window
            n *= 2
        return self.text(text)

    def _close_tail(self, text: str) -> str:
        """A window can end inside a private key or a secret field's quoted value, which the
        whole text would redact as one: hide it from its start to the window's end."""
        begin = text.rfind("-----BEGIN")
        if begin >= 0 and "-----END" not in text[begin:] and _PEM_BEGIN.match(text, begin):
            return text[:begin] + self.mark(text[begin:])
        quote_at = _last_open_quote(text)
        if quote_at is not None and quote_at + 1 < len(text):
            name = _OPEN_FIELD.search(text, max(0, quote_at - 256), quote_at)
            value = text[quote_at + 1:]
            if name and not value.startswith("[redacted:") and self.secret_name(name.group(1), value):
                return text[: quote_at + 1] + self.mark(value)
        return text

    def _binary(self, raw: bytes, limit: int, margin: int) -> bytes:
        """Bytes that are not UTF-8: the ASCII secrets they carry redacted in the first `limit`
        bytes (as latin-1 text, one character a byte); a secret across the cut as the bytes
        around the cut show it."""
        head = self.text(raw[:limit].decode("latin-1"))
        if len(raw) > limit:
            head = self._across_cut(raw, limit, margin, head)
        return head.encode("latin-1", "replace")

    def _across_cut(self, raw: bytes, limit: int, margin: int, head: str) -> str:
        """`head`, the first `limit` bytes redacted on their own, with a secret that runs across
        the cut redacted whole: the bytes from a delimiter _NEAR before the cut to one _NEAR
        after it are redacted together, and head's end is taken from them when they differ.
        A private key open in head (it may have begun long before) takes the wide window."""
        begin = head.rfind("-----BEGIN")
        if begin < 0 or "-----END" in head[begin:]:
            text = raw[: limit + 4 * _NEAR].decode("latin-1")
            start = max(text.rfind(c, 0, max(0, limit - _NEAR)) for c in _DELIMITERS) + 1
            end = _DELIMITER.search(text, limit + _NEAR)
            if end is not None or len(text) == len(raw):
                before = self.text(text[start:limit])
                around = self._close_tail(self.text(text[start: end.end() if end else len(text)]))
                if head.endswith(before):
                    return head if around.startswith(before) else head[: len(head) - len(before)] + around[: len(before)]
        wide = self._bounded_text(raw.decode("latin-1"), limit, margin)
        return head if wide.startswith(head) else wide[: len(head)]


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # agents that send ever-new names get no memory, not unbounded growth
    cache[key] = value


def _scalar(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


class _Full(Exception):
    """json_text has written all that will be stored."""


def _spend(out: list[str], piece: str, left: int) -> int:
    """Append a piece; the characters still wanted after it."""
    out.append(piece)
    left -= len(piece)
    if left < 0:
        raise _Full
    return left


_FLOAT_WORDS = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def _scalar_json(v: Any) -> str:
    """json.dumps of a number, true, false or null, as its C encoder writes them."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if type(v) is int:
        return int.__repr__(v)
    if type(v) is float:
        return "NaN" if v != v else _FLOAT_WORDS.get(v) or float.__repr__(v)
    return json.dumps(v, ensure_ascii=False)


def _last_open_quote(text: str) -> int | None:
    """Where the last unescaped double quote is (a value may open there), or None."""
    at = text.rfind('"')
    while at >= 0:
        start = at
        while start > 0 and text[start - 1] == "\\":
            start -= 1
        if (at - start) % 2 == 0:
            return at
        at = text.rfind('"', 0, at)
    return None


def _decode(raw: bytes) -> str | None:
    """UTF-8 text, control characters and all (displays neutralise them); None otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # what mitmproxy decoded, byte for byte
    except UnicodeEncodeError:  # a surrogate no byte stands for (a JSON escape)
        return text.encode("utf-8", "surrogatepass")


def _size(text: str) -> int:
    """Bytes of a text as UTF-8."""
    return len(text) if text.isascii() else len(_utf8(text))


def cut_mark(limit: int, whole: bytes) -> str:
    """What a value cut at `limit` bytes ends with: how long it was and its digest, so two cut
    values can still be told apart, and matched against another record of the request."""
    return f"…[cut at {limit} of {len(whole)} bytes, sha256 {hashlib.sha256(whole).hexdigest()}]"


def cut(stored: str, limit: int, whole: str) -> str:
    """`stored` (the redacted `whole`) if it is at most `limit` bytes; else its first `limit`
    bytes and the cut marker of `whole`."""
    if len(stored) <= limit // 4:
        return stored
    encoded = _utf8(stored)
    if len(encoded) <= limit:
        return stored
    return encoded[:limit].decode("utf-8", "ignore") + cut_mark(limit, _utf8(whole))


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """Headers as an HTTP/1.1 message carries them: what a header block's size and digest are of."""
    return b"".join(_utf8(name) + b": " + _utf8(value) + b"\r\n" for name, value in headers)


def origin(scheme: str, host: str, port: int) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port != default:
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def stored_url(redactor: Redactor, scheme: str, host: str, port: int, target: str,
               query: Sequence[tuple[str, str]], limit: int = VALUE_LIMIT, path: str | None = None) -> str:
    """The URL as stored: origin, redacted path and query, at most `limit` bytes, then the cut
    marker of the URL as sent (origin and request target). `target` is the path and query as
    sent, `query` its parsed pairs; `path`, the path already redacted (window(path, limit))."""
    head = origin(scheme, host, port)
    raw_path = target.split("?", 1)[0]
    if path is None:
        path = redactor.window(raw_path, limit)
    if len(head) + len(target) <= limit:
        url = redact_url(redactor, scheme, host, port, path, query)
    else:  # only the pairs that can show before the cut are redacted and encoded
        url = head + path + _bounded_query(redactor, query, limit - len(head) - len(path))
    return cut(url, limit, head + target)


def _bounded_query(redactor: Redactor, query: Iterable[tuple[str, str]], left: int) -> str:
    """`?` and the redacted, encoded pairs until `left` characters are out. A pair's name decides
    whether its value is a secret before either is shortened."""
    pieces: list[str] = []
    for name, value in query:
        if left < 0:
            break
        value = redactor.mark(value) if redactor.secret_name(name, value) else redactor.window(value, max(left, 0))
        piece = urlencode([(name[: max(left, 0) + 1], value)], quote_via=quote, safe="[]:/")
        pieces.append(piece)
        left -= len(piece) + 1
    return "?" + "&".join(pieces) if pieces else ""


def redact_url(redactor: Redactor, scheme: str, host: str, port: int, path: str, query: Iterable[tuple[str, str]]) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = f"[{host}]" if ":" in host else host
    if port != default:
        netloc += f":{port}"
    q = redactor.query(query)
    return f"{scheme}://{netloc}{path}" + ("?" + urlencode(q, quote_via=quote, safe="[]:/") if q else "")


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # json.dumps's, built once


def headers_json(headers: list[list[str]]) -> str:
    return _COMPACT.encode(headers)


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()
