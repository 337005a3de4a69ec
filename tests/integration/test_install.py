"""`atlas-ops install` as a real command, into a directory standing for / (--root): nothing on this
machine outside tmp_path is touched, and no system user is created (--no-create-user; the owner
is `nobody`, who exists everywhere)."""

from __future__ import annotations

import os
import pwd
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
    assert f"unit   {root}/etc/systemd/system/atlas-api@.service  mode 0644  owner root:root" in lines
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
