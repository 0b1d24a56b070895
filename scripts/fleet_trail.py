"""Synthetic proxies' trails in a fleet database, for the fleet readers' tests and benchmark.

Real parts all the way: each proxy's rows are written by the journal (journal.Journal), signed
by the checkpointer (checkpoints.Checkpointer) with the proxy's own key, and shipped by the
writer's shipper (fleet.ship.Shipper), so the database holds what proxies would put there.

    python -m scripts.fleet_trail URL --proxies 3 --flows 100000 --hours 24
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from shield_addon import __version__, checkpoints, record
from shield_addon.core.model import AuditDir
from shield_addon.fleet.ship import Identity, Shipper
from shield_addon.journal import journal_line

AGENTS = ("deploy-bot", "report-bot", "ci-runner", "sql-agent", "support-ai")
HOSTS = ("api.prod.example.com", "k8s.internal", "db.example.com", "payments.example.com")


@dataclass(frozen=True)
class Trail:
    name: str
    audit: Path
    confdir: Path
    chain_id: str
    events: int


def flow_events(i: int, ts: float, rng: random.Random) -> list[dict]:
    """One flow's events: its request, a reviewer's decision when held, its response."""
    fid = f"{rng.getrandbits(128):032x}"
    agent, host = rng.choice(AGENTS), rng.choice(HOSTS)
    held = i % 7 == 0
    request = {
        "stage": "request", "ts": _t(ts), "flow_id": fid, "agent": agent, "client_ip": "10.0.0.9", "method": "POST",
        "scheme": "https", "host": host, "port": 443, "path": f"/v1/items/{i}", "url": f"https://{host}/v1/items/{i}",
        "request_headers": '[["content-type","application/json"]]',
        "request_body": f'{{"n":{i}}}' if i % 5 != 1 else f"n={i}\x00 (a NUL byte, as binary bodies have)",
        "request_body_size": 8, "service": host, "action_type": "update", "operation": "POST",
        "namespace": "prod" if i % 2 else "staging", "tables": ["orders"] if i % 3 == 0 else None,
        "rule_id": "hold-prod-writes" if held else "allow-rest", "verdict": "hold" if held else "allow",
        "matched_rules": ["hold-prod-writes"] if held else [], "mode": "enforce", "severity": "high" if held else None,
        "decision": None if held else "allowed",
    }
    events = [request]
    if held:
        decision = "approved" if i % 2 else "denied"
        # sub-millisecond parts (wait_s must round as audit.duckdb's does), and ts never going
        # backwards along seq, as the journal stamps it, while flows are > 1.5 s apart
        wait = 0.5 + rng.random() * 0.9
        events.append({"stage": "decision", "ts": _t(ts + wait), "flow_id": fid, "agent": agent, "decision": decision,
                       "reviewer": "alice" if i % 3 else "bob", "decided_at": _t(ts + wait), "edited": False,
                       "operation": "console", "reviewer_comment": None if decision == "approved" else "not now"})
        if decision == "denied":
            return events
    events.append({"stage": "response", "ts": _t(ts + 1.5), "flow_id": fid, "agent": agent, "status_code": 200,
                   "response_body_size": 2, "outcome": "forwarded", "duration_ms": 12.5 + i % 10})
    return events


def _t(ts: float) -> str:
    return record.utc_text(ts)


def write_trail(root: Path, name: str, flows: int, start: float, end: float, seed: int = 0,
                every_events: int = 1000) -> Trail:
    """A proxy's audit directory and confdir with `flows` flows spread evenly over [start, end).

    The journal stamps each row with the time it writes it; a history of past hours is sealed
    here instead, row by row with the journal's own seal and line format, into one segment."""
    audit, conf = root / name / "audit", root / name / "conf"
    (audit / "journal").mkdir(parents=True)
    key = checkpoints.load_or_create_key(conf)
    chain_id = str(uuid.UUID(int=random.Random(f"chain-{name}-{seed}").getrandbits(128)))
    (audit / "chain_id").write_text(chain_id + "\n")
    signer = checkpoints.Checkpointer(audit / "checkpoints.log", key, chain_id, every_events, 3600)
    rng = random.Random(seed)
    step = (end - start) / max(flows, 1)
    seq, head = 0, record.GENESIS
    with open(audit / "journal" / f"seg-{1:012d}.jsonl", "wb") as f:
        for i in range(flows):
            for event in flow_events(i, start + i * step, rng):
                seq += 1
                row = record.seal(event, seq, chain_id, head)
                head = row["row_hash"]
                f.write(journal_line(row) + b"\n")
                if seq % every_events == 0:
                    f.flush()
                    signer.checkpoint(seq, head)
    signer.checkpoint(seq, head)
    return Trail(name, audit, conf, chain_id, seq)


def ship(url: str, trail: Trail, timeout: float = 120) -> Shipper:
    """Everything of `trail` shipped into the fleet database by the writer's shipper."""
    shipper = Shipper(url, AuditDir(trail.audit), trail.chain_id, lambda: trail.events,
                      Identity(trail.name, "host-" + trail.name, "127.0.0.1:8080", __version__))
    deadline = time.monotonic() + timeout
    while not (shipper.attempt() and shipper.shipped >= trail.events):
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not ship {trail.name}: {shipper.error}")
        time.sleep(0.1)
    assert shipper.con is not None
    shipper.con.close()
    return shipper


def fleet(url: str, root: Path, proxies: int, flows: int, hours: float, now: float | None = None) -> list[Trail]:
    """`proxies` proxies, each with `flows` flows over the last `hours` hours, shipped to `url`."""
    end = now if now is not None else time.time()
    trails = [write_trail(root, f"proxy-{n + 1}", flows, end - hours * 3600, end, seed=n) for n in range(proxies)]
    for t in trails:
        ship(url, t)
    return trails


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("--root", default="/tmp/shield-fleet-trails")
    p.add_argument("--proxies", type=int, default=3)
    p.add_argument("--flows", type=int, default=1000, help="flows per proxy")
    p.add_argument("--hours", type=float, default=24)
    a = p.parse_args()
    for t in fleet(a.url, Path(a.root), a.proxies, a.flows, a.hours):
        print(f"{t.name}: {t.events} events, chain {t.chain_id}, key {t.confdir}")


if __name__ == "__main__":
    main()
