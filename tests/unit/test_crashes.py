"""Requests mitmproxy refuses before they are flows: known by its log line, recorded redacted."""

from __future__ import annotations

from shield_addon import record
from shield_addon.addons.crashes import refused_event, unparsed_head


def test_a_request_head_mitmproxy_could_not_read_is_told_apart_from_its_other_lines() -> None:
    assert unparsed_head("127.0.0.1:5000: Bad HTTP request line: b'GET http://::1/ HTTP/1.1'") == \
        "Bad HTTP request line: b'GET http://::1/ HTTP/1.1'"
    assert unparsed_head("[::1]:5000: Invalid header line: b'X\\x00: y'") is not None
    for other in ("127.0.0.1:5000: client connect", "127.0.0.1:5000: server connect example.com:443",
                  "Bad HTTP request line: no client in front"):
        assert unparsed_head(other) is None


def test_the_refused_request_line_is_recorded_redacted_and_cut_under_its_address() -> None:
    redactor = record.Redactor(b"k" * 32)
    line = "Bad HTTP request line: b'GET http://x.example/a?token=sk-live-0123456789abcdefghijklmnop " + "a" * 9000
    ev = refused_event(("10.1.2.3", 5000), line, redactor)
    assert (ev["flow_id"], ev["agent"], ev["client_ip"], ev["outcome"]) == (None, "anonymous@10.1.2.3", "10.1.2.3",
                                                                           "refused")
    assert "sk-live-0123456789" not in ev["error"] and "[redacted:" in ev["error"]
    assert len(ev["error"].encode()) < record.VALUE_LIMIT + 200
