"""Reading rule files from disk: the one place of the rules package that does I/O."""

from __future__ import annotations

import os
from pathlib import Path

from shield_addon.rules import loader
from shield_addon.rules.flowfilter import compile_filter
from shield_addon.rules.model import RuleError, RuleSet


def rule_files(path: str | Path) -> list[Path]:
    """A rule file, or every *.yaml / *.yml file of a folder in name order (not its subfolders).
    Several, separated by os.pathsep (`rules:rules/profiles/strict`), are one rule set read in
    the order given: how a profile joins the packs."""
    if isinstance(path, str) and os.pathsep in path:
        return [f for part in path.split(os.pathsep) if part for f in rule_files(part)]
    p = Path(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise RuleError(str(p), None, "", "no *.yaml rule files in this folder")
        return files
    if p.is_file():
        return [p]
    raise RuleError(str(p), None, "", "no such file or folder")


def load_path(path: str | Path) -> RuleSet:
    """Load a rule file or folder, with `filter:` expressions compiled by mitmproxy."""
    texts = []
    for f in rule_files(path):
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise RuleError(str(f), None, "", f"cannot read: {e}") from e
    return loader.parse_texts(texts, compile_filter)


def parse_text(text: str, name: str = "<rules>") -> RuleSet:
    """Rules from text, with `filter:` expressions compiled as load_path compiles them."""
    return loader.parse_texts([(name, text)], compile_filter)
