"""CPU and memory of processes and of the machine, sampled with psutil."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil

from scripts.harness import rss_mib


def cpu_seconds(pid: int) -> float:
    """Seconds of CPU of a process: every thread, dead ones included, plus reaped children."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + t.children_user + t.children_system


def thread_cpu(pid: int) -> dict[int, float]:
    """Seconds of CPU of each live thread, by OS thread id."""
    try:
        return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
    except psutil.Error:
        return {}


def family_cpu(pid: int) -> float:
    """Seconds of CPU of a process and its live descendants (shield's audit writer)."""
    return sum(cpu_seconds(p) for p in family(pid))


def children_cpu(pid: int) -> dict[int, float]:
    """Seconds of CPU of each live descendant, keyed by minus its pid (apart from thread ids)."""
    return {-p: cpu_seconds(p) for p in family(pid)[1:]}


def family(pid: int) -> list[int]:
    """A process and all its descendants (nginx's master and worker)."""
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def system_cpu() -> tuple[float, float]:
    """(busy, steal) seconds of the whole machine, all CPUs."""
    t = psutil.cpu_times()
    steal = getattr(t, "steal", 0.0)
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + steal
    return busy, steal


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def loadavg() -> float:
    return psutil.getloadavg()[0]


def background_cores(seconds: float = 1.0) -> float:
    """CPU the machine uses while we do nothing (nginx idle, no proxy)."""
    b0, me0 = system_cpu()[0], self_cpu()
    time.sleep(seconds)  # the measuring window
    return max(0.0, (system_cpu()[0] - b0 - (self_cpu() - me0)) / seconds)


def fs_type(path: Path) -> str:
    """The file system a path is on: type, device and mount point."""
    best = max((p for p in psutil.disk_partitions(all=True) if str(path).startswith(p.mountpoint)),
               key=lambda p: len(p.mountpoint), default=None)
    return f"{best.fstype} ({best.device} on {best.mountpoint})" if best else "?"


class PeakRss:
    """The highest RSS of a process and its descendants together between start() and stop(),
    sampled every `every` seconds by a thread (psutil has no portable high-water mark)."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every = pid, every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def start(self) -> PeakRss:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak

    def _run(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, rss_mib(self.pid) + sum(_rss_or_0(p) for p in family(self.pid)[1:]))
            except ProcessLookupError:
                return
            if self._stop.wait(self.every):
                return


def _rss_or_0(pid: int) -> float:
    try:
        return rss_mib(pid)
    except ProcessLookupError:  # the writer restarting
        return 0.0
