"""Where the CPU goes: bare and shield, http, each sampled by py-spy during its measured window.
py-spy's share of samples within a thread, times the thread's CPU (psutil), gives µs per request:
per shield hook, mitmproxy, asyncio, the journal writer, ingest."""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from scripts.bench.launch import Launcher
from scripts.bench.load import LoadSpec, Upstream
from scripts.bench.runs import Proxy, Run, fmt_run, label_threads, measure, name_threads, start_proxy
from scripts.harness import stop_process
from shield_addon import journal


def out(*a: Any) -> None:
    print(*a, flush=True)


def profile_run(launcher: Launcher, args: argparse.Namespace, work: Path, up: Upstream, py_spy: str, rules_dir: Path
                ) -> dict[str, Any]:
    out("\n== Profile: bare and shield (bundled rules), http, sampled by py-spy (non-blocking, 250 Hz) ==")
    prof = {}
    for kind in ("bare", "shield"):
        p = start_proxy(launcher, kind, work, up, rules_dir if kind == "shield" else None, args.shield_arg, f"profile-{kind}")
        name_threads(p, py_spy)
        raw = work / f"py-spy-{kind}.txt"
        spy: list[subprocess.Popen] = []

        def on_start(p: Proxy = p, raw: Path = raw, spy: list = spy) -> None:
            spy.append(subprocess.Popen([py_spy, "record", "--pid", str(p.pid), "--rate", "250", "--duration", "600",
                                         "--format", "raw", "--nonblocking", "--threads", "--full-filenames", "-o", str(raw)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def on_end(spy: list = spy) -> None:
            spy[0].send_signal(signal.SIGINT)  # py-spy writes its file and exits

        r = measure(kind, "http+py-spy", 0, LoadSpec(tls=False), up, p, args, args.duration, on_start, on_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy[0].wait(60)
        name_threads(p, py_spy)
        label_threads(r, p)
        stop_process(p.proc)
        out(fmt_run(r) + "   (py-spy's own CPU shows as background)")
        if not raw.exists():
            out("  !! py-spy wrote nothing (ptrace not permitted?)")
            return {}
        prof[kind] = (r, parse_profile(raw))
    report_profile(prof)
    return {k: {"cpu_ms": r.cpu_ms, "threads_ms": r.threads_ms} for k, (r, _) in prof.items()}


_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>.*):(?P<line>\d+)\)$")
Frame = tuple[str, str, int]


def parse_profile(raw: Path) -> dict[str, list[tuple[list[Frame], int]]]:
    """py-spy raw output -> {thread name: [(frames outermost first, samples)]}."""
    res: dict[str, list[tuple[list[Frame], int]]] = collections.defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        thread = re.sub(r"_\d+$", "_*", re.sub(r"^thread \(\d+\):?\s*", "", frames[0]).strip() or "?")
        parsed = [(m.group("fn"), m.group("file"), int(m.group("line"))) if (m := _FRAME.match(fr)) else (fr, "", 0)
                  for fr in frames[1:]]
        res[thread].append(([f for f in parsed if "/shield_addon/cli/" not in f[1]], int(count)))
    return res


def _main_category(frames: list[Frame]) -> str:
    for fn, f, _ in frames:
        if "/shield_addon/addons/" in f and "." in fn:
            return f"shield hook {fn}()"
    f = frames[-1][1] if frames else ""
    if "/mitmproxy/" in f:
        if f.endswith(("addonmanager.py", "hooks.py")):
            return "mitmproxy: hook dispatch (addonmanager)"
        if "/mitmproxy/addons/" in f:
            return "mitmproxy: built-in addons"
        if "/mitmproxy/proxy/" in f or "/mitmproxy/net/" in f:
            return "mitmproxy: proxy layers (HTTP/1, TLS, server)"
        return "mitmproxy: other (flows, headers, certs, options)"
    if f.endswith("/ssl.py") or "sslproto" in f:
        return "TLS (ssl module)"
    if any(x in f for x in ("/asyncio/", "selectors.py", "socket.py")):
        return "asyncio event loop and socket I/O"
    return "other (stdlib, GC, contextlib, ...)"


def _journal_category(frames: list[Frame], fsync_line: int) -> str:
    names = [(fn, Path(f).name, ln) for fn, f, ln in frames]
    fn, file, ln = names[-1] if names else ("", "", 0)
    if file == "journal.py" and fn == "Journal._commit" and ln == fsync_line:
        return "fdatasync (mostly waiting on the disk: not CPU)"
    if any(n[0] in ("seal", "row_hash", "canonical", "_clean", "_text") for n in names):
        return "record.seal: canonical form + SHA-256"
    if any(n[0] == "journal_line" for n in names):
        return "journal_line (orjson) of the rows"
    if any(n[0] == "Checkpointer.on_commit" or n[1] == "checkpoints.py" for n in names):
        return "checkpoint signing"
    if any(n[0].startswith("Future.set_result") or "call_soon_threadsafe" in n[0] or n[1] == "_base.py" for n in names):
        return "waking the flows (futures, call_soon_threadsafe)"
    if fn == "Journal._write_all" or "write" in fn:
        return "os.write"
    if fn == "Journal._run":
        return "Journal._run: queue.get + taking the GIL back (mostly waiting)"
    return f"other ({file}:{fn})"


def _line_text(file: str, line: int) -> str:
    try:
        return Path(file).read_text().splitlines()[line - 1].strip()[:70]
    except (OSError, IndexError):
        return "?"


Profile = dict[str, list[tuple[list[Frame], int]]]


def report_profile(prof: dict[str, tuple[Run, Profile]]) -> None:
    if "shield" not in prof:
        return
    report_main(prof)
    r, threads = prof["shield"]
    report_hooks(r, threads)
    fsync_line = next((i for i, ln in enumerate(Path(journal.__file__).read_text().splitlines(), 1) if "os.fdatasync(" in ln), 0)
    for tname, label in (("shield-journal", "journal writer thread"), ("shield-ingest", "ingest thread")):
        report_thread(r, threads.get(tname, []), tname, label, fsync_line)


def main_thread(r: Run, threads: Profile) -> tuple[list[tuple[list[Frame], int]], int, float]:
    """The main thread's samples, their count, and its CPU per request in µs."""
    main = threads.get("MainThread", [])
    return main, sum(c for _, c in main) or 1, r.threads_ms.get("main (event loop)", 0.0) * 1000


def report_main(prof: dict[str, tuple[Run, Profile]]) -> None:
    per_kind: dict[str, dict[str, float]] = {}
    for kind, (r, threads) in prof.items():
        main, n, main_us = main_thread(r, threads)
        cats: collections.Counter[str] = collections.Counter()
        for frames, c in main:
            cats[_main_category(frames)] += c
        per_kind[kind] = {k: main_us * v / n for k, v in cats.items()}
    out("  main thread (the event loop: what bounds throughput), µs of CPU per request "
        "(its CPU split by py-spy's share of samples):")
    keys = sorted(set(per_kind.get("bare", {})) | set(per_kind["shield"]), key=lambda k: -per_kind["shield"].get(k, 0.0))
    out(f"    {'':52} {'bare':>8} {'shield':>8} {'added':>8}")
    for k in keys:
        b, sh = per_kind.get("bare", {}).get(k, 0.0), per_kind["shield"].get(k, 0.0)
        out(f"    {k:52} {b:8.0f} {sh:8.0f} {sh - b:+8.0f}")
    tb, ts = sum(per_kind.get("bare", {}).values()), sum(per_kind["shield"].values())
    out(f"    {'total main thread':52} {tb:8.0f} {ts:8.0f} {ts - tb:+8.0f}")


def report_hooks(r: Run, threads: Profile) -> None:
    main, n, main_us = main_thread(r, threads)
    funcs: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for frames, c in main:
        if not any("/shield_addon/addons/" in f for _, f, _ in frames):
            continue
        for key in {f"{Path(f).name}:{fn}" for fn, f, _ in frames if "/shield_addon/" in f}:
            funcs[key] += c
        fn, f, _ln = frames[-1]
        leaf[f"{Path(f).name}:{fn}"] += c
    out("  shield's hooks on the main thread, by function (inclusive), µs per request:")
    for k, v in funcs.most_common(22):
        out(f"    {k:60} {main_us * v / n:7.0f}")
    out("  ... and by innermost frame (where that CPU goes; C code is charged to its Python caller):")
    for k, v in leaf.most_common(16):
        out(f"    {k:60} {main_us * v / n:7.0f}")


def report_thread(r: Run, samples: list[tuple[list[Frame], int]], tname: str, label: str, fsync_line: int) -> None:
    n = sum(c for _, c in samples)
    cpu_us = r.threads_ms.get(tname, 0.0) * 1000
    if not n:
        return
    cats: collections.Counter[str] = collections.Counter()
    for frames, c in samples:
        if tname == "shield-journal":
            cats[_journal_category(frames, fsync_line)] += c
        else:
            fr = next((x for x in reversed(frames) if "/shield_addon/" in x[1]), frames[-1] if frames else ("?", "", 0))
            cats[f"{Path(fr[1]).name}:{fr[2]} {_line_text(fr[1], fr[2])}"] += c
    waiting = ("fdatasync", "Journal._run")
    wait = sum(v for k, v in cats.items() if k.startswith(waiting))
    busy = (n - wait) or 1
    out(f"  {label}: {cpu_us:.0f} µs CPU per request; py-spy samples: {n} "
        f"({100 * wait / n:.0f} % of them waiting in fdatasync or for work/the GIL: not counted as CPU below)")
    for k, v in cats.most_common(10):
        share = "" if k.startswith(waiting) else f"{cpu_us * v / busy:7.0f}"
        out(f"    {k:84} {100 * v / n:5.1f} % of samples {share}")
