"""Each agent's share of the audit trail, a token bucket on a clock the tests turn by hand."""

from __future__ import annotations

from shield_addon.core import budget
from shield_addon.core.budget import Budget

MIB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_agent_may_write_a_minutes_worth_at_once_then_is_refused() -> None:
    clock = Clock()
    b = Budget(60 * MIB, clock)
    assert b.allows("a")
    b.charge("a", 60 * MIB - 1)
    assert b.allows("a")
    b.charge("a", 1)
    assert not b.allows("a")
    assert b.allows("b"), "another agent keeps its own share"


def test_the_bucket_refills_at_the_rate_and_says_when() -> None:
    clock = Clock()
    b = Budget(60 * MIB, clock)  # 1 MiB a second
    b.charge("a", 63 * MIB)  # 3 MiB in debt
    assert b.retry_after("a") == 4
    clock.now += 3
    assert not b.allows("a")
    clock.now += 0.01
    assert b.allows("a") and b.retry_after("a") == 0
    clock.now += 3600
    b.charge("a", 60 * MIB - 1)
    assert b.allows("a"), "refilled to a minute's worth, no more"
    b.charge("a", 1)
    assert not b.allows("a")


def test_debt_is_at_most_a_minutes_worth() -> None:
    clock = Clock()
    b = Budget(60 * MIB, clock)
    b.charge("a", 10_000 * MIB)
    assert b.retry_after("a") == 61
    clock.now += 60.01
    assert b.allows("a")


def test_zero_is_no_limit() -> None:
    b = Budget(0, Clock())
    b.charge("a", 1 << 40)
    assert b.allows("a") and b.retry_after("a") == 0 and not b.buckets and not b.on


def test_a_clock_that_steps_back_refills_nothing() -> None:
    clock = Clock()
    b = Budget(60, clock)
    b.charge("a", 60)
    clock.now -= 100
    assert not b.allows("a")


def test_full_buckets_are_forgotten_when_there_are_too_many(monkeypatch) -> None:
    monkeypatch.setattr(budget, "MAX_AGENTS", 3)
    clock = Clock()
    b = Budget(60, clock)
    for agent in ("a", "b", "c"):
        b.charge(agent, 30)
    clock.now += 20  # a, b and c are back to 50 of 60
    b.charge("c", 50)
    clock.now += 20  # a and b are full again; c is not
    b.charge("d", 1)
    assert set(b.buckets) == {"c", "d"}
