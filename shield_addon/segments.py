"""The journal's files as a reader sees them: which segments, the seq of a line, where in a
segment the rows after a seq begin. No writer here: the readers import it without the
journal's threads and asyncio.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SEGMENT_RE = re.compile(r"^seg-(\d{12})\.jsonl$")
SCAN_BELOW = 64 << 10  # bytes: a bisection stops here and reads the rest line by line


def segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment, in order."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), directory / p) for p in os.listdir(directory) if (m := SEGMENT_RE.match(p))]
    return sorted(found)


def tail_files(journal_dir: Path, after_seq: int) -> list[Path]:
    """The segments that may hold rows after `after_seq`."""
    segs = segments(journal_dir)
    return [p for i, (first, p) in enumerate(segs) if i + 1 == len(segs) or segs[i + 1][0] > after_seq + 1]


def line_seq(line: bytes) -> int | None:
    """The seq of a journal line, which the writer always puts first."""
    if line.startswith(b'{"seq":'):
        end = line.find(b",", 7)
        if end > 7 and line[7:end].isdigit():
            return int(line[7:end])
    return None


def offset_after(path: Path, seq: int, scan_below: int = SCAN_BELOW) -> int:
    """Where the first row with a seq above `seq` starts in a segment (its size if none
    does). Rows are in seq order, so a bisection finds it in a few reads where parsing a
    mostly ingested 64 MiB segment took a reader hundreds of ms."""
    with open(path, "rb") as f:
        lo, hi = 0, f.seek(0, os.SEEK_END)  # the answer is a line start in [lo, hi]
        while hi - lo > scan_below:
            mid = (lo + hi) // 2
            f.seek(mid)
            f.readline()  # the rest of the line mid fell in
            start = f.tell()
            found = line_seq(f.readline()) if start < hi else None
            if found is None:  # no whole row between mid and hi: the answer is before
                hi = mid
            elif found <= seq:
                lo = f.tell()
            else:
                hi = start
        f.seek(lo)
        pos = lo
        for line in f:
            found = line_seq(line)
            if found is not None and found > seq or not line.endswith(b"\n"):
                return pos
            pos += len(line)
        return pos
