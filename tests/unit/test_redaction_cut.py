"""Bodies are redacted only as far as they are stored (shield_body_limit plus a margin): what is
stored is what redacting the whole body and cutting it stored, and a secret placed across the
cut, or across the end of the redacted window, never shows its head."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shield_addon.record import Redactor

R = Redactor(b"k" * 32)
MARK = "[redacted:"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Qz9\nQmVyeXNlY3JldA==\n-----END RSA PRIVATE KEY-----"
# (the text as it appears in a body, the part of it that must never be seen)
SECRETS = [
    ("sk-" + "Q7x" * 10, "sk-Q7x"),
    ("AKIAQZ7X4Y2W3V5U6T8S", "AKIAQZ7"),
    ("ghp_" + "Qw9" * 12, "ghp_Qw9"),
    ("eyJQhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.QflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c", "eyJQhb"),
    ("Bearer Qabcdefghijklmnop", "Qabcdef"),
    ("password=Qhunter2hunter2", "Qhunter"),
    ('"password": "Qhunter2 with spaces"', "Qhunter"),
    ('"client_secret":"Qx' + "y" * 300 + '"', "Qxyyyy"),
    (PEM, "MIIEow"),
]


def stored(body: str, limit: int, margin: int | None = None, content_type: str = "text/plain") -> str:
    kw = {} if margin is None else {"margin": margin}
    out = R.body(body.encode(), content_type, limit, **kw)
    assert out is not None
    return out.split("…[cut at", 1)[0]


def whole_then_cut(text: str, limit: int) -> str:
    """What the redactor stored before it bounded its work: all of it redacted, then cut."""
    encoded = text.encode("utf-8", "surrogateescape")
    return encoded[:limit].decode("utf-8", "ignore") + f"…[cut at {limit} bytes]" if len(encoded) > limit else text


def shows_head(out: str, head: str) -> bool:
    """Any start of the secret, down to its first character (the filler has none of them); a
    fingerprint the cut went through is not one."""
    cut_mark = out.rfind("[")
    if cut_mark >= 0 and "]" not in out[cut_mark:] and (MARK.startswith(out[cut_mark:]) or out[cut_mark:].startswith(MARK)):
        out = out[:cut_mark]
    return head in out or any(out.endswith(head[:k]) for k in range(1, len(head)))


FILLER = "~ ~~ ~~~ " * 40  # no character of any secret's head


@pytest.mark.parametrize(("secret", "head"), SECRETS, ids=[h for _, h in SECRETS])
@pytest.mark.parametrize("margin", [None, 64, 8])
def test_a_secret_across_the_cut_at_every_offset_shows_no_head(secret: str, head: str, margin: int | None) -> None:
    limit = 48
    for at in range(0, limit + 2):
        body = FILLER[:at] + secret + " " + FILLER
        out = stored(body, limit, margin)
        assert not shows_head(out, head), (at, out)


@pytest.mark.parametrize(("secret", "head"), SECRETS, ids=[h for _, h in SECRETS])
def test_a_secret_across_the_end_of_the_window_shows_no_head(secret: str, head: str) -> None:
    """The window redacted is limit + margin characters, on to the next delimiter: a secret
    longer than the margin can start before the cut and end past the window."""
    limit, margin = 32, 16
    for at in range(0, limit + margin + 2):
        body = FILLER[:at] + secret + " " + FILLER * 3
        assert not shows_head(stored(body, limit, margin), head), at


def test_text_bodies_store_what_whole_redaction_stored() -> None:
    lines = [f"line {n} user=bob token=Q{n:04d}abcdefghijklmnopqrstu sk-{n:04d}abcdefghijklmnopq {PEM if n % 7 == 0 else ''}"
             for n in range(400)]
    text = "\n".join(lines)
    for limit in (1, 100, 999, 4096, 20_000, len(text.encode()) - 1, len(text.encode()) + 1):
        assert R.body(text.encode(), "text/plain", limit) == whole_then_cut(R.text(text), limit)


def test_a_window_that_redaction_shrinks_below_the_cut_is_widened() -> None:
    """Long tokens become short marks: the stored part reaches further into the body."""
    text = " ".join(f"sk-{n:05d}" + "a" * 2000 for n in range(40)) + " tail"
    out = R.body(text.encode(), "text/plain", 512, margin=64)
    assert out == whole_then_cut(R.text(text), 512)
    assert out.count(MARK) > 10


def test_a_large_json_body_stores_the_prefix_of_the_whole_redacted_document() -> None:
    doc = {"index": "kb", "documents": [{"id": n, "password": f"hunter{n}", "score": n / 7, "ok": n % 2 == 0, "none": None,
                                         "text": f"Bearer Qabcdefghijk{n} and é" * 3} for n in range(2000)]}
    raw = json.dumps(doc).encode()
    full = json.dumps(R.json(doc), ensure_ascii=False, separators=(",", ":"))
    for limit in (0, 1, 2, 3, 100, 65536, len(full.encode()) - 1, len(full.encode()), len(full.encode()) + 1):
        assert R.body(raw, "application/json", limit) == whole_then_cut(full, limit)


NAMES = st.sampled_from(["a", "password", "session_id", "token_count", "x", "é"]) | st.text(max_size=8)


def containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=5) | st.dictionaries(NAMES, inner, max_size=5)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
                           containers, max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(min_value=0, max_value=400))
def test_json_text_is_json_dumps_of_the_redacted_document(doc: object, limit: int) -> None:
    full = json.dumps(R.json(doc), ensure_ascii=False, separators=(",", ":"))
    assert R.json_text(doc) == full
    raw = json.dumps(doc).encode()
    if raw.lstrip()[:1] in (b"{", b"["):
        assert R.body(raw, "application/json", limit) == whole_then_cut(full, limit)


def test_json_nested_past_the_depth_limit_is_cut_there_as_before() -> None:
    doc = json.loads("[" * 70 + '1, {"password": 1, "b": [2]}' + "]" * 70)
    assert R.json_text(doc) == json.dumps(R.json(doc), ensure_ascii=False, separators=(",", ":"))
    assert "[truncated: nested too deep]" in R.json_text(doc)


def test_a_lone_surrogate_escape_in_json_is_stored_not_raised() -> None:
    """json.loads turns "\\ud800" into a character UTF-8 cannot hold: the body used to raise."""
    out = R.body(b'{"a": "\\ud800x"}', "application/json", 100)
    assert out is not None and out.endswith('x"}')


@pytest.mark.parametrize(("secret", "head"), SECRETS, ids=[h for _, h in SECRETS])
@pytest.mark.parametrize("limit", [40, 3000])
def test_binary_bodies_redact_a_secret_across_the_cut(secret: str, head: str, limit: int) -> None:
    """Not UTF-8 (one 0xff byte): stored as base64 of the first `limit` bytes, redacted."""
    for at in [*range(max(0, limit - len(secret) - 2), limit + 2), 0]:
        # NUL filler: ÿ is a letter to the key=value scan, and a name glued to 64 of them is no name
        raw = b"\x00" * at + secret.encode() + b" \xff" + b"\x00" * 5000
        out = R.body(raw, "application/octet-stream", limit)
        assert out is not None and out.startswith("base64:")
        stored_bytes = base64.b64decode(out[7:]).decode("latin-1")
        assert not shows_head(stored_bytes, head), (at, stored_bytes[-80:])


def test_binary_bodies_without_a_secret_at_the_cut_store_their_first_bytes_redacted_alone() -> None:
    raw = (b"\xff token=Qabc&x=1 " * 3000)[:40_000]
    out = R.body(raw, "application/octet-stream", 30_001)
    assert out is not None
    assert base64.b64decode(out[7:]) == R.text(raw[:30_001].decode("latin-1")).encode("latin-1")
