"""Bodies as the server will read them: content codings undone, text decoded.

A guard that judges compressed bytes judges nothing: `Content-Encoding: gzip, gzip` around a
`DROP TABLE` is a DROP TABLE to a server that undoes both. So every coding a server accepts is
undone here, stacked ones in reverse order, with a bound on what decompression may produce (a
small body must not become gigabytes). What cannot be undone is reported, never guessed: the
gate refuses it unless a rule allows it (built-in rule `unreadable`).
"""

from __future__ import annotations

import codecs
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

MIB = 1 << 20
ALIASES = {"x-gzip": "gzip", "x-deflate": "deflate", "zstandard": "zstd"}
# Input fed to a decompressor at a time; small steps for those that cannot bound their output,
# so a bomb stops near the bound.
STEP = 64 * 1024
BROTLI_STEP = 16
ZSTD_STEP = 64


class Unreadable(ValueError):
    """Why a body cannot be decoded."""


@dataclass(frozen=True)
class Decoded:
    body: bytes | None  # None when unreadable
    problem: str | None = None
    codings: tuple[str, ...] = ()

    @property
    def readable(self) -> bool:
        return self.body is not None


def codings(content_encoding: str | None) -> tuple[str, ...]:
    """The codings in the order they were applied. `identity` is no coding; parameters
    (`gzip;q=1`, which Content-Encoding does not have) are read as the coding they name, so
    the body is judged decoded whatever the server makes of it."""
    if not content_encoding:
        return ()
    names = (c.split(";", 1)[0].strip().lower() for c in content_encoding.split(","))
    return tuple(ALIASES.get(n, n) for n in names if n and n != "identity")


def decode_body(raw: bytes, content_encoding: str | None, max_ratio: int = 1000, max_size: int = 64 * MIB) -> Decoded:
    """`max_ratio`: repetitive JSON compresses a few hundred times, a bomb millions of times;
    a small body may always decode to 1 MiB, and no body past `max_size`."""
    applied = codings(content_encoding)
    limit = min(max_size, max(len(raw) * max_ratio, MIB))
    body = raw
    try:
        for coding in reversed(applied):
            undo = DECODERS.get(coding)
            if undo is None:
                raise Unreadable(f"unknown content coding {coding!r}")
            body = undo(body, limit)
    except Unreadable as e:
        return Decoded(None, str(e), applied)
    return Decoded(body, None, applied)


def _zlib(data: bytes, limit: int, wbits: int) -> bytes:
    out = bytearray()
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit - len(out) + 1)
        except zlib.error as e:
            raise Unreadable(f"corrupt compressed body: {e}") from None
        _check(out, limit, d.eof)
        data = d.unused_data
        if not data:
            return bytes(out)
        if wbits != 31:  # gzip may have several members; bytes after a deflate stream are unknown to us
            raise Unreadable("data after the end of the compressed body")


def _check(out: bytearray, limit: int, finished: bool) -> None:
    if len(out) > limit:
        raise Unreadable(f"decompresses to more than {limit} bytes")
    if not finished:
        raise Unreadable("truncated compressed body")


def _gzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, limit, 31)


def _deflate(data: bytes, limit: int) -> bytes:
    # "deflate" means zlib-wrapped, but servers accept raw deflate too, as browsers send it.
    try:
        return _zlib(data, limit, 15)
    except Unreadable as first:
        if not str(first).startswith("corrupt"):  # a zlib stream, but too large, cut short or followed by more
            raise
        return _zlib(data, limit, -15)


