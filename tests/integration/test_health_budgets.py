"""ATLAS_MEMORY_BUDGET_BYTES, ATLAS_CPU_BUDGET_CORES and ATLAS_OPEN_FILES_BUDGET against real
processes: a child found through its pid file (as `atlas core` writes it) that holds memory, open
files and a CPU busy; /health reports each budget and degrades when one is exceeded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from atlas.observability import budgets
from atlas.observability.health import ORDER
from atlas.ops.pidfiles import pid_file
from atlas.settings import Settings
from tests.helpers.api import running_api
from tests.helpers.engine import wait_for

FILES = 200
# Holds ~64 MiB and FILES open files, then spins until killed.
CHILD = f"""
import os, sys
ballast = bytearray(64 << 20)
ballast[::4096] = b"x" * len(ballast[::4096])
files = [open(os.devnull) for _ in range({FILES})]
print("ready", flush=True)
while True:
    pass
"""


@pytest.fixture
def child(tmp_path: Path) -> Iterator[psutil.Process]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        with pid_file(tmp_path, "atlas-core", pid=proc.pid):
            yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_budget_counts_the_processes_of_the_pid_files(tmp_path: Path, child: psutil.Process) -> None:
    usage = budgets.AtlasProcesses(tmp_path).sample()
    assert {p.pid for p in usage.processes} >= {child.pid}
    rss = sum(p.rss_bytes for p in usage.processes)
    assert rss >= 64 << 20
    over = budgets.memory_budget(usage, 32 << 20)
    assert (over.status, over.value, over.threshold) == ("degraded", rss, 32 << 20)
    assert budgets.memory_budget(usage, 1 << 40).status == "healthy"
    assert budgets.memory_budget(usage, 0).threshold is None  # 0 = no budget


def test_cpu_budget_is_the_cores_busy_between_two_checks(tmp_path: Path, child: psutil.Process) -> None:
    clock = Clock()
    processes = budgets.AtlasProcesses(tmp_path, clock=clock)
    first = processes.sample()
    assert budgets.cpu_budget(first, 1).value is None  # nothing to compare with yet
    start = cpu_seconds(child)
    wait_for(lambda: cpu_seconds(child) - start >= 0.3, 30, "the child to use 0.3 s of CPU")
    clock.now += 0.1  # 0.3 CPU seconds in 0.1 s of (injected) wall time: at least 3 cores busy
    second = processes.sample()
    over = budgets.cpu_budget(second, 1)
    assert over.status == "degraded" and isinstance(over.value, float) and over.value >= 3
    clock.now += 1000  # the next interval is long: the same spinning child is well within 8 cores
    assert budgets.cpu_budget(processes.sample(), 8).status == "healthy"


def test_open_files_budget_names_the_process_over_it(tmp_path: Path, child: psutil.Process) -> None:
    usage = budgets.AtlasProcesses(tmp_path).sample()
    over = budgets.open_files_budget(usage, FILES - 50)
    assert over.status == "degraded" and f"pid {child.pid} (atlas-core)" in over.message
    assert isinstance(over.value, int) and over.value >= FILES
    assert budgets.open_files_budget(usage, 100_000).status == "healthy"
    # 0 = 80% of each process's own soft limit.
    limit = child.rlimit(psutil.RLIMIT_NOFILE)[0]
    default = budgets.open_files_budget(usage, 0)
    assert default.status == "healthy" and default.threshold is not None
    assert default.threshold <= int(limit * budgets.DEFAULT_FDS_SHARE)


def test_health_reports_every_budget_and_degrades_over_one(tmp_path: Path, child: psutil.Process) -> None:
    settings = Settings(
        data_dir=tmp_path,
        db_synchronous="NORMAL",
        memory_budget_bytes=32 << 20,
        cpu_budget_cores=1024,
        open_files_budget=100_000,
    )
    with running_api(settings) as api:
        body = httpx.get(f"{api.url}/health").json()
    found = {c["name"]: c for c in body["components"]}
    assert found["memory_budget"]["status"] == "degraded"
    assert found["memory_budget"]["threshold"] == 32 << 20
    assert found["memory_budget"]["value"] >= 64 << 20  # the child's ballast is counted
    assert found["open_files_budget"]["status"] == "healthy"
    assert found["cpu_budget"]["threshold"] == 1024
    worst = max((c["status"] for c in found.values()), key=ORDER.__getitem__)
    assert body["status"] == worst and ORDER[worst] >= ORDER["degraded"]
