"""A real PostgreSQL for the fleet's tests: one server per session, a database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts import postgres


@pytest.fixture(scope="session")
def pg() -> Iterator[postgres.Postgres]:
    server = postgres.start()
    if server is None:
        pytest.fail("the fleet's tests need PostgreSQL's server (Debian: apt-get install postgresql); "
                    "scripts/test installs it")
    yield server
    server.close()


@pytest.fixture
def fleet_url(pg: postgres.Postgres) -> str:
    """A new, empty fleet database."""
    return pg.database()
