"""The first-contact memory (core/contacts.py) and its file (addons/contacts.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shield_addon.actions import RequestView
from shield_addon.addons.contacts import ContactBook
from shield_addon.core import contacts
from shield_addon.core.context import Context
from shield_addon.rules import parse_text

A = ("deploy-bot", "api.example.com", 443)


def test_a_contact_is_known_only_once_remembered_and_only_for_its_agent_host_and_port() -> None:
    m = contacts.Memory()
    assert not m.known(A)
    assert m.remember(A) is True
    assert m.known(A)
    assert m.remember(A) is False  # not new: no second line in the file
    assert not m.known(("other-bot", "api.example.com", 443))
    assert not m.known(("deploy-bot", "api.example.com", 8443))
    assert not m.known(("deploy-bot", "www.example.com", 443))


def test_past_the_cap_the_least_recently_used_is_forgotten() -> None:
    m = contacts.Memory(cap=2)
    m.remember(("a", "one", 443))
    m.remember(("a", "two", 443))
    assert m.known(("a", "one", 443))  # used: "two" is now the oldest
    m.remember(("a", "three", 443))
    assert len(m) == 2
    assert m.known(("a", "one", 443)) and m.known(("a", "three", 443))
    assert not m.known(("a", "two", 443))  # forgotten: its next request is a first contact again


def test_a_memory_needs_room() -> None:
    with pytest.raises(ValueError):
        contacts.Memory(cap=0)


def test_lines_round_trip_and_bad_lines_are_skipped_and_counted() -> None:
    text = contacts.line(A, 1700000000.12345)
    assert json.loads(text) == {"agent": "deploy-bot", "host": "api.example.com", "port": 443, "ts": 1700000000.123}
    assert contacts.parse_line(text) == A
    m = contacts.Memory()
    bad = m.load([text, '{"agent": "x", "host": "h", "port": "443"}\n', '{"agent": "x", "host": "", "port": 1}',
                  '{"agent": "x", "host": "h", "port": true}', "[1]", '{"agent": "torn', "\n",
                  contacts.line(("b", "h.example", 80), 0)])
    assert bad == 5  # the blank line is not counted
    assert list(m) == [A, ("b", "h.example", 80)]


def test_the_file_is_compacted_at_twice_the_cap() -> None:
    m = contacts.Memory(cap=10)
    assert not contacts.needs_compaction(20, m)
    assert contacts.needs_compaction(21, m)


STRICT = parse_text("""
version: 1
rules:
  - {id: first, match: {first_contact: true}, action: hold}
""")
PLAIN = parse_text("""
version: 1
rules:
  - {id: deletes, match: {method: DELETE}, action: hold}
""")
VIEW = RequestView("GET", "https", "api.example.com", 443, "/")
CTX = Context(agent="deploy-bot")


def book(tmp_path: Path, cap: int = contacts.CAP) -> ContactBook:
    b = ContactBook(None, cap)  # without a Trail: open() is what the trail calls
    b.open(tmp_path / contacts.FILE)
    return b


def test_only_a_forwarded_flow_teaches_and_each_contact_is_one_line(tmp_path: Path) -> None:
    b = book(tmp_path)
    assert b.fill("f1", STRICT, VIEW, CTX).first_contact is True
    b.settle("f1", forwarded=False)  # denied, killed, timed out: nothing learnt
    assert b.fill("f2", STRICT, VIEW, CTX).first_contact is True
    assert b.fill("f3", STRICT, VIEW, CTX).first_contact is True  # a second request while the first waits
    b.settle("f2", forwarded=True)
    b.settle("f3", forwarded=True)
    assert b.fill("f4", STRICT, VIEW, CTX).first_contact is False
    assert b.fill("f5", STRICT, VIEW, Context(agent="other-bot")).first_contact is True
    lines = (tmp_path / contacts.FILE).read_text().splitlines()
    assert [contacts.parse_line(x) for x in lines] == [A]
    again = book(tmp_path)  # a restart
    assert again.fill("f6", STRICT, VIEW, CTX).first_contact is False


def test_a_rule_set_that_does_not_read_first_contact_keeps_no_memory(tmp_path: Path) -> None:
    b = book(tmp_path)
    assert b.fill("f1", PLAIN, VIEW, CTX) is CTX
    b.settle("f1", forwarded=True)
    assert b.pending == {} and not (tmp_path / contacts.FILE).exists()


def test_first_contact_read_in_a_not_block_counts_as_read() -> None:
    rs = parse_text("""
version: 1
rules:
  - {id: known-deletes, match: {method: DELETE, not: {first_contact: true}}, action: hold}
""")
    assert "first_contact" in rs.keys and "first_contact" not in PLAIN.keys


def test_a_long_file_is_rewritten_from_memory(tmp_path: Path) -> None:
    path = tmp_path / contacts.FILE
    b = ("b", "b.example", 443)
    path.write_text(contacts.line(A, 0) * 3 + "garbage\n" + contacts.line(b, 0) * 2)  # 6 lines > 2 x cap
    assert list(book(tmp_path, cap=2).memory) == [A, b]
    assert [contacts.parse_line(x) for x in path.read_text().splitlines()] == [A, b]
    path.write_text(contacts.line(A, 0) * 4)  # 4 lines: not yet
    book(tmp_path, cap=2)
    assert len(path.read_text().splitlines()) == 4


def test_an_unreadable_file_forgets_everything_rather_than_fail(tmp_path: Path) -> None:
    (tmp_path / contacts.FILE).mkdir()  # reading it raises IsADirectoryError
    b = book(tmp_path)
    assert len(b.memory) == 0
    assert b.fill("f1", STRICT, VIEW, CTX).first_contact is True
    b.settle("f1", forwarded=True)  # the write fails too: known until the proxy stops
    assert b.fill("f2", STRICT, VIEW, CTX).first_contact is False
