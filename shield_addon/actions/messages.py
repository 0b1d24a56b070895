"""A WebSocket message as a request the parsers can read.

After the handshake a WebSocket carries what would otherwise be requests: GraphQL operations
(graphql-transport-ws `subscribe`, the older subscriptions-transport-ws `start`), MCP JSON-RPC
calls, JSON with SQL in it. Each client message is viewed as a POST to the handshake's URL with
the message as its body, so every parser and rule reads it as it reads an HTTP request; a POST
because the server acts on what the client sends, like a request body.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from shield_addon.core import decoding

from .base import RequestView

GRAPHQL_TYPES = {"subscribe", "start"}  # the message types that carry a GraphQL operation


def message_view(handshake: RequestView, text: str) -> RequestView:
    body = text.encode("utf-8", "surrogatepass")
    headers = [(k, v) for k, v in handshake.headers if k not in ("content-type", "content-length", "content-encoding")]
    doc = _json(text)
    if doc is not None:
        payload = graphql_payload(doc)
        if payload is not None:
            body = json.dumps(payload).encode()
        headers.append(("content-type", "application/json"))
    else:
        headers.append(("content-type", "text/plain"))
    return dataclasses.replace(handshake, method="POST", headers=tuple(headers), body=body)


def binary_message_view(handshake: RequestView, data: bytes) -> RequestView:
    """A binary message: judged by rules on its bytes (body:) and destination, as a POST. Text
    the server's reader would find in it (a JSON document) is read as a text message: gzip
    undone (bounded), UTF-16/32 told by a BOM or zero bytes, as a JSON reader given the bytes
    does."""
    if data[:2] == _GZIP_MAGIC:
        unzipped = decoding.decode_body(data, "gzip")
        if unzipped.body is not None:
            data = unzipped.body
    text = decoding.decode_text(data)
    # Text only when it reads as a document: other binary (protobuf, msgpack) has zero bytes too.
    if text is not None and text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        return message_view(handshake, text.lstrip("\ufeff"))
    headers = (*(h for h in handshake.headers if h[0] != "content-type"), ("content-type", "application/octet-stream"))
    return dataclasses.replace(handshake, method="POST", headers=headers, body=data)


_GZIP_MAGIC = b"\x1f\x8b"


def graphql_payload(doc: Any) -> dict[str, Any] | None:
    """The GraphQL request inside a subscription protocol's envelope, if this is one."""
    if isinstance(doc, dict) and doc.get("type") in GRAPHQL_TYPES and isinstance(doc.get("payload"), dict):
        payload = doc["payload"]
        if isinstance(payload.get("query"), str):
            return payload
    return None


def _json(text: str) -> Any:
    if text.lstrip()[:1] not in ("{", "["):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
