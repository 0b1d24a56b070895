"""Bodies decoded the way a server decodes them, or reported unreadable: never guessed."""

from __future__ import annotations

import codecs
import gzip
import tracemalloc
import zlib

import brotli
import pytest

from shield_addon.core.decoding import codings, decode_body, decode_text

SQL = b'{"query": "DROP TABLE users"}'


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize("encoding, encode", [
    ("gzip", gzip.compress),
    ("x-gzip", gzip.compress),
    ("GZIP ", gzip.compress),
    ("gzip;q=1", gzip.compress),
    ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
    ("identity, gzip", gzip.compress),
    ("gzip, identity", gzip.compress),
    ("deflate", zlib.compress),
    ("deflate", raw_deflate),
    ("br", brotli.compress),
    ("deflate, br, gzip", lambda b: gzip.compress(brotli.compress(zlib.compress(b)))),
    ("", lambda b: b),
    ("identity", lambda b: b),
])
def test_every_coding_a_server_accepts_is_undone(encoding: str, encode) -> None:  # noqa: ANN001
    decoded = decode_body(encode(SQL), encoding)
    assert decoded.readable and decoded.body == SQL


def test_zstd_is_undone() -> None:
    try:
        from backports import zstd
        data = zstd.compress(SQL)
    except ImportError:
        zstandard = pytest.importorskip("zstandard")
        data = zstandard.ZstdCompressor().compress(SQL)
    assert decode_body(data, "zstd").body == SQL


def test_gzip_members_one_after_another_are_all_read() -> None:
    assert decode_body(gzip.compress(b"SELECT 1;") + gzip.compress(b" DROP TABLE users"), "gzip").body == \
        b"SELECT 1; DROP TABLE users"


@pytest.mark.parametrize("encoding, data, why", [
    ("compress", b"\x1f\x9d\x90", "unknown content coding 'compress'"),
    ("gzip", b"not gzip at all", "corrupt"),
    ("gzip", gzip.compress(SQL)[:-12], "truncated"),
    ("br", b"\xff\xff\xff", "corrupt"),
    ("gzip, rot13", gzip.compress(SQL), "unknown content coding 'rot13'"),
])
def test_what_cannot_be_undone_is_unreadable_and_says_why(encoding: str, data: bytes, why: str) -> None:
    decoded = decode_body(data, encoding)
    assert not decoded.readable and decoded.body is None
    assert why in (decoded.problem or "")


@pytest.mark.parametrize("encoding, encode", [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress)])
def test_a_decompression_bomb_stops_at_the_bound(encoding: str, encode) -> None:  # noqa: ANN001
    bomb = encode(b"\0" * (64 << 20))
    decoded = decode_body(bomb, encoding, max_size=8 << 20)
    assert not decoded.readable and "more than" in (decoded.problem or "")


def test_the_codings_are_listed_in_the_order_applied() -> None:
    assert codings("identity, X-GZIP , br;q=0.5") == ("gzip", "br")


@pytest.mark.parametrize("body, content_type", [
    (codecs.BOM_UTF8 + SQL, None),
    (codecs.BOM_UTF16_LE + SQL.decode().encode("utf-16-le"), "application/json"),
    (codecs.BOM_UTF16_BE + SQL.decode().encode("utf-16-be"), None),
    (codecs.BOM_UTF32_LE + SQL.decode().encode("utf-32-le"), None),
    (SQL.decode().encode("utf-16-le"), "application/json"),
    (SQL.decode().encode("utf-32-be"), None),
    (SQL.decode().encode("latin-1"), "application/json; charset=ISO-8859-1"),
    (SQL.decode().encode("utf-16-le"), 'text/plain; charset="utf-16-le"'),
    # a label that disagrees with the bytes: JSON readers detect the zero bytes and ignore it
    (SQL.decode().encode("utf-16-le"), "application/json; charset=utf-8"),
    (SQL.decode().encode("utf-16-be"), "application/json; charset=utf-16"),
    (SQL.decode().encode("utf-16-le"), "application/json; charset=ucs-2"),
    (SQL.decode().encode("utf-16-le"), "application/json; charset=x-foo"),
    (SQL.decode().encode("utf-32-le"), "application/json; charset=utf-8; charset=utf-16le"),
    (SQL, "application/json; charset=no-such-charset"),  # a label nobody knows: read as UTF-8
])
def test_text_in_any_encoding_a_server_accepts_is_read(body: bytes, content_type: str | None) -> None:
    assert decode_text(body, content_type) == SQL.decode()


