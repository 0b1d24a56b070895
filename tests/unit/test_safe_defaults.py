"""`shield run`'s safe defaults, decided before mitmproxy starts, and `shield ca`."""

from __future__ import annotations

from pathlib import Path

import pytest

from shield_addon import paths
from shield_addon.cli import main
from shield_addon.cli.proxy import listen_defaults, rules_problem


@pytest.mark.parametrize("args, expected", [
    ([], None),
    (["--listen-host", "0.0.0.0"], "0.0.0.0"),
    (["--listen-host=::"], "::"),
    (["--set", "listen_host=10.1.2.3"], "10.1.2.3"),
    (["--set", "listen_host=", "--listen-host", "127.0.0.1"], "127.0.0.1"),
])
def test_the_listen_host_is_found_however_it_was_given(args: list[str], expected: str | None) -> None:
    assert paths.listen_host_option(args) == expected


def test_without_credentials_the_proxy_listens_on_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert listen_defaults(None, authenticated=False) == ["--listen-host", "127.0.0.1"]
    assert listen_defaults(None, authenticated=True) == []
    assert capsys.readouterr().err == ""


def test_a_wider_listen_address_without_credentials_is_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    assert listen_defaults("0.0.0.0", authenticated=False) == []
    assert "without agent credentials" in capsys.readouterr().err
    assert listen_defaults("0.0.0.0", authenticated=True) == []
    assert capsys.readouterr().err == ""


def test_a_bad_rule_file_is_one_line_naming_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - id: a\n    match: {methd: DELETE}\n    action: hold\n")
    problem = rules_problem(["--set", f"shield_rules={bad}"])
    assert problem is not None and f"{bad}:4:13" in problem and "\n" not in problem
    assert rules_problem([]) is None  # the bundled rules load


def test_shield_ca_creates_and_prints_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "--confdir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "mitmproxy-ca-cert.pem")
    assert main(["ca", "--confdir", str(tmp_path), "--pem"]) == 0
    assert capsys.readouterr().out.startswith("-----BEGIN CERTIFICATE-----")
