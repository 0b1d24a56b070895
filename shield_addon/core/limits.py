"""Limits: how many requests each `limit:` rule counted per key in a sliding window. Pure.

The memory behind the `limit:` match key. A request counts for a rule when it matched every
other key of that rule, whatever became of it (allowed, held, denied): an agent that keeps
trying stays over the limit until it pauses. The window slides: a request at time t sees
the requests counted in (t - per, t], to the millisecond the lines keep. Only the newest
`count` times of a key are kept (all a decision needs: is the count-th newest inside the
window?), so memory is `count` floats per key; past `cap` keys the least recently used is
forgotten (its count starts again from zero: forgetting errs on the lenient side, which is
why the cap is large). Its lines are what the proxy appends to `limits.jsonl` in the audit
directory and reads back at start.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping

from shield_addon.core.decoding import json_object

CAP = 100_000  # keys
FILE = "limits.jsonl"

Key = tuple[str, str]  # (rule id, the value of the rule's `by:` for the request)


class Counts:
    """The newest times counted per (rule, key), least recently used key first."""

    def __init__(self, cap: int = CAP) -> None:
        if cap < 1:
            raise ValueError("the limit memory needs room for at least one key")
        self.cap = cap
        self._times: OrderedDict[Key, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._times)

    def __iter__(self) -> Iterator[tuple[Key, float]]:
        for key, times in self._times.items():
            for t in times:
                yield key, t

    def count(self, rule: str, key: str, per: float, now: float) -> int:
        """Requests counted in (now - per, now]."""
        times = self._times.get((rule, key))
        if not times:
            return 0
        self._times.move_to_end((rule, key))
        return sum(1 for t in times if now - per < t <= now)

    def add(self, rule: str, key: str, now: float, keep: int) -> None:
        times = self._times.get((rule, key))
        if times is None or times.maxlen != keep:
            times = self._times[(rule, key)] = deque(times or (), maxlen=max(1, keep))
        self._times.move_to_end((rule, key))
        times.append(now)
        while len(self._times) > self.cap:
            self._times.popitem(last=False)

    def load(self, lines: Iterable[str], limits: Mapping[str, tuple[int, float]], now: float) -> int:
        """Count every valid line of a rule that still has a limit and whose time is still
        inside its window; the number of lines skipped as unreadable."""
        bad = 0
        for text in lines:
            entry = parse_line(text)
            if entry is None:
                bad += bool(text.strip())
                continue
            rule, key, ts = entry
            if rule in limits and now - limits[rule][1] < ts:
                self.add(rule, key, ts, limits[rule][0])
        return bad


def line(rule: str, key: str, ts: float) -> str:
    return json.dumps({"rule": rule, "key": key, "ts": round(ts, 3)}, sort_keys=True) + "\n"


def parse_line(text: str) -> tuple[str, str, float] | None:
    doc = json_object(text)
    if doc is None:
        return None
    rule, key, ts = doc.get("rule"), doc.get("key"), doc.get("ts")
    if not isinstance(rule, str) or not rule or not isinstance(key, str):
        return None
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return None
    return rule, key, float(ts)


def needs_compaction(lines_in_file: int, counts: Counts) -> bool:
    """The file only grows; rewrite it from memory once it holds twice what memory keeps."""
    return lines_in_file > 2 * max(1, sum(1 for _ in counts))


BY = ("agent", "host", "method", "service", "action", "action_type", "resource", "namespace")


def key_of(values: Iterable[str]) -> str:
    """The key of a request: its values of the rule's `by:` dimensions, unambiguous as JSON."""
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
