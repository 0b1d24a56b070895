"""`shield review --fleet`, the real mitmproxy console under tmux: another proxy's hold is
listed with its proxy and agent, and the reviewer's `y` lets it through there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from scripts import postgres
from scripts.harness import wait_for
from tests.e2e.conftest import upstream  # noqa: F401 - the fixture
from tests.e2e.harness import Upstream
from tests.e2e.test_console import Console, shlex_quote
from tests.fleet.fleet_harness import fleet_proxy, holds
from tests.fleet.test_queue import Held

pytestmark = pytest.mark.console


class ReviewConsole(Console):
    def __init__(self, tmp: Path, url: str) -> None:  # noqa: D107 - a Console without a proxy
        if not shutil.which("tmux"):
            pytest.fail("tmux is not installed: .ci/run installs it with apt-get")
        self.session = f"shield-review-{os.getpid()}-{tmp.name}"
        cmd = [sys.executable, "-m", "shield_addon.cli", "review", "--confdir", str(tmp / "conf"),
               "--reviewer", "carol", "--set", "console_focus_follow=true"]
        env = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color", "SHIELD_FLEET": url,
               "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        shell = " ".join(f"{k}={shlex_quote(v)}" for k, v in env.items()) + " " + " ".join(map(shlex_quote, cmd))
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", shell], check=True)
        wait_for(lambda: "Flows" in self.screen() or "flows" in self.screen(), 30, "the review console to start")


def test_the_fleet_console_lists_another_proxys_hold_and_y_lets_it_through(
        pg: postgres.Postgres, tmp_path: Path, upstream: Upstream) -> None:  # noqa: F811
    url = pg.database()
    a = fleet_proxy(tmp_path, url, "node-a", upstream_ca=upstream.ca_file)
    console = ReviewConsole(tmp_path, url)
    try:
        path = "/hold/review-console"
        held = Held(a, upstream.url(path), agent="deploy-bot")
        a.wait_held(f"~u {path}")
        wait_for(lambda: any(path in line and "⌛" in line for line in console.screen().splitlines()), 20,
                 "the other proxy's hold on the fleet console")
        console.keys("y")
        r = held.answer()
        assert isinstance(r, httpx.Response) and r.status_code == 200 and len(upstream.hits_for(path)) == 1
        [row] = holds(url, f"url LIKE '%{path}'")
        assert (row["decision"], row["reviewer"]) == ("approved", "carol")
        d = a.flow_events(path, "decision")[0]
        assert (d["decision"], d["reviewer"]) == ("approved", "carol")
    finally:
        console.close()
        a.stop()
