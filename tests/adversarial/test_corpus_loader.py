"""The corpus loader refuses what would make the corpus lie: duplicates, unknown classes,
a benign case that expects a stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts import corpus

GOOD = "- {id: a, class: mcp, why: w, request: {method: GET, url: 'https://x.example/'}, expect: %s}\n"


def _write(tmp_path: Path, kind: str, text: str) -> Path:
    (tmp_path / "dangerous").mkdir(exist_ok=True)
    (tmp_path / "benign").mkdir(exist_ok=True)
    (tmp_path / kind / "c.yaml").write_text(text)
    return tmp_path


def test_loads_a_good_case(tmp_path: Path) -> None:
    cases = corpus.load(_write(tmp_path, "dangerous", GOOD % "stop"))
    assert [(c.id, c.dangerous, c.owner) for c in cases] == [("a", True, "corpus")]


@pytest.mark.parametrize("text, error", [
    (GOOD % "stop" + GOOD % "stop", "already used"),
    (GOOD.replace("mcp", "nope") % "stop", "unknown class"),
    (GOOD % "allow", "dangerous case expects"),
    (GOOD % "maybe", "expect must be"),
    (GOOD.replace("why: w, ", "") % "stop", "missing keys"),
])
def test_refuses(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        corpus.load(_write(tmp_path, "dangerous", text))


def test_stats_count_misses_and_false_positives() -> None:
    req = {"url": "https://x.example/"}
    bad = corpus.Case("d1", "mcp", "", req, "stop", True, "f:1", "corpus")
    good = corpus.Case("d2", "mcp", "", req, "stop", True, "f:2", "corpus")
    fp = corpus.Case("b1", "mcp", "", req, "allow", False, "f:3", "corpus")
    [s] = corpus.stats([(bad, "allow"), (good, "deny"), (fp, "hold")])
    assert (s.dangerous, s.caught, s.missed, s.false_positives) == (2, 1, ("d1",), ("b1",))
    assert s.catch_rate == 0.5 and s.fp_rate == 1.0


def test_main_exits_1_on_a_miss_and_takes_another_rule_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = "- {id: d, class: routes, why: w, request: {method: DELETE, url: 'https://api.example.com/v1/x'}, expect: stop}\n"
    root = _write(tmp_path, "dangerous", case)
    assert corpus.main(["--corpus", str(root)]) == 0  # the bundled http-delete holds it
    rules_file = tmp_path / "empty.yaml"
    rules_file.write_text("version: 1\ndefault: allow\nrules: []\n")
    assert corpus.main(["--corpus", str(root), "--rules", str(rules_file)]) == 1
    assert "missed   routes: d" in capsys.readouterr().out
