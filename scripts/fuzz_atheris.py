#!/usr/bin/env python3
"""Coverage-guided fuzzing of the action parsers and the redactor with atheris (libFuzzer).

    pip install atheris                      # a binary wheel on CPython 3.12; not a test dependency
    python scripts/fuzz_atheris.py -max_total_time=300          # libFuzzer flags pass through
    python scripts/fuzz_atheris.py -runs=100000 corpus_dir/     # keep the interesting inputs

Each input becomes a RequestView (method, host, path, headers, body from the fuzzer's bytes).
A finding is: a parser that raises (parse() would report it as UNPARSED), an action type
outside ACTION_TYPES, a call slower than 1 s, or the redactor raising. libFuzzer prints the
crashing input and writes it to crash-<sha1> (in $TMPDIR/shield-fuzz-artifacts unless
-artifact_prefix= says otherwise); replay it by passing that file as the argument. To look
past a finding already reported, name it: SHIELD_FUZZ_KNOWN=graphql:IndexError,sql:ValueError.
The property tests in tests/unit/test_fuzz.py cover the same ground in CI.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import atheris  # noqa: E402

with atheris.instrument_imports():
    from shield_addon import record  # noqa: E402
    from shield_addon.actions import ACTION_TYPES, PARSERS, RequestView  # noqa: E402

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HOSTS = ["api.example.com", "k8s.internal", "x.supabase.co", "sqs.us-east-1.amazonaws.com", "s3.amazonaws.com",
         "db.internal", "api.github.com"]
CONTENT_TYPES = ["application/json", "application/graphql", "application/x-www-form-urlencoded", "text/plain",
                 "application/x-amz-json-1.0", ""]
REDACTOR = record.Redactor(b"atheris")
BOUND = 1.0
KNOWN = {k.strip() for k in os.environ.get("SHIELD_FUZZ_KNOWN", "").split(",") if k.strip()}


def view_of(data: bytes) -> RequestView:
    fdp = atheris.FuzzedDataProvider(data)
    method = METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)]
    host = HOSTS[fdp.ConsumeIntInRange(0, len(HOSTS) - 1)]
    path = "/" + fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 200))
    headers = [("content-type", CONTENT_TYPES[fdp.ConsumeIntInRange(0, len(CONTENT_TYPES) - 1)])]
    if fdp.ConsumeBool():
        headers.append(("x-amz-target", fdp.ConsumeUnicodeNoSurrogates(40)))
    query = tuple((fdp.ConsumeUnicodeNoSurrogates(10), fdp.ConsumeUnicodeNoSurrogates(40))
                  for _ in range(fdp.ConsumeIntInRange(0, 3)))
    return RequestView(method=method, scheme="https", host=host, port=443, path=path, query=query,
                       headers=tuple(headers), body=fdp.ConsumeBytes(fdp.remaining_bytes()))


def one_input(data: bytes) -> None:
    view = view_of(data)
    for name, parser in PARSERS.items():
        t0 = time.perf_counter()
        try:
            action = parser(view, False)  # raises: a finding
        except Exception as e:
            if f"{name}:{type(e).__name__}" in KNOWN:
                continue
            raise
        took = time.perf_counter() - t0
        if took > BOUND:
            raise AssertionError(f"{name} took {took:.2f}s")
        if action is not None and action.action_type not in ACTION_TYPES:
            raise AssertionError(f"{name}: action type {action.action_type!r}")
    t0 = time.perf_counter()
    REDACTOR.body(view.body, view.content_type, 65536)
    REDACTOR.text(view.path)
    if time.perf_counter() - t0 > BOUND:
        raise AssertionError("the redactor took over a second")


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        out = Path(tempfile.gettempdir()) / "shield-fuzz-artifacts"
        out.mkdir(exist_ok=True)
        argv.append(f"-artifact_prefix={out}/")  # crash-<sha1> files land here, not in the work tree
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
