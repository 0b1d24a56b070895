"""A real PostgreSQL server for the fleet's tests and benchmarks: Debian's binaries, a data
directory of its own, a free loopback port, stopped at the end.

initdb and postgres refuse to run as root, so as root they run as `nobody` (the data
directory is made theirs). Each test takes a database of its own (`database()`), so one
server serves a whole test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from scripts.harness import free_port, wait_for

RUN_AS = "nobody"


def binaries() -> Path | None:
    """The directory of initdb and postgres: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


class Postgres:
    """One server: `url(db)` to connect, `database()` for a fresh database, `stop()`/`start()`
    to take it away and bring it back (an outage), `close()` to end it."""

    def __init__(self, bindir: Path, root: Path | None = None) -> None:
        self.bin = bindir
        self.root = Path(root or tempfile.mkdtemp(prefix="shield-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user = pwd.getpwnam(RUN_AS) if os.geteuid() == 0 else None
        os.chmod(self.root, 0o755)
        self.data.mkdir(mode=0o700)
        self._own(self.root)
        self._own(self.data)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def _own(self, path: Path) -> None:
        if self.user:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _demote(self) -> None:
        if self.user:
            os.setgid(self.user.pw_gid)
            os.setgroups([])
            os.setuid(self.user.pw_uid)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bin / tool), *args], check=True, capture_output=True, preexec_fn=self._demote,
                       cwd=self.root)

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the server keeps it
        self._own(self.log)
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=200",
             "-c", "shared_buffers=128MB"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._demote, cwd=self.root)
        log.close()
        wait_for(self.ready, 30, f"PostgreSQL on port {self.port} (log: {self.log})")

    def ready(self) -> bool:
        if self.proc and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Stop it (a fast shutdown: open sessions are cut, as in an outage)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            self.proc.wait(30)

    def url(self, db: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type] - a name we made
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Postgres | None:
    """A running server, or None when this machine has no PostgreSQL binaries."""
    bindir = binaries()
    return Postgres(bindir) if bindir else None
