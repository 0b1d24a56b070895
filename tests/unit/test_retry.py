"""Retry-mode bookkeeping, pure: one decision, one use, the clock."""

from __future__ import annotations

from shield_addon import retry


def arrive(book: retry.RetryBook, key: str = "k", flow: str = "f1", now: float = 0.0, ttl: float = 60.0) -> retry.Answer:
    return book.arrive(key, flow, "agent", now, 300, "deny", ttl)


def test_a_new_request_opens_a_hold_and_retries_join_it() -> None:
    book = retry.RetryBook()
    first = arrive(book)
    again = arrive(book, flow="f2", now=1)
    assert first.new and first.kind == "wait" and not again.new and again.hold is first.hold and first.hold.attempts == 2


def test_an_approval_is_used_exactly_once() -> None:
    book = retry.RetryBook()
    hold = arrive(book).hold
    assert book.decide(hold, "approved", "alice", 5)
    assert arrive(book, flow="f2", now=6).kind == "forward"
    nxt = arrive(book, flow="f3", now=7)
    assert nxt.kind == "wait" and nxt.new and nxt.hold is not hold


def test_only_the_first_decision_counts() -> None:
    book = retry.RetryBook()
    hold = arrive(book).hold
    assert book.decide(hold, "denied", "bob", 1, "no")
    assert not book.decide(hold, "approved", "alice", 2)
    ans = arrive(book, flow="f2", now=3)
    assert ans.kind == "refuse" and ans.hold.decision == "denied" and ans.hold.comment == "no"


def test_an_unused_approval_expires() -> None:
    book = retry.RetryBook()
    hold = arrive(book, ttl=10).hold
    book.decide(hold, "approved", "alice", 1)
    assert book.tick(12) == [(hold, "expired")]
    ans = arrive(book, flow="f2", now=13)
    assert ans.kind == "wait" and ans.new


def test_a_pending_hold_times_out_to_a_denial() -> None:
    book = retry.RetryBook()
    hold = book.arrive("k", "f1", "agent", 0, 30, "deny", 60).hold
    assert book.tick(31) == [(hold, "timed_out")]
    assert arrive(book, flow="f2", now=32).kind == "refuse"


def test_keys_bind_agent_method_url_and_body() -> None:
    k = retry.hold_key(b"s", "a", "POST", "https://x/y", "d1")
    assert k == retry.hold_key(b"s", "a", "post", "https://x/y", "d1")
    assert len({k, retry.hold_key(b"s", "b", "POST", "https://x/y", "d1"), retry.hold_key(b"s", "a", "POST", "https://x/z", "d1"),
                retry.hold_key(b"s", "a", "POST", "https://x/y", "d2"), retry.hold_key(b"t", "a", "POST", "https://x/y", "d1")}) == 5


def test_rebuild_restores_an_unused_approval_and_forgets_a_used_one() -> None:
    rows = [
        {"stage": "request", "hold_id": "h1", "hold_key": "k1", "agent": "a", "decision": None, "_t": 0},
        {"stage": "decision", "hold_id": "h1", "decision": "approved", "reviewer": "alice", "_t": 1},
        {"stage": "request", "hold_id": "h2", "hold_key": "k2", "agent": "a", "decision": None, "_t": 2},
        {"stage": "decision", "hold_id": "h2", "decision": "approved", "reviewer": "alice", "_t": 3},
        {"stage": "request", "hold_id": "h2", "hold_key": "k2", "agent": "a", "decision": "approved", "_t": 4},
    ]
    book = retry.RetryBook.rebuild(rows, now=5, ttl=60)
    assert set(book.by_key) == {"k1"}
    assert arrive(book, key="k1", flow="f9", now=6).kind == "forward"
