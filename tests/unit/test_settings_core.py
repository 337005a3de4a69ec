"""The settings' defaults and ATLAS_* overrides, read from a config directory of the test's own
(tmp_path): nothing here depends on the working directory or the shipped config/ files."""

from pathlib import Path

import pytest

from atlas.config.loader import collect, load_settings
from atlas.config.reference import effective
from atlas.errors import ConfigError
from atlas.settings import Settings


def environ(config_dir: Path, **extra: str) -> dict[str, str]:
    return {"ATLAS_CONFIG_DIR": str(config_dir), **extra}


def test_defaults_build_with_no_file_and_no_variable(tmp_path: Path) -> None:
    loaded = collect(environ(tmp_path))
    assert loaded.settings is not None and loaded.errors == []
    s = loaded.settings
    assert (s.environment, s.db_synchronous, s.lease_seconds) == ("development", "FULL", 30.0)
    assert s.sqlite_path == Path("var/atlas.db")
    # Every value is the model's default, and says so.
    sources = {row["key"]: row["source"] for row in effective(loaded)}
    assert set(sources.values()) == {"default", "environment"}
    assert [k for k, v in sources.items() if v == "environment"] == ["ATLAS_CONFIG_DIR"]
    assert s.replace(config_dir=Settings().config_dir) == Settings()


def test_the_development_file_of_the_config_dir_is_read(tmp_path: Path) -> None:
    (tmp_path / "development.env").write_text("ATLAS_LEASE_SECONDS=12\n")
    loaded = collect(environ(tmp_path))
    assert loaded.settings is not None and loaded.settings.lease_seconds == 12.0
    assert str(loaded.sources["lease_seconds"]) == f"{tmp_path}/development.env:1"


def test_values_come_from_atlas_variables(tmp_path: Path) -> None:
    (tmp_path / "development.env").write_text("ATLAS_LEASE_SECONDS=12\nATLAS_DATA_DIR=elsewhere\n")
    s = load_settings(
        environ(tmp_path, ATLAS_DB_SYNCHRONOUS="normal", ATLAS_LEASE_SECONDS="5", ATLAS_DATA_DIR="/tmp/x")
    )
    assert (s.db_synchronous, s.lease_seconds, str(s.sqlite_path)) == ("NORMAL", 5.0, "/tmp/x/atlas.db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ATLAS_LEASE_SECONDS": "soon"}, "ATLAS_LEASE_SECONDS: expected a number 1-3600, got 'soon'"),
        ({"ATLAS_DB_SYNCHRONOUS": "OFF"}, "ATLAS_DB_SYNCHRONOUS: expected one of FULL, NORMAL, got 'OFF'"),
        (
            {"ATLAS_BACKOFF_BASE_SECONDS": "10", "ATLAS_BACKOFF_CAP_SECONDS": "5"},
            "ATLAS_BACKOFF_CAP_SECONDS: must be >= ATLAS_BACKOFF_BASE_SECONDS (got 5 < 10)",
        ),
        (
            {"ATLAS_DATABASE_URL": "mysql://x"},
            "ATLAS_DATABASE_URL: expected sqlite:///PATH or postgresql://..., got 'mysql://x'",
        ),
    ],
)
def test_bad_values_name_the_variable_and_the_value(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ(tmp_path, **env))
    assert str(exc.value) == message