def test_bytes_that_are_not_text_in_their_encoding_are_none() -> None:
    assert decode_text(b"\xff\xfe\xfd", "text/plain; charset=utf-8") is None


def test_repetitive_json_that_compresses_hundreds_of_times_is_still_read() -> None:
    doc = b'{"rows": [' + b",".join(b'{"id": 1, "state": "ok", "note": "same as before"}' for _ in range(200_000)) + b"]}"
    packed = gzip.compress(doc)
    assert len(doc) / len(packed) > 100  # beyond a ratio bound of 100, within one of 1000
    assert decode_body(packed, "gzip").body == doc


def zstd_compress(data: bytes) -> bytes:
    try:
        from backports import zstd
        return zstd.compress(data)
    except ImportError:
        zstandard = pytest.importorskip("zstandard")
        return zstandard.ZstdCompressor().compress(data)


SKIPPABLE_FRAME = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"


@pytest.mark.parametrize("frames", [
    [b"SELECT 1;", b" DROP TABLE users"],
    [b"", b"DROP TABLE users"],
    [b"x" * 300_000, b"DROP TABLE users"],
])
def test_every_zstd_frame_is_read_as_zstd_d_reads_them(frames: list[bytes]) -> None:
    decoded = decode_body(b"".join(zstd_compress(f) for f in frames), "zstd")
    assert decoded.body == b"".join(frames)


def test_a_skippable_zstd_frame_hides_nothing() -> None:
    assert decode_body(SKIPPABLE_FRAME + zstd_compress(SQL), "zstd").body == SQL


@pytest.mark.parametrize("encoding, data, why", [
    ("zstd", zstd_compress(b"x" * 100_000 + SQL)[:-8], "truncated"),
    ("zstd", zstd_compress(SQL) + b"junk", "corrupt"),
    ("deflate", zlib.compress(b"SELECT 1") + zlib.compress(b"DROP TABLE users"), "data after the end"),
    ("deflate", zlib.compress(SQL) + b"\0", "data after the end"),
    ("deflate", zlib.compress(b"x" * 100_000 + SQL)[:-8], "truncated"),
    ("deflate", raw_deflate(b"x" * 100_000 + SQL)[:-8], "truncated"),
    ("gzip", gzip.compress(SQL) + b"trailing", "corrupt"),
    ("br", brotli.compress(b"x" * 100_000 + SQL)[:-4], "truncated"),
    ("br", brotli.compress(b"SELECT 1") + brotli.compress(b"DROP TABLE users"), "corrupt"),
])
def test_a_stream_cut_short_or_followed_by_more_is_unreadable(encoding: str, data: bytes, why: str) -> None:
    decoded = decode_body(data, encoding)
    assert not decoded.readable
    assert why in (decoded.problem or "")


@pytest.mark.parametrize("encoding, encode", [("br", lambda b: brotli.compress(b, quality=5)), ("zstd", zstd_compress)])
def test_a_bomb_of_a_gibibyte_allocates_about_the_bound_not_the_gibibyte(encoding: str, encode) -> None:  # noqa: ANN001
    bomb = encode(b"\0" * (1 << 30))
    tracemalloc.start()
    try:
        decoded = decode_body(bomb, encoding, max_size=8 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not decoded.readable and "more than" in (decoded.problem or "")
    assert peak < 64 << 20
