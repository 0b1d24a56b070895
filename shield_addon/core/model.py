"""The trail's shared vocabulary: stages, decisions and their groups, the audit directory's layout.

Every module that writes, filters or colours decisions takes them from here, so the lists of
"refused" decisions cannot drift apart again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Stage(StrEnum):
    REQUEST = "request"
    DECISION = "decision"
    RESPONSE = "response"
    ERROR = "error"
    MESSAGE = "message"
    CONNECT = "connect"  # a tunnel's target, judged before anything is contacted
    TCP = "tcp"  # a raw TCP stream: refused, or its bytes per direction
    RULESET = "ruleset"
    NOTICE = "notice"  # a notification about a hold: sent, or why it failed


class Decision(StrEnum):
    ALLOWED = "allowed"      # the rules let it through
    APPROVED = "approved"    # a reviewer let it through
    DENIED = "denied"        # a reviewer refused it
    BLOCKED = "blocked"      # a rule (or a built-in rule) refused it
    KILLED = "killed"        # a reviewer killed it: no answer at all
    TIMED_OUT = "timed_out"  # nobody decided in time
    ABANDONED = "abandoned"  # the agent went away (or the proxy stopped) while it was held
    EXPIRED = "expired"      # retry mode: an approval nobody used in time


# Refused by someone: a rule or a reviewer said no.
REFUSED: frozenset[Decision] = frozenset({Decision.DENIED, Decision.BLOCKED})
# Ended without a yes or a no.
LAPSED: frozenset[Decision] = frozenset({Decision.KILLED, Decision.TIMED_OUT, Decision.ABANDONED})
# Never reached its server on this decision.
NOT_FORWARDED: frozenset[Decision] = REFUSED | LAPSED


def sql_in(column: str, decisions: frozenset[Decision]) -> str:
    """`column IN ('a', 'b')` for views and reports (sorted, so the SQL text is stable)."""
    return f"{column} IN ({', '.join(repr(str(d)) for d in sorted(decisions))})"


class Outcome(StrEnum):
    FORWARDED = "forwarded"
    REFUSED = "refused"
    ERROR = "error"
    SENT = "sent"  # a notice event's: the service took it
    FAILED = "failed"  # ... or did not (`error` says why)


@dataclass(frozen=True)
class AuditDir:
    """Where each part of the trail lives inside `shield_dir`."""

    root: Path

    @property
    def journal(self) -> Path:
        return self.root / "journal"

    @property
    def db(self) -> Path:
        return self.root / "audit.duckdb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints.log"
