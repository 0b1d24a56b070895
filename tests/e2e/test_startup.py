"""`shield run` on a confdir it cannot use (issue #8): exit 2 and one line on stderr naming the
confdir and what is wrong, no traceback, no hang, nothing forwarded. A missing confdir is
created and the proxy starts.

Permissions only bite an unprivileged process, so the 000/500 cases run the proxy through
`setpriv`: as nobody (65534) when that user can run this interpreter, otherwise as root with
every capability dropped (no CAP_DAC_OVERRIDE: root then meets file modes like anyone else),
e.g. when the interpreter lives under a 0700 /root (pyenv)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import SHIELD, Upstream, free_port, stop_process, wait_for

NOBODY = 65534


def runs_this_python(prefix: list[str]) -> bool:
    probe = subprocess.run([*prefix, sys.executable, "-c", "import mitmproxy, shield_addon"], capture_output=True, cwd="/",
                           timeout=60)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def unprivileged() -> tuple[list[str], int]:
    """(command prefix, uid) to run the proxy without privileges."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the proxy is run as an unprivileged user through setpriv")
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("setpriv is not installed (util-linux)")
    nobody = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if runs_this_python(nobody):
        return nobody, NOBODY
    no_caps = [setpriv, "--bounding-set=-all", "--inh-caps=-all"]
    if runs_this_python(no_caps):
        return no_caps, 0
    pytest.skip(f"neither nobody nor a capability-less root can run {sys.executable} with mitmproxy and shield_addon")


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory the unprivileged user can enter (tmp_path's parents are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="shield-startup-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)  # as root: modes do not stop it


def run_shield(prefix: list[str], work: Path, confdir_args: list[str], port: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    return subprocess.run(
        [*prefix, *SHIELD, "run", "--headless", *confdir_args, "--listen-host", "127.0.0.1", "--listen-port", str(port),
         "--set", f"shield_dir={work / 'audit'}"],
        capture_output=True, text=True, timeout=60, cwd=work, env={**env, "PYTHONUNBUFFERED": "1"})


def assert_refused(cp: subprocess.CompletedProcess, confdir: Path, what: str, port: int, upstream: Upstream,
                   tag: str) -> None:
    out = cp.stdout + cp.stderr
    assert cp.returncode == 2, f"exit {cp.returncode}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert str(confdir) in lines[0] and what in lines[0], lines[0]
    assert cp.stdout == ""
    # nothing listens, so nothing can have been forwarded
    with pytest.raises(httpx.TransportError):
        httpx.get(upstream.url(f"/startup/{tag}"), proxy=f"http://127.0.0.1:{port}", trust_env=False, timeout=5)
    assert upstream.hits_for(f"/startup/{tag}") == []


def confdir_flags(confdir: Path, form: str) -> list[str]:
    return ["--confdir", str(confdir)] if form == "--confdir" else ["--set", f"confdir={confdir}"]


@pytest.mark.parametrize("form", ["--confdir", "--set"])
def test_a_confdir_that_is_a_file(tmp_path: Path, upstream: Upstream, form: str) -> None:
    confdir = tmp_path / "conf"
    confdir.write_text("not a directory\n")
    port = free_port()
    cp = run_shield([], tmp_path, confdir_flags(confdir, form), port)
    assert_refused(cp, confdir, "is not a directory", port, upstream, f"file{form}")
    assert confdir.read_text() == "not a directory\n"


# Each makes the directory as the proxy's user would own it (uid): mode 500 then means
# "readable, not writable" to that user, whether it is nobody or a capability-less root.
def unreadable(d: Path, uid: int) -> None:
    d.mkdir()
    os.chown(d, uid, uid)
    d.chmod(0o000)


def read_only_without_ca(d: Path, uid: int) -> None:
    d.mkdir()
    os.chown(d, uid, uid)
    d.chmod(0o500)


def inside_read_only(d: Path, uid: int) -> None:
    d.parent.mkdir()
    os.chown(d.parent, uid, uid)
    d.parent.chmod(0o500)


@pytest.mark.parametrize(("name", "make", "what"), [
    ("conf", unreadable, "cannot read it"),
    ("conf", read_only_without_ca, "cannot write it"),
    ("ro/conf", inside_read_only, "cannot be created: cannot write"),
], ids=["mode-000", "mode-500-no-ca", "missing-under-mode-500"])
@pytest.mark.parametrize("form", ["--confdir", "--set"])
def test_a_confdir_the_proxy_user_cannot_use(unprivileged: tuple[list[str], int], work: Path, upstream: Upstream,
                                             name: str, make: Callable[[Path, int], None], what: str, form: str) -> None:
    prefix, uid = unprivileged
    (work / "audit").mkdir()
    os.chown(work / "audit", uid, uid)
    confdir = work / name
    make(confdir, uid)
    port = free_port()
    cp = run_shield(prefix, work, confdir_flags(confdir, form), port)
    assert_refused(cp, confdir, what, port, upstream, f"{name}-{what}{form}".replace(" ", "-"))
    assert not any((work / "audit").iterdir()), "the proxy must stop before it opens the audit trail"


def test_a_missing_confdir_is_created_and_the_proxy_starts(tmp_path: Path, upstream: Upstream) -> None:
    confdir = tmp_path / "new" / "conf"  # its parent is missing too
    log = tmp_path / "proxy.log"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*SHIELD, "run", "--headless", "--set", f"confdir={confdir}", "--listen-host", "127.0.0.1", "--listen-port", "0",
             "--set", f"shield_dir={tmp_path / 'audit'}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"})
    try:
        def port() -> int | None:
            assert proc.poll() is None, f"the proxy exited {proc.returncode}:\n{log.read_text()}"
            m = re.search(r"proxy listening at .*?:(\d+)", log.read_text())
            return int(m.group(1)) if m else None

        listening = wait_for(port, 30, "the proxy to listen")
        assert (confdir / "mitmproxy-ca-cert.pem").is_file()
        r = httpx.get(upstream.url("/startup/created"), proxy=f"http://127.0.0.1:{listening}", trust_env=False, timeout=10)
        assert r.status_code == 200
        assert len(upstream.hits_for("/startup/created")) == 1
        # Checked before stopping: a connection still closing when SIGTERM lands makes mitmproxy
        # print a CancelledError of its own, which says nothing about how the proxy started.
        assert "Traceback" not in log.read_text()
    finally:
        stop_process(proc)
