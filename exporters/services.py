"""Per Atlas service process metrics: resident memory, CPU seconds, open fds, threads, start time,
one series per service found through DATA_DIR/run/<service>.pid (atlas.ops.pidfiles).

Covers each service's main process; the engine's worker processes are its children and are
accounted by the engine itself (atlas_engine_workers). A pid file whose process is gone, or whose
pid now belongs to a process started after the file was written (pid reuse), exports nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from atlas.observability.metrics import family
from atlas.ops.pidfiles import read_pid_files, run_dir
from exporters import procfs

# 4 KiB on every architecture Atlas targets; read from the OS so a 64 KiB-page arm64 host is right.
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
PID_FILE_SLACK_SECONDS = 5.0


class ServiceProcessCollector(Collector):
    def __init__(
        self, data_dir: Path, procfs_root: Path = Path("/proc"), page_bytes: int = PAGE_BYTES
    ) -> None:
        self.data_dir = data_dir
        self.procfs_root = procfs_root
        self.page_bytes = page_bytes

    def _boot_time(self) -> float:
        with open(self.procfs_root / "stat", encoding="ascii") as f:
            return procfs.parse_stat(f.read()).boot_time

    def collect(self) -> Iterator[Metric]:
        rss = family("atlas_process_resident_memory_bytes")
        cpu = family("atlas_process_cpu_seconds_total")
        fds = family("atlas_process_open_fds")
        threads = family("atlas_process_threads")
        start = family("atlas_process_start_time_seconds")
        services = read_pid_files(self.data_dir)
        boot_time = self._boot_time() if services else 0.0
        for service, pid in services:
            base = self.procfs_root / str(pid)
            try:
                with open(base / "stat", encoding="ascii", errors="replace") as f:
                    stat = procfs.parse_pid_stat(f.read())
                started = boot_time + stat.start_ticks / procfs.USER_HZ
                pid_file = run_dir(self.data_dir) / f"{service}.pid"
                # The process must have started before its pid file was written, else the pid was
                # reused after a crash left the file behind. Slack: boot time is whole seconds and
                # drifts a little from the wall clock over a long uptime.
                if started > pid_file.stat().st_mtime + PID_FILE_SLACK_SECONDS:
                    continue
                open_fds = len(os.listdir(base / "fd"))
            except (OSError, ValueError, IndexError):
                continue  # gone between the pid file read and now: no series this scrape
            labels = (service,)
            rss.add_metric(labels, stat.rss_pages * self.page_bytes)
            cpu.add_metric(labels, stat.cpu_seconds)
            fds.add_metric(labels, open_fds)
            threads.add_metric(labels, stat.threads)
            start.add_metric(labels, started)
        yield from (rss, cpu, fds, threads, start)
