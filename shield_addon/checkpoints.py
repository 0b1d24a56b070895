"""Signed checkpoints: Ed25519 signatures over the chain's head, kept outside the journal.

A hash chain alone catches accidents, not an editor who recomputes every hash, and it
cannot see its own tail cut off. A checkpoint signs (chain_id, seq, row_hash, time)
with a key kept in the confdir, never in the audit directory; `shield verify` needs only
the public key, so the checkpoints and the key can live somewhere the proxy's host
cannot rewrite (see the README: shipping checkpoints off the machine).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shield_addon import record

log = logging.getLogger(__name__)

KEY_FILE = "shield-signing.key"
LOG_FILE = "checkpoints.log"
VERSION = 1


def message(chain_id: str, seq: int, row_hash: str, at: str) -> bytes:
    """The signed bytes. Version 1; a change here is a new version, never an edit."""
    return f"agent-shield checkpoint v{VERSION}\n{chain_id}\n{seq}\n{row_hash}\n{at}\n".encode()


# ---------------------------------------------------------------- keys


def load_or_create_key(confdir: Path) -> Ed25519PrivateKey:
    path = confdir / KEY_FILE
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        confdir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------- writing


def sign(key: Ed25519PrivateKey, chain_id: str, seq: int, row_hash: str, at: float) -> dict[str, Any]:
    stamp = record.utc_text(at)
    sig = key.sign(message(chain_id, seq, row_hash, stamp))
    return {"v": VERSION, "chain_id": chain_id, "seq": seq, "row_hash": row_hash, "time": stamp,
            "key_id": key_id(key), "sig": base64.b64encode(sig).decode()}


class Checkpointer:
    """Signs the chain's head every `every_events` events or `every_seconds` seconds
    (whichever comes first, and only if the head moved), and at shutdown."""

    def __init__(self, path: Path, key: Ed25519PrivateKey, chain_id: str,
                 every_events: int = 1000, every_seconds: float = 60.0):
        self.path, self.key, self.chain_id = path, key, chain_id
        self.every_events, self.every_seconds = every_events, every_seconds
        self._lock = threading.Lock()
        last = last_checkpoint(path)
        self.signed_seq = last["seq"] if last else 0
        self.signed_at = time.monotonic() if last else float("-inf")  # the very first commit is signed at once

    def on_commit(self, seq: int, head: str) -> None:
        """From the journal's writer thread, after each durable batch."""
        if seq - self.signed_seq >= self.every_events or time.monotonic() - self.signed_at >= self.every_seconds:
            self.checkpoint(seq, head)

    def tick(self, seq: int, head: str) -> None:
        """From a timer: sign a head that moved and has waited long enough."""
        if seq > self.signed_seq and time.monotonic() - self.signed_at >= self.every_seconds:
            self.checkpoint(seq, head)

    def checkpoint(self, seq: int, head: str) -> dict[str, Any] | None:
        with self._lock:
            if seq <= self.signed_seq:
                return None
            cp = sign(self.key, self.chain_id, seq, head, time.time())
            line = (json.dumps(cp, separators=(",", ":")) + "\n").encode()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
                size = os.fstat(fd).st_size
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError("short write")
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # no half line for the next append to follow
                    raise
                finally:
                    os.close(fd)
            except OSError as e:
                # The next checkpoint signs a later head, which covers this one too.
                log.error("shield: could not append a checkpoint for seq %d: %s", seq, e)
                return None
            self.signed_seq, self.signed_at = seq, time.monotonic()
            return cp


# ---------------------------------------------------------------- reading


def read_log(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, checkpoint) for each line; None for a line that is not a checkpoint.
    A torn last line (a crash mid-append) is skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # torn
    for n, line in enumerate(lines, 1):
        try:
            cp = json.loads(line)
            yield n, cp if isinstance(cp, dict) else None
        except ValueError:
            yield n, None


def last_checkpoint(path: Path) -> dict[str, Any] | None:
    last = None
    for _, cp in read_log(path):
        if cp and isinstance(cp.get("seq"), int):
            last = cp
    return last


def signature_ok(cp: dict[str, Any], public: Ed25519PublicKey) -> bool:
    try:
        msg = message(str(cp["chain_id"]), int(cp["seq"]), str(cp["row_hash"]), str(cp["time"]))
        public.verify(base64.b64decode(cp["sig"], validate=True), msg)
        return True
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
