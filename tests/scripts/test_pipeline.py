"""The micro-benchmarks call the proxy's own functions (through scripts/bench/pipeline.py): every
step runs on today's code, and the path they time is the one the proxy takes. No timing is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from scripts.bench import micro, pipeline, testflows
from scripts.bench.journalbench import sample_events
from scripts.bench.rulegen import generated_rules, make_rules_dir
from scripts.reliability.soak import rss_trend
from shield_addon.addons.gate import request_event as gate_request_event
from shield_addon.flows import FlowState


@pytest.fixture(scope="module")
def bundled() -> pipeline.RuleSet:
    return pipeline.load_rules(pipeline.bundled_rules())


def test_every_step_of_the_request_path_runs(bundled: pipeline.RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(micro, "MIN_BATCHES", 1)
    for f in (testflows.load_flows()[0], testflows.body_flow()):
        steps = micro.gate_steps(f, bundled, pipeline.redactor(bundled), budget=0.0)
        names = [n for n, _ in steps]
        assert not [n for n in names if "failed" in n]
        assert all(t >= 0 and not math.isnan(t) for _, t in steps)
        assert "request: wire_line (the event as sent to the writer)" in names
        assert "writer process: journal_line of the request row" in names
        assert names[-1].startswith("= request path on the loop in one call")


def test_the_request_event_is_the_gates(bundled: pipeline.RuleSet) -> None:
    """The adapter builds the event as the gate addon does (which reads the mode and body limit
    from mitmproxy's options)."""
    f = testflows.body_flow()
    r = micro.Request(f, bundled, pipeline.redactor(bundled), micro.LISTEN_PORT)
    with taddons.context() as tctx:
        tctx.options.add_option("shield_mode", str, "enforce", "")
        tctx.options.add_option("shield_body_limit", int, micro.LIMIT, "")
        want = gate_request_event(FlowState(r.agent, r.base), f.request, r.body, r.verdict, r.redactor, bundled.sha256)
    assert r.request_event() == want
    assert want["decision"] == "allowed"  # the path the benchmark means to time


def test_the_journal_line_is_what_the_journal_writes(bundled: pipeline.RuleSet, tmp_path: Path) -> None:
    r = micro.Request(testflows.load_flows()[0], bundled, pipeline.redactor(bundled), micro.LISTEN_PORT)
    j = pipeline.Journal(tmp_path / "journal")
    j.open()
    row = j.write(r.event)
    j.close()
    written = next((tmp_path / "journal").glob("*.jsonl")).read_bytes().splitlines()[-1]
    assert written == pipeline.journal_line(row)
    assert json.loads(written)["decision"] == "allowed"


def test_the_load_is_allowed_by_the_bundled_and_the_generated_rules(bundled: pipeline.RuleSet, tmp_path: Path) -> None:
    big = pipeline.load_rules(make_rules_dir(tmp_path, 500))
    assert len(big.rules) == len(bundled.rules) + 500
    testflows.check_allowed({"bundled": bundled, "bundled + 500": big}, 8080)
    assert len(pipeline.parse_rules(generated_rules(10)).rules) == 10


def test_the_journal_benchmark_writes_allowed_request_and_response_events() -> None:
    req, resp = sample_events()
    assert (req["stage"], req["decision"], resp["stage"], resp["outcome"]) == ("request", "allowed", "response", "forwarded")


def test_the_rss_trend_judges_the_floors_of_the_last_third() -> None:
    flat = [(t / 2, 100.0 + (5.0 if t % 4 == 0 else 0.0)) for t in range(180)]  # spikes every 2 s, flat floor
    rise, means, n = rss_trend(flat, 90.0)
    assert rise == pytest.approx(0.0) and n == 3 and means == "100.0 / 100.0 / 100.0"
    growing = [(t / 2, 100.0 + t / 2) for t in range(180)]
    rise, _, _ = rss_trend(growing, 90.0)
    assert rise == pytest.approx(30.0, abs=1.0)
