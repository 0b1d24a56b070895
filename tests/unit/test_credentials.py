"""Who a request acts as: the part of a credential an approval is bound to, and what the
reviewer reads of it."""

from __future__ import annotations

import base64
import json

import pytest

from shield_addon import review
from shield_addon.core import credentials


def jwt(claims: dict) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def sigv4(key: str, day: str, signature: str, signed: str = "host;x-amz-date") -> str:
    return f"AWS4-HMAC-SHA256 Credential={key}/{day}/us-east-1/s3/aws4_request, SignedHeaders={signed}, Signature={signature}"


@pytest.mark.parametrize(("one", "other"), [
    (sigv4("AKIAREADER", "20261205", "aa"), sigv4("AKIAREADER", "20261206", "bb", "host")),
    ('Signature keyId="k1",algorithm="hs2019",signature="aa"', 'Signature keyId="k1",algorithm="hs2019",signature="bb"'),
    ("AWS AKIAREADER:c2lnMQ==", "AWS AKIAREADER:c2lnMg=="),
    ("SharedKey account1:c2lnMQ==", "SharedKey account1:c2lnMg=="),
    ("Bearer tok-1", "bearer  tok-1"),
])
def test_a_re_signed_send_with_the_same_key_is_the_same_credential(one: str, other: str) -> None:
    assert credentials.credentials([("Authorization", one)]) == credentials.credentials([("authorization", other)])


@pytest.mark.parametrize(("one", "other"), [
    (sigv4("AKIAREADER", "20261205", "aa"), sigv4("AKIAADMIN", "20261205", "aa")),
    ("Bearer tok-1", "Bearer tok-2"),
    ("Basic cmVhZGVyOng=", "Basic YWRtaW46eA=="),
    ("AWS AKIAREADER:c2ln", "AWS AKIAADMIN:c2ln"),
    ("Bearer tok-1", "Token tok-1"),
])
def test_another_key_or_token_is_another_credential(one: str, other: str) -> None:
    assert credentials.credentials([("Authorization", one)]) != credentials.credentials([("Authorization", other)])


def test_an_approval_key_changes_with_the_credential_and_not_with_its_signature() -> None:
    def key(headers: list[tuple[str, str]]) -> str:
        return review.hold_key(b"k", "bot", "DELETE", "https://x/y", None, review.meaning(headers, ()))

    base = [("Authorization", sigv4("AKIAREADER", "20261205", "aa")), ("X-Amz-Date", "20261205T100000Z")]
    resigned = [("Authorization", sigv4("AKIAREADER", "20261205", "bb")), ("X-Amz-Date", "20261205T100107Z")]
    assert key(base) == key(resigned)
    assert key(base) != key([("Authorization", sigv4("AKIAADMIN", "20261205", "aa"))])
    assert key(base) != key([*base, ("X-Amz-Security-Token", "session-2")])
    assert key(base) != key([*base, ("Impersonate-User", "system:admin")])
    assert key(base) != key(base[1:])  # no credential is another credential too


@pytest.mark.parametrize(("value", "who"), [
    (f"Bearer {jwt({'sub': 'system:serviceaccount:ci:deploy-bot'})}", "sub system:serviceaccount:ci:deploy-bot"),
    (f"Bearer {jwt({'iss': 'x'})}", None),
    ("Bearer not.a.jwt", None),
    ("Basic " + base64.b64encode(b"reader:pw").decode(), "reader"),
    ("Basic !!!", None),
    (sigv4("AKIAREADER", "20261205", "aa"), "key AKIAREADER"),
    ("Bearer opaque-token", None),
])
def test_the_reviewer_reads_who_the_credential_names_where_it_says_so(value: str, who: str | None) -> None:
    assert credentials.subject("authorization", value) == who
    described = credentials.describe([("Authorization", value), ("Accept", "*/*")], lambda v: f"[fp:{len(v)}]")
    assert described == f"authorization [fp:{len(value)}]" + (f" ({who})" if who else "")


def test_a_subject_is_bounded_and_no_credential_describes_nothing() -> None:
    assert len(credentials.subject("authorization", f"Bearer {jwt({'sub': 'x' * 5000})}") or "") == credentials.SUBJECT_MAX
    assert credentials.describe([("Accept", "*/*")], str) is None
