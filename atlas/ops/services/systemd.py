"""The systemd backend: systemctl for state changes and status, journalctl for logs.

Used when systemd runs the machine and the atlas-*.service units are installed (see systemd/).
Every call goes through `run(argv)`, so the commands built here are visible to tests on machines
without systemd.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from atlas.ops.services import ServiceError, ServiceStatus, health_verdict, spec
from atlas.settings import Settings

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/lib/systemd/system"), Path("/usr/lib/systemd/system"))
SHOW_PROPERTIES = ("LoadState", "ActiveState", "SubState", "MainPID", "ExecMainStartTimestampMonotonic")
LOG_TAIL_LINES = 20


def systemd_available(
    run_root: Path = Path("/run/systemd/system"), unit_dirs: Sequence[Path] = UNIT_DIRS
) -> bool:
    """systemd is PID 1 (sd_booted(3): /run/systemd/system exists) and the API's unit is installed
    (the templated atlas-api@.service of systemd/, or a plain atlas-api.service)."""
    return run_root.is_dir() and any(
        (d / unit).exists() for d in unit_dirs for unit in ("atlas-api@.service", "atlas-api.service")
    )


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)


def _monotonic_now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class SystemdManager:
    backend = "systemd"

    def __init__(
        self,
        settings: Settings,
        run: Runner = _run,
        monotonic: Callable[[], float] = _monotonic_now,
    ) -> None:
        self.settings = settings
        self.run = run
        self.monotonic = monotonic

    def unit(self, name: str) -> str:
        """The unit running `name`: the API's is an instance of atlas-api@.service named by its
        port (ATLAS_API_PORT), so the blue-green partners 8000 and 8001 are two units."""
        if spec(name).name == "api":
            return f"atlas-api@{self.settings.api_port}.service"
        return spec(name).unit

    def _systemctl(self, verb: str, name: str) -> None:
        unit = self.unit(name)
        done = self.run(["systemctl", verb, unit])
        if done.returncode != 0:
            raise ServiceError(f"systemctl {verb} {unit} failed ({done.returncode}): {done.stderr.strip()}")

    def start(self, name: str) -> ServiceStatus:
        # Type=notify units (systemd/) make `systemctl start` return once the service is ready.
        self._systemctl("start", name)
        return self.status(name)

    def stop(self, name: str) -> ServiceStatus:
        # The unit's TimeoutStopSec is the grace period: systemd sends SIGTERM, then SIGKILL.
        self._systemctl("stop", name)
        return self.status(name)

    def restart(self, name: str) -> ServiceStatus:
        self._systemctl("restart", name)
        return self.status(name)

    def status(self, name: str) -> ServiceStatus:
        unit = self.unit(name)
        done = self.run(["systemctl", "show", unit, f"--property={','.join(SHOW_PROPERTIES)}"])
        if done.returncode != 0:
            return ServiceStatus(name, "unknown", self.backend, message=done.stderr.strip())
        props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        if props.get("LoadState") == "not-found":
            return ServiceStatus(name, "not-installed", self.backend, message=f"{unit} is not installed")
        active = props.get("ActiveState", "")
        pid = int(props.get("MainPID") or 0) or None
        if active in ("active", "reloading"):
            started_us = int(props.get("ExecMainStartTimestampMonotonic") or 0)
            uptime = self.monotonic() - started_us / 1e6 if started_us else None
            return ServiceStatus(
                name,
                "running",
                self.backend,
                pid=pid,
                uptime_seconds=uptime,
                rss_bytes=_rss(pid),
                health=health_verdict(self.settings, name),
            )
        if active == "failed":
            return ServiceStatus(
                name,
                "failed",
                self.backend,
                message=f"{unit}: {props.get('SubState', '')}",
                log_tail=self.log_lines(name, LOG_TAIL_LINES),
            )
        return ServiceStatus(name, "stopped", self.backend, message=f"{unit}: {active}")

    def journalctl_argv(self, name: str, lines: int | None, since: str | None, follow: bool) -> list[str]:
        """journalctl printing the unit's messages as the process wrote them (-o cat: the JSON lines)."""
        argv = ["journalctl", "-u", self.unit(name), "-o", "cat", "--no-pager"]
        if lines is not None:
            argv += ["-n", str(lines)]
        if since is not None:
            argv += ["--since", since]
        if follow:
            argv.append("-f")
        return argv

    def log_lines(self, name: str, lines: int) -> list[str]:
        done = self.run(self.journalctl_argv(name, lines, None, False))
        return done.stdout.splitlines()


def _rss(pid: int | None) -> int | None:
    if not pid:
        return None
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
