"""The pure modules stay pure: no mitmproxy, no DuckDB, no file, socket or process I/O.

Checked twice: by reading each module's source (what it imports and calls), and by importing it
in a fresh interpreter and looking at what came along (a pure module that imports an impure
one is impure too).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shield_addon"

# Folders whose every module is pure, and single pure modules elsewhere.
PURE_PACKAGES = ("core", "actions", "record")
PURE_MODULES = ("review.py",)
# Inside the rules package only the modules that read files or compile mitmproxy filters may do I/O.
RULES_IMPURE = {"files.py", "flowfilter.py"}

FORBIDDEN_IMPORTS = {"mitmproxy", "duckdb", "socket", "subprocess", "shutil", "psycopg", "asyncio", "threading"}
FORBIDDEN_CALLS = {"open"}
FORBIDDEN_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "unlink", "iterdir",
                     "rglob", "rmdir", "touch", "chmod", "rename", "replace_file", "fsync", "stat"}


def pure_files() -> list[Path]:
    files = [p for pkg in PURE_PACKAGES for p in sorted((PACKAGE / pkg).glob("*.py"))]
    files += [PACKAGE / m for m in PURE_MODULES if (PACKAGE / m).exists()]
    rules = PACKAGE / "rules"
    if rules.is_dir():
        files += [p for p in sorted(rules.glob("*.py")) if p.name not in RULES_IMPURE]
    return files


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_IMPORTS]
        if isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in FORBIDDEN_CALLS:
                found.append(f"line {node.lineno}: calls {fn.id}()")
            if isinstance(fn, ast.Attribute) and fn.attr in FORBIDDEN_METHODS:
                found.append(f"line {node.lineno}: calls .{fn.attr}()")
    return found


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_pure_module_neither_imports_nor_calls_io(path: Path) -> None:
    assert offences(path) == []


def test_importing_the_pure_modules_brings_no_mitmproxy_or_duckdb() -> None:
    names = [module_name(p) for p in pure_files()]
    code = ("import importlib, json, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('mitmproxy', 'duckdb', 'psycopg'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_check_finds_io_where_there_is_some(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import mitmproxy.http\nfrom pathlib import Path\nPath('x').read_text()\nopen('y')\n")
    assert offences(bad) == ["line 1: imports mitmproxy.http", "line 3: calls .read_text()", "line 4: calls open()"]
