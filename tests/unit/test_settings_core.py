import pytest

from atlas.errors import ConfigError
from atlas.settings import load_settings


def test_defaults_build_without_any_environment() -> None:
    s = load_settings({})
    assert (s.environment, s.db_synchronous, s.lease_seconds) == ("development", "FULL", 30.0)


def test_values_come_from_atlas_variables() -> None:
    s = load_settings(
        {"ATLAS_DB_SYNCHRONOUS": "normal", "ATLAS_LEASE_SECONDS": "5", "ATLAS_DATA_DIR": "/tmp/x"}
    )
    assert (s.db_synchronous, s.lease_seconds, str(s.sqlite_path)) == ("NORMAL", 5.0, "/tmp/x/atlas.db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ATLAS_LEASE_SECONDS": "soon"}, "ATLAS_LEASE_SECONDS: expected a number 1-3600, got 'soon'"),
        ({"ATLAS_DB_SYNCHRONOUS": "OFF"}, "ATLAS_DB_SYNCHRONOUS: expected one of FULL, NORMAL, got 'OFF'"),
        ({"ATLAS_BACKOFF_BASE_SECONDS": "10", "ATLAS_BACKOFF_CAP_SECONDS": "5"}, "ATLAS_BACKOFF_CAP_SECONDS"),
        ({"ATLAS_DATABASE_URL": "mysql://x"}, "ATLAS_DATABASE_URL: expected sqlite:///PATH"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings(env)
