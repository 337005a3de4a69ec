"""`atlas-ops config validate` reads the settings exactly as `atlas core` does: process environment,
key file under ATLAS_DATA_DIR, compound values. What validates clean starts; what does not start
does not validate. Real processes, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, atlas_env

OPS = [sys.executable, "-c", "from atlas.cli.ops import ops; ops()"]


def ops(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    # cwd: a relative default (./var/secrets.key) must not find the worktree's own files.
    return subprocess.run(
        [*OPS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, cwd=env["HOME_DIR"]
    )


def core(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A configuration error stops `atlas core` before it opens anything; a good one would run
    # until the timeout, which fails the test.
    return subprocess.run(
        [sys.executable, "-m", "atlas", "core"], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    return target


def env(tmp_path: Path, config_dir: Path, environment: str = "staging", **extra: str) -> dict[str, str]:
    e = atlas_env(tmp_path / "data", ATLAS_CONFIG_DIR=str(config_dir), ATLAS_ENVIRONMENT=environment, **extra)
    return {**e, "HOME_DIR": str(tmp_path)}


def test_a_bad_host_rate_stops_atlas_core_and_fails_validate_with_file_and_line(
    tmp_path: Path, config_dir: Path
) -> None:
    path = config_dir / "staging.env"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "ATLAS_HOST_RATE_OVERRIDES=slow.example=0.5,example.org=fast"]) + "\n")
    expected = (
        f"{path}:{len(lines) + 1}: ATLAS_HOST_RATE_OVERRIDES: 'example.org=fast' is not a rate: "
        "expected host=rate with requests per second, 0-1000000 (e.g. example.org=0.5)"
    )
    e = env(tmp_path, config_dir, ATLAS_SECRETS_KEY_FILE=str(tmp_path / "secrets.key"))
    started = core(e)
    assert (started.returncode, started.stderr) == (2, f"error: {expected}\n")
    validated = ops(e, "config", "validate", "--format", "json")
    assert validated.returncode == 2
    [finding] = json.loads(validated.stdout)["findings"]
    assert (finding["file"], finding["line"], finding["key"]) == (
        str(path),
        len(lines) + 1,
        "ATLAS_HOST_RATE_OVERRIDES",
    )
    assert f"{finding['file']}:{finding['line']}: {finding['key']}: {finding['message']}" == expected


def test_validate_sees_the_process_environment_as_the_server_does(tmp_path: Path, config_dir: Path) -> None:
    e = env(tmp_path, config_dir, "development", ATLAS_WORKERS="-3")
    started = core(e)
    assert started.returncode == 2
    assert "ATLAS_WORKERS: expected an integer 0-256, got '-3'" in started.stderr
    validated = ops(e, "config", "validate", "--format", "json")
    assert validated.returncode == 2, validated.stdout
    findings = json.loads(validated.stdout)["findings"]
    assert [(f["file"], f["key"], f["message"]) for f in findings] == [
        ("environment", "ATLAS_WORKERS", "expected an integer 0-256, got '-3'")
    ]
    unknown = ops({**e, "ATLAS_WORKERS": "2", "ATLAS_WORKRES": "2"}, "config", "validate")
    assert unknown.returncode == 2
    assert (
        "ATLAS_WORKRES" in unknown.stdout and "not a setting (did you mean ATLAS_WORKERS?)" in unknown.stdout
    )


def test_validate_finds_the_key_file_under_atlas_data_dir_after_a_rotation(
    tmp_path: Path, config_dir: Path
) -> None:
    """The key file's default place is DATA_DIR/secrets.key, for validate as for the server."""
    e = env(tmp_path, config_dir, "development")
    assert ops(e, "config", "secrets", "keygen").returncode == 0
    assert (tmp_path / "data" / "secrets.key").exists()
    assert ops(e, "config", "secrets", "set", "smtp_password", stdin="smtp-1").returncode == 0
    assert ops(e, "config", "secrets", "rotate").returncode == 0
    shown = ops(e, "config", "show", "--format", "json")
    assert shown.returncode == 0, shown.stderr  # the server's loader decrypts it
    validated = ops(e, "config", "validate", "--format", "json")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert json.loads(validated.stdout)["findings"] == []
