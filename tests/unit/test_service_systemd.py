"""The systemd backend's commands (no systemd on the test machine: the commands are what we check),
and how `pick_manager` chooses a backend."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from atlas.ops.services import ServiceError, pick_manager
from atlas.ops.services.local import LocalSupervisor
from atlas.ops.services.systemd import SystemdManager, systemd_available
from atlas.settings import Settings


class Recorder:
    """Runs nothing: records each argv and answers what systemctl would for the unit."""

    def __init__(self, show: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.show, self.returncode, self.stderr = show, returncode, stderr

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        out = self.show if argv[:2] == ["systemctl", "show"] else "line one\nline two\n"
        return subprocess.CompletedProcess(list(argv), self.returncode, out, self.stderr)


SHOW = (
    "LoadState=loaded\nActiveState={active}\nSubState={sub}\nMainPID={pid}\n"
    "ExecMainStartTimestampMonotonic={t}\n"
)


def manager(rec: Recorder, tmp_path: Path) -> SystemdManager:
    return SystemdManager(
        Settings(data_dir=tmp_path, api_port=8001, exporter_port=0), run=rec, monotonic=lambda: 100.0
    )


def test_start_stop_restart_run_systemctl_on_the_unit(tmp_path: Path) -> None:
    rec = Recorder(SHOW.format(active="inactive", sub="dead", pid=0, t=0))
    mgr = manager(rec, tmp_path)
    mgr.start("alert-router")
    mgr.stop("core")
    mgr.restart("services")
    verbs = [c for c in rec.calls if c[1] != "show"]
    assert verbs == [
        ["systemctl", "start", "atlas-alert-router.service"],
        ["systemctl", "stop", "atlas-core.service"],
        ["systemctl", "restart", "atlas-services.service"],
    ]
    assert rec.calls[1] == [
        "systemctl",
        "show",
        "atlas-alert-router.service",
        "--property=LoadState,ActiveState,SubState,MainPID,ExecMainStartTimestampMonotonic",
    ]


def test_status_reads_state_pid_and_uptime(tmp_path: Path) -> None:
    import os

    rec = Recorder(SHOW.format(active="active", sub="running", pid=os.getpid(), t=40_000_000))
    st = manager(rec, tmp_path).status("core")
    assert (st.state, st.pid, st.uptime_seconds, st.health) == ("running", os.getpid(), 60.0, "healthy")
    assert st.rss_bytes and st.rss_bytes > 0


def test_a_failed_unit_carries_its_journal(tmp_path: Path) -> None:
    rec = Recorder(SHOW.format(active="failed", sub="exit-code", pid=0, t=0))
    st = manager(rec, tmp_path).status("api")
    assert st.state == "failed" and st.log_tail == ["line one", "line two"]
    assert rec.calls[-1] == [
        "journalctl",
        "-u",
        "atlas-api@8001.service",
        "-o",
        "cat",
        "--no-pager",
        "-n",
        "20",
    ]


def test_a_missing_unit_is_not_installed(tmp_path: Path) -> None:
    rec = Recorder("LoadState=not-found\nActiveState=inactive\n")
    assert manager(rec, tmp_path).status("monitoring").state == "not-installed"


def test_a_refused_systemctl_is_an_error_naming_the_unit(tmp_path: Path) -> None:
    rec = Recorder(returncode=5, stderr="Unit atlas-api@8001.service not found.")
    with pytest.raises(ServiceError, match=r"systemctl start atlas-api@8001.service failed \(5\): Unit"):
        manager(rec, tmp_path).start("api")


def test_journalctl_for_logs(tmp_path: Path) -> None:
    argv = manager(Recorder(), tmp_path).journalctl_argv("exporter", None, "1 hour ago", True)
    assert argv == [
        "journalctl",
        "-u",
        "atlas-exporter.service",
        "-o",
        "cat",
        "--no-pager",
        "--since",
        "1 hour ago",
        "-f",
    ]


def test_backend_choice(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    booted = tmp_path / "run-systemd"
    assert not systemd_available(booted, [units])
    booted.mkdir()
    assert not systemd_available(booted, [units])  # systemd runs, but Atlas's units are not installed
    (units / "atlas-api@.service").write_text("[Unit]\n")  # the template systemd/ installs
    assert systemd_available(booted, [units])
    settings = Settings(data_dir=tmp_path)
    assert isinstance(pick_manager(settings, "systemd"), SystemdManager)
    assert isinstance(pick_manager(settings, "local"), LocalSupervisor)
    assert isinstance(pick_manager(settings, "auto"), LocalSupervisor)  # this machine has no systemd


def test_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match=r"unknown service 'web' \(known: api, core, services"):
        manager(Recorder(), tmp_path).start("web")
