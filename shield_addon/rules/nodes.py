"""Reading YAML nodes of a rule file: where each one is, and the checks many fields share.

Every error built here says file:line:column and the key, so a typo is found at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml.comments import CommentedMap

from shield_addon.core.globs import compile_glob
from shield_addon.rules.model import CompileFilter, RuleError


class Context:
    """One file being compiled: its name, for errors, and the `filter:` compiler, if any."""

    def __init__(self, file: str, compile_filter: CompileFilter | None = None):
        self.file = file
        self.compile_filter = compile_filter
        self.rule = ""  # the id of the rule being compiled: the key of its `limit:` memory

    def err(self, node: Any, key: str, reason: str, parent: Any = None, pkey: Any = None) -> RuleError:
        line, col = self.pos(node, parent, pkey)
        return RuleError(self.file, line, key, reason, col)

    def line(self, node: Any, parent: Any = None, pkey: Any = None) -> int | None:
        return self.pos(node, parent, pkey)[0]

    @staticmethod
    def pos(node: Any, parent: Any = None, pkey: Any = None) -> tuple[int | None, int | None]:
        """1-based (line, column) of parent[pkey] if given, else of node."""
        if parent is not None and pkey is not None and hasattr(parent, "lc"):
            try:
                at = parent.lc.key(pkey) if isinstance(parent, CommentedMap) else parent.lc.item(pkey)
                return at[0] + 1, at[1] + 1
            except (KeyError, IndexError, TypeError):
                pass
        if hasattr(node, "lc") and node.lc.line is not None:
            return node.lc.line + 1, (node.lc.col or 0) + 1
        return None, None


def check_keys(c: Context, node: Any, allowed: set[str], where: str) -> None:
    if not isinstance(node, CommentedMap):
        raise c.err(node, where, "must be a mapping")
    for k in node:
        if k not in allowed:
            raise c.err(node, f"{where}.{k}" if where else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})", node, k)


def as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def plain(node: Any) -> Any:
    """A YAML node as plain dicts, lists and scalars."""
    if isinstance(node, Mapping):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def regex(c: Context, value: Any, parent: Any, key: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise c.err(value, where, "must be a regular expression (text)", parent, key)
    try:
        return re.compile(value)
    except re.error as e:
        raise c.err(value, where, f"bad regex: {e}", parent, key) from e


def glob(c: Context, value: Any, parent: Any, key: Any, where: str) -> re.Pattern[str]:
    """A glob with the one semantics of shield_addon.core.globs (case-insensitive, whole value);
    a number counts as its text (a port, a numeric name)."""
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise c.err(value, where, "must be a non-empty glob (text)", parent, key)
    try:
        return compile_glob(str(value))
    except ValueError as e:
        raise c.err(value, where, str(e), parent, key) from e


def globs(c: Context, value: Any, parent: Any, key: Any, where: str) -> list[re.Pattern[str]]:
    values = as_list(value)
    if not values:
        raise c.err(value, where, "must not be an empty list", parent, key)
    return [glob(c, v, parent, key, where) for v in values]
