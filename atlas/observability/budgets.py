"""Resource budgets: the Atlas processes' memory, CPU and open files against ATLAS_*_BUDGET*.

The Atlas processes are this process, every process named by a pid file in DATA_DIR/run (what
the exporter reports as `atlas_process_*`) and their children (the engine's workers). A budget is
a soft limit: going over degrades /health, it does not stop anything.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from atlas.observability.health import Component
from atlas.ops.pidfiles import read_pid_files

# With no ATLAS_OPEN_FILES_BUDGET a process is over budget past this share of its own soft
# RLIMIT_NOFILE: enough headroom to notice a leak before accept() starts failing with EMFILE.
DEFAULT_FDS_SHARE = 0.8


@dataclass(frozen=True)
class ProcessUsage:
    pid: int
    name: str  # the pid file's service, or "<parent service> child"
    rss_bytes: int
    cpu_seconds: float
    open_fds: int
    fds_soft_limit: int | None  # None when unlimited or unknown


@dataclass
class Usage:
    processes: list[ProcessUsage]
    cpu_cores: float | None  # cores busy since the previous sample; None on the first


@dataclass
class AtlasProcesses:
    """Samples the Atlas processes; keeps the last CPU figures so each sample yields a rate."""

    data_dir: Path
    clock: Callable[[], float] = time.monotonic
    _last: tuple[float, dict[tuple[int, float], float]] | None = field(default=None, init=False)

    def _roots(self) -> list[tuple[str, int]]:
        found = read_pid_files(self.data_dir)
        if os.getpid() not in {pid for _, pid in found}:
            found.append(("this process", os.getpid()))
        return found

    def sample(self) -> Usage:
        """Every Atlas process's usage now; processes that vanish meanwhile are left out."""
        now = self.clock()
        seen: dict[int, tuple[str, psutil.Process]] = {}
        for service, pid in self._roots():
            try:
                root = psutil.Process(pid)
                seen.setdefault(pid, (service, root))
                for child in root.children(recursive=True):
                    seen.setdefault(child.pid, (f"{service} child", child))
            except psutil.Error:
                continue  # a stale pid file: nothing to measure
        processes: list[ProcessUsage] = []
        cpu: dict[tuple[int, float], float] = {}
        for pid, (name, proc) in sorted(seen.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    usage = ProcessUsage(
                        pid,
                        name,
                        proc.memory_info().rss,
                        times.user + times.system,
                        proc.num_fds(),
                        _soft_fd_limit(proc),
                    )
                    cpu[(pid, proc.create_time())] = usage.cpu_seconds
            except psutil.Error:
                continue
            processes.append(usage)
        cores = None
        if self._last is not None and now > self._last[0]:
            since, before = self._last
            # A process seen last time counts what it used since; one started since counts all of
            # it; one that existed but was not seen (a pid file written since) is left out.
            used = sum(
                seconds - before[key] if key in before else seconds if key[1] > _wall(since, now) else 0.0
                for key, seconds in cpu.items()
            )
            cores = max(0.0, used) / (now - since)
        self._last = (now, cpu)
        return Usage(processes, cores)


def _wall(monotonic_then: float, monotonic_now: float) -> float:
    """The wall-clock time of a past monotonic reading (process create times are wall clock)."""
    return time.time() - (monotonic_now - monotonic_then)


def _soft_fd_limit(proc: psutil.Process) -> int | None:
    soft = proc.rlimit(psutil.RLIMIT_NOFILE)[0]
    return None if soft == psutil.RLIM_INFINITY else int(soft)


def memory_budget(usage: Usage, budget_bytes: int) -> Component:
    rss = sum(p.rss_bytes for p in usage.processes)
    message = f"{len(usage.processes)} Atlas process(es) use {rss / 2**20:.0f} MiB resident"
    if not budget_bytes:
        return Component("memory_budget", "healthy", rss, None, message + " (no budget set)")
    status = "degraded" if rss > budget_bytes else "healthy"
    return Component(
        "memory_budget", status, rss, budget_bytes, f"{message} of a {budget_bytes / 2**20:.0f} MiB budget"
    )


def cpu_budget(usage: Usage, budget_cores: float, cpu_count: int | None = None) -> Component:
    # 0 means "all of them": the machine's cores are the budget, which only a runaway could exceed.
    budget = budget_cores or float(cpu_count or os.cpu_count() or 1)
    if usage.cpu_cores is None:
        return Component("cpu_budget", "healthy", None, budget, "first sample: measured from the next check")
    cores = round(usage.cpu_cores, 3)
    status = "degraded" if cores > budget else "healthy"
    return Component(
        "cpu_budget", status, cores, budget, f"Atlas processes kept {cores:.2f} of {budget:g} cores busy"
    )


def open_files_budget(usage: Usage, budget: int) -> Component:
    """Worst process against the per-process budget (0: DEFAULT_FDS_SHARE of its own limit)."""
    worst: tuple[float, ProcessUsage, int] | None = None
    for p in usage.processes:
        limit = budget or (int(p.fds_soft_limit * DEFAULT_FDS_SHARE) if p.fds_soft_limit else 0)
        if limit and (worst is None or p.open_fds / limit > worst[0]):
            worst = (p.open_fds / limit, p, limit)
    if worst is None:
        return Component("open_files_budget", "healthy", None, budget or None, "no limit to compare with")
    share, p, limit = worst
    message = f"pid {p.pid} ({p.name}) has {p.open_fds} open files of {limit} allowed"
    return Component("open_files_budget", "degraded" if share > 1 else "healthy", p.open_fds, limit, message)
