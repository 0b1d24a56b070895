"""A fleet: many proxies, one approval queue and one trail, in PostgreSQL.

Each proxy's journal stays its first, durable write; the writer process ships it to the
fleet database (`ship`), the review addon publishes holds there and takes decisions there
(`queue`), and the analyst's commands read it with `--fleet` (`reads`). `schema` is the one
place that knows the database's tables.
"""

from __future__ import annotations

import os
import re

ENV = "SHIELD_FLEET"


class FleetError(RuntimeError):
    """The fleet database cannot be reached or used; the message says which and why. Here,
    not in db.py: the addons catch it without importing the driver on a proxy with no fleet."""


def fleet_url(given: str | None = None) -> str:
    """The fleet's URL: the option or flag if given, else $SHIELD_FLEET, else "" (no fleet)."""
    return (given or os.environ.get(ENV, "")).strip()


# Where libpq takes a password: the URI's user info (up to its last '@': a password may
# carry one unencoded), a `password` query parameter, a `password=` keyword (quoted or not).
_USERINFO = re.compile(r"(://[^:/@?#]*:)[^/?#]*@")
_QUERY = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KEYWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def shown(url: str) -> str:
    """The URL without its password, for logs, errors and status lines, in every libpq spelling."""
    if "://" in url:
        return _QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", url))
    return _KEYWORD.sub(r"\1***", url)
