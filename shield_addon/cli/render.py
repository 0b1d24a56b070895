"""Output: a table for people on a terminal, one JSON object per line or CSV for programs.

The choice follows the flag, never a guess. Every value from the trail goes through
`record.safe_text`: agents and servers wrote much of it, and a terminal must show it, not obey it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shield_addon import record
from shield_addon.core.model import REFUSED, Decision


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, title: str | None = None,
           optional: Sequence[str] = (), middle: str | None = None, fold: str | None = None) -> None:
    """`optional`: table columns that may be left out, first ones first, when all are empty
    or the terminal is too narrow; `middle`: the column to shorten in the middle before that;
    `fold`: a column of prose that may wrap onto more lines."""
    if fmt == "json":
        for r in rows:
            print(json.dumps(dict(zip(columns, r)), default=json_default, ensure_ascii=False))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(columns)
        for r in rows:
            w.writerow([csv_cell(v) for v in r])
    else:
        print_table(columns, rows, title, optional, middle, fold)


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None,
                optional: Sequence[str] = (), middle: str | None = None, fold: str | None = None) -> None:
    from rich.console import Console

    console = Console()
    cells = [[record.safe_text(plain(v)) if v is not None else "" for v in r] for r in rows]
    dcol = columns.index("decision") if "decision" in columns else -1
    styles = [DECISION_STYLE.get(r[dcol], "") if dcol >= 0 else "" for r in rows]
    layout = fit(columns, cells, console.width, optional, middle, fold)
    if layout is None:
        # Too wide whatever is left out: one block per row, like psql's `\x auto`,
        # instead of a table folded to a few letters per line.
        print_records(console, columns, cells, styles, title)
    else:
        keep, shown, hidden = layout
        console.print(_table(columns, keep, shown, styles, title, fold))
        sys.stdout.flush()  # the note goes to stderr, after the table
        if hidden:
            print(f"(too narrow for: {', '.join(hidden)}; widen the terminal, or use --json)", file=sys.stderr)
    if not rows:
        print("(no rows)", file=sys.stderr)


def fit(columns: Sequence[str], cells: Sequence[Sequence[str]], width: int, optional: Sequence[str],
        middle: str | None, fold: str | None = None) -> tuple[list[str], Sequence[Sequence[str]], list[str]] | None:
    """(columns shown, their cells, columns left out) for a table at most `width` wide, or
    None when no choice fits. Empty optional columns go first, silently; then the middle
    column is shortened down to MIDDLE_MIN, and if that is not enough the next optional
    column goes. The `fold` column counts as FOLD_MIN wide: it wraps. Widths are counted
    once, not measured by rendering: a timeline can have many thousand rows."""
    from rich.cells import cell_len

    natural = {c: max([cell_len(c), *(cell_len(r[i]) for r in cells)]) for i, c in enumerate(columns)}
    if fold in natural:
        natural[fold] = max(cell_len(fold), min(natural[fold], FOLD_MIN))
    keep = [c for i, c in enumerate(columns) if c not in optional or not cells or any(r[i] for r in cells)]
    hidden: list[str] = []

    def excess(middle_width: int | None = None) -> int:
        widths = [natural[c] if c != middle or middle_width is None else max(cell_len(c), min(natural[c], middle_width))
                  for c in keep]
        return sum(widths) + COLUMN_GAP * (len(widths) - 1) - width

    while (over := excess()) > 0:
        if middle in keep:
            short = max(MIDDLE_MIN, natural[middle] - over)
            if excess(short) <= 0:
                m = columns.index(middle)
                return keep, [[shorten(v, short) if j == m else v for j, v in enumerate(r)] for r in cells], hidden
        gone = next((c for c in optional if c in keep), None)
        if gone is None:
            return None
        keep.remove(gone)
        hidden.append(gone)
    return keep, cells, hidden


def print_records(console: Any, columns: Sequence[str], cells: Sequence[Sequence[str]], styles: Sequence[str],
                  title: str | None) -> None:
    from rich.table import Table
    from rich.text import Text

    if title:
        console.print(Text(title, style="bold"))
    for n, (texts, style) in enumerate(zip(cells, styles), 1):
        console.print(Text(f"-[ row {n} ]", style="dim"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")  # a long value continues under itself, not under the names
        for c, v in zip(columns, texts):
            grid.add_row(Text(c), Text(v, style=style))
        console.print(grid)


MIDDLE_MIN = 24  # below this a shortened request says too little to be worth its column
FOLD_MIN = 24  # prose narrower than this reads badly folded
COLUMN_GAP = 2  # what _table puts between two columns


def _table(columns: Sequence[str], keep: Sequence[str], cells: Sequence[Sequence[str]], styles: Sequence[str],
           title: str | None, fold: str | None = None) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # No vertical rules and one space between columns: an 80-column terminal is common.
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for c in keep:
        table.add_column(c, overflow="fold", no_wrap=c != fold)  # fit() made the others fit
    at = [columns.index(c) for c in keep]
    for texts, style in zip(cells, styles):
        # Text(), never markup: a path like "[red]" or an ESC byte is shown, not obeyed.
        table.add_row(*(Text(texts[i]) for i in at), style=style)
    return table


DECISION_STYLE: dict[str, str] = {
    Decision.APPROVED: "green", Decision.ALLOWED: "", **dict.fromkeys(REFUSED, "red"), Decision.KILLED: "magenta",
    Decision.TIMED_OUT: "yellow", Decision.ABANDONED: "dim",
}


# What makes a spreadsheet read a cell as a formula (OWASP's list for CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(v: Any) -> str:
    """CSV ends up in terminals and spreadsheets too: no raw control characters, and text that
    would start a formula (`=HYPERLINK(...)` as an agent's name or a header) gets a leading `'`,
    shown and never evaluated. Numbers and times stay as they are; --json gives every value exactly."""
    if v is None:
        return ""
    text = record.safe_text(plain(v), newlines=True)
    return "'" + text if isinstance(v, str) and text.startswith(FORMULA_START) else text


def plain(v: Any) -> str:
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def json_default(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def fmt_of(args: argparse.Namespace) -> str:
    return "json" if getattr(args, "json", False) else "csv" if getattr(args, "csv", False) else "table"


def shorten(text: str, width: int) -> str:
    """Cut the middle, where long paths repeat themselves, and keep both ends."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[-(keep // 2):]


def cell(v: Any, empty: str = "") -> str:
    """One value as terminal-safe text."""
    return record.safe_text(plain(v)) if v is not None else empty
