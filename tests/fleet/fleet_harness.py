"""Real fleets for the tests: proxies that share one PostgreSQL, and `shield review --fleet`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg

from scripts.harness import SHIELD, Proxy, child_env, wait_for
from tests.e2e.harness import HERE
from tests.fleet import chains


def fleet_proxy(tmp: Path, url: str, name: str, *extra: str, upstream_ca: Path | None = None,
                audit_dir: Path | None = None) -> Proxy:
    """A proxy of the fleet in tmp/NAME, with the tests' control addon (its commands are the console's keys)."""
    return chains.fleet_proxy(tmp / name, url, name, *extra, upstream_ca=upstream_ca, control=True, audit_dir=audit_dir)


def review_console(tmp: Path, url: str, reviewer: str) -> Proxy:
    """`shield review --fleet URL --headless` with the tests' control addon: its commands are
    the console's keys."""
    d = tmp / f"review-{reviewer}"
    d.mkdir(exist_ok=True)
    log, control = d / "review.log", d / "control-port"
    args = [*SHIELD, "review", "--fleet", url, "--headless", "--reviewer", reviewer, "--confdir", str(d / "conf"),
            "-s", str(HERE / "control_addon.py")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=d,
                                env=child_env(PYTHONUNBUFFERED="1", SHIELD_TEST_CONTROL_FILE=str(control)))

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"shield review exited {proc.returncode}:\n{log.read_text()}")
        return control.exists()

    wait_for(ready, 30, "shield review to start")
    return Proxy(proc, 0, d / "conf", d, log, control)


def holds(url: str, where: str = "true") -> list[dict]:
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as con:
        return con.execute(f"SELECT * FROM holds WHERE {where} ORDER BY created_at").fetchall()  # type: ignore[arg-type]
