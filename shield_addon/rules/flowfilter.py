"""`filter:` match fields are mitmproxy filter expressions, compiled by mitmproxy's own parser.

mitmproxy is imported when a filter is first compiled, not when the rules package is, so the
pure modules stay importable without it.
"""

from __future__ import annotations

from shield_addon.rules.model import FlowFilter


def compile_filter(expression: str) -> FlowFilter:
    """ValueError when mitmproxy cannot parse the expression."""
    from mitmproxy import flowfilter

    return flowfilter.parse(expression)
