"""A fixture proc tree: the files the system and service collectors read, with known values."""

from __future__ import annotations

from pathlib import Path

STAT = """\
cpu  300 20 100 5000 40 0 10 5 0 0
cpu0 200 10 60 2500 30 0 5 3 0 0
cpu1 100 10 40 2500 10 0 5 2 0 0
intr 123456 0 0 0
ctxt 987654
btime 1700000000
processes 4321
procs_running 3
procs_blocked 1
softirq 1 2 3
"""

MEMINFO = """\
MemTotal:        8000000 kB
MemFree:         1000000 kB
MemAvailable:    4000000 kB
Buffers:          100000 kB
Cached:          2000000 kB
SwapTotal:       1000000 kB
SwapFree:         900000 kB
Slab:             300000 kB
Active(anon):     500000 kB
HugePages_Total:       0
"""

MOUNTS = """\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
/dev/sda2 /srv/atlas\\040data xfs ro,relatime 0 0
overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0
tmpfs /run/credentials/foo.service tmpfs ro 0 0
tmpfs /run tmpfs rw,nosuid 0 0
/dev/sdb1 /broken ext4 rw 0 0
/dev/sda1 / ext4 rw,relatime 0 0
"""

# /proc/net/dev with its real column layout (two header lines, then "device: 8 rx, 8 tx").
NETDEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast"
    "|bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo:  1000      10    0    0    0     0          0         0"
    "     1000      10    0    0    0     0       0          0\n"
    "  eth0: 555000    700    2    3    0     0          0         1"
    "    66000     400    4    5    0     0       0          0\n"
)

DISKSTATS = """\
   8       0 sda 100 5 2000 300 50 2 4000 600 0 700 900 0 0 0 0
   8       1 sda1 90 5 1800 280 45 2 3600 550 0 650 830 0 0 0 0
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 10 0 80 20 5 0 40 10 2 30 30
 259       1 nvme0n1p1 9 0 72 18 5 0 40 10 0 28 28
"""

VMSTAT = """\
nr_free_pages 12345
pgpgin 100
pgpgout 200
pswpin 0
pswpout 0
pgfault 5000
pgmajfault 42
oom_kill 1
numa_hit 99
"""

UNAME = {
    "ostype": "Linux",
    "hostname": "atlas-test",
    "osrelease": "6.1.0-test",
    "version": "#1 SMP Test",
    "domainname": "(none)",
    "arch": "x86_64",
}


def pid_stat(pid: int, *, utime: int, stime: int, threads: int, start_ticks: int, rss_pages: int) -> str:
    # Fields 1..24 of /proc/<pid>/stat; comm holds a space and a parenthesis on purpose.
    fields = [str(pid), "(atlas (core))", "S"] + ["0"] * 10 + [str(utime), str(stime)]
    fields += ["0"] * 4 + [str(threads), "0", str(start_ticks), "123456789", str(rss_pages)]
    fields += ["0"] * 20
    return " ".join(fields) + "\n"


def write_tree(root: Path) -> Path:
    """Write the fixture procfs under root/proc and return that directory."""
    proc = root / "proc"
    files = {
        "stat": STAT,
        "loadavg": "0.50 0.75 1.25 2/345 6789\n",
        "meminfo": MEMINFO,
        "1/mounts": MOUNTS,
        "net/dev": NETDEV,
        "diskstats": DISKSTATS,
        "vmstat": VMSTAT,
        "sys/fs/file-nr": "2048\t0\t9223372036854775807\n",
    }
    files.update({f"sys/kernel/{k}": v + "\n" for k, v in UNAME.items()})
    for name, text in files.items():
        path = proc / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")
    return proc


def add_process(proc: Path, pid: int, *, fds: int, **stat: int) -> None:
    base = proc / str(pid)
    (base / "fd").mkdir(parents=True, exist_ok=True)
    for fd in range(fds):
        (base / "fd" / str(fd)).touch()
    (base / "stat").write_text(pid_stat(pid, **stat), encoding="ascii")
