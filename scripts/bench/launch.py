"""Starting the processes of a benchmark: all at one nice value, all stopped at the end."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from scripts.harness import stop_process


@dataclass
class Launcher:
    nice: int = 0  # the proxies, nginx and the client at this nice value (--nice)
    started: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
        prefix = ["nice", "-n", str(self.nice)] if self.nice else []
        with open(log, "wb") as fh:
            proc = subprocess.Popen([*prefix, *args], stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):  # the proxies before their upstream
            stop_process(proc, 20)

    def renice_self(self) -> int | None:
        """This process at the nice value too, and its scheduler autogroup: with autogroup
        scheduling, nice only ranks processes within the group, and the group's own nice is
        what competes with other sessions. Returns the group's old nice, for restore_group()."""
        if not self.nice:
            return None
        os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        try:
            old = int(Path("/proc/self/autogroup").read_text().split()[-1])
            Path("/proc/self/autogroup").write_text(str(self.nice))
            return old
        except (OSError, ValueError, IndexError):
            return None

    @staticmethod
    def restore_group(old: int | None) -> None:
        if old is not None:
            try:
                Path("/proc/self/autogroup").write_text(str(old))
            except OSError:
                pass