def _brotli(data: bytes, limit: int) -> bytes:
    try:
        import brotli
    except ImportError:
        raise Unreadable("br is not supported here (no brotli module)") from None
    d = brotli.Decompressor()
    out = bytearray()
    try:
        if hasattr(d, "can_accept_more_data"):  # Brotli >= 1.2 (mitmproxy 12): output bounded per call
            out += d.process(data, output_buffer_limit=limit + 1)
            while len(out) <= limit and not d.can_accept_more_data():
                out += d.process(b"", output_buffer_limit=limit - len(out) + 1)
            if len(out) > limit:
                raise Unreadable(f"decompresses to more than {limit} bytes")
        else:  # Brotli 1.1 (mitmproxy 11) cannot bound a call: a 16-byte step makes at most a few MiB
            for i in range(0, len(data), BROTLI_STEP):
                out += d.process(data[i:i + BROTLI_STEP])
                if len(out) > limit:
                    raise Unreadable(f"decompresses to more than {limit} bytes")
        done = d.is_finished()
    except brotli.error as e:
        raise Unreadable(f"corrupt compressed body: {e}") from None
    _check(out, limit, done)
    return bytes(out)


def _zstd(data: bytes, limit: int) -> bytes:
    """Every frame, one after another (a second frame is read by `zstd -d` and by servers;
    skippable frames are empty), each to its end."""
    new, step = _zstd_decompressor()
    out = bytearray()
    try:
        while data:
            d = new()
            fed = 0
            while fed < len(data) and not d.eof:
                out += d.decompress(data[fed:fed + step], limit - len(out) + 1)
                fed += step
                if len(out) > limit:
                    raise Unreadable(f"decompresses to more than {limit} bytes")
            _check(out, limit, d.eof)
            data = d.unused_data + data[fed:]
    except Unreadable:
        raise
    except Exception as e:  # noqa: BLE001 - each zstd module has its own error type
        raise Unreadable(f"corrupt compressed body: {e}") from None
    return bytes(out)


class _ZstdFrame(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, chunk: bytes, room: int) -> bytes: ...


def _zstd_decompressor() -> tuple[Callable[[], _ZstdFrame], int]:
    """Python 3.14's compression.zstd, its backport (mitmproxy 12), or zstandard (mitmproxy 11)."""
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found,no-redef]
        except ImportError:
            zstd = None
    if zstd is not None:
        return zstd.ZstdDecompressor, STEP  # bounds its output itself
    try:
        import zstandard
    except ImportError:
        raise Unreadable("zstd is not supported here (no zstd module)") from None
    return lambda: _Zstandard(zstandard), ZSTD_STEP


class _Zstandard:
    """zstandard's decompressobj cannot bound its output; ZSTD_STEP bounds the input instead (a
    block of at least 4 bytes makes at most 128 KiB)."""

    def __init__(self, zstandard: Any) -> None:
        self._d = zstandard.ZstdDecompressor().decompressobj()

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, chunk: bytes, room: int) -> bytes:
        return self._d.decompress(chunk)


DECODERS: dict[str, Callable[[bytes, int], bytes]] = {"gzip": _gzip, "deflate": _deflate, "br": _brotli, "zstd": _zstd}

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def text_encoding(body: bytes, content_type: str | None) -> str:
    """How a server would decode `body`: a byte-order mark first (UTF-32 before UTF-16: its BOM
    starts with UTF-16's), then JSON's own detection of UTF-16/32 by its zero bytes, then the
    charset parameter if it names an encoding, else UTF-8. Zero bytes beat the charset:
    Flask, Starlette and Jackson hand the bytes to a JSON reader that detects them and never
    looks at the label, so a UTF-16 body labelled `charset=utf-8` is UTF-16 to them."""
    for bom, name in BOMS:
        if body.startswith(bom):
            return name
    if b"\x00" in body[:4]:
        return json.detect_encoding(body)
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        name = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and name:
            return name if _known(name) else "utf-8"
    return "utf-8"


def _known(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def decode_text(body: bytes, content_type: str | None = None) -> str | None:
    """The text a server reads from `body`, or None if it is not text in that encoding."""
    try:
        return body.decode(text_encoding(body, content_type))
    except (UnicodeDecodeError, LookupError):
        return None


def json_object(data: str | bytes) -> dict[str, Any] | None:
    """The JSON object in `data`, or None when it is not JSON or not an object."""
    try:
        doc = json.loads(data)
    except ValueError:  # UnicodeDecodeError included
        return None
    return doc if isinstance(doc, dict) else None
