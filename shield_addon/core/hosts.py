"""Destinations in one canonical form, so a rule or a check cannot be walked around by spelling.

A resolver accepts an IPv4 address in any inet_aton form (0177.0.0.1, 0x7f000001, 2130706433,
127.1), an IPv6 literal may carry an IPv4 address inside (::ffff:127.0.0.1), and names differ by
case, a trailing dot or Unicode look-alikes that IDNA folds. Everything here turns those into the
one form that says which server is meant. Pure: the caller resolves names and lists the
machine's addresses.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

IP = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # a NAT64 gateway forwards these to the IPv4 inside
_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `text` means to inet_aton(3) (and so to curl, Go, glibc's resolver), or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    bytes the others leave: a (32 bits), a.b (8.24), a.b.c (8.8.16), a.b.c.d.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.fullmatch(p) for p in parts):
        return None
    values = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if p.startswith("0") and len(p) > 1 else int(p)
              for p in parts]
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def _ipv6(text: str) -> IP | None:
    try:
        ip = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    plain = ipaddress.IPv6Address(int(ip))  # without a zone id: the zone picks an interface, not a host
    if plain.ipv4_mapped is not None:
        return plain.ipv4_mapped
    if plain in NAT64:
        return ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF)
    if int(plain) >> 32 == 0 and int(plain) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(plain))
    return plain


def _bare(host: str) -> str:
    """Without surrounding space, IPv6 brackets or the root's trailing dot, in any nesting."""
    text = host
    while (bare := text.strip().strip("[]").rstrip(".")) != text:
        text = bare
    return text


@functools.lru_cache(maxsize=4096)  # pure, and asked several times for every request
def ip_of(host: str) -> IP | None:
    """The address an IP literal in any spelling means; None for a name."""
    text = _bare(host)
    if ":" in text:
        return _ipv6(text)
    return inet_aton(text)


@functools.lru_cache(maxsize=4096)
def canonical_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA-folded; an IP literal as its canonical address."""
    text = _bare(host)
    ip = ip_of(text)
    if ip is not None:
        return str(ip)
    text = text.lower()
    if not text.isascii():
        try:
            text = _bare(text.encode("idna").decode("ascii"))
        except UnicodeError:
            return text  # not a name IDNA accepts: compared as given
        ip = ip_of(text)  # fullwidth digits fold to an address: '１２７.１' is 127.0.0.1 to a client
        if ip is not None:
            return str(ip)
    return text


def authority(host: str, port: int | None, scheme: str) -> tuple[str, int]:
    """(canonical host, port), the scheme's default port filled in."""
    return canonical_host(host), port if port is not None else DEFAULT_PORTS.get(scheme.lower(), 0)


def split_authority(text: str, scheme: str, default: int | None = None) -> tuple[str, int]:
    """'Example.com:8443', '[::1]:80' or 'example.com' (a Host header) as (canonical host, port);
    without a port, `default` (else the scheme's)."""
    text = text.strip()
    host, port = text, None
    if text.startswith("[") and "]" in text:
        end = text.index("]")
        if text[end + 1:] in ("", ":") or text[end + 1] == ":" and text[end + 2:].isdigit():
            host, digits = text[1:end], text[end + 2:]
            port = int(digits) if digits else None
    elif text.count(":") == 1:
        name, _, digits = text.partition(":")
        if digits.isdigit() or not digits:  # 'example.com:' has an empty port: the default (RFC 3986)
            host, port = name, int(digits) if digits else None
    return authority(host, port if port is not None else default, scheme)


def same_server(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Do two (host, port) pairs name the same server? Ports must be given. A Host header
    without one is read with the connection's port (split_authority(..., default=port)): the
    port in Host routes nothing, clients leave it out, and the server acts on the name."""
    return a[1] == b[1] and canonical_host(a[0]) == canonical_host(b[0])


# Where a cloud machine's own identity is served: the instance metadata services (AWS, GCP,
# Azure, Oracle, DigitalOcean at 169.254.169.254; AWS's IPv6 one and EKS Pod Identity in
# fd00:ec2::/32; ECS task credentials at 169.254.170.2; Alibaba at 100.100.100.200) and all of
# link-local, which nothing reaches through a forward proxy but the machine's own services.
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10", "fd00:ec2::/32", "100.100.100.200/32"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal"})


def is_metadata(host: str) -> bool:
    """Would a request to `host` be answered by the machine's cloud metadata service (however
    the address is spelled, or by one of the names those services go by)?"""
    name = canonical_host(host)
    ip = ip_of(name)
    if ip is None:
        return name in METADATA_NAMES
    return any(ip in net for net in METADATA_NETWORKS)


def is_loopback_name(host: str) -> bool:
    """'localhost' and every name under it are loopback (RFC 6761) whatever a resolver says."""
    name = canonical_host(host)
    return name == "localhost" or name.endswith(".localhost")


def is_own_address(host: str, port: int, own: Iterable[tuple[str, int]], local_ips: Iterable[IP] = ()) -> bool:
    """Would a connection to host:port reach the proxy itself? `own` are its listen addresses
    (an empty or unspecified host listens on every local address); `local_ips` this machine's
    addresses. Loopback and the unspecified address always reach this machine. A name is
    compared as a name; the caller resolves names and asks again for each address."""
    own = [(h, p) for h, p in own if p == port]
    if not own:  # the common case, on every request: another port is never the proxy
        return False
    name = canonical_host(host)
    ip = LOOPBACK if is_loopback_name(name) else ip_of(name)
    local = local_ips if isinstance(local_ips, (set, frozenset)) else set(local_ips)
    for listen_host, _ in own:
        listen = canonical_host(listen_host) if listen_host else ""
        if listen and name == listen:
            return True
        if ip is None:
            continue
        # A proxy (or mitmweb) told to listen on 'localhost' listens on loopback.
        listen_ip = LOOPBACK if is_loopback_name(listen) else ip_of(listen) if listen else None
        every = listen_ip is None and not listen or listen_ip is not None and listen_ip.is_unspecified
        reaches_this_machine = ip.is_loopback or ip.is_unspecified or ip in local
        if every and reaches_this_machine:
            return True
        if listen_ip is not None and (ip == listen_ip or listen_ip.is_loopback and (ip.is_loopback or ip.is_unspecified)):
            return True
    return False
