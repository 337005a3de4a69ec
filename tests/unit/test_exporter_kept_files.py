"""procfs/sysfs files kept open between scrapes: each read is the kernel's current text, a gone file
reads as gone, and fds the last scrape did not read are closed."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from exporters.collectors.base import KeptFiles

RX = "/sys/class/net/lo/statistics/rx_bytes"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_kept_fd_reads_the_current_value_and_sweep_closes_what_was_not_read(tmp_path: Path) -> None:
    if not os.path.exists(RX):
        pytest.skip(f"{RX} is not on this host")
    kept = KeptFiles()
    before = open_fds()
    first = int(kept.read(RX))
    kept.read("/proc/self/stat")
    assert len(kept) == 2 and open_fds() == before + 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(20):
            sock.sendto(b"x" * 500, ("127.0.0.1", 9))  # 20 datagrams over lo, nobody listening
    assert int(kept.read(RX)) >= first + 20 * 500  # re-read through the same fd: fresh text
    assert len(kept) == 2
    kept.sweep()  # both read since the last sweep: kept
    assert len(kept) == 2
    kept.read(RX)
    kept.sweep()  # /proc/self/stat not read this round: closed
    assert len(kept) == 1 and open_fds() == before + 1
    kept.close()
    assert open_fds() == before


def test_a_missing_file_is_an_error_and_nothing_is_kept_past_the_limit(tmp_path: Path) -> None:
    kept = KeptFiles(limit=1)
    with pytest.raises(FileNotFoundError):
        kept.read(str(tmp_path / "absent"))
    assert len(kept) == 0
    kept.read("/proc/self/stat")
    assert kept.read("/proc/loadavg")  # over the limit: read, then closed
    assert len(kept) == 1
    kept.close()
