"""The lines the writer process sends back: one per group commit, in the order it read events.

    R <seq> <chain_id>   ready: the journal is open and ends at seq
    A <n>                the first n events received are written (durable with fsync)
    F <n> <message>      the events up to the n-th could not be written (the message says why)
    L <level> <text>     a line for the proxy's log (the writer has no terminal of its own:
                         mitmproxy's console owns it)

Events go the other way as compact JSON, one per line (JSON never holds a raw newline).
"""

from __future__ import annotations

from typing import NamedTuple


class Answer(NamedTuple):
    kind: str  # "R", "A", "F" or "L"
    n: int  # seq for R, the count of events for A and F, the logging level for L
    text: str  # chain_id for R, the error for F, the log line for L


def ready(seq: int, chain_id: str) -> bytes:
    return f"R {seq} {chain_id}\n".encode()


def written(n: int) -> bytes:
    return f"A {n}\n".encode()


def failed(n: int, message: str) -> bytes:
    return f"F {n} {' '.join(message.split())}\n".encode()


def log_lines(level: int, message: str) -> bytes:
    return b"".join(f"L {level} {line}\n".encode("utf-8", "replace") for line in message.splitlines() if line.strip())


def parse(line: bytes) -> Answer:
    """One answer line (without its newline); ValueError for anything else."""
    kind, _, rest = line.decode("utf-8", "replace").partition(" ")
    n, _, text = rest.partition(" ")
    if kind not in ("R", "A", "F", "L") or not n.isdigit():
        raise ValueError(f"not an answer of the audit writer: {line[:80]!r}")
    return Answer(kind, int(n), text)
