"""What a rule set is: rules, their hold policies, the subject they judge and the verdict.

Pure data: the loader builds these from text, the index and the evaluation read them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shield_addon.actions import Action, RequestView
from shield_addon.record import Redactions

if TYPE_CHECKING:
    from shield_addon.rules.index import RuleIndex

VERDICTS = ("allow", "hold", "deny")  # in order of strictness
SEVERITIES = ("info", "low", "medium", "high", "critical")
MODES = ("enforce", "shadow")
# Named regex groups of a rule's `path:` that fill empty fields of the action.
CAPTURE_FIELDS = {"namespace": "namespace", "table": "tables", "resource": "resource_type", "name": "resource_name"}

# A compiled `filter:` expression: a flow in, does it match out.
FlowFilter = Callable[[Any], bool]
# Turns a `filter:` expression into a FlowFilter; ValueError when the expression is bad.
# Supplied by whoever reads rule files (see rules.files), so the loader needs no mitmproxy.
CompileFilter = Callable[[str], FlowFilter]


class RuleError(ValueError):
    """A rule file is wrong; says where (file:line:column), which key, and why."""

    def __init__(self, file: str, line: int | None, key: str, reason: str, column: int | None = None):
        self.file, self.line, self.column, self.key, self.reason = file, line, column, key, reason
        where = file + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


@dataclass(frozen=True)
class Subject:
    """What a rule is evaluated against."""

    request: RequestView
    action: Action
    flow: Any = None  # a mitmproxy flow, needed only by `filter:` matchers
    agent: str = ""
    # This agent has never had a request to this host:port forwarded (the gate's memory,
    # core.contacts); False wherever no memory is kept, so `first_contact:` rules stay quiet.
    first_contact: bool = False
    # No enforce-mode rule other than the `unmatched:` ones matched: set by the evaluation
    # for its second pass only, never by a caller.
    unmatched: bool = False
    # The moment judged and the memory of `limit:` rules (State); None wherever none is
    # kept, so `when:` and `limit:` rules stay quiet.
    state: State | None = None


# (rule id, key, per seconds, now) -> requests that rule counted for that key in (now - per, now]
CountsOf = Callable[[str, str, float, float], int]


@dataclass
class State:
    """What the stateful match keys judge against, filled by the proxy (or a test, or a
    replay) for one request, and what they saw while judging it."""

    now: float | None = None  # epoch seconds: what `when:` and `limit:` judge
    counts: CountsOf | None = None
    # Filled by `limit:` matchers: (rule id, key) -> the rule's count, for every rule whose
    # other keys all matched: what this request adds to the memory once judged.
    counted: dict[tuple[str, str], int] = field(default_factory=dict)
    # rule id -> what its stateful fields saw, for `rules explain`; None: nobody asks.
    notes: dict[str, list[str]] | None = None

    def note(self, rule: str, text: str) -> None:
        if self.notes is not None:
            self.notes.setdefault(rule, []).append(text)


Predicate = Callable[[Subject, dict[str, str]], bool]


@dataclass(frozen=True)
class Matcher:
    """A compiled `match:`: named checks that must all hold, kept apart for `explain`."""

    checks: tuple[tuple[str, Predicate], ...] = ()
    # For the index: the exact values a request must have in these fields, when the rule
    # names them without wildcards ("method", "host", "service").
    requires: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Every match key used, those nested in `not:` included: what the rule depends on.
    keys: frozenset[str] = frozenset()

    def __call__(self, s: Subject, captures: dict[str, str]) -> bool:
        for _, p in self.checks:
            if not p(s, captures):
                return False
        return True

    def explain(self, s: Subject) -> list[tuple[str, bool]]:
        captures: dict[str, str] = {}
        return [(name, p(s, captures)) for name, p in self.checks]


@dataclass(frozen=True)
class HoldPolicy:
    timeout: float | None = None  # seconds; None: the proxy's shield_hold_timeout
    on_timeout: str = "deny"
    mode: str | None = None  # wait | retry; None: the proxy's shield_hold_mode
    approval_ttl: float | None = None  # retry mode: seconds an approval waits for the retry
    retry_after: int = 30  # retry mode: the Retry-After the agent is given
    approvals: int = 1  # distinct reviewers who must approve (the two-person rule: 2)
    preview: bool = False  # ask the server for a dry run of the held request (core.previews)


@dataclass(frozen=True)
class Escalation:
    """`escalate: {after: 15m, notify: [...]}`: who else is told when a hold waits that long."""

    after: float  # seconds after the hold opened
    notify: tuple[str, ...]  # apprise URLs or names of the proxy's notification targets


@dataclass(frozen=True)
class Rule:
    id: str
    action: str
    severity: str = "medium"
    message: str = ""
    description: str = ""
    hold: HoldPolicy = HoldPolicy()
    mode: str = "enforce"  # shadow: the verdict is recorded, never enforced
    file: str = ""
    line: int = 0
    notify: tuple[str, ...] = ()  # apprise URLs or target names told of this rule's holds (addons.notify)
    escalate: Escalation | None = None
    predicate: Matcher = field(default_factory=Matcher, repr=False, compare=False)
    # Reads `unmatched:`: judged only once every other rule was. A field, not a property:
    # the evaluation asks it of every candidate rule of every request.
    after_others: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "after_others", "unmatched" in self.predicate.keys)

    def matches(self, subject: Subject) -> dict[str, str] | None:
        """The named regex groups captured, or None when the rule does not match."""
        captures: dict[str, str] = {}
        return captures if self.predicate(subject, captures) else None


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    default: str = "allow"
    sha256: str = hashlib.sha256(b"").hexdigest()
    files: tuple[str, ...] = ()
    services: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tests: tuple[tuple[str, int, Mapping[str, Any]], ...] = ()
    redactions: Redactions = Redactions()
    index: RuleIndex | None = field(default=None, compare=False, repr=False)

    @cached_property
    def keys(self) -> frozenset[str]:
        """Every match key some rule uses: the proxy keeps the first-contact memory only
        for a rule set that reads it."""
        return frozenset().union(*(r.predicate.keys for r in self.rules))

    @cached_property
    def limits(self) -> dict[str, tuple[int, float]]:
        """rule id -> (count, per seconds) of every `limit:` rule: what the proxy's memory keeps."""
        return {r.id: (p.count, p.per) for r in self.rules for name, p in r.predicate.checks if name == "limit"}


@dataclass(frozen=True)
class Verdict:
    verdict: str  # what every matching rule, shadow ones included, says
    rule: Rule | None
    matched: tuple[str, ...]
    action: Action  # with fields filled from the deciding rule's named groups
    enforced: str = "allow"  # what the enforce-mode rules alone say: what happens
    enforced_rule: Rule | None = None
    # Every reading judged, as (method, action), in the order read.
    actions: tuple[tuple[str, Action], ...] = ()

    @property
    def shadowed(self) -> bool:
        """A shadow rule would have decided otherwise."""
        return self.verdict != self.enforced


def strictness(verdict: str) -> int:
    return VERDICTS.index(verdict)
