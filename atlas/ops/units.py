"""Atlas's systemd units, rendered from one table so every unit gets the same sandbox.

`render_units(layout, settings)` gives {file name: text} for an install prefix, with the resource
limits of `settings` (ATLAS_SYSTEMD_MEMORY_MAX, _CPU_QUOTA, _TASKS_MAX, _LIMIT_NOFILE). systemd/ in
the repository holds them rendered for the default prefix /opt/atlas and the default limits
(regenerate with `python -m atlas.ops.units systemd`; a test fails when the files differ from this
module), and `atlas-ops install` renders them for its --prefix and its environment's settings.

The sandbox is the same for every unit and scores <= 2.0 in `systemd-analyze security`. What
differs is what each process needs: the engine, the feed poller and the alert router talk to the
internet (fetching pages and feeds, sending mail and webhooks); the API, the exporter and the
monitoring agent only to this host. Every process is Type=notify with a watchdog: they call
sd_notify themselves (atlas/ops/sdnotify.py), READY=1 once they serve and WATCHDOG=1 while their
main loop turns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from atlas.settings import Settings

DEFAULT_PREFIX = Path("/opt/atlas")
USER = "atlas"
LAYOUT_DIRS = ("config", "data", "logs", "backups", "releases")


@dataclass(frozen=True)
class Layout:
    """Where an installation lives: <prefix>/{config,data,logs,backups,releases}, and
    <prefix>/current -> the release (a virtual environment) the units run."""

    prefix: Path = DEFAULT_PREFIX
    user: str = USER

    def dir(self, name: str) -> Path:
        return self.prefix / name

    @property
    def bin(self) -> Path:
        return self.prefix / "current" / "bin"

    @property
    def env_file(self) -> Path:
        return self.dir("config") / "atlas.env"


@dataclass(frozen=True)
class ProcessUnit:
    file: str
    command: str  # the `atlas` subcommand
    description: str
    internet: bool  # False: IP traffic to and from this host only
    watchdog_seconds: int  # systemd's tolerance; the process pings at half of it
    extra_env: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The unit's name in the ATLAS_SYSTEMD_* settings: `atlas-core.service` -> `core`."""
        return self.file.removeprefix("atlas-").removesuffix(".service").removesuffix("@")


# WatchdogSec is at least twice the longest a main loop may legitimately take for one turn (a feed
# poll is bounded by the fetch timeout). Resource limits are settings (atlas.settings.UNIT_LIMITS).
PROCESS_UNITS = (
    ProcessUnit(
        "atlas-api@.service",
        "api",
        "Atlas HTTP API on port %i",
        internet=False,
        watchdog_seconds=30,
        extra_env=("ATLAS_API_PORT=%i",),
    ),
    ProcessUnit("atlas-core.service", "core", "Atlas engine", True, 60),
    ProcessUnit("atlas-services.service", "services", "Atlas scheduled work", True, 180),
    ProcessUnit("atlas-monitoring.service", "monitor", "Atlas monitoring agent", False, 60),
    ProcessUnit("atlas-exporter.service", "exporter", "Atlas node exporter", False, 30),
    ProcessUnit("atlas-alert-router.service", "alert-router", "Atlas alert router", True, 30),
)
# The units atlas.target starts: the API's first color only (8001 is the blue-green partner).
TARGET_WANTS = ("atlas-api@8000.service", *(u.file for u in PROCESS_UNITS[1:]))
BACKUP_CALENDAR = "*-*-* 03:15:00"
# The resource-control directives the ATLAS_SYSTEMD_* settings set, in the units' order.
LIMIT_DIRECTIVES = ("MemoryMax", "CPUQuota", "TasksMax", "LimitNOFILE")


def _sandbox(layout: Layout, internet: bool) -> list[str]:
    writable = " ".join(str(layout.dir(d)) for d in ("data", "logs", "backups"))
    lines = [
        f"User={layout.user}",
        f"Group={layout.user}",
        f"EnvironmentFile={layout.env_file}",
        f"WorkingDirectory={layout.prefix}",
        "UMask=0077",
        # Filesystem: the whole tree read-only but for the data, logs and backups directories.
        "ProtectSystem=strict",
        f"ReadWritePaths={writable}",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "PrivateUsers=yes",
        "ProtectHostname=yes",
        "ProtectClock=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        # invisible: other users' processes are hidden; every Atlas process runs as one user, which
        # is all the exporter's service collector needs. /proc/meminfo etc. stay (health checks).
        "ProtectProc=invisible",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "RemoveIPC=yes",
        "KeyringMode=private",
        "DevicePolicy=closed",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
    ]
    if not internet:
        lines += ["IPAddressDeny=any", "IPAddressAllow=localhost"]
    return lines


