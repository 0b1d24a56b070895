"""The fleet database is one of the proxy's own addresses however an agent spells it."""

from __future__ import annotations

from shield_addon.addons.whereabouts import fleet_addresses
from shield_addon.core.hosts import is_own_address


def own(url: str, host: str, port: int) -> bool:
    return is_own_address(host, port, fleet_addresses(url))


def test_a_database_on_this_machine_is_every_local_address_on_its_port() -> None:
    url = "postgresql://shield@localhost:6543/fleet"
    assert all(own(url, h, 6543) for h in ("localhost", "127.0.0.1", "127.0.0.2", "0.0.0.0", "[::1]", "0x7f000001"))
    assert not own(url, "127.0.0.1", 6544)


def test_a_remote_database_is_its_address_and_no_local_one() -> None:
    url = "postgresql://shield@192.0.2.77:6543/fleet"
    assert own(url, "192.0.2.77", 6543) and own(url, "[::ffff:192.0.2.77]", 6543)
    assert not own(url, "127.0.0.1", 6543) and not own(url, "192.0.2.78", 6543)


def test_every_host_of_a_multi_host_url_and_a_unix_socket_left_out() -> None:
    url = "host=/run/postgresql,192.0.2.5,192.0.2.6 port=5432,5433,5434 dbname=fleet"
    assert own(url, "192.0.2.5", 5433) and own(url, "192.0.2.6", 5434) and not own(url, "192.0.2.5", 5434)


def test_a_members_listen_column_as_addresses() -> None:
    from shield_addon.addons.fleet import addresses

    assert addresses("127.0.0.1:8080, ::1:8080, [::1]:8081, 127.0.0.1:8081") == [
        ("127.0.0.1", 8080), ("::1", 8080), ("::1", 8081), ("127.0.0.1", 8081)]
    assert addresses("regular on 127.0.0.1:0") == [] and addresses("") == []
