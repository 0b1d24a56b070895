"""A fleet URL in a log line or an error never carries its password, in any libpq spelling."""

from __future__ import annotations

import pytest

from shield_addon.fleet import shown


@pytest.mark.parametrize("url", [
    "postgresql://shield:Hunter2-secret@db:5432/fleet",
    "postgresql://shield@db/fleet?password=Hunter2-secret",
    "postgresql://db/fleet?sslmode=require&password=Hunter2-secret&connect_timeout=3",
    "postgres://shield:Hunter2-secret@db1:5432,db2:5433/fleet",
    "postgresql://shield:Hunter2@secret@db/fleet",  # an '@' left unencoded in the password
    "host=db password=Hunter2-secret dbname=fleet",
    "host=db password = 'Hunter2-secret with spaces' dbname=fleet",
    "host=db PASSWORD=Hunter2-secret",
])
def test_the_password_is_masked_in_every_spelling(url: str) -> None:
    out = shown(url)
    assert "Hunter2" not in out and "secret" not in out
    assert "db" in out  # where it is still says which database


def test_a_url_without_a_password_is_shown_as_given() -> None:
    assert shown("postgresql://shield@db:5432/fleet?sslmode=require") == "postgresql://shield@db:5432/fleet?sslmode=require"
