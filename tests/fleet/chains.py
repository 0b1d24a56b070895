"""Reading a proxy's chain on both sides, its journal and the fleet database, so the shipping
and load-balancer tests can say "every line shipped, once, byte for byte"."""

from __future__ import annotations

from pathlib import Path

import psycopg

from scripts import haproxy
from shield_addon.segments import line_seq, segments
from tests.e2e.harness import HERE, Proxy, start_proxy, wait_for


def journal_lines(audit_dir: Path) -> list[bytes]:
    """Every complete line of the journal, in order, read straight from its segment files."""
    data = b"".join(path.read_bytes() for _, path in segments(audit_dir / "journal"))
    return [line for line in data.splitlines(keepends=True) if line.endswith(b"\n") and line_seq(line)]


def chain_id(audit_dir: Path) -> str:
    return (audit_dir / "chain_id").read_text().strip()


def fleet_lines(url: str, chain: str) -> list[tuple[int, str]]:
    """(seq, line) of every row of a chain in the fleet, in seq order."""
    with psycopg.connect(url) as con:
        return con.execute("SELECT seq, line FROM chain_rows WHERE chain_id = %s ORDER BY seq", (chain,)).fetchall()


def proxy_row(url: str, chain: str) -> dict | None:
    with psycopg.connect(url) as con, con.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute("SELECT * FROM proxies WHERE chain_id = %s", (chain,)).fetchone()


def shipped_seq(url: str, chain: str) -> int:
    """The fleet's mark for a chain; -1 while the proxy has not joined yet (or no schema)."""
    try:
        row = proxy_row(url, chain)
    except psycopg.errors.UndefinedTable:
        return -1
    return row["shipped_seq"] if row else -1


def wait_shipped(url: str, audit_dir: Path, timeout: float = 30) -> int:
    """Until the fleet's mark for this proxy is the journal's last seq (the lag is zero); that seq."""
    chain = chain_id(audit_dir)

    def caught_up() -> int | None:
        lines = journal_lines(audit_dir)
        last = line_seq(lines[-1]) if lines else 0
        return last if last and shipped_seq(url, chain) == last else None

    return wait_for(caught_up, timeout, f"the fleet to catch up with {audit_dir}")


def assert_shipped_exactly(url: str, audit_dir: Path) -> int:
    """The fleet holds the journal's chain: seq 1..N once each, every line byte for byte."""
    chain = chain_id(audit_dir)
    journal = journal_lines(audit_dir)
    rows = fleet_lines(url, chain)
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(journal) + 1)), "the fleet's copy has a gap, a duplicate or a stray row"
    assert [line.encode() + b"\n" for _, line in rows] == journal, "a shipped line differs from the journal's"
    return len(rows)


def fleet_proxy(tmp: Path, url: str, name: str, *extra: str, upstream_ca: Path | None = None,
                audit_dir: Path | None = None, env: dict[str, str] | None = None, control: bool = False,
                any_agent: bool = True) -> Proxy:
    """A real proxy that joins the fleet at `url` under `name`, with the tests' rules; with
    `any_agent`, proxyauth=any (else its confdir's agents, if any, are the only ones let in)."""
    auth = ("--set", "proxyauth=any") if any_agent else ()
    return start_proxy(tmp, "--set", f"shield_fleet={url}", "--set", f"shield_proxy_name={name}",
                       "--set", f"shield_rules={HERE / 'rules'}", *auth, *extra,
                       upstream_ca=upstream_ca, audit_dir=audit_dir, env=env, control=control)


def fleet_behind_haproxy(tmp: Path, url: str, n: int = 3, *extra: str, upstream_ca: Path | None = None,
                         control: bool = False, confdir: Path | None = None) -> tuple[haproxy.HAProxy, list[Proxy]]:
    """N proxies in the fleet at `url` (named a, b, c, ...), HAProxy in TCP mode in front.
    One CA among them: with `confdir`, all use that one confdir (its CA, its agents: proxyauth
    is theirs); without, each has its own confdir holding a copy of the first one's CA.
    Agents point at the HAProxy's port and trust proxies[0].ca. The caller stops the HAProxy
    and each proxy."""
    proxies: list[Proxy] = []
    try:
        for i in range(n):
            d = tmp / f"proxy-{chr(ord('a') + i)}"
            if confdir is not None:
                d.mkdir(parents=True)
                (d / "conf").symlink_to(confdir, target_is_directory=True)
            elif proxies:
                haproxy.share_ca(proxies[0].confdir, d / "conf")
            proxies.append(fleet_proxy(d, url, chr(ord("a") + i), *extra, upstream_ca=upstream_ca, control=control,
                                       any_agent=confdir is None))
        return haproxy.start([p.port for p in proxies], tmp / "haproxy"), proxies
    except BaseException:
        for p in proxies:
            p.stop()
        raise
