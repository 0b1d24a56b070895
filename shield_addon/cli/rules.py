"""`shield rules check|test|explain|replay`: rule files checked, tested, explained, replayed."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from shield_addon import paths, record
from shield_addon.cli.parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError, audit_dir, filters_of
from shield_addon.cli.render import fmt_of, plain, render, shorten


def cmd_rules(args: argparse.Namespace) -> int:
    from shield_addon import rules

    source = args.path or str(paths.bundled_rules())
    try:
        ruleset = rules.load_path(source)
    except rules.RuleError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.rules_cmd == "check":
        print(f"OK: {len(ruleset.rules)} rules in {len(ruleset.files)} file(s), default {ruleset.default}, "
              f"sha256 {ruleset.sha256}")
        return EXIT_OK
    return {"test": rules_test, "explain": rules_explain, "replay": rules_replay}[args.rules_cmd](args, ruleset)


def rules_test(args: argparse.Namespace, ruleset: Any) -> int:
    from shield_addon import ruletest

    rows, failures = [], 0
    for file, line, result in ruletest.run_tests(ruleset):
        failures += result is not None
        rows.append(["pass" if result is None else "FAIL", f"{file}:{line}", result or ""])
    render(["result", "test", "why"], rows, fmt_of(args), fold="why")
    print(f"{len(rows) - failures} passed, {failures} failed")
    return EXIT_FAILED if failures else EXIT_OK


def rules_explain(args: argparse.Namespace, ruleset: Any) -> int:
    from shield_addon import rules, ruletest

    headers = []
    for h in args.header or []:
        if ":" not in h:
            raise UsageError(f"--header {h!r}: use NAME:VALUE")
        k, v = h.split(":", 1)
        headers.append((k.strip(), v.strip()))
    body: bytes | str = Path(args.body_file).read_bytes() if args.body_file else (args.body or "")
    request = {"method": args.method, "url": args.url, "headers": headers, "body": body, "agent": args.agent or ""}
    given: dict[str, Any] = {"count": args.count}
    if args.now:
        given["now"] = args.now
    if args.seen_host:
        given["seen_hosts"] = args.seen_host
    try:
        subjects = ruletest.subjects_for(ruleset, request, given)
        v = ruletest.explain(ruleset, request, given)
    except ValueError as e:
        raise UsageError(f"bad request: {e}") from None
    print(record.safe_text(f"request  {subjects[0].request.method} {args.url}"))
    for i, subject in enumerate(subjects, 1):
        label = f"action {i}/{len(subjects)}" if len(subjects) > 1 else "action"
        print(f"{label}  " + record.safe_text(_action_text(subject.action, subject.request.method, subjects[0])))
        print("rules")
        # `unmatched:` rules are judged after the others, against what those said (rules.evaluation).
        own = rules.evaluate(ruleset, subject)
        named = any(r.mode == "enforce" and not r.after_others and r.id in own.matched for r in ruleset.rules)
        later = dataclasses.replace(subject, unmatched=not named)
        for rule in ruleset.rules:
            # A fresh State per rule, asked to take notes: what its stateful fields saw.
            seen = dataclasses.replace(subject.state, counted={}, notes={}) if subject.state else None
            checks = rule.predicate.explain(dataclasses.replace(later if rule.after_others else subject, state=seen))
            hit = all(ok for _, ok in checks)
            why = ", ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in checks) or "matches everything"
            tag = "MATCH" if hit else "  -  "
            extra = f" -> {rule.action}" + (" (shadow)" if rule.mode == "shadow" else "") if hit else ""
            print(f"  {tag} {rule.id:28} {why}{extra}   [{Path(rule.file).name}:{rule.line}]")
            for note in (seen.notes or {}).get(rule.id, []) if seen else []:
                print(record.safe_text(f"          saw {note}"))
    decided = f" by {v.rule.id}" if v.rule else " (default)"
    print(f"verdict  {v.verdict}{decided}" + (f"; enforced: {v.enforced}" if v.shadowed else "")
          + record.safe_text(f"; deciding action: {v.action.service} {v.action.operation} ({v.action.action_type})"))
    return EXIT_OK


def _action_text(a: Any, method: str, first: Any) -> str:
    fields = (("method", method if method != first.request.method else None), ("service", a.service),
              ("action_type", a.action_type), ("operation", a.operation), ("resource_type", a.resource_type),
              ("namespace", a.namespace), ("resource_name", a.resource_name), ("tables", ",".join(a.tables)),
              ("statements", ",".join(a.statements)), ("flags", ",".join(sorted(a.flags))))
    return " ".join(f"{k}={val}" for k, val in fields if val)


def rules_replay(args: argparse.Namespace, ruleset: Any) -> int:
    """Recorded requests against a candidate rule set: what would change."""
    from shield_addon import ruletest
    from shield_addon.reader import Reader

    with Reader(audit_dir(args)) as reader:
        recorded = reader.recorded_requests(filters_of(args))
    changes, same = [], 0
    history = ruletest.History()
    for row in recorded:  # in the order recorded: stateful rules see history as it happened
        v = history.judge(ruleset, row)
        was = row["verdict"]
        if (v.verdict, v.rule.id if v.rule else None) == (was, row["rule_id"]):
            same += 1
            continue
        changes.append([plain(row["ts"]), row["flow_id"][:8], row["agent"], shorten(f"{row['method']} {row['url']}", 60),
                        f"{was} ({row['rule_id'] or 'default'})", f"{v.verdict} ({v.rule.id if v.rule else 'default'})"])
    render(["time (UTC)", "flow", "agent", "request", "recorded", "candidate"], changes, fmt_of(args),
           title="what the candidate rules would change", middle="request")
    stricter = sum(1 for c in changes if c[5].split()[0] != "allow" and c[4].split()[0] == "allow")
    print(f"{len(recorded)} recorded requests: {same} unchanged, {len(changes)} changed "
          f"({stricter} newly held or denied)", file=sys.stderr)
    return EXIT_OK


