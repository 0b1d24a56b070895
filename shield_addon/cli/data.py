"""`shield sql`, `export`, `report`, `verify` and `key`: each asks the reader, then says what it did."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shield_addon.cli.parser import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    audit_dir,
    confdir_of,
    filters_given,
    filters_of,
    fleet_of,
    reader_of,
)
from shield_addon.cli.render import fmt_of, render


def cmd_sql(args: argparse.Namespace) -> int:
    with reader_of(args) as reader:
        found = reader.query(args.query)
    render(found.columns, found.rows, fmt_of(args))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from shield_addon import export

    out = Path(args.out)
    if out.exists() and (out.is_file() or any(out.iterdir())):
        raise UsageError(f"{out} exists: export to a new path")
    filters = filters_of(args)
    with reader_of(args) as reader:
        manifest = reader.export(args.format, out, filters, described=filters_given(args))
    print(export.describe(manifest, out))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    words = ", ".join(f"{flag.replace('_', '-')} {value}" for flag, value in filters_given(args).items()) or None
    with reader_of(args) as reader:
        page = reader.report(filters_of(args), title=args.title, filter_text=words)
    Path(args.html).write_text(page, encoding="utf-8")
    print(f"report written to {args.html} ({len(page):,} bytes; self-contained, open it in any browser)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from shield_addon.reader import Reader

    if fleet_of(args):
        from shield_addon.cli.fleet import verify_fleet

        return verify_fleet(args)
    reader = Reader(audit_dir(args))
    if not reader.dir.journal.is_dir():
        raise UsageError(f"no audit trail in {reader.dir.root} (use --dir)")
    public = public_key(args)
    with reader, progress_bar("verifying") as advance:
        report = reader.verify(public, advance)
    if report.ok:
        tail = f"; {report.unsigned} newest event(s) not signed yet (a crash, or the proxy is running)" if report.unsigned else ""
        print(f"OK: {report.events} events, seq 1..{report.last_seq}, chain {report.chain_id}, "
              f"{report.checkpoints} signed checkpoint(s) up to seq {report.signed_seq}{tail}")
        return EXIT_OK
    first = report.problems[0]
    print(f"BROKEN: {first}")
    for p in report.problems[1:10]:
        print(f"  also {p}")
    if len(report.problems) > 10:
        print(f"  … {len(report.problems) - 10} more")
    return EXIT_FAILED


def public_key(args: argparse.Namespace) -> Any:
    keys = public_keys(args)
    if len(keys) > 1:
        raise UsageError("one trail, one signing key: pass --key once (several are for verify --fleet)")
    return keys[0]


def public_keys(args: argparse.Namespace) -> list[Any]:
    """The --key files' public keys, or the one derived from the confdir's signing key."""
    from shield_addon import checkpoints

    try:
        if args.key:
            return [checkpoints.load_public(Path(k).read_bytes()) for k in args.key]
        private = confdir_of(args) / checkpoints.KEY_FILE
        if private.exists():
            return [checkpoints.load_or_create_key(confdir_of(args)).public_key()]
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read the public key: {e}") from None
    raise UsageError("no public key: pass --key FILE (from `shield key export` on the proxy's host) or --confdir")


class progress_bar:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, what: str):
        self.what, self.bar = what, None

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=Console(stderr=True))
            self.bar.start()
            task = self.bar.add_task(self.what, total=None)
            return lambda n: self.bar.update(task, completed=n, description=f"{self.what}: {n:,} events")
        return None

    def __exit__(self, *exc: Any) -> None:
        if self.bar:
            self.bar.stop()


def cmd_key(args: argparse.Namespace) -> int:
    from shield_addon import checkpoints

    path = confdir_of(args) / checkpoints.KEY_FILE
    if not path.exists():
        raise UsageError(f"no signing key in {confdir_of(args)}: the proxy creates it on its first start")
    pem = checkpoints.public_pem(checkpoints.load_or_create_key(confdir_of(args)))
    if args.out:
        Path(args.out).write_text(pem)
        print(f"public key written to {args.out}", file=sys.stderr)
    else:
        print(pem, end="")
    return EXIT_OK

