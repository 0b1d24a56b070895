"""The adversarial corpus in CI: every case judged by the bundled packs, one test each.

A dangerous case must be stopped (held or denied), a benign lookalike allowed. The
summary test prints the per-class catch and false-positive rates.
"""

from __future__ import annotations

import pytest

from scripts import corpus
from shield_addon import rules

CASES = corpus.load()


@pytest.fixture(scope="session")
def ruleset() -> rules.RuleSet:
    return corpus.ruleset()


def test_schema_ids_are_unique_and_classes_known() -> None:
    # load() refuses duplicates and unknown classes; this states the outcome
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.cls for c in CASES} <= corpus.CLASSES
    assert all(c.expect in corpus.EXPECTS for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(ruleset: rules.RuleSet, case: corpus.Case) -> None:
    got = corpus.verdict(ruleset, case)
    assert corpus.passes(case, got), f"{case.source}: expected {case.expect}, got {got}: {case.why}"


@pytest.fixture(scope="session")
def strict() -> rules.RuleSet:
    return corpus.ruleset(profile="strict")


@pytest.mark.parametrize("case", [c for c in CASES if c.dangerous], ids=[c.id for c in CASES if c.dangerous])
def test_dangerous_case_under_the_strict_profile(strict: rules.RuleSet, case: corpus.Case) -> None:
    # The profile is stricter only: whether or not the host is a first contact, it still stops.
    for first_contact in (False, True):
        got = corpus.verdict(strict, case, first_contact)
        assert got in ("hold", "deny"), f"{case.source}: strict profile, first_contact={first_contact}: {got}"


def test_summary(ruleset: rules.RuleSet, capsys: pytest.CaptureFixture[str]) -> None:
    table = corpus.stats((c, corpus.verdict(ruleset, c)) for c in CASES)
    with capsys.disabled():
        print("\n" + corpus.report(table, verbose=False))
    assert sum(s.dangerous for s in table) >= 200
    assert sum(s.benign for s in table) >= 100
