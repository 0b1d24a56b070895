"""The adversarial corpus (tests/adversarial/) against a rule set: per class, how many
dangerous cases are stopped and how many benign lookalikes are stopped by mistake.

    python scripts/corpus.py [--rules PATH] [--profile strict] [--quiet]

Exit 1 when any case misses (a dangerous one allowed, or a benign one stopped), so CI
can run it as is. The same loading and judging code backs tests/adversarial/test_corpus.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(ROOT))

from shield_addon import paths, rules, ruletest  # noqa: E402

CORPUS = ROOT / "tests" / "adversarial"
CLASSES = frozenset({
    "sql-dialect", "sql-dynamic", "sql-destruction", "sql-location", "decoy", "decoding",
    "routes", "catalogue", "kubernetes", "github", "aws", "payments", "messaging", "mcp",
    "graphql", "llm", "destinations",
})
EXPECTS = frozenset({"stop", "allow", "hold", "deny"})
CASE_KEYS = frozenset({"id", "class", "why", "request", "expect", "owner"})
# Who fixes a miss, by class, unless a case names its `owner`.
OWNERS = {
    "sql-dialect": "sql", "sql-dynamic": "sql", "sql-destruction": "sql", "sql-location": "sql",
    "decoy": "lead-core", "decoding": "decode", "routes": "k8s-github", "catalogue": "aws",
    "kubernetes": "k8s-github", "github": "k8s-github", "aws": "aws", "payments": "corpus",
    "messaging": "corpus", "mcp": "corpus", "graphql": "corpus", "llm": "corpus", "destinations": "lead-core",
}


@dataclass(frozen=True)
class Case:
    id: str
    cls: str
    why: str
    request: Mapping[str, Any]
    expect: str
    dangerous: bool  # from the folder: dangerous/ or benign/
    source: str  # file:line, for a schema error or a miss
    owner: str


def load(root: Path = CORPUS) -> list[Case]:
    """Every case under root/dangerous and root/benign. Raises ValueError naming the
    file and line of the first schema error: a broken corpus must not pass quietly."""
    yaml = YAML(typ="rt")
    cases: list[Case] = []
    for kind in ("dangerous", "benign"):
        for file in sorted((root / kind).glob("*.yaml")):
            try:
                entries = yaml.load(file.read_text()) or []
            except YAMLError as e:
                raise ValueError(f"{file}: {e}") from None
            if not isinstance(entries, list):
                raise ValueError(f"{file}: a list of cases expected")
            for entry in entries:
                line = entry.lc.line + 1 if hasattr(entry, "lc") else 0
                cases.append(_case(entry, kind == "dangerous", f"{file.relative_to(root)}:{line}"))
    _check_unique(cases)
    return cases


def _case(entry: Any, dangerous: bool, source: str) -> Case:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: a case is a mapping")
    unknown = set(entry) - CASE_KEYS
    missing = {"id", "class", "why", "request", "expect"} - set(entry)
    if unknown or missing:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    cls, expect, request = entry["class"], entry["expect"], entry["request"]
    if cls not in CLASSES:
        raise ValueError(f"{source}: unknown class {cls!r}")
    if expect not in EXPECTS:
        raise ValueError(f"{source}: expect must be one of {sorted(EXPECTS)}")
    if dangerous == (expect == "allow"):
        raise ValueError(f"{source}: a dangerous case expects stop/hold/deny, a benign one allow")
    if not isinstance(request, Mapping) or "url" not in request or set(request) - ruletest.REQUEST_KEYS:
        raise ValueError(f"{source}: request needs url and only {sorted(ruletest.REQUEST_KEYS)}")
    return Case(str(entry["id"]), cls, str(entry["why"]), _plain(request), expect, dangerous, source,
                str(entry.get("owner") or OWNERS[cls]))


def _plain(value: Any) -> Any:
    """ruamel's round-trip types as plain dicts and lists, so bodies serialise as JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value) if not isinstance(value, (str, bytes)) else value


def _check_unique(cases: Sequence[Case]) -> None:
    seen: dict[str, str] = {}
    for case in cases:
        if case.id in seen:
            raise ValueError(f"{case.source}: id {case.id!r} already used at {seen[case.id]}")
        seen[case.id] = case.source


