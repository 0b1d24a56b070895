"""Each agent's share of the audit trail: bytes of journal a minute, as a token bucket.

An agent that floods the trail (huge or countless requests) is refused before it fills the disk,
which with shield_fail=closed would refuse every other agent too. Every event the agent causes
is charged, after it is written; a request is refused while the agent's bucket is empty.
Pure: the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Callable

from shield_addon.rules import Rule

TRAIL_BUDGET = Rule(id="builtin:trail-budget", action="deny", severity="high",
                    message="This agent wrote more to the audit trail than shield_agent_budget allows a minute")
MAX_AGENTS = 10_000  # buckets kept; past it, full ones (the same as none) are forgotten


class Budget:
    """`per_minute` bytes a minute for each agent, and as much at once (a minute's worth);
    0 turns it off. Debt is kept down to a minute's worth, so an agent that stops flooding
    is let through again within a minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(max(per_minute, 0))
        self.rate = self.capacity / 60.0  # bytes a second
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # agent -> (level, when it was that)

    @property
    def on(self) -> bool:
        return self.capacity > 0

    def allows(self, agent: str) -> bool:
        return not self.on or self._level(agent, self.clock()) > 0

    def charge(self, agent: str, size: int) -> None:
        """An event of `size` bytes this agent caused is in the journal."""
        if not self.on:
            return
        now = self.clock()
        if agent not in self.buckets and len(self.buckets) >= MAX_AGENTS:
            self._forget_full(now)
        self.buckets[agent] = (max(self._level(agent, now) - size, -self.capacity), now)

    def retry_after(self, agent: str) -> int:
        """Whole seconds until this agent may send again (0: now)."""
        level = self._level(agent, self.clock()) if self.on else 1.0
        return 0 if level > 0 else int(-level / self.rate) + 1

    def _level(self, agent: str, now: float) -> float:
        known = self.buckets.get(agent)
        if known is None:
            return self.capacity
        level, at = known
        return min(self.capacity, level + max(now - at, 0.0) * self.rate)

    def _forget_full(self, now: float) -> None:
        for agent in [a for a in self.buckets if self._level(a, now) >= self.capacity]:
            del self.buckets[agent]
