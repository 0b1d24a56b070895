from __future__ import annotations

import json

import pytest

from shield_addon import record

R = record.Redactor(b"k" * 32)


def test_secret_headers_are_replaced_by_a_keyed_fingerprint() -> None:
    out = dict(R.headers([("Authorization", "Bearer abc.def"), ("Cookie", "s=1"), ("X-Api-Key", "k1"), ("Accept", "*/*")]))
    assert out["Accept"] == "*/*"
    for name in ("Authorization", "Cookie", "X-Api-Key"):
        assert out[name].startswith("[redacted:") and "abc" not in out[name]


def test_the_same_secret_gives_the_same_fingerprint_and_another_key_another() -> None:
    assert R.mark("s3cret") == R.mark("s3cret") != R.mark("other")
    assert record.Redactor(b"x" * 32).mark("s3cret") != R.mark("s3cret")


def test_secret_json_fields_and_tokens_in_bodies_are_redacted() -> None:
    body = json.dumps({"user": "bob", "password": "hunter2", "nested": {"api_key": "k"}, "max_tokens": 5,
                       "note": "use sk-abcdefghijklmnopqrstuvwx please"}).encode()
    text = R.body(body, "application/json", 10_000)
    doc = json.loads(text)
    assert doc["user"] == "bob" and doc["max_tokens"] == 5
    assert doc["password"].startswith("[redacted:") and doc["nested"]["api_key"].startswith("[redacted:")
    assert "sk-abcdef" not in text and "hunter2" not in text


def test_secret_query_parameters_are_redacted_in_urls() -> None:
    url = record.redact_url(R, "https", "api.example.com", 443, "/x", [("api_key", "zzz"), ("page", "2")])
    assert "zzz" not in url and "page=2" in url and url.startswith("https://api.example.com/x?api_key=[redacted:")


def test_form_bodies_are_redacted_by_field_name() -> None:
    text = R.body(b"user=bob&password=hunter2", "application/x-www-form-urlencoded", 1000)
    assert "hunter2" not in text and "user=bob" in text


def test_bodies_are_cut_at_the_limit_and_binary_is_base64() -> None:
    assert R.body(b"a" * 100, "text/plain", 10).startswith("a" * 10 + "…[cut at 10 bytes]")
    assert R.body(b"\x00\x01\xff", "application/octet-stream", 100) == "base64:AAH/"
    assert R.body(None, "", 10) is None and R.body(b"", "", 10) == ""


def test_row_hash_covers_every_column_but_itself() -> None:
    row = record.seal({"stage": "request", "flow_id": "f", "ts": "2026-01-01 00:00:00.000000", "tables": ["a"]}, 1, "c", record.GENESIS)
    assert row["row_hash"] == record.row_hash(row)
    for col in ("seq", "chain_id", "prev_hash", "ts", "tables", "flow_id"):
        changed = {**row, col: "x" if col != "tables" else ["b"]}
        assert record.row_hash(changed) != row["row_hash"], col


def test_canonical_form_is_length_prefixed_with_null_as_dash() -> None:
    text = record.canonical({"seq": 7, "stage": "request", "edited": False}).decode()
    assert text.startswith("1:7-")  # seq, then chain_id NULL
    assert "7:request" in text and "5:false" in text


def test_check_chain_names_the_first_bad_seq() -> None:
    rows, prev = [], record.GENESIS
    for i in range(1, 6):
        r = record.seal({"stage": "request", "flow_id": str(i)}, i, "c", prev)
        rows.append(r)
        prev = r["row_hash"]
    assert list(record.check_chain(rows)) == []
    rows[2] = {**rows[2], "agent": "mallory"}
    assert list(record.check_chain(rows))[0] == (3, "row_hash does not match the row's content")
    del rows[2]
    assert list(record.check_chain(rows))[0][0] == 4


def test_lone_surrogates_become_replacement_characters() -> None:
    row = record.seal({"path": "/a\udcff"}, 1, "c", record.GENESIS)
    assert row["path"] == "/a\ufffd\ufffd\ufffd" or "\udcff" not in row["path"]
    json.dumps(row, ensure_ascii=False).encode()


