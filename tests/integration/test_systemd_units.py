"""The units in systemd/: generated from atlas/ops/units.py, sandboxed so that
`systemd-analyze security --offline=yes` rates each at <= 2.0, and clean under `systemd-analyze verify`.

verify checks that ExecStart= names an executable file, so the units are rendered for a prefix in
tmp_path whose `current` release is this test run's own Python environment (sys.prefix): ExecStart
is the real `atlas`/`atlas-ops` console script, not a stub."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.ops.units import LIMIT_DIRECTIVES, PROCESS_UNITS, Layout, render_units, write_units
from atlas.settings import UNIT_LIMITS
from tests.conftest import ROOT, require_program
from tests.unit.test_settings_compound import CASES

pytestmark = pytest.mark.integration

MAX_EXPOSURE = 2.0
# Limits systemd reads but the settings refuse: no process starts without a file descriptor.
STRICTER = {("LimitNOFILE", "0")}
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    prefix = tmp_path / "atlas"
    prefix.mkdir()
    os.symlink(sys.prefix, prefix / "current")
    out = tmp_path / "units"
    write_units(out, Layout(prefix))
    return out


def test_systemd_directory_is_generated() -> None:
    expected = render_units(Layout())
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "systemd").iterdir()}
    assert on_disk == expected, "systemd/ differs from atlas/ops/units.py: python -m atlas.ops.units systemd"


def test_every_process_has_a_unit_and_the_target_wants_them() -> None:
    units = render_units(Layout())
    assert {u.file for u in PROCESS_UNITS} == {
        "atlas-api@.service",
        "atlas-core.service",
        "atlas-services.service",
        "atlas-monitoring.service",
        "atlas-exporter.service",
        "atlas-alert-router.service",
    }
    for unit in PROCESS_UNITS:
        text = units[unit.file]
        assert "Type=notify" in text and re.search(r"^WatchdogSec=\d+$", text, re.M), unit.file
    assert "ATLAS_API_PORT=%i" in units["atlas-api@.service"]
    wants = re.search(r"^Wants=(.*)$", units["atlas.target"], re.M)
    assert wants is not None and "atlas-api@8000.service" in wants.group(1).split()
    assert "atlas-ops backup create" in units["atlas-backup.service"]


@pytest.mark.parametrize("name", sorted(n for n in render_units(Layout()) if n.endswith(".service")))
def test_security_exposure_is_at_most_two(units: Path, name: str) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(units / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = EXPOSURE.search(done.stdout)
    assert found, f"no exposure level in: {done.stdout[-500:]} {done.stderr[-500:]}"
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def test_verify_reports_nothing(units: Path) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    files = sorted(str(p) for p in units.iterdir())
    # The template, and an instance of it as atlas.target starts it.
    files.append(str(units / "atlas-api@8000.service"))
    done = subprocess.run(
        [analyze, "verify", "--no-pager", *files], capture_output=True, text=True, timeout=120
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_verify_catches_a_missing_program(units: Path) -> None:
    """The check above is a real one: a unit whose ExecStart does not exist fails it."""
    analyze = require_program("systemd-analyze", "systemd")
    core = units / "atlas-core.service"
    core.write_text(core.read_text().replace("/bin/atlas core", "/bin/no-such-atlas core"))
    done = subprocess.run([analyze, "verify", str(core)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no-such-atlas" in done.stderr


def test_systemd_reads_every_limit_the_settings_accept_and_refuses_the_ones_they_refuse(
    tmp_path: Path,
) -> None:
    """The ATLAS_SYSTEMD_* parsers agree with systemd itself: each value the settings test accepts
    gives a unit `verify` is silent about, each value it refuses for its syntax one verify warns of."""
    analyze = require_program("systemd-analyze", "systemd")
    variables = [
        f"ATLAS_SYSTEMD_{d.upper()}" for d in ("memory_max", "cpu_quota", "tasks_max", "limit_nofile")
    ]
    good: list[tuple[str, str]] = []
    bad: list[tuple[str, str]] = []
    for directive, variable in zip(LIMIT_DIRECTIVES, variables, strict=True):
        accepted, refused = CASES[variable]
        for raw, _ in accepted:
            good += [(directive, part.split("=", 1)[1].strip()) for part in raw.split(",") if part.strip()]
        for raw, _ in refused:
            unit, sep, value = raw.partition("=")
            # A syntax refusal (not a unit name's), but for one systemd takes that would not run.
            if sep and "," not in raw and unit in UNIT_LIMITS and (directive, value) not in STRICTER:
                bad.append((directive, value))
    assert len(good) >= 12 and len(bad) >= 12

    def verify(kind: str, lines: list[tuple[str, str]]) -> tuple[list[Path], str]:
        files = []
        for n, (directive, value) in enumerate(lines):
            unit = tmp_path / f"{kind}{n}.service"
            unit.write_text(f"[Service]\nExecStart=/bin/true\n{directive}={value}\n")
            files.append(unit)
        done = subprocess.run(
            [analyze, "verify", "--no-pager", *map(str, files)], capture_output=True, text=True, timeout=120
        )
        return files, done.stdout + done.stderr

    assert verify("good", good)[1] == ""
    files, said = verify("bad", bad)
    for unit, line in zip(files, bad, strict=True):
        assert f"{unit}:3:" in said, f"systemd takes {line}, which the settings refuse"
