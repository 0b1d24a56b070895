"""The review state machine, pure: one decision, one use, the clock; wait and retry holds."""

from __future__ import annotations

from shield_addon import review


def arrive(book: review.Book, key: str = "k", flow: str = "f1", now: float = 0.0, ttl: float = 60.0) -> review.Answer:
    return book.arrive(key, flow, "agent", now, 300, "deny", ttl)


def test_a_new_request_opens_a_hold_and_retries_join_it() -> None:
    book = review.Book()
    first = arrive(book)
    again = arrive(book, flow="f2", now=1)
    assert first.new and first.kind == "wait" and not again.new and again.hold is first.hold and first.hold.attempts == 2


def test_an_approval_is_used_exactly_once() -> None:
    book = review.Book()
    hold = arrive(book).hold
    assert book.decide(hold, "approved", "alice", 5)
    assert arrive(book, flow="f2", now=6).kind == "forward"
    nxt = arrive(book, flow="f3", now=7)
    assert nxt.kind == "wait" and nxt.new and nxt.hold is not hold


def test_only_the_first_decision_counts() -> None:
    book = review.Book()
    hold = arrive(book).hold
    assert book.decide(hold, "denied", "bob", 1, "no")
    assert not book.decide(hold, "approved", "alice", 2)
    ans = arrive(book, flow="f2", now=3)
    assert ans.kind == "refuse" and ans.hold.decision == "denied" and ans.hold.comment == "no"


def test_an_unused_approval_expires() -> None:
    book = review.Book()
    hold = arrive(book, ttl=10).hold
    book.decide(hold, "approved", "alice", 1)
    assert book.tick(12) == [(hold, "expired")]
    ans = arrive(book, flow="f2", now=13)
    assert ans.kind == "wait" and ans.new


def test_a_pending_hold_times_out_to_a_denial() -> None:
    book = review.Book()
    hold = book.arrive("k", "f1", "agent", 0, 30, "deny", 60).hold
    assert book.tick(31) == [(hold, "timed_out")]
    assert arrive(book, flow="f2", now=32).kind == "refuse"


def test_keys_bind_agent_method_url_and_body() -> None:
    k = review.hold_key(b"s", "a", "POST", "https://x/y", "d1")
    assert k != review.hold_key(b"s", "a", "POST", "https://x/y", "d1", "x-amz-target: DeleteTrail")
    assert k == review.hold_key(b"s", "a", "post", "https://x/y", "d1")
    assert len({k, review.hold_key(b"s", "b", "POST", "https://x/y", "d1"), review.hold_key(b"s", "a", "POST", "https://x/z", "d1"),
                review.hold_key(b"s", "a", "POST", "https://x/y", "d2"), review.hold_key(b"t", "a", "POST", "https://x/y", "d1")}) == 5


def test_rebuild_restores_an_unused_approval_and_forgets_a_used_one() -> None:
    rows = [
        {"stage": "request", "hold_id": "h1", "hold_key": "k1", "agent": "a", "decision": None, "_t": 0},
        {"stage": "decision", "hold_id": "h1", "decision": "approved", "reviewer": "alice", "_t": 1},
        {"stage": "request", "hold_id": "h2", "hold_key": "k2", "agent": "a", "decision": None, "_t": 2},
        {"stage": "decision", "hold_id": "h2", "decision": "approved", "reviewer": "alice", "_t": 3},
        {"stage": "request", "hold_id": "h2", "hold_key": "k2", "agent": "a", "decision": "approved", "_t": 4},
    ]
    book = review.Book.rebuild(rows, now=5, ttl=60)
    assert set(book.by_key) == {"k1"}
    assert arrive(book, key="k1", flow="f9", now=6).kind == "forward"


# ---------------------------------------------------------------- wait mode: the same machine


def test_a_wait_hold_takes_one_decision_and_is_then_closed() -> None:
    book = review.Book()
    hold = book.open("f1", "agent", 0, 30, "deny", rule_id="r", verdict="hold")
    assert hold.mode == review.WAIT and book.pending() == [hold]
    assert book.decide(hold, "killed", "bob", 1, via="flow.kill")
    assert not book.decide(hold, "approved", "alice", 2, via="shield.approve")
    assert (hold.decision, hold.reviewer, hold.via, hold.forward) == ("killed", "bob", "flow.kill", False)
    book.close(hold)
    assert book.pending() == [] and not book.waiting


def test_a_wait_hold_times_out_to_a_denial_or_as_its_rule_says() -> None:
    book = review.Book()
    deny, allow = book.open("f1", "a", 0, 10, "deny"), book.open("f2", "a", 0, 10, "allow")
    assert book.lapse(deny, 5) is None
    assert book.lapse(deny, 10) == book.lapse(allow, 10) == "timed_out"
    assert (deny.decision, deny.forward, deny.via, deny.comment) == ("timed_out", False, "timeout",
                                                                     "no decision in time; deny by rule")
    assert (allow.decision, allow.forward, allow.comment) == ("timed_out", True, "no decision in time; allow by rule")
    assert not book.decide(deny, "approved", "alice", 11)  # the clock won


def test_retry_holds_tick_but_wait_holds_keep_their_own_clock() -> None:
    book = review.Book()
    wait = book.open("f1", "a", 0, 10, "deny")
    retry = book.arrive("k", "f2", "a", 0, 10, "deny", 60).hold
    assert book.tick(11) == [(retry, "timed_out")] and wait.status == review.PENDING


