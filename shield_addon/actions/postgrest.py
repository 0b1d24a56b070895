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
    if req.method in ("PATCH", "DELETE") and not any(k not in _NOT_FILTERS for k, _ in req.query):
        flags.add("no_filter")
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