def ruleset(path: str | Path | None = None, profile: str | None = None) -> rules.RuleSet:
    """The bundled packs (or `path`), with a profile's rules after them, as `shield run --profile` loads them."""
    base = str(path or paths.bundled_rules())
    return rules.load_path(f"{base}{os.pathsep}{paths.profile_dir(profile)}" if profile else base)


def verdict(rs: rules.RuleSet, case: Case, first_contact: bool = False) -> str:
    """first_contact: judged as the agent's first request to that host (what a profile's
    first-contact rule sees); else as a host it has reached before."""
    request = {**case.request, "first_contact": True} if first_contact else case.request
    return ruletest.explain(rs, request).verdict


def _leniency(got: str) -> int:
    return ("allow", "hold", "deny").index(got)


def passes(case: Case, got: str) -> bool:
    if case.expect == "stop":
        return got in ("hold", "deny")
    return got == case.expect


@dataclass(frozen=True)
class ClassStats:
    cls: str
    dangerous: int
    caught: int
    missed: tuple[str, ...]
    benign: int
    false_positives: tuple[str, ...]

    @property
    def catch_rate(self) -> float | None:
        return self.caught / self.dangerous if self.dangerous else None

    @property
    def fp_rate(self) -> float | None:
        return len(self.false_positives) / self.benign if self.benign else None


def stats(results: Iterable[tuple[Case, str]]) -> list[ClassStats]:
    by_class: dict[str, list[tuple[Case, str]]] = {}
    for case, got in results:
        by_class.setdefault(case.cls, []).append((case, got))
    out = []
    for cls in sorted(by_class):
        rows = by_class[cls]
        bad = [c for c, got in rows if c.dangerous and not passes(c, got)]
        fps = [c.id for c, got in rows if not c.dangerous and not passes(c, got)]
        dangerous = sum(1 for c, _ in rows if c.dangerous)
        out.append(ClassStats(cls, dangerous, dangerous - len(bad), tuple(c.id for c in bad),
                              sum(1 for c, _ in rows if not c.dangerous), tuple(fps)))
    return out


def _rate(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.0%}"


def report(table: Sequence[ClassStats], verbose: bool = True) -> str:
    lines = [f"{'class':<16} {'dangerous':>9} {'caught':>6} {'catch':>5} {'benign':>6} {'FP':>3} {'FP rate':>7}"]
    for s in table:
        lines.append(f"{s.cls:<16} {s.dangerous:>9} {s.caught:>6} {_rate(s.catch_rate):>5} "
                     f"{s.benign:>6} {len(s.false_positives):>3} {_rate(s.fp_rate):>7}")
    d = sum(s.dangerous for s in table)
    c = sum(s.caught for s in table)
    b = sum(s.benign for s in table)
    f = sum(len(s.false_positives) for s in table)
    lines.append(f"{'TOTAL':<16} {d:>9} {c:>6} {_rate(c / d if d else None):>5} {b:>6} {f:>3} "
                 f"{_rate(f / b if b else None):>7}")
    if verbose:
        for s in table:
            for case_id in s.missed:
                lines.append(f"  missed   {s.cls}: {case_id}")
            for case_id in s.false_positives:
                lines.append(f"  false+   {s.cls}: {case_id}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", help="rule file or folder (default: the bundled packs)")
    parser.add_argument("--profile", help="a rule profile loaded after the rules, e.g. strict: every dangerous case must "
                        "be stopped both as a first contact and on a known host; benign cases are not counted (a "
                        "default-deny profile holds what no rule names)")
    parser.add_argument("--corpus", default=str(CORPUS), help="corpus folder (default: tests/adversarial)")
    parser.add_argument("--quiet", action="store_true", help="the table only, without the ids missed")
    args = parser.parse_args(argv)
    cases = load(Path(args.corpus))
    rs = ruleset(args.rules, args.profile)
    if args.profile:
        cases = [c for c in cases if c.dangerous]
        # the more lenient of the two: a first-contact hold must not be what catches a case
        results = [(c, min((verdict(rs, c, first) for first in (False, True)), key=_leniency)) for c in cases]
    else:
        results = [(case, verdict(rs, case)) for case in cases]
    table = stats(results)
    print(report(table, verbose=not args.quiet))
    if not args.quiet:
        for case, got in results:
            if not passes(case, got):
                print(f"  {case.id} ({case.source}, owner {case.owner}): expected {case.expect}, got {got}: {case.why}")
    return 1 if any(s.missed or s.false_positives for s in table) else 0


if __name__ == "__main__":
    sys.exit(main())
