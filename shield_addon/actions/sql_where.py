"""Whether a WHERE (or a MERGE's ON) can tell rows apart: a condition true of every row
is no filter. Split from sql_kinds.py, which names what a statement is."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.simplify import simplify


def all_rows(condition: exp.Expression, aliases: dict[str, str] | None = None) -> bool:
    """Whether a WHERE cannot tell rows apart: a constant that may be true (`1=1`,
    `true`, `'a'='a'`, `NOT false`), a column compared with itself (also through a
    self-join: `users.id = u2.id` where u2 is users), a subquery that does not look at
    the row (`EXISTS (SELECT 1 FROM bans)`: all rows or none), an OR with such a branch,
    an AND of them. A constant false (`WHERE false`) deletes nothing. `aliases`: each
    table alias of the statement to the table it names."""
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if isinstance(condition, exp.Or):
        return all_rows(condition.left, aliases) or all_rows(condition.right, aliases)
    if isinstance(condition, exp.And):
        return all_rows(condition.left, aliases) and all_rows(condition.right, aliases)
    if isinstance(condition, (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ, exp.Like, exp.ILike)):
        left, right = condition.left, condition.right
        if left is not None and right is not None and left.find(exp.Column) and left == right:
            return True
        if aliases and _same_column(left, right, aliases):
            return True
        if isinstance(condition, (exp.Like, exp.ILike)) and right is not None and right.is_string:
            return set(right.name) <= {"%"}
    if isinstance(condition, exp.In) and aliases and _own_rows(condition, aliases):
        return True
    if isinstance(condition, exp.Not) and isinstance(condition.this, exp.NEQ):
        inner = condition.this
        return inner.left is not None and inner.left == inner.right
    if aliases and _every_key(condition, aliases):
        return True
    if row_dependent(condition):
        return False
    return not never_true(condition)


# The schema is unknown here, so a column is known to hold a value in every row only by
# convention: the key `id`, NOT NULL and numbered from 1 by AUTO_INCREMENT, SERIAL or
# IDENTITY. `WHERE id > 0` is the well-known way round MySQL's sql_safe_updates, and
# `id IS NOT NULL` says the same. Any other column is a filter (`revoked_at IS NOT NULL`
# picks the revoked sessions), so it is not read as one that keeps every row.
_KEY = "id"


def _every_key(condition: exp.Expression, aliases: dict[str, str]) -> bool:
    """`id IS NOT NULL`, `id > 0`, `id >= 1`, `0 < id` on the written table's own key."""
    if isinstance(condition, exp.Not) and isinstance(condition.this, exp.Is):
        inner = condition.this
        return isinstance(inner.expression, exp.Null) and _own_key(inner.this, aliases)
    flipped = {exp.LT: exp.GT, exp.LTE: exp.GTE}
    left, right, kind = condition.args.get("this"), condition.args.get("expression"), type(condition)
    if kind in flipped:
        left, right, kind = right, left, flipped[kind]
    if kind not in (exp.GT, exp.GTE) or not _own_key(left, aliases):
        return False
    bound = _number(right)
    return bound is not None and (bound < 1 if kind is exp.GT else bound <= 1)


def _own_key(node: exp.Expression | None, aliases: dict[str, str]) -> bool:
    if not isinstance(node, exp.Column) or node.name.lower() != _KEY:
        return False
    return aliases.get(node.table.lower()) is not None and aliases.get(node.table.lower()) == aliases.get("")


def _number(node: exp.Expression | None) -> float | None:
    sign = 1.0
    while isinstance(node, (exp.Neg, exp.Paren)):
        sign = -sign if isinstance(node, exp.Neg) else sign
        node = node.this
    if not isinstance(node, exp.Literal) or node.is_string:
        return None
    try:
        return sign * float(node.this)
    except ValueError:
        return None


def row_dependent(condition: exp.Expression) -> bool:
    # A subquery is correlated with the row unless each of its columns names one of its
    # own tables: an unqualified column may be the outer row's.
    inside = [s for s in condition.find_all(exp.Select) if _uncorrelated(s)]
    for node in condition.walk():
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            return True
        if isinstance(node, (exp.Column, exp.Subquery, exp.Select)) and not any(
            node is s or node.this is s or _within(node, s) for s in inside  # node.this: (SELECT ...)
        ):
            return True
    return False


def _uncorrelated(select: exp.Select) -> bool:
    own = {t.alias_or_name.lower() for t in select.find_all(exp.Table)}
    return all(c.table and c.table.lower() in own for c in select.find_all(exp.Column))


def _within(node: exp.Expression, ancestor: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _same_column(left: exp.Expression | None, right: exp.Expression | None, aliases: dict[str, str]) -> bool:
    """`users.id = u2.id` where u2 is another name of users: true of every row."""
    if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)) or left.name.lower() != right.name.lower():
        return False
    a, b = left.table.lower(), right.table.lower()
    return bool(a and b) and a != b and aliases.get(a) is not None and aliases.get(a) == aliases.get(b)


def table_aliases(statement: exp.Expression) -> dict[str, str]:
    """Each name a statement's tables go by (alias or own name) to the table's name;
    "" to the table it writes, which unqualified columns name."""
    aliases = {t.alias_or_name.lower(): t.name.lower() for t in statement.find_all(exp.Table) if t.name}
    if isinstance(statement.this, exp.Table):
        aliases[""] = statement.this.name.lower()
    return aliases


def _own_rows(condition: exp.In, aliases: dict[str, str]) -> bool:
    """`id IN (SELECT id FROM t [LIMIT n])` on t itself: rows picked by no criterion,
    the batch of a TRUNCATE done as a loop of DELETEs."""
    query = condition.args.get("query")
    select = query.this if isinstance(query, exp.Subquery) else query
    left = condition.this
    if not isinstance(select, exp.Select) or not isinstance(left, exp.Column) or select.args.get("where"):
        return False
    if select.args.get("joins") or len(select.expressions) != 1:
        return False
    source = select.args.get("from") or select.args.get("from_")
    picked = select.expressions[0]
    return (
        source is not None
        and isinstance(source.this, exp.Table)
        and isinstance(picked, exp.Column)
        and picked.name.lower() == left.name.lower()
        and source.this.name.lower() == aliases.get(left.table.lower())
    )


def never_true(condition: exp.Expression) -> bool:
    try:
        value = simplify(condition.copy())
    except Exception:  # noqa: BLE001 -- an optimizer on hostile input: assume it may be true
        return False
    if isinstance(value, exp.Boolean):
        return not value.this
    if isinstance(value, exp.Null):
        return True
    if isinstance(value, exp.Literal) and not value.is_string:
        try:
            return float(value.this) == 0
        except ValueError:
            return False
    return False
