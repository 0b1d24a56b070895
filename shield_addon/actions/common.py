"""Small helpers the parsers share: cheap body access and the action-type scale."""

from __future__ import annotations

import base64
import functools
import json
import quopri
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes, urlsplit

from shield_addon.core import decoding

from .base import RequestView
from .yamlbody import decode_yaml

# Least to most dangerous. A request that does several things is judged by its worst
# part; execute ranks above update because a procedure or tool can do anything.
STRICTNESS = ("other", "read", "create", "update", "execute", "delete")

_METHOD_TYPES = {
    "GET": "read",
    "HEAD": "read",
    "OPTIONS": "read",
    "POST": "create",
    "PUT": "update",
    "PATCH": "update",
    "DELETE": "delete",
}

# A JSON document starts with an object or array here; checking the first byte keeps
# us from decoding bodies that cannot be JSON (the common case for REST traffic).
_JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*[\[{]")

# A comment before a JSON document, which lenient servers skip.
COMMENT_START = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*/[*/]")

# Splits camelCase, PascalCase, snake_case and SHOUT_CASE names into words.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def request_view(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | str = b"",
) -> RequestView:
    """A RequestView from a URL, as rule-file tests and `shield rules explain` write them.
    Raises ValueError for a URL urllib cannot split (a bad port, a bad IPv6 literal)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower() or "https"
    return RequestView(
        method=method.upper(),
        scheme=scheme,
        host=(parts.hostname or "").lower(),
        port=parts.port or (80 if scheme == "http" else 443),
        path=normal_path(parts.path or "/"),
        query=tuple(parse_qsl(parts.query, keep_blank_values=True)),
        headers=tuple((k.lower(), v) for k, v in headers),
        body=body.encode() if isinstance(body, str) else body,
    )


# RFC 3986 6.2.2.2: a percent-escape of an unreserved character is that character to every
# server (`/v1/%72efunds` is `/v1/refunds`); other escapes (`%2F`) keep their meaning.
_UNRESERVED_ESCAPE = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def normal_path(path: str) -> str:
    """The path as servers route it: escapes of unreserved characters decoded."""
    if "%" not in path:
        return path
    return _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), path)


# RFC 9112 3.2.2 / RFC 9113 8.3.1: a request target in absolute form, `scheme://authority/path`.
_ABSOLUTE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.DOTALL)


def split_target(target: str) -> tuple[str | None, str]:
    """(authority, path) of a request target. HTTP/2's `:path` may be in absolute form
    (`https://host/api/...`), which Go's server, among others, routes by its path: the
    authority is one more name of the destination, the path is what the rules judge. Any
    other target is its own path, as sent."""
    m = None if target[:1] == "/" else _ABSOLUTE.match(target)  # origin form, nearly every request
    if m is None:
        return None, target
    rest = m.group("rest")
    return m.group("authority").rpartition("@")[2], rest if rest.startswith("/") else "/" + rest


_MATRIX = re.compile(r";[^/]*")
_SLASHES = re.compile(r"//+")


def routed_path(path: str) -> str:
    """The path as lenient servers route it: every escape decoded (Go's URL.Path, which the
    Kubernetes API server routes by, decodes `%2F`), backslashes as slashes, a target without
    its leading slash read from the root, `;matrix` parameters dropped (Tomcat, Spring),
    repeated slashes merged (nginx), dot segments resolved, no trailing slash (Express, Flask
    with strict_slashes off). The path as sent is judged too: this is the other reading."""
    if "%" in path:
        path = unquote(path, errors="surrogateescape")
    if "#" in path:  # a fragment is never sent; a server that sees one ignores it
        path = path.split("#", 1)[0]
    if "\\" in path:  # WHATWG URL parsers (Node, Bun, Deno) and IIS read a backslash as a slash
        path = path.replace("\\", "/")
    if not path.startswith("/") and path != "*":  # `api/v1/x`, read from the root
        path = "/" + path
    if ";" in path:
        path = _MATRIX.sub("", path)
    if "//" in path:
        path = _SLASHES.sub("/", path)
    path = without_dot_segments(path)
    return path.rstrip("/") or "/"


def without_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `/a/./b/../c` is `/a/c` to servers and proxies that normalise it."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == ".":
            if i == len(segments) - 1:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out) or "/"


def method_type(method: str) -> str:
    return _METHOD_TYPES.get(method.upper(), "other")


def strictest(types: Iterable[str]) -> str:
    return max(types, key=STRICTNESS.index, default="other")


def words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def unique(items: Iterable[str]) -> tuple[str, ...]:
    """De-duplicate, keeping first-seen order (rules and reviewers read it in order)."""
    return tuple(dict.fromkeys(items))


def field(obj: Any, key: str) -> Any:
    """obj[key], the key compared without case as Go's encoding/json does."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    folded = key.casefold()
    return next((v for k, v in obj.items() if str(k).casefold() == folded), None)


def first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


def text_body(req: RequestView) -> str:
    # Invalid UTF-8 must not raise: the replacement character makes the text fail to
    # parse later, which is reported as "unparsed" rather than hidden.
    return req.body.decode("utf-8", "replace")


def json_body(req: RequestView) -> Any:
    """The decoded JSON body, or None when it is absent, not JSON, or hostile. A YAML body
    (see `read_body`) is returned as the same plain data, so every parser reads YAML as JSON;
    of several YAML documents this is the first, the one a Go server's yaml.Unmarshal reads."""
    docs = read_body(req).documents
    return docs[0] if docs else None


def json_documents(req: RequestView) -> tuple[Any, ...]:
    """Every document of the body: one for JSON, each non-empty one of a `---` separated YAML
    stream. `json:` rules are matched against each, so no document hides behind another."""
    return read_body(req).documents


def json_duplicates(req: RequestView) -> bool:
    """Whether an object of the body repeats a key, exactly or only by case. Python (and so
    the rules) read the last of exact repeats, as Go and most JS servers do; but Go's
    encoding/json also lets `Replicas` set `replicas`, so any such pair is a disagreement."""
    return "duplicate_keys" in read_body(req).flags


def body_flags(req: RequestView) -> frozenset[str]:
    """Facts about how the body was read, for the action's flags: `duplicate_keys`,
    `multi_document` (YAML), `body_too_large` (YAML past YAML_LIMIT, not read) and
    `body_unparsed` (a body declared JSON or YAML that we could not read, or refused to:
    invalid, too deep, an alias bomb; a multipart body with more parts than are read). The
    server may read what we did not."""
    flags = read_body(req).flags
    if req.content_type.startswith("multipart/") and _more_parts_than_read(req):
        flags |= {"body_unparsed"}
    return flags


def _more_parts_than_read(req: RequestView) -> bool:
    m = _BOUNDARY.search(req.header("content-type") or "")
    return m is not None and req.body.count(b"--" + (m.group(1) or m.group(2)).encode("latin-1", "replace")) > MULTIPART_FIELDS + 1


@dataclass(frozen=True)
class Body:
    """A body as a server reads it: its documents as plain data, and what was odd about it."""

    documents: tuple[Any, ...] = ()
    flags: frozenset[str] = frozenset()


_NOTHING = Body()
# Every JSON media type: application/json, vnd.api+json, merge-patch+json, json-patch+json, ...
_JSON_TYPE = re.compile(r"(?:^|/|\+)(?:x-)?json$")
# application/yaml, application/x-yaml, text/yaml, application/apply-patch+yaml (Kubernetes
# server-side apply) and any other +yaml: whatever says YAML is read as YAML.
_YAML_TYPE = re.compile(r"(?:^|/|\+)(?:x-)?ya?ml$")
# YAML is read by a pure-Python parser on the event loop (ruamel, about 200 KB/s: 16 KiB of
# manifest took 75 ms, 64 KiB 300 ms): past this a body is not read but flagged (the Kubernetes
# pack holds such writes), so one request stalls the proxy for at most about 75 ms. Manifests an
# agent writes are a few KiB, and kubectl sends apply as JSON, which is read without this limit.
YAML_LIMIT = 16 * 1024
# Aliases make a small YAML text a huge tree (billion laughs). The loader shares the aliased
# node, so memory is fine, but every walker (rules, parsers) would visit each copy: the tree
# as walkers see it may be no larger than this many nodes plus one per byte of the text.
EXPANDED_NODES = 10_000


def read_body(req: RequestView) -> Body:
    """The body's documents (objects and arrays only, as parsers expect) and flags."""
    body = req.body
    if not body:
        return _NOTHING
    ctype = req.content_type
    if _YAML_TYPE.search(ctype):
        # kubectl sends server-side apply as JSON text (YAML's subset): read that at JSON speed.
        # Only strict JSON: what follows a JSON value (`---` and another document) is YAML's to read.
        read = _decode_json(body) if _JSON_START.match(body) else _NOTHING
        return read if read.documents and "body_unparsed" not in read.flags else _decode_yaml(body)
    declared = _JSON_TYPE.search(ctype) is not None
    if COMMENT_START.match(body):  # Json.NET and JSON5 skip a comment before the document
        read = _decode_json(body)
        return _unparsed(body) if declared and not read.documents else read
    if not _JSON_START.match(body):
        # UTF-16/32 JSON (a BOM or zero bytes show it) or a charset a server would honour:
        # read as UTF-8 like any other JSON body.
        utf8 = _as_utf8(body, req.header("content-type"))
        if utf8 is None or not _JSON_START.match(utf8):
            return _unparsed(body) if declared else _NOTHING
        body = utf8
    read = _decode_json(body)
    return _unparsed(body) if declared and not read.documents else read


def decodes_as_json(body: bytes) -> bool:
    """Whether `body` (as sent, UTF-8) is a JSON document; decoded once per request."""
    return bool(_decode_json(body).documents)


def _unparsed(body: bytes) -> Body:
    """A body that says it is JSON: a bare string or number is JSON (no object for rules or
    parsers to read); anything else the server refuses, or reads in a way we do not
    (comments, trailing commas), and rules may hold on the flag."""
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return Body(flags=frozenset({"body_unparsed"}))
    return _NOTHING


@functools.lru_cache(maxsize=1)
def _as_utf8(body: bytes, content_type: str | None) -> bytes | None:
    """`body` in UTF-8 when a BOM, zero bytes or a charset say it is in another encoding."""
    if decoding.text_encoding(body, content_type) in ("utf-8", "utf8", "ascii", "us-ascii"):
        return None
    text = decoding.decode_text(body, content_type)
    return None if text is None else text.encode("utf-8", "surrogatepass")


# Several parsers look at the same body; caching the last one means it is decoded once
# per request. Callers must treat the result as read-only.
@functools.lru_cache(maxsize=1)
def _decode_json(body: bytes) -> Body:
    read = _strict_json(body)
    return read if read is not None else _lenient_json(body)


def _strict_json(body: bytes) -> Body | None:
    """`body` as strict JSON (None if it is not): one document, or one per reading of its
    repeated keys."""
    dup: list[bool] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        # One hook call per object, in the one parse: no second pass over the body.
        obj = dict(items)
        n = len(obj)
        if n != len(items) or (n > 1 and len(set(map(str.casefold, obj))) != n):
            dup.append(True)
        return obj

    try:
        doc = json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
        return None
    if not dup:
        return Body((doc,))
    # Servers disagree on a repeated key: most keep the last (the first document, which
    # parsers read), some the first, and Go merges repeated objects into one struct. Each
    # reading is a document `json:` rules see, so no reading of the body hides another.
    first = json.loads(body, object_pairs_hook=_first_wins)
    merged = json.loads(body, object_pairs_hook=_merged)
    return Body((doc, first, merged), frozenset({"duplicate_keys"}))


# Comments (// and /* */) and trailing commas, each found only outside strings: the string
# alternative comes first so that a `//` inside a URL value is kept.
_COMMENT = re.compile(r'("(?:[^"\\]++|\\.)*+")|//[^\n]*+|/\*[\s\S]*?\*/')
_TRAILING_COMMA = re.compile(r'("(?:[^"\\]++|\\.)*+")|,(?=\s*+[}\]])')
# Past this many values a body is a stream we do not read value by value (NDJSON bulk loads).
LENIENT_VALUES = 1000
# Comments and trailing commas are removed by two regex passes (about 0.1 ms per KiB here): past
# this a broken body is only flagged `body_unparsed`, so a hostile one cannot stall the proxy.
LENIENT_LIMIT = 1 << 20


def _lenient_json(body: bytes) -> Body:
    """A body strict JSON refuses, as lenient servers read it: Go's json.Decoder reads the first
    value and leaves what follows (trailing bytes, a second value: NDJSON), Json.NET (ASP.NET),
    Jackson with ALLOW_COMMENTS and JSON5 skip comments and trailing commas. Every value read
    is a document; `body_unparsed` stays, since strict servers refuse the body. Runs only on
    bodies strict JSON refused, so ordinary traffic pays nothing."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _NOTHING
    values = _values(text)
    if not values and len(text) <= LENIENT_LIMIT and ("/" in text or "," in text):
        # A template, not a function, keeps the substitution in C: a string stays (group 1),
        # a comment or comma goes (an unmatched group is empty).
        values = _values(_TRAILING_COMMA.sub(r"\1", _COMMENT.sub(r"\1", text)))
    docs: list[Any] = []
    flags = {"body_unparsed"}
    for value in values:
        # Each value again as strict JSON: its repeated keys are read every way, as in a whole body.
        read = _strict_json(value.encode("utf-8", "surrogatepass")) or _NOTHING
        docs.extend(d for d in read.documents if isinstance(d, dict | list))
        flags |= read.flags
    return Body(tuple(docs), frozenset(flags)) if docs else _NOTHING


def _values(text: str) -> tuple[str, ...]:
    """The texts of the JSON values `text` starts with, one after another, up to the first
    that is not one."""
    decoder = json.JSONDecoder()
    out: list[str] = []
    i, n = 0, len(text)
    while len(out) < LENIENT_VALUES:
        while i < n and text[i] in " \t\r\n\ufeff":
            i += 1
        if i >= n:
            break
        try:
            _, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            break
        out.append(text[i:end])
        i = end
    return tuple(out)


def _first_wins(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in items:
        obj.setdefault(k, v)
    return obj


def _merged(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """Go's encoding/json: a repeated key decodes into the same field again, so repeated
    objects merge (their later scalars win)."""
    obj: dict[str, Any] = {}
    for k, v in items:
        old = obj.get(k)
        obj[k] = _merged([*old.items(), *v.items()]) if isinstance(old, dict) and isinstance(v, dict) else v
    return obj


@functools.lru_cache(maxsize=1)
def _decode_yaml(body: bytes) -> Body:
    docs, flags = decode_yaml(body, YAML_LIMIT, EXPANDED_NODES)
    # A scalar document (`hello`) is no object: parsers read objects and arrays, as from JSON.
    return Body(tuple(d for d in docs if isinstance(d, dict | list)), flags)


def form_body(req: RequestView) -> list[tuple[str, str]]:
    """The form fields of the body: a urlencoded form, or the text fields of a multipart one
    (Rails, Laravel, Spring, Express' body parsers and Go's ParseMultipartForm give both to
    the application as the same parameters, `_method` included)."""
    if not req.body:
        return []
    if req.content_type == "multipart/form-data":
        return list(multipart_fields(req.body, req.header("content-type") or ""))
    if req.content_type != "application/x-www-form-urlencoded":
        return []
    return parse_qsl(text_body(req), keep_blank_values=True)


_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^\s;,]+))', re.IGNORECASE)
_FIELD_NAME = re.compile(rb'(?:^|;)\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;]+))', re.IGNORECASE)
# RFC 2231's extended form, `name*=UTF-8''%5Fmethod`, which Go's mime.ParseMediaType decodes.
_EXTENDED_NAME = re.compile(rb"(?:^|;)\s*name\*\s*=\s*([\w!#$&+.^`|~-]*)'[\w-]*'([^\s;]+)", re.IGNORECASE)
_PART_ENCODING = re.compile(rb"^content-transfer-encoding\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_PART_TYPE = re.compile(rb"^content-type\s*:\s*([^;\r\n]*)", re.IGNORECASE | re.MULTILINE)
_PART_FULL_TYPE = re.compile(rb"^content-type\s*:\s*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
# Fields read from one multipart body: a form an agent fills has a handful.
MULTIPART_FIELDS = 200


@dataclass(frozen=True)
class Part:
    """One part of a multipart body: its field name (None without one), whether it is an
    uploaded file, its content type, and its bytes with the transfer encoding undone."""

    name: str | None
    is_file: bool
    content_type: str  # lower case, without parameters
    value: bytes
    full_type: str = ""  # as sent, with its parameters (a charset, a nested boundary)


@functools.lru_cache(maxsize=1)
def multipart_parts(body: bytes, content_type: str) -> tuple[Part, ...]:
    """The parts of a multipart body (form-data, related, ...). A part's quoted-printable or
    base64 transfer encoding is undone (Go's mime/multipart undoes quoted-printable by
    itself). Malformed parts are skipped, never guessed at."""
    m = _BOUNDARY.search(content_type)
    if m is None:
        return ()
    delimiter = b"--" + (m.group(1) or m.group(2)).encode("latin-1", "replace")
    out: list[Part] = []
    for chunk in body.split(delimiter)[1:MULTIPART_FIELDS + 1]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        part = _multipart_part(chunk)
        if part is not None:
            out.append(part)
    return tuple(out)


# Parts read as bodies of their own, and how deep multiparts nest (a multipart/mixed part of a
# form): past these the parts are not read (more parts than MULTIPART_FIELDS: `body_unparsed`).
PART_VIEWS = 200
PART_DEPTH = 2
_UNDECLARED = frozenset({"", "text/plain", "application/octet-stream"})


def part_views(req: RequestView, every_file: bool = False, depth: int = PART_DEPTH) -> list[RequestView]:
    """Each part of a multipart body as a request of its own: the part's bytes as the body
    (text in another encoding as UTF-8), its content type as the request's, so every parser
    reads a JSON part or an uploaded application/sql file as it reads a body. Nested
    multiparts are opened too. An uploaded file of no particular type is data, not a
    statement to guess at (a .sql migration sent to storage), unless `every_file` (a host
    pinned to a service: its parser reads whatever it is sent)."""
    if not req.content_type.startswith("multipart/") or not req.body or depth == 0:
        return []
    out: list[RequestView] = []
    for part in multipart_parts(req.body, req.header("content-type") or ""):
        if not part.value or (part.is_file and part.content_type in _UNDECLARED and not every_file):
            continue
        headers = tuple((k, v) for k, v in req.headers if k not in ("content-type", "content-encoding"))
        view = RequestView(req.method, req.scheme, req.host, req.port, req.path, req.query,
                           (*headers, ("content-type", part.full_type)) if part.full_type else headers,
                           _as_utf8(part.value, part.full_type))
        out.append(view)
        out.extend(part_views(view, every_file, depth - 1))
        if len(out) >= PART_VIEWS:
            break
    return out[:PART_VIEWS]


def _as_utf8(body: bytes, content_type: str) -> bytes:
    encoding = decoding.text_encoding(body, content_type)
    if encoding in ("utf-8", "ascii", "us-ascii"):
        return body
    text = decoding.decode_text(body, content_type)
    return body if text is None else text.encode("utf-8", "surrogatepass")


def multipart_fields(body: bytes, content_type: str) -> tuple[tuple[str, str], ...]:
    """The named fields of a multipart/form-data body that are not file uploads, as text."""
    return tuple((p.name, p.value.decode("utf-8", "replace")) for p in multipart_parts(body, content_type)
                 if p.name is not None and not p.is_file)


def _multipart_part(chunk: bytes) -> Part | None:
    head, sep, value = chunk.lstrip(b" \t").partition(b"\r\n\r\n")
    if not sep:
        head, sep, value = chunk.partition(b"\n\n")  # bare LF line ends, which some parsers accept
    if not sep:
        return None
    value = value[:-2] if value.endswith(b"\r\n") else value.removesuffix(b"\n")
    encoding = _PART_ENCODING.search(head)
    coding = encoding.group(1).lower() if encoding else b""
    try:
        if coding == b"quoted-printable":
            value = quopri.decodestring(value)
        elif coding == b"base64":
            value = base64.b64decode(value)
    except ValueError:
        return None
    kind = _PART_TYPE.search(head)
    part_type = kind.group(1).strip().decode("latin-1").lower() if kind else ""
    full = _PART_FULL_TYPE.search(head)
    full_type = full.group(1).strip().decode("latin-1") if full else ""
    disposition = next((line for line in head.splitlines() if line.lower().startswith(b"content-disposition:")), None)
    if disposition is None:
        return Part(None, False, part_type, value, full_type)  # multipart/related: a document, not a field
    params = disposition.split(b":", 1)[1]
    return Part(_field_name(params), b"filename" in params.lower(), part_type, value, full_type)


def _field_name(params: bytes) -> str | None:
    extended = _EXTENDED_NAME.search(params)
    if extended is not None:  # it wins over a plain name, as in Go
        charset = extended.group(1).decode("ascii") or "utf-8"
        try:
            return unquote_to_bytes(extended.group(2)).decode(charset, "replace")
        except LookupError:
            return None
    name = _FIELD_NAME.search(params)
    if name is None:
        return None
    raw = name.group(1) if name.group(1) is not None else name.group(2)
    return raw.decode("utf-8", "replace")
