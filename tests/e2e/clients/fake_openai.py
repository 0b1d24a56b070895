"""A local OpenAI-compatible server for the client tests: POST [prefix]/v1/chat/completions
over HTTPS, answered with one JSON completion, or with `"stream": true` as server-sent events
(`text/event-stream`, chunked, several `data:` chunks, then `data: [DONE]`).

A stream sends its first chunk, then waits for `release` before it sends the rest. A test
sets `release` only once its client has printed the first chunk: if anything between
them (the proxy) buffered the response, the client would never see that chunk in time.
`data: [DONE]` and the end of the body are one write, unless `end_delay` sets them apart.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL = "fake-gpt"
REPLY = "Hello from the fake model"
PIECES = ["Hello", " from", " the", " fake", " model"]  # the streamed reply, one piece per chunk
END = b"0\r\n\r\n"  # the last chunk of a chunked body


class FakeOpenAI:
    def __init__(self, cert_file: Path, key_file: Path, release_timeout: float = 30, end_delay: float = 0) -> None:
        self.release = threading.Event()
        self.release_timeout = release_timeout
        self.end_delay = end_delay  # seconds between `data: [DONE]` and the end of the body
        self.requests: list[tuple[str, dict[str, Any]]] = []  # (path, JSON body) of every call
        self.released_in_time: bool | None = None  # set once a stream has waited for `release`
        self.streamed = b""  # the body of the last stream, as sent (without the chunked framing)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def base_url(self, prefix: str = "") -> str:
        """The SDK's base_url; a prefix (a gateway's route) tells one test's calls from another's."""
        return f"https://localhost:{self.port}{prefix}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()  # a stream still waiting must not keep its thread alive
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                fake.requests.append((self.path, body))
                if not self.path.endswith("/v1/chat/completions"):
                    return self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                if body.get("stream"):
                    return self.stream()
                return self.send_json(200, completion())

            def send_json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = [sse(chunk(i, piece)) for i, piece in enumerate(PIECES)]
                events += [sse(chunk(len(PIECES), None)), sse("[DONE]")]
                fake.streamed = b"".join(events)
                self.send(chunked(events[0]))
                fake.released_in_time = fake.release.wait(fake.release_timeout)
                for event in events[1:-1]:
                    self.send(chunked(event))
                # `data: [DONE]` and the end of the body go in one write, as from a server that
                # ends at once; with end_delay the end comes later, when the client has hung up.
                if fake.end_delay:
                    self.send(chunked(events[-1]))
                    time.sleep(fake.end_delay)
                    try:
                        self.send(END)
                    except OSError:  # the proxy may have dropped the connection with its client's
                        pass
                else:
                    self.send(chunked(events[-1]) + END)

            def send(self, data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

        return Handler


def sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def chunked(data: bytes) -> bytes:
    """One chunk of a chunked HTTP/1.1 body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake-1", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }


def chunk(i: int, piece: str | None) -> str:
    delta: dict[str, Any] = {} if piece is None else {"content": piece}
    if i == 0:
        delta["role"] = "assistant"
    return json.dumps({
        "id": "chatcmpl-fake-2", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None if piece is not None else "stop"}],
    })
