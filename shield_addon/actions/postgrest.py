"""PostgREST (and Supabase's /rest/v1/ in front of it): tables and RPC over REST."""

from __future__ import annotations

import re
from urllib.parse import unquote

from .base import Action, RequestView
from .common import method_type
from .destructive import destructive_name

# Supabase mounts PostgREST at /rest/v1; a pinned plain PostgREST serves from the root.
_SUPABASE = re.compile(r"/rest/v1/(rpc/)?([^/]+)/?\Z")
_PLAIN = re.compile(r"/(rpc/)?([^/]+)/?\Z")
# Query parameters that shape the answer or authenticate (Supabase's gateway takes
# the key as ?apikey=); every other parameter filters rows (id=eq.1, or=(...), ...),
# and a PATCH or DELETE without one touches every row.
_NOT_FILTERS = frozenset({"select", "order", "limit", "offset", "on_conflict", "columns", "apikey"})


def parse(req: RequestView, pinned: bool = False) -> Action | None:
    if not req.path.startswith("/rest/v1/") and not pinned:
        return None
    path = unquote(req.path)
    match = _SUPABASE.match(path) or (_PLAIN.match(path) if pinned else None)
    if match is None:
        return None
    rpc, name = match.group(1), match.group(2)
    # The schema is chosen by header: Accept-Profile to read, Content-Profile to write.
    profile = "accept-profile" if req.method in ("GET", "HEAD") else "content-profile"
    schema = req.header(profile) or None
    if rpc:
        return Action(
            service="postgrest",
            # A function named for a delete (delete_all_users, purge_logs) is the RPC
            # twin of a DELETE, read by the words MCP tool names are read by.
            action_type="delete" if destructive_name(name) else "execute",
            operation=f"rpc {name}",
            resource_type="function",
            namespace=schema,
            resource_name=name,
        )

    flags = set()
    action_type = method_type(req.method)
    if req.method == "POST" and "resolution=merge-duplicates" in (req.header("prefer") or ""):
        action_type = "update"  # an upsert overwrites existing rows
        flags.add("upsert")
    if req.method in ("PATCH", "DELETE"):
        filters = [(k, v) for k, v in req.query if k not in _NOT_FILTERS]
        if not filters:
            flags.add("no_filter")
        elif all(_always_true(k, v, _key_columns(name)) for k, v in filters):
            flags.add("always_true_filter")
    return Action(
        service="postgrest",
        action_type=action_type,
        operation=req.method.lower(),
        resource_type="table",
        namespace=schema,
        resource_name=name,
        tables=(name.lower(),),
        flags=frozenset(flags),
    )


# --- Filters every row passes. Only shapes that are true whatever the data, or true of a
# table's own serial/UUID key, count: `id=gte.0`, `id=not.is.null`, `id=neq.-1`, `id=neq.<nil
# UUID>`, `name=like.*`, and an `or` holding one of those or a complementary pair on one
# column (`id.gt.0,id.lte.0`, `status.eq.x,status.neq.x`). The same operators on any other
# column are real filters (`amount_due=gt.0`, `deleted_at=not.is.null`, `status=neq.paid`),
# and one real filter beside a tautology narrows the rows, so neither is flagged.

_MAX_SERIAL = 2147483647  # a key below this bound is every row of an int4 serial key
_COMPLEMENTS = {("gt", "lte"), ("lte", "gt"), ("gte", "lt"), ("lt", "gte"), ("eq", "neq"), ("neq", "eq"),
                ("is", "not.is")}


def _key_columns(table: str) -> frozenset[str]:
    """The names a table's own key goes by: id, uuid, pk, and {table}_id in its plural and
    singular forms (payments -> payment_id)."""
    table = table.lower()
    singular = table[:-1] if table.endswith("s") else table
    return frozenset({"id", "uuid", "pk", f"{table}_id", f"{singular}_id"})


def _always_true(column: str, expression: str, keys: frozenset[str]) -> bool:
    column = column.lower()
    if column in ("or", "and"):
        conditions = [_condition(item) for item in _items(expression)]
        if not conditions or any(c is None for c in conditions):
            return False
        found = [c for c in conditions if c is not None]
        truths = [_true_condition(col, op, value, keys) for col, op, value in found]
        if column == "and":
            return all(truths)
        return any(truths) or _has_complement(found)
    op, _, value = expression.partition(".")
    if op == "not":
        inner, _, value = value.partition(".")
        op = f"not.{inner}"
    return _true_condition(column, op, value, keys)


def _items(expression: str) -> list[str]:
    """The conditions of `(a.eq.1,b.eq.2)`, split at the commas outside parentheses and quotes."""
    text = expression.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return []
    items, depth, quoted, current = [], 0, False, ""
    for ch in text[1:-1]:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        if ch == "," and depth == 0 and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return items


def _condition(item: str) -> tuple[str, str, str] | None:
    """`id.not.is.null` -> (id, not.is, null); None for a nested or/and (not read here)."""
    parts = item.split(".", 3)
    if len(parts) < 3 or parts[0].lower() in ("or", "and", "not") or "(" in parts[0]:
        return None
    if parts[1] == "not" and len(parts) == 4:
        return parts[0].lower(), f"not.{parts[2]}", parts[3]
    return parts[0].lower(), parts[1], ".".join(parts[2:])


def _true_condition(column: str, op: str, value: str, keys: frozenset[str]) -> bool:
    if op in ("like", "ilike") and value and set(value) <= {"*", "%"}:
        return True
    if column not in keys:
        return False
    if op in ("not.is", "isdistinct"):  # IS NOT NULL, IS DISTINCT FROM NULL
        return value.lower() == "null"
    if op == "not.in":
        values = [_number(v) for v in value.strip("()").split(",")]
        return all(v is not None and v <= 0 for v in values)
    number = _number(value)
    if op in ("neq", "not.eq"):
        return (number is not None and number <= 0) or value.strip() == "" or set(value) <= {"0", "-"}
    if number is None:
        return False
    if op in ("gt", "not.lte"):
        return number <= 0
    if op in ("gte", "not.lt"):
        return number <= 1
    if op in ("lt", "not.gte"):
        return number > _MAX_SERIAL
    if op in ("lte", "not.gt"):
        return number >= _MAX_SERIAL
    return False


def _has_complement(conditions: list[tuple[str, str, str]]) -> bool:
    seen = {(col, op, value.lower()) for col, op, value in conditions}
    return any((col, other, value) in seen for col, op, value in seen
               for first_op, other in _COMPLEMENTS if op == first_op)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
