#!/usr/bin/env python3
"""CPU time the rules that remember add, in process: the bundled rule set judging an agent's
ordinary requests with and without its `secrets:` and `limit:` rules, the credential scan
by body size, and a limit's count and file line. The figures of docs/performance.md's
"Rules that remember"; `--smoke` runs each once (it only shows the script works).

    scripts/python scripts/bench_stateful.py [--smoke]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: `scripts` and shield_addon

from scripts.bench import micro  # noqa: E402
from scripts.bench.testflows import realistic_flows  # noqa: E402
from shield_addon import actions, paths, rules  # noqa: E402
from shield_addon.actions import RequestView  # noqa: E402
from shield_addon.addons.limits import LimitBook  # noqa: E402
from shield_addon.core import limits  # noqa: E402
from shield_addon.core.context import Context  # noqa: E402
from shield_addon.flows import view_of  # noqa: E402
from shield_addon.rules import matchers  # noqa: E402
from shield_addon.rules.index import RuleIndex  # noqa: E402
from shield_addon.rules.matchers import request_secrets  # noqa: E402

STATEFUL = {"secrets", "limit", "when"}


def without_stateful(rs: rules.RuleSet) -> rules.RuleSet:
    kept = tuple(r for r in rs.rules if not r.predicate.keys & STATEFUL)
    return dataclasses.replace(rs, rules=kept, index=RuleIndex(kept))


def judge_us(rs: rules.RuleSet, budget: float) -> float:
    """Median µs of one judgement over the realistic flows (the median flow's median)."""
    per = []
    for _, f in realistic_flows():
        view = view_of(f)
        readings = actions.readings(view, rs.services)
        state = rules.State(now=time.time(), counts=lambda *a: 0)

        def once(readings: list[actions.Reading] = readings, state: rules.State = state) -> None:
            matchers._last_secrets = (None, frozenset())  # every request is new
            rules.judge(rs, readings, None, "agent", False, state)

        per.append(micro.ns_median(once, budget))
    return statistics.median(per) / 1000


def scan_us(size: int, budget: float) -> float:
    """µs to scan a JSON body of `size` bytes (prose, no credential) for every kind."""
    body = json.dumps({"messages": [{"role": "user", "content": "Summarise the last incident please. " * (size // 36)}]})
    view = RequestView("POST", "https", "api.example.com", 443, "/v1/chat", (), (("content-type", "application/json"),),
                       body.encode())

    def once() -> None:
        matchers._last_secrets = (None, frozenset())
        request_secrets(view)

    return micro.ns_median(once, budget) / 1000


def limit_us(budget: float) -> tuple[float, float]:
    """µs of a limit's count and add in memory, and of the addon's settle with its file line."""
    c = limits.Counts()
    t = [0.0]

    def count_add() -> None:
        t[0] += 0.001
        c.count("burst", '["agent"]', 600, t[0])
        c.add("burst", '["agent"]', t[0], 20)

    with tempfile.TemporaryDirectory() as d:
        book = LimitBook(None, None)
        book.open(Path(d) / limits.FILE)

        def settle() -> None:
            state = rules.State(now=time.time(), counts=book.counts.count, counted={("burst", '["agent"]'): 20})
            book.settle(Context(agent="agent", state=state))

        return micro.ns_median(count_add, budget) / 1000, micro.ns_median(settle, budget) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="each figure once, to show the script works")
    args = ap.parse_args()
    budget = 0.0 if args.smoke else 0.5
    if args.smoke:
        micro.MIN_BATCHES = 1
    bundled = rules.load_path(paths.bundled_rules())
    before = without_stateful(bundled)
    print(f"bundled rules judging realistic requests: {len(before.rules)} rules without the stateful ones "
          f"{judge_us(before, budget):.1f} µs, {len(bundled.rules)} rules with them {judge_us(bundled, budget):.1f} µs")
    for size in (1024, 64 * 1024, 1024 * 1024):
        print(f"credential scan of a {size // 1024} KiB JSON body: {scan_us(size, budget):.1f} µs")
    count, settle = limit_us(budget)
    print(f"limit: count + add in memory {count:.2f} µs; settle with its limits.jsonl line {settle:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