def test_one_decision_event_for_both_ways_of_answering() -> None:
    book = review.Book()
    wait = book.open("f1", "agent", 0, None, "deny", rule_id="r1", verdict="deny")
    wait.base = {"flow_id": "f1-replay-1", "agent": "agent", "host": "h"}
    book.decide(wait, "approved", "bob", 1, "ok", via="flow.resume")
    ev = review.decision_event(wait, "approved", 2, "enforce", "sha", forwarded_request='{"x":1}')
    assert (ev["flow_id"], ev["host"], ev["stage"], ev["decision"], ev["reviewer"], ev["operation"]) == (
        "f1-replay-1", "h", "decision", "approved", "bob", "flow.resume")
    assert (ev["rule_id"], ev["verdict"], ev["edited"], ev["forwarded_request"], ev.get("hold_id")) == (
        "r1", "deny", True, '{"x":1}', None)
    retry = book.arrive("k", "f2", "agent", 0, None, "deny", 60, rule_id="r2").hold
    book.decide(retry, "approved", "alice", 3, via="shield.approve")
    ev = review.decision_event(retry, "approved", 4, "enforce", "sha")
    assert (ev["flow_id"], ev["hold_id"], ev["hold_key"], ev["agent"], ev["reviewer"], ev["edited"]) == (
        "f2", "f2", "k", "agent", "alice", False)
    expired = review.decision_event(retry, "expired", 70, "enforce", "sha", via="expiry")
    assert (expired["decision"], expired["reviewer"], expired["operation"]) == ("expired", None, "expiry")
    assert expired["decided_at"] == ev["decided_at"]  # the approval's time, not the expiry's


def test_the_approval_lifetime_has_one_default() -> None:
    book = review.Book()
    hold = book.arrive("k", "f1", "a", 0, None, "deny").hold
    book.decide(hold, "approved", "alice", 1)
    assert hold.expires == 1 + review.APPROVAL_TTL == 901


def test_the_meaning_of_a_request_keeps_what_changes_it_and_drops_what_varies_per_send() -> None:
    from shield_addon.actions import Action

    stop = [("X-Amz-Target", "CloudTrail.StopLogging"), ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Date", "20261205T180000Z"), ("traceparent", "00-a"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIA1/20261205/us-east-1/cloudtrail/aws4_request, Signature=1"),
            ("amz-sdk-request", "attempt=1"), ("X-Stainless-Retry-Count", "0")]
    resent = [(k, v + "2") if k.lower() in ("x-amz-date", "authorization", "traceparent", "amz-sdk-request",
                                            "x-stainless-retry-count") else (k, v) for k, v in stop]
    assert review.meaning(stop, ()) == review.meaning(list(reversed(resent)), ())
    delete = [(k, "CloudTrail.DeleteTrail" if k == "X-Amz-Target" else v) for k, v in stop]
    assert review.meaning(stop, ()) != review.meaning(delete, ())
    assert review.meaning(stop, ()) != review.meaning([*stop, ("X-HTTP-Method-Override", "DELETE")], ())
    twice = [("X-HTTP-Method-Override", "PATCH"), ("X-HTTP-Method-Override", "DELETE")]
    assert review.meaning(twice, ()) != review.meaning(twice[::-1], ())  # servers take the first, or the last
    read = Action("sql", "read", "SELECT", tables=("t",))
    drop = Action("sql", "delete", "DROP", tables=("t",))
    assert review.meaning((), [("POST", read)]) != review.meaning((), [("POST", drop)])
    assert review.meaning((), [("POST", read)]) != review.meaning((), [("DELETE", read)])


def test_approvals_of_distinct_reviewers_release_a_hold_that_needs_several() -> None:
    book = review.Book()
    hold = book.open("h", "bot", 0, None, "deny", needed=3)
    assert book.approve(hold, "alice", 1) == review.COUNTED
    assert book.approve(hold, "alice", 2) == review.AGAIN
    assert book.approve(hold, "bob", 3) == review.COUNTED and hold.status == review.PENDING
    assert book.approve(hold, "carol", 4) == review.RELEASED
    assert (hold.status, hold.reviewer, hold.approvers) == (review.APPROVED, "carol", ["alice", "bob", "carol"])
    assert book.approve(hold, "dave", 5) == review.LATE


def test_a_restart_counts_the_approvals_of_a_two_person_retry_hold_from_the_journal() -> None:
    def ev(stage: str, **kw: object) -> dict:
        return {"stage": stage, "hold_id": "h", "hold_key": "k", "agent": "bot", "rule_id": "two", "_t": 1.0, **kw}

    one = [ev("request", decision=None), ev("decision", decision="approved", reviewer="alice")]
    book = review.Book.rebuild(one, 2.0, needed_of={"two": 2})
    assert book.by_key["k"].status == review.PENDING and book.by_key["k"].approvers == ["alice"]
    again = [*one, ev("decision", decision="approved", reviewer="alice")]
    assert review.Book.rebuild(again, 2.0, needed_of={"two": 2}).by_key["k"].status == review.PENDING
    two = [*one, ev("decision", decision="approved", reviewer="bob")]
    assert review.Book.rebuild(two, 2.0, needed_of={"two": 2}).by_key["k"].status == review.APPROVED
