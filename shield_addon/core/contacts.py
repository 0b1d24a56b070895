"""First contact: which destinations each agent has already reached. Pure.

The memory behind the `first_contact:` match key. A destination is the canonical host and
the port (https://a and http://a:8080 are two servers); it is remembered per agent only once
a request to it was forwarded, so a denial, a kill or a timeout teaches nothing. The memory
is bounded: past `cap` entries the least recently used is forgotten, which makes its next
request a first contact again (forgetting errs on the strict side). Its lines are what
the proxy appends to `contacts.jsonl` in the audit directory and reads back at start.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from shield_addon.core.decoding import json_object

CAP = 100_000  # entries; about 100 bytes each in memory and on disk
FILE = "contacts.jsonl"

Contact = tuple[str, str, int]  # (agent, canonical host, port)


class Memory:
    """Contacts seen, least recently used first."""

    def __init__(self, cap: int = CAP) -> None:
        if cap < 1:
            raise ValueError("the contact memory needs room for at least one entry")
        self.cap = cap
        self._seen: OrderedDict[Contact, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __iter__(self) -> Iterator[Contact]:
        return iter(self._seen)

    def known(self, contact: Contact) -> bool:
        if contact not in self._seen:
            return False
        self._seen.move_to_end(contact)  # in use: the last to be forgotten
        return True

    def remember(self, contact: Contact) -> bool:
        """True when it is new (and so worth a line in the file)."""
        if self.known(contact):
            return False
        self._seen[contact] = None
        while len(self._seen) > self.cap:
            self._seen.popitem(last=False)
        return True

    def load(self, lines: Iterable[str]) -> int:
        """Remember every valid line, in file order; the number of lines skipped as unreadable
        (a torn last line after a crash, an edit by hand)."""
        bad = 0
        for text in lines:
            contact = parse_line(text)
            if contact is None:
                bad += bool(text.strip())
            else:
                self.remember(contact)
        return bad


def line(contact: Contact, ts: float) -> str:
    agent, host, port = contact
    return json.dumps({"agent": agent, "host": host, "port": port, "ts": round(ts, 3)}, sort_keys=True) + "\n"


def parse_line(text: str) -> Contact | None:
    doc = json_object(text)
    if doc is None:
        return None
    agent, host, port = doc.get("agent"), doc.get("host"), doc.get("port")
    if not isinstance(agent, str) or not isinstance(host, str) or not host:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return agent, host, port


def needs_compaction(lines_in_file: int, memory: Memory) -> bool:
    """The file only grows; rewrite it from memory once it holds twice what memory keeps, so
    it stays within 2 x cap lines however many hosts come and go."""
    return lines_in_file > 2 * memory.cap
