"""`atlas-ops install` as a real command, into a directory standing for / (--root): nothing on this
machine outside tmp_path is touched, and no system user is created (--no-create-user; the owner
is `nobody`, who exists everywhere)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from atlas.ops.units import Layout, render_units
from tests.conftest import ROOT

PREFIX = "/srv/atlas-test"
SAFE = ("--no-create-user", "--user", "nobody")  # never a real system user from a test
ATLAS_OPS = str(Path(sys.executable).parent / "atlas-ops")


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    return subprocess.run(
        [ATLAS_OPS, "install", "--root", str(root), "--prefix", PREFIX, *SAFE, *args],
        env=env | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def mode_and_owner(path: Path) -> tuple[int, str]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = install(root, "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "# dry run: nothing changed"
    prefix = root / PREFIX.lstrip("/")
    assert f"mkdir  {prefix}/backups  mode 0700  owner nobody:nobody" in lines
    assert f"mkdir  {prefix}/config  mode 0750  owner root:nobody" in lines
    api_unit = f"unit   {root}/etc/systemd/system/atlas-api@.service  mode 0644  owner root:root"
    assert f"{api_unit}  (MemoryMax=1G CPUQuota=200% TasksMax=128 LimitNOFILE=65536)" in lines
    assert list(root.iterdir()) == []


def test_install_into_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    done = install(root)
    assert done.returncode == 0, done.stderr
    prefix = root / PREFIX.lstrip("/")
    expected = {"config": 0o750, "data": 0o750, "logs": 0o750, "backups": 0o700, "releases": 0o755}
    for name, mode in expected.items():
        got_mode, owner = mode_and_owner(prefix / name)
        assert got_mode == mode, name
        if os.geteuid() == 0:
            assert owner == ("root" if name in ("config", "releases") else "nobody"), name
        else:
            assert "owner unchanged: not root" in done.stdout
    assert (prefix / "current").resolve() == Path(sys.prefix).resolve()
    assert (prefix / "config" / "atlas.env").read_text().splitlines()[1:] == [
        "ATLAS_ENVIRONMENT=production",
        f"ATLAS_DATA_DIR={PREFIX}/data",
        f"ATLAS_BACKUP_DIR={PREFIX}/backups",
    ]
    shipped = (ROOT / "config" / "production.env").read_text()
    assert (prefix / "config" / "production.env").read_text() == shipped
    units = root / "etc" / "systemd" / "system"
    assert {p.name: p.read_text() for p in units.iterdir()} == render_units(Layout(Path(PREFIX), "nobody"))

    # Again, after the operator edited the config: the config is kept, the units rewritten.
    (prefix / "config" / "production.env").write_text("ATLAS_LOG_LEVEL=DEBUG\n")
    (units / "atlas-core.service").write_text("stale\n")
    again = install(root)
    assert again.returncode == 0, again.stderr
    assert f"keep   {prefix}/config/production.env  (exists)" in again.stdout.splitlines()
    assert (prefix / "config" / "production.env").read_text() == "ATLAS_LOG_LEVEL=DEBUG\n"
    assert (units / "atlas-core.service").read_text() == render_units(Layout(Path(PREFIX), "nobody"))[
        "atlas-core.service"
    ]


def test_an_environment_without_its_env_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    done = install(tmp_path / "root", "--config-from", str(config))
    assert done.returncode == 2
    assert f"--environment production: no {config}/production.env" in done.stderr
    assert not (tmp_path / "root").exists()


def test_a_relative_prefix_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [ATLAS_OPS, "install", "--prefix", "opt/atlas", "--dry-run", "--no-create-user"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2 and "--prefix" in done.stderr and "absolute" in done.stderr


def test_the_units_take_the_limits_of_the_environments_settings(tmp_path: Path) -> None:
    """ATLAS_SYSTEMD_* in the environment's .env: the dry run shows them, the installed units hold
    them, editing the installed .env and installing again changes them, and a bad one is refused
    (exit 2, file:line and variable) by install and by `config validate` alike."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    with (config / "production.env").open("a") as env_file:
        env_file.write("ATLAS_SYSTEMD_MEMORY_MAX=core=4G\nATLAS_SYSTEMD_CPU_QUOTA=api=150%, core=300%\n")
    root = tmp_path / "root"
    root.mkdir()
    units = root / "etc" / "systemd" / "system"

    dry = install(root, "--config-from", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    core = f"unit   {units}/atlas-core.service  mode 0644  owner root:root"
    assert f"{core}  (MemoryMax=4G CPUQuota=300% TasksMax=512 LimitNOFILE=65536)" in dry.stdout.splitlines()
    assert "(MemoryMax=1G CPUQuota=150% TasksMax=128 LimitNOFILE=65536)" in dry.stdout
    assert list(root.iterdir()) == []

    done = install(root, "--config-from", str(config))
    assert done.returncode == 0, done.stderr
    core_text = (units / "atlas-core.service").read_text().splitlines()
    assert {"MemoryMax=4G", "CPUQuota=300%", "TasksMax=512", "LimitNOFILE=65536"} <= set(core_text)
    assert "CPUQuota=150%" in (units / "atlas-api@.service").read_text().splitlines()
    # The units not named keep the defaults: the exporter's unit is the default rendering.
    default = render_units(Layout(Path(PREFIX), "nobody"))["atlas-exporter.service"]
    assert (units / "atlas-exporter.service").read_text() == default

    # The operator changes the installed .env (install keeps it) and installs again.
    installed = root / PREFIX.lstrip("/") / "config" / "production.env"
    installed.write_text(installed.read_text() + "ATLAS_SYSTEMD_TASKS_MAX=core=infinity\n")
    again = install(root, "--config-from", str(config))
    assert again.returncode == 0, again.stderr
    assert "TasksMax=infinity" in (units / "atlas-core.service").read_text().splitlines()

    lines = installed.read_text().splitlines()
    installed.write_text("\n".join([*lines, "ATLAS_SYSTEMD_LIMIT_NOFILE=core=lots"]) + "\n")
    message = f"{installed}:{len(lines) + 1}: ATLAS_SYSTEMD_LIMIT_NOFILE: 'core=lots': 'lots' is not a count"
    refused = install(root, "--config-from", str(config))
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert "TasksMax=infinity" in (units / "atlas-core.service").read_text()  # nothing rewritten
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    validate = subprocess.run(
        [ATLAS_OPS, "config", "validate", "--env", "production", "--format", "json"],
        env=env | {"PYTHONPATH": str(ROOT), "ATLAS_CONFIG_DIR": str(installed.parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validate.returncode == 2, validate.stdout + validate.stderr
    [finding] = json.loads(validate.stdout)["findings"]
    where = f"{finding['file']}:{finding['line']}: {finding['key']}: {finding['message']}"
    assert where.startswith(message), where
