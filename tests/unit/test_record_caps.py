"""URLs, paths and headers are bounded in the record like bodies: past the cap the stored text
is cut and marked with the size and SHA-256 of the value as sent, a secret across the cut shows
no head, and what an ordinary request stores does not change."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from shield_addon import flows, record
from shield_addon.record import HEADERS_LIMIT, VALUE_LIMIT, Redactor
from tests.unit.test_redaction_cut import FILLER, SECRETS, shows_head

R = Redactor(b"k" * 32)
MARKER = re.compile(r"…\[cut at (\d+) of (\d+) bytes, sha256 ([0-9a-f]{64})\]$")


def flow(url: str, headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET") -> http.HTTPFlow:
    f = tflow.tflow(req=http.Request.make(method, url, b"", headers or [(b"Host", b"api.example.com")]))
    f.client_conn.peername = ("10.0.0.7", 40000)
    return f


def marked(stored: str, whole: str | bytes, limit: int) -> str:
    """The stored head, after checking the marker names the limit, size and digest of `whole`."""
    m = MARKER.search(stored)
    assert m, stored[-200:]
    raw = whole.encode() if isinstance(whole, str) else whole
    assert (int(m.group(1)), int(m.group(2)), m.group(3)) == (limit, len(raw), hashlib.sha256(raw).hexdigest())
    head = stored[: m.start()]
    assert len(head.encode()) <= limit
    return head


def test_a_4_mb_path_is_stored_as_8_kib_and_its_marker() -> None:
    path = "/v1/items/" + "a" * (4 << 20)
    f = flow("https://api.example.com" + path + "?page=2")
    base = flows.base_columns(f, "agent", R)
    assert marked(base["path"], path, VALUE_LIMIT) == path[:VALUE_LIMIT]
    head = marked(base["url"], "https://api.example.com" + path + "?page=2", VALUE_LIMIT)
    assert head.startswith("https://api.example.com/v1/items/aaa")
    assert len(json.dumps(base)) < 3 * VALUE_LIMIT


def test_an_ordinary_request_stores_what_it_stored_before() -> None:
    f = flow("https://api.example.com:8443/v1/x?a=1&api_key=s3cr3t&a=2",
             [(b"Host", b"api.example.com"), (b"Authorization", b"Bearer abcdefghijklmnop"), (b"X-Trace", b"t-1")])
    base = flows.base_columns(f, "agent", R)
    path = R.text("/v1/x")
    assert base["path"] == path
    assert base["url"] == record.redact_url(R, "https", "api.example.com", 8443, path, f.request.query.items(multi=True))
    assert "…[cut" not in json.dumps(base)
    headers = json.loads(flows.request_columns(f.request, R, 1000)["request_headers"])
    assert headers == [[k, R.mark(v) if k == "Authorization" else v] for k, v in f.request.headers.items(multi=True)]


@pytest.mark.parametrize(("secret", "head"), SECRETS, ids=[h for _, h in SECRETS])
@pytest.mark.parametrize("margin", [64, 8])
def test_a_secret_across_the_cut_of_a_value_shows_no_head(secret: str, head: str, margin: int) -> None:
    limit = 48
    for at in range(0, limit + 2):
        value = FILLER[:at] + secret + " " + FILLER
        stored = R.capped(value, limit, margin)
        assert not shows_head(marked(stored, value, limit), head), (at, stored)


@pytest.mark.parametrize(("secret", "head"), SECRETS[:6], ids=[h for _, h in SECRETS[:6]])
def test_a_secret_across_the_cut_of_a_header_value_shows_no_head(secret: str, head: str) -> None:
    limit = 48
    for at in range(0, limit + 2):
        value = FILLER[:at] + secret + " " + FILLER
        [[name, stored]] = R.headers([("X-Note", value)], value_limit=limit)
        assert name == "X-Note" and not shows_head(marked(stored, value, limit), head), (at, stored)


def test_a_secret_query_value_across_the_cut_of_the_url_shows_no_head() -> None:
    limit = 80
    for at in range(0, limit + 2):
        pad = "p" * at
        target = f"/x?pad={pad}&api_key=Qsecretsecretsecret&page=2"
        url = record.stored_url(R, "https", "h.example", 443, target, (("pad", pad), ("api_key", "Qsecretsecretsecret"),
                                                                           ("page", "2")), limit)
        head = marked(url, "https://h.example" + target, limit) if "…[cut" in url else url
        assert not shows_head(head, "Qsecret"), (at, url)


def test_a_pair_with_a_huge_name_is_judged_on_its_whole_name() -> None:
    name = "x" * 20_000 + "_api_key"
    target = f"/x?{name}=Qsecretsecretsecret"
    url = record.stored_url(R, "https", "h.example", 443, target, ((name, "Qsecretsecretsecret"),), 1024)
    assert "Qsecret" not in url
    marked(url, "https://h.example" + target, 1024)


def test_a_huge_query_is_cut_and_its_pairs_after_the_cut_are_never_encoded() -> None:
    pairs = tuple((f"k{i}", "v" * 100) for i in range(50_000))
    target = "/x?" + "&".join(f"{k}={v}" for k, v in pairs)
    url = record.stored_url(R, "http", "h", 80, target, pairs)
    assert marked(url, "http://h" + target, VALUE_LIMIT).startswith("http://h/x?k0=vvv")


def test_headers_past_the_block_limit_end_in_one_marker_pair() -> None:
    sent = [(f"X-Pad-{i}", "v" * 1000) for i in range(1000)]
    stored = R.headers(sent)
    assert stored[:-1] == [list(h) for h in sent[: len(stored) - 1]]
    name, value = stored[-1]
    marked(name, record.redaction.header_block(sent), HEADERS_LIMIT)
    assert value == f"{1000 - len(stored) + 1} more headers"
    assert sum(len(n) + len(v) for n, v in stored[:-1]) <= HEADERS_LIMIT


def test_a_huge_header_name_and_value_are_each_cut() -> None:
    name, value = "X-" + "n" * 100_000, "v" * (1 << 20)
    [[stored_name, stored_value]] = R.headers([(name, value)])
    assert marked(stored_name, name, VALUE_LIMIT) == name[:VALUE_LIMIT]
    assert marked(stored_value, value, VALUE_LIMIT) == value[:VALUE_LIMIT]


def test_a_huge_secret_header_is_its_fingerprint() -> None:
    value = "Bearer " + "t" * (1 << 20)
    assert R.headers([("Authorization", value)]) == [["Authorization", R.mark(value)]]


def test_a_cut_in_a_multibyte_character_keeps_whole_characters() -> None:
    value = "é" * 10_000
    stored = R.capped(value, 1001)
    assert marked(stored, value, 1001) == "é" * 500


def test_request_and_response_columns_are_bounded() -> None:
    big = [(f"X-{i}".encode(), b"v" * 5000) for i in range(100)] + [(b"X-One", b"w" * (1 << 20))]
    f = flow("https://api.example.com/x", big, "DELETE")
    cols = flows.request_columns(f.request, R, 1000)
    assert len(cols["request_headers"]) < HEADERS_LIMIT + 2 * VALUE_LIMIT
    f.response = http.Response.make(200, b"ok", big)
    assert len(flows.response_columns(f, R, 1000)["response_headers"]) < HEADERS_LIMIT + 2 * VALUE_LIMIT


def test_a_reviewers_forwarded_request_is_bounded_and_its_path_redacted() -> None:
    f = flow("https://api.example.com/v1/sk-" + "Q" * 30 + "/" + "a" * (1 << 20))
    forwarded = json.loads(flows.forwarded_request(f.request, R, 1000))
    assert "sk-QQQ" not in forwarded["url"] and len(forwarded["url"].encode()) < VALUE_LIMIT + 200


def test_long_names_are_not_remembered() -> None:
    r = Redactor(b"k" * 32)
    r.secret_name("x" * 10_000)
    r.secret_name("page")
    assert list(r._secret_names) == ["page"]


def test_an_error_that_quotes_a_huge_request_is_cut() -> None:
    from mitmproxy.flow import Error

    from shield_addon.addons.gate import error_text

    f = flow("https://api.example.com/x")
    msg = "Server connection to ('" + "h" * (1 << 20) + "', 80) failed"
    f.error = Error(msg)
    assert marked(error_text(f), msg, VALUE_LIMIT).startswith("Server connection to ('hhh")
    f.error = Error("peer closed connection")
    assert error_text(f) == "peer closed connection"
