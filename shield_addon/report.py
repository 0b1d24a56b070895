"""`shield report`: one self-contained HTML page for an incident review.

Much of what the page shows came from agents or the network (paths, hosts, agent names,
rule messages, reviewer comments), so every value goes through `record.safe_text`
(control characters and bidi overrides become visible `\\xNN`) and then `html.escape`.
The page loads nothing: inline CSS, inline SVG, no script, no link, and a
Content-Security-Policy that forbids every fetch, so it renders offline and a hostile
value is shown as text, never obeyed.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shield_addon import __version__, record
from shield_addon.core.model import Decision

if TYPE_CHECKING:
    from shield_addon.reader import FlowSet

MAX_ROWS = 5000  # timeline rows on the page; the counts and the chart always cover every flow
MAX_GROUPS = 25  # rows of each "by agent" / "by rule" table
MAX_BARS = 60
# Bucket sizes for the chart, smallest first: the first that needs at most MAX_BARS bars wins.
BUCKETS: tuple[tuple[int, str], ...] = (
    (1, "second"), (5, "5 seconds"), (15, "15 seconds"), (30, "30 seconds"),
    (60, "minute"), (300, "5 minutes"), (900, "15 minutes"), (1800, "30 minutes"),
    (3600, "hour"), (3 * 3600, "3 hours"), (6 * 3600, "6 hours"), (12 * 3600, "12 hours"),
    (86400, "day"), (7 * 86400, "week"),
)

# Class names come from this table only, never from the data.
DECISION_CLASS = {str(d): f"d-{d}" for d in Decision} | {"pending": "d-pending"}
FLOW_COLOUR, HOLD_COLOUR = "#4e79a7", "#f28e2b"

CSS = """
:root { color-scheme: light; }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2330; background: #fff; }
header { background: #1d2330; color: #fff; padding: 16px 24px; }
h1 { margin: 0 0 8px; font-size: 20px; }
h2 { font-size: 15px; margin: 24px 0 8px; border-bottom: 1px solid #d8dce5; padding-bottom: 4px; }
h3 { font-size: 13px; margin: 0 0 4px; }
main { padding: 0 24px 24px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 12px; }
dl.meta dt { color: #aab3c5; } dl.meta dd { margin: 0; word-break: break-all; }
ul.counts { list-style: none; display: flex; flex-wrap: wrap; gap: 8px; margin: 0; padding: 0; }
ul.counts li { background: #2c3447; border-radius: 6px; padding: 6px 12px; min-width: 90px; }
ul.counts b { display: block; font-size: 20px; }
.grid { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 2px 8px; border-bottom: 1px solid #eceef3; vertical-align: top; }
th { background: #f3f5f9; position: sticky; top: 0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.timeline td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
table.timeline td.req { min-width: 24em; max-width: 48em; word-break: break-all; }
td.w { max-width: 24em; overflow-wrap: break-word; }
td.t { white-space: nowrap; }
td.c { max-width: 36em; overflow-wrap: break-word; }
.d-approved { color: #1a7f37; font-weight: 600; }
.d-denied, .d-blocked { color: #c62828; font-weight: 600; }
.d-killed { color: #a626a4; font-weight: 600; }
.d-timed_out { color: #b26a00; font-weight: 600; }
.d-abandoned { color: #6b7280; }
.d-pending { color: #e0660b; font-weight: 600; }
p.note { background: #fff6e0; border: 1px solid #f1d08a; padding: 6px 10px; border-radius: 4px; }
.muted { color: #6b7280; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
footer { color: #6b7280; padding: 12px 24px; border-top: 1px solid #d8dce5; }
"""

# Nothing may be fetched, nothing may run: a second line of defence behind the escaping.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def esc(value: Any) -> str:
    """Text from the trail, safe as HTML text or as a quoted attribute value."""
    return html.escape(record.safe_text("" if value is None else value), quote=True)


def render_report(
    flows: FlowSet,
    title: str = "agent-shield incident report",
    generated_at: datetime | None = None,
    filter_text: str | None = None,
    max_rows: int = MAX_ROWS,
) -> str:
    """The flows of a filtered timeline (`Reader.flows(filters)`) as one self-contained HTML
    page; `filter_text` says the same filter in words for the header."""
    total, held, approved, refused, lapsed, pending, first, last = flows.summary()
    by_decision = flows.by_decision()
    by_agent = flows.by("agent", MAX_GROUPS)
    by_rule = flows.by("rule", MAX_GROUPS)
    chart = '<p class="muted">No flows match.</p>'
    if first is not None:
        step, unit = choose_bucket(first, last)
        chart = render_chart(flows.per_bucket(step), step, unit)
    rows = flows.page(max_rows)
    holds = flows.holds(max_rows)

    generated = generated_at or datetime.now(UTC)
    if generated.tzinfo is not None:
        generated = generated.astimezone(UTC).replace(tzinfo=None)
    span = "no flows match" if first is None else f"{_time(first)} — {_time(last)} UTC ({_duration(last - first)})"
    counts = [(total, "flows"), (held, "held"), (approved, "approved"), (refused, "denied / blocked"),
              (lapsed, "killed / timed out / abandoned")]
    if pending:
        counts.append((pending, "held, no decision yet"))

    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><dl class=\"meta\">",
        f"<dt>Filter</dt><dd>{esc(filter_text or 'all flows')}</dd>",
        f"<dt>Time range</dt><dd>{esc(span)}</dd>",
        f"<dt>Generated</dt><dd>{esc(_time(generated, ms=False))} UTC</dd></dl>",
        '<ul class="counts">' + "".join(f"<li><b>{n:,}</b>{esc(label)}</li>" for n, label in counts) + "</ul></header><main>",
        '<h2>Counts</h2><div class="grid">',
        _table("By decision", ["decision", "flows", "share"],
               [[_decision_cell(k), _num(n), _num(f"{100 * n / total:.1f}%")] for k, n in by_decision]),
        _group_table("By agent", "agent", by_agent),
        _group_table("By rule", "rule", by_rule, none="(no rule matched)"),
        "</div>",
        f"<h2>Flows and holds over time</h2>{chart}",
        f"<h2>Held flows and their decisions ({held:,})</h2>",
        _holds_table(holds, held, max_rows),
        f"<h2>Timeline ({total:,} flows)</h2>",
        _timeline_table(rows, total),
        "</main><footer>",
        esc(f"agent-shield {__version__}: a view of the audit trail, ordered by each flow's first event; "
            "times are UTC. `shield verify` proves the trail whole; `shield show FLOW` has every event of a flow."),
        "</footer></body></html>\n",
    ]
    return "\n".join(parts)



# ---------------------------------------------------------------- chart


def choose_bucket(first: datetime, last: datetime) -> tuple[int, str]:
    """The smallest bucket size (seconds, name) that draws [first, last] in at most MAX_BARS bars."""
    a, b = _epoch(first), _epoch(last)
    for step, unit in BUCKETS:
        if math.floor(b / step) - math.floor(a / step) + 1 <= MAX_BARS:
            return step, unit
    return BUCKETS[-1]


def render_chart(bars: Iterable[tuple[int, int, int]], step: int, unit: str) -> str:
    """Inline SVG: one bar per bucket for flows, a narrower one inside it for holds.
    `bars` holds (bucket number = floor(epoch / step), flows, holds); empty buckets are drawn as gaps."""
    counts = {b: (n, h) for b, n, h in bars}
    if not counts:
        return '<p class="muted">No flows match.</p>'
    lo, hi = min(counts), max(counts)
    width, height, left, right, top, bottom = 960, 260, 56, 16, 28, 52
    pw, ph = width - left - right, height - top - bottom
    slots = hi - lo + 1
    slot = pw / slots
    tick, ymax = _nice_axis(max(n for n, _ in counts.values()))
    fmt = "%Y-%m-%d" if step >= 86400 else "%H:%M:%S" if step < 60 else \
        "%H:%M" if _bucket_start(lo, step).date() == _bucket_start(hi, step).date() else "%m-%d %H:%M"
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="flows and holds per {esc(unit)}">']
    for v in range(0, ymax + 1, tick):  # y axis: grid lines and counts
        y = top + ph - ph * v / ymax
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ee"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:,}</text>')
    every = max(1, math.ceil(slots / 8))
    for i in range(slots):
        b = lo + i
        x = left + i * slot
        start = _bucket_start(b, step)
        n, h = counts.get(b, (0, 0))
        tip = f"{_time(start, ms=False)} UTC, {unit}: {n:,} flows, {h:,} held"
        if n:
            fh = ph * n / ymax
            out.append(f'<rect class="bar flows" x="{x + slot * 0.1:.1f}" y="{top + ph - fh:.1f}" width="{max(slot * 0.8, 1):.1f}" '
                       f'height="{fh:.1f}" fill="{FLOW_COLOUR}"><title>{esc(tip)}</title></rect>')
        if h:
            hh = ph * h / ymax
            out.append(f'<rect class="bar holds" x="{x + slot * 0.3:.1f}" y="{top + ph - hh:.1f}" width="{max(slot * 0.4, 1):.1f}" '
                       f'height="{hh:.1f}" fill="{HOLD_COLOUR}"><title>{esc(tip)}</title></rect>')
        if i % every == 0:
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#1d2330"/>'
                       f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{esc(start.strftime(fmt))}</text>')
    out += [
        f'<line x1="{left}" x2="{width - right}" y1="{top + ph}" y2="{top + ph}" stroke="#1d2330"/>',
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="#1d2330"/>',
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">time (UTC), one bar per {esc(unit)}</text>',
        f'<text x="14" y="{top + ph / 2:.1f}" text-anchor="middle" transform="rotate(-90 14 {top + ph / 2:.1f})">flows</text>',
        f'<rect x="{width - right - 150}" y="6" width="10" height="10" fill="{FLOW_COLOUR}"/>'
        f'<text x="{width - right - 136}" y="15">flows</text>',
        f'<rect x="{width - right - 80}" y="6" width="10" height="10" fill="{HOLD_COLOUR}"/>'
        f'<text x="{width - right - 66}" y="15">holds</text>',
        "</svg>",
    ]
    return "".join(out)


def _nice_axis(peak: int) -> tuple[int, int]:
    """(tick step, axis top): a 1/2/5 x 10^k step, at most 5 ticks, top >= peak."""
    rough = max(peak, 1) / 4
    mag = 10 ** math.floor(math.log10(rough)) if rough >= 1 else 1
    tick = next(m * mag for m in (1, 2, 5, 10) if m * mag >= rough)
    tick = max(int(tick), 1)
    return tick, max(tick, math.ceil(max(peak, 1) / tick) * tick)


def _epoch(t: datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _bucket_start(bucket: int, step: int) -> datetime:
    return datetime.fromtimestamp(bucket * step, UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- tables


def _table(caption: str, head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "", note: str = "") -> str:
    """`rows` are cells already rendered: `<td>` elements."""
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows) or \
        f'<tr><td colspan="{len(head)}" class="muted">(none)</td></tr>'
    return (f"<div><h3>{esc(caption)}</h3><table class=\"{cls}\"><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in head) + f"</tr></thead><tbody>{body}</tbody></table>{note}</div>")


def _group_table(caption: str, name: str, rows: Sequence[tuple[Any, ...]], none: str = "(none)") -> str:
    more = rows[0][-1] - len(rows) if rows else 0
    note = f'<p class="muted">… and {more:,} more</p>' if more > 0 else ""
    cells = [[_td(key if key is not None else none, "w"), *(_num(v) for v in counts)] for key, *counts, _ in rows]
    return _table(caption, [name, "flows", "held", "approved", "denied / blocked", "killed / lapsed"], cells, note=note)


def _holds_table(rows: Sequence[tuple[Any, ...]], held: int, cap: int) -> str:
    out = []
    for held_at, flow_id, agent, rule_id, severity, decision, reviewer, wait_s, edited, comment in rows:
        out.append([_td(_time(held_at), "t"), _flow_cell(flow_id), _td(agent, "w"), _td(rule_id, "w"), _td(severity),
                    _decision_cell(decision or "pending"), _td(reviewer), _num(f"{wait_s:.1f}" if wait_s is not None else ""),
                    _td("edited" if edited else ""), _td(comment, "c")])
    note = _cut_note(len(rows), held, cap) if len(rows) == cap and held > cap else ""
    return _table("", ["held at (UTC)", "flow", "agent", "rule", "severity", "decision", "reviewer", "wait s", "",
                       "reviewer comment"], out, cls="timeline", note=note)


def _timeline_table(rows: Sequence[tuple[Any, ...]], total: int) -> str:
    out = []
    for (ts, flow_id, agent, method, host, path, service, operation, namespace, resource_name, tables,
         rule_id, verdict, decision, reviewer, status_code, outcome, duration_ms) in rows:
        what = " ".join(str(x) for x in (service, operation) if x)
        target = "/".join(str(x) for x in (namespace, resource_name) if x) or ",".join(tables or [])
        request = f"{method or ''} {host or ''}{path or ''}"
        out.append([
            _td(_time(ts), "t"), _flow_cell(flow_id), _td(agent, "w"), _td(_shorten(request, 300), "req", title=request),
            _td(f"{what} {target}".strip(), "w"), _td(rule_id, "w"),
            _decision_cell(decision or ("pending" if verdict == "hold" else "")), _td(reviewer),
            _td(status_code if status_code is not None else outcome),
            _num(f"{duration_ms:,.0f}" if duration_ms is not None else ""),
        ])
    note = _cut_note(len(rows), total, len(rows)) if len(rows) < total else ""
    table = _table("", ["time (UTC)", "flow", "agent", "request", "action", "rule", "decision", "reviewer", "status", "ms"],
                   out, cls="timeline")
    return note + table


def _cut_note(shown: int, total: int, cap: int) -> str:
    return (f'<p class="note">Showing the first {min(shown, cap):,} of {total:,} rows, in order. The counts and the chart above '
            "cover every flow; narrow the filter (--since/--until, --agent, --decision …) to see the rest here.</p>")


def _td(value: Any, cls: str = "", title: str | None = None) -> str:
    attrs = (f' class="{cls}"' if cls else "") + (f' title="{esc(_shorten(title, 2000))}"' if title and len(title) > 300 else "")
    return f"<td{attrs}>{esc(value)}</td>"


def _num(value: Any) -> str:
    return f'<td class="n">{esc(f"{value:,}" if isinstance(value, int) else value)}</td>'


def _flow_cell(flow_id: str | None) -> str:
    return f'<td class="t" title="{esc(flow_id)}">{esc((flow_id or "")[:8])}</td>'


def _decision_cell(decision: str | None) -> str:
    cls = DECISION_CLASS.get(decision or "")
    return f'<td class="d {cls}">{esc(decision)}</td>' if cls else _td(decision)


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2):]


def _time(t: datetime | None, ms: bool = True) -> str:
    if t is None:
        return ""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if ms else t.strftime("%Y-%m-%d %H:%M:%S")


def _duration(d: Any) -> str:
    s = d.total_seconds()
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