def test_a_secret_with_a_lone_surrogate_is_still_fingerprinted() -> None:
    r = record.Redactor(b"k")
    assert r.headers([("authorization", "Bearer \ud800abc")])[0][1].startswith("[redacted:")
    assert "[redacted:" in r.text('{"password": "\ud800x"}')


def test_safe_text_defuses_terminal_escapes() -> None:
    s = record.safe_text("ok\x1b[2J\x1b]0;pwned\x07\u202e")
    assert "\x1b" not in s and "\x07" not in s and "\u202e" not in s and "\\x1b[2J" in s
    # the implicit bidi marks and the Unicode line separators are twins of the overrides and of \n
    s = record.safe_text("approved\u200f by\u200e alice\u061c\u2028denied\u2029")
    assert s == "approved\\x200f by\\x200e alice\\x61c\\x2028denied\\x2029"


def test_secret_query_pairs_inside_any_text_are_redacted() -> None:
    text = R.text('{"next": "https://x/y?page=2&access_token=abc123&sig=zz"} password=hunter2 max_tokens=5')
    assert "abc123" not in text and "hunter2" not in text and "=zz" not in text
    assert "page=2" in text and "max_tokens=5" in text


def test_an_event_with_a_misspelt_column_is_refused_not_stored_as_null() -> None:
    with pytest.raises(record.UnknownColumn, match="reviwer"):
        record.seal({"stage": "decision", "reviwer": "ada"}, 1, "c", record.GENESIS)
    assert record.seal({"stage": "decision", "reviewer": "ada"}, 1, "c", record.GENESIS)["reviewer"] == "ada"


LOOKALIKES = {"X-Author": "ada-lovelace", "X-Monkey": "banana-42", "Keyboard-Layout": "de-neo", "X-Passenger": "3",
              "Max-Tokens": "4096", "X-Bypass-Cache": "1"}


def test_lookalike_header_names_are_kept_in_clear() -> None:
    r = record.Redactor(b"k")
    out = dict(r.headers([*LOOKALIKES.items(), ("Authorization", "Bearer abcdefgh12345678"), ("X-Api-Key", "v"),
                          ("X-Auth-Token", "t")]))
    assert {k: out[k] for k in LOOKALIKES} == LOOKALIKES
    assert all(out[k].startswith("[redacted:") for k in ("Authorization", "X-Api-Key", "X-Auth-Token"))


@pytest.mark.parametrize("name", ["apiKey", "APIKey", "client_secret", "access_token", "refreshToken", "private_key",
                                  "password", "X-CSRF-Token", "id_token", "signature", "key", "x-functions-key",
                                  "x-rapidapi-key", "user_key", "consumer_key", "x-admin-key", "passcode", "passkey",
                                  "Ocp-Apim-Subscription-Key"])
def test_credential_names_are_read_as_words(name: str) -> None:
    assert record.Redactor(b"k").secret_name(name, "x")


@pytest.mark.parametrize("name", ["author", "monkey", "passenger", "max_tokens", "token_count", "token_type", "keyboard",
                                  "primary_key", "Idempotency-Key", "sort_key", "cache-key"])
def test_words_that_merely_contain_a_credential_word_are_not_secret(name: str) -> None:
    assert not record.Redactor(b"k").secret_name(name, "x")


def test_a_session_id_is_secret_when_it_looks_like_a_credential() -> None:
    r = record.Redactor(b"k")
    kept = json.loads(r.body(b'{"session_id": "web-3", "n": 1}', "application/json", 1000))
    assert kept["session_id"] == "web-3"
    hidden = json.loads(r.body(b'{"session_id": "c2Vzc2lvbi0xMjM0NTY3ODkw"}', "application/json", 1000))
    assert hidden["session_id"].startswith("[redacted:")


def test_a_real_secret_under_a_lookalike_name_is_still_caught_by_its_shape() -> None:
    out = dict(record.Redactor(b"k").headers([("X-Author", "sk-live-0123456789abcdefghij")]))
    assert out["X-Author"].startswith("[redacted:")
