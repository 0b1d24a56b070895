"""Asking the server for a held request's dry run (rules with `preview: true`), off the event
loop and bounded: a preview that fails or is slow says so and changes nothing else. What is
asked, and what the answer means, is `core.previews`."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from http import client as httpclient
from urllib.parse import urlsplit

import certifi
from mitmproxy import ctx
from mitmproxy import http as mhttp

from shield_addon.core import previews

TIMEOUT = 3.0  # seconds the server has to answer a dry run
BODY_LIMIT = 1 << 20  # bytes of its answer read


async def ask(f: mhttp.HTTPFlow, service: str | None) -> str | None:
    """The dry run's one-line summary, or None when the request's API has no dry run."""
    form = previews.dry_run(service, f.request.method, f.request.url, f.request.headers.items(multi=True))
    if form is None:
        return None
    url, headers = form
    try:
        status, body = await asyncio.wait_for(
            asyncio.to_thread(send, f.request.method, url, headers, f.request.raw_content or b"", tls_context()),
            TIMEOUT + 1)
    except (OSError, TimeoutError, httpclient.HTTPException, ssl.SSLError) as e:
        return f"dry run failed: {type(e).__name__}: {e}"[: previews.SUMMARY_LIMIT]
    return previews.summary(f.request.method, status, body)


def tls_context() -> ssl.SSLContext:
    """The upstream's TLS as mitmproxy would verify it."""
    o = ctx.options
    if o.ssl_insecure:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=o.ssl_verify_upstream_trusted_ca or certifi.where())


def send(method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes,
         context: ssl.SSLContext) -> tuple[int, bytes]:
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: httpclient.HTTPConnection = httpclient.HTTPSConnection(parts.hostname or "", parts.port,
                                                                      timeout=TIMEOUT, context=context)
    else:
        conn = httpclient.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""), skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read(BODY_LIMIT)
    finally:
        conn.close()
