"""Every spelling of a destination comes out as the one canonical form."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shield_addon.core.hosts import (
    authority,
    canonical_host,
    inet_aton,
    ip_of,
    is_own_address,
    same_server,
    split_authority,
)

LOOPBACK_SPELLINGS = ["127.0.0.1", "0177.0.0.1", "0x7f.0.0.1", "0x7f000001", "2130706433", "017700000001", "127.1",
                      "127.0.1", "0x7F.1", "[::ffff:127.0.0.1]", "::ffff:7f00:1", "0x7f.0x0.0x0.0x1",
                      "64:ff9b::7f00:1", "::127.0.0.1", "127.0.0.1."]


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_127_0_0_1(spelling: str) -> None:
    assert canonical_host(spelling) == "127.0.0.1"


@pytest.mark.parametrize("name, canonical", [
    ("Example.COM.", "example.com"), ("api.github.com", "api.github.com"), ("[::1]", "::1"), ("::0:1", "::1"),
    ("fe80::1%eth0", "fe80::1"), ("ｅｘａｍｐｌｅ。com", "example.com"), ("bücher.example", "xn--bcher-kva.example"),
    ("LOCALHOST.", "localhost"),
])
def test_names_and_ipv6_are_folded(name: str, canonical: str) -> None:
    assert canonical_host(name) == canonical


@pytest.mark.parametrize("text", ["256.0.0.1", "1.2.3.4.5", "08.0.0.1", "0x", "1..2", "", "a.b.c.d", "1.2.3.256",
                                  "4294967296", "1.16777216"])
def test_what_inet_aton_refuses_is_no_address(text: str) -> None:
    assert inet_aton(text) is None
    with pytest.raises(OSError):
        socket.inet_aton(text)


def spell(part: int, style: str) -> str:
    return {"dec": str(part), "oct": "0" + format(part, "o"), "hex": "0x" + format(part, "x")}[style]


@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.lists(st.sampled_from(["dec", "oct", "hex"]), min_size=4, max_size=4))
def test_any_inet_aton_spelling_means_what_the_c_library_says(number: int, parts: int, styles: list[str]) -> None:
    octets = list(number.to_bytes(4, "big"))
    head = octets[:parts - 1]
    last = int.from_bytes(bytes(octets[parts - 1:]), "big")
    text = ".".join(spell(p, s) for p, s in zip([*head, last], styles))
    assert inet_aton(text) == ipaddress.IPv4Address(socket.inet_aton(text)) == ipaddress.IPv4Address(number)
    assert canonical_host(text) == str(ipaddress.IPv4Address(number))


def test_ip_of_tells_literals_from_names() -> None:
    assert ip_of("0x7f000001") == ipaddress.IPv4Address("127.0.0.1")
    assert ip_of("example.com") is None
    assert ip_of("[2001:db8::1]") == ipaddress.IPv6Address("2001:db8::1")


def test_authorities_fill_the_default_port() -> None:
    assert authority("API.github.com.", None, "https") == ("api.github.com", 443)
    assert split_authority("Example.com:8443", "https") == ("example.com", 8443)
    assert split_authority("example.com", "http") == ("example.com", 80)
    assert split_authority("[::1]:9000", "http") == ("::1", 9000)
    assert split_authority("::1", "http") == ("::1", 80)


def test_same_server_compares_canonical_forms_and_ports() -> None:
    assert same_server(("API.GitHub.com.", 443), ("api.github.com", 443))
    assert same_server(("0x7f000001", 80), ("127.0.0.1", 80))
    assert not same_server(("api.github.com", 443), ("140.82.112.3", 443))
    assert not same_server(("api.github.com", 443), ("api.github.com", 8443))


OWN = [("127.0.0.1", 8080)]


@pytest.mark.parametrize("host", ["127.0.0.1", "0177.0.0.1", "2130706433", "127.1", "[::ffff:127.0.0.1]", "localhost",
                                  "LocalHost.", "a.localhost", "0.0.0.0", "0", "[::1]", "127.0.0.2"])
def test_the_proxy_knows_itself_however_it_is_spelled(host: str) -> None:
    assert is_own_address(host, 8080, OWN)


def test_another_port_or_host_is_not_the_proxy() -> None:
    assert not is_own_address("127.0.0.1", 8081, OWN)
    assert not is_own_address("example.com", 8080, OWN)
    assert not is_own_address("10.0.0.5", 8080, OWN, [ipaddress.ip_address("10.0.0.5")])


def test_a_proxy_on_every_interface_is_reached_through_any_local_address() -> None:
    local = [ipaddress.ip_address("10.0.0.5")]
    assert is_own_address("10.0.0.5", 8080, [("", 8080)], local)
    assert is_own_address("0x0a000005", 8080, [("0.0.0.0", 8080)], local)
    assert not is_own_address("10.0.0.6", 8080, [("0.0.0.0", 8080)], local)
    assert is_own_address("proxy.internal", 8080, [("proxy.internal", 8080)])


@pytest.mark.parametrize("spelling", ["0X7F000001", "0X7f.0X1", "00000177.0.0.01", "0x00007f.1", "127.000.000.001",
                                      "[0:0:0:0:0:ffff:7f00:1]", "::FFFF:127.0.0.1", "[::ffff:7f00:1%25eth0]",
                                      "１２７.１", "１２７。０。０。１", "０ｘ７ｆ０００００１", "127.0.0.１."])
def test_more_spellings_of_loopback(spelling: str) -> None:
    assert canonical_host(spelling) == "127.0.0.1"


@given(st.integers(0, 2**32 - 1), st.sampled_from(["::ffff:{v4}", "::ffff:{hi:x}:{lo:x}", "[::ffff:{v4}]",
                                                   "0:0:0:0:0:FFFF:{hi:X}:{lo:X}", "64:ff9b::{v4}"]))
def test_any_ipv4_inside_ipv6_is_that_ipv4(number: int, form: str) -> None:
    v4 = ipaddress.IPv4Address(number)
    assert canonical_host(form.format(v4=v4, hi=number >> 16, lo=number & 0xFFFF)) == str(v4)


@given(st.integers(2**32, 2**128 - 1))
def test_an_ipv6_address_in_any_spelling_is_its_compressed_form(number: int) -> None:
    ip = ipaddress.IPv6Address(number)
    if ip.ipv4_mapped is not None or ip in ipaddress.ip_network("64:ff9b::/96"):
        return
    assert canonical_host(ip.exploded.upper()) == canonical_host(f"[{ip.exploded}]") == ip.compressed


@given(st.text(max_size=30))
def test_the_canonical_form_is_a_fixed_point(text: str) -> None:
    once = canonical_host(text)
    assert canonical_host(once) == once


@pytest.mark.parametrize("text, expected", [
    ("example.com:", ("example.com", 443)),  # an empty port is the default one (RFC 3986)
    ("[::1]:", ("::1", 443)),
    ("[::1]", ("::1", 443)),
    ("EXAMPLE.com.:8443", ("example.com", 8443)),
    ("0x7f000001:8080", ("127.0.0.1", 8080)),
    ("[::ffff:127.0.0.1]:8080", ("127.0.0.1", 8080)),
])
def test_host_headers_split_into_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert split_authority(text, "https") == expected


@pytest.mark.parametrize("text", ["example.com:x", "example.com:80:80", "[::1]x", "[::1]:x"])
def test_a_malformed_host_header_names_no_server_the_target_could_be(text: str) -> None:
    host, _ = split_authority(text, "https")
    assert host not in ("example.com", "::1")


def test_a_host_header_without_a_port_means_the_connection_port_when_given() -> None:
    # The gate passes the connection's port: clients leave the port out of Host.
    assert split_authority("example.com", "https", default=8443) == ("example.com", 8443)
    assert same_server(split_authority("example.com", "https", default=8443), ("example.com", 8443))


@pytest.mark.parametrize("host", ["127.0.0.1", "0x7f000001", "[::1]", "localhost", "0.0.0.0"])
def test_a_proxy_listening_on_localhost_is_reached_through_any_loopback_spelling(host: str) -> None:
    assert is_own_address(host, 8081, [("localhost", 8081)])


def test_a_proxy_listening_on_localhost_is_not_reached_through_another_address() -> None:
    assert not is_own_address("10.0.0.5", 8081, [("localhost", 8081)], [ipaddress.ip_address("10.0.0.5")])


def test_every_interface_spelled_as_ipv6_includes_ipv4() -> None:
    local = [ipaddress.ip_address("10.0.0.5")]
    assert is_own_address("10.0.0.5", 8080, [("::", 8080)], local)
    assert is_own_address("::ffff:10.0.0.5", 8080, [("[::]", 8080)], local)
    assert is_own_address("2130706433", 8080, [("::", 8080)], local)