def _limits(settings: Settings, name: str) -> list[str]:
    """The resource-control lines of the unit `name` (a key of atlas.settings.UNIT_LIMITS)."""
    columns = (
        settings.systemd_memory_max,
        settings.systemd_cpu_quota,
        settings.systemd_tasks_max,
        settings.systemd_limit_nofile,
    )
    return [f"{d}={dict(values)[name]}" for d, values in zip(LIMIT_DIRECTIVES, columns, strict=True)]


def _process_unit(layout: Layout, unit: ProcessUnit, settings: Settings) -> str:
    env = [f"ATLAS_CONFIG_DIR={layout.dir('config')}", *unit.extra_env]
    lines = [
        "# Generated by atlas/ops/units.py; do not edit (atlas-ops install renders it for a prefix).",
        "[Unit]",
        f"Description={unit.description}",
        "After=network-online.target",
        "Wants=network-online.target",
        "PartOf=atlas.target",
        # At most 5 starts in 10 minutes, then the unit stays failed and alerts fire.
        "StartLimitIntervalSec=600",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={layout.bin / 'atlas'} {unit.command}",
        f"Environment={' '.join(env)}",
        "Restart=on-failure",
        "RestartSec=5",
        f"WatchdogSec={unit.watchdog_seconds}",
        "TimeoutStartSec=120",
        # SIGTERM drains (the engine finishes leased items, the API its requests), then SIGKILL.
        "TimeoutStopSec=60",
        "KillMode=mixed",
        *_limits(settings, unit.name),
        *_sandbox(layout, unit.internet),
        "",
        "[Install]",
        "WantedBy=atlas.target",
    ]
    return "\n".join(lines) + "\n"


def _backup_units(layout: Layout, settings: Settings) -> dict[str, str]:
    service = [
        "# Generated by atlas/ops/units.py; do not edit (atlas-ops install renders it for a prefix).",
        "[Unit]",
        "Description=Atlas online backup",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={layout.bin / 'atlas-ops'} backup create --out {layout.dir('backups')} --format json",
        f"Environment=ATLAS_CONFIG_DIR={layout.dir('config')}",
        "TimeoutStartSec=3600",
        "Nice=10",
        "IOSchedulingClass=idle",
        *_limits(settings, "backup"),
        *_sandbox(layout, internet=False),
    ]
    timer = [
        "# Generated by atlas/ops/units.py; do not edit (atlas-ops install renders it for a prefix).",
        "[Unit]",
        "Description=Daily Atlas backup",
        "",
        "[Timer]",
        f"OnCalendar={BACKUP_CALENDAR}",
        "RandomizedDelaySec=600",
        # A backup missed while the machine was off runs at the next boot.
        "Persistent=yes",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return {
        "atlas-backup.service": "\n".join(service) + "\n",
        "atlas-backup.timer": "\n".join(timer) + "\n",
    }


def _target() -> str:
    lines = [
        "# Generated by atlas/ops/units.py; do not edit.",
        "[Unit]",
        "Description=Atlas (every process; `systemctl start atlas.target`)",
        f"Wants={' '.join(TARGET_WANTS)} atlas-backup.timer",
        "After=network-online.target",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_units(layout: Layout, settings: Settings | None = None) -> dict[str, str]:
    """Every unit file Atlas installs, {file name: text}, for `layout`, with the resource limits
    of `settings` (default: the built-in ones)."""
    settings = settings or Settings()
    units = {u.file: _process_unit(layout, u, settings) for u in PROCESS_UNITS}
    units.update(_backup_units(layout, settings))
    units["atlas.target"] = _target()
    return units


def write_units(out: Path, layout: Layout, settings: Settings | None = None) -> list[Path]:
    """Write render_units(layout, settings) into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_units(layout, settings).items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m atlas.ops.units systemd
    for written_path in write_units(Path(sys.argv[1]), Layout()):
        print(written_path)
