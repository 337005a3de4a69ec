"""Layering, provenance and every error path of the settings files: each message names file, line
and key. Real files in tmp_path; no environment is read but the mapping handed in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from atlas import secrets as sec
from atlas.config.loader import collect, load_settings
from atlas.config.reference import reference_markdown
from atlas.errors import ConfigError
from atlas.settings import CATEGORIES, _setting, setting_fields

ROOT = Path(__file__).resolve().parents[2]


def write(config: Path, name: str, text: str) -> Path:
    config.mkdir(parents=True, exist_ok=True)
    path = config / name
    path.write_text(text, encoding="utf-8")
    return path


def env_for(config: Path, environment: str = "staging", **extra: str) -> dict[str, str]:
    return {"ATLAS_CONFIG_DIR": str(config), "ATLAS_ENVIRONMENT": environment, **extra}


def errors(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ)
    return str(exc.value).splitlines()


def test_precedence_defaults_then_file_then_process_environment(tmp_path: Path) -> None:
    write(tmp_path, "staging.env", "# staging\nATLAS_API_PORT=8100\nATLAS_WORKERS=3\n")
    loaded = collect(env_for(tmp_path, ATLAS_WORKERS="5"))
    assert loaded.settings is not None
    s = loaded.settings
    assert (s.api_port, s.workers, s.lease_seconds) == (8100, 5, 30.0)
    sources = {k: str(v) for k, v in loaded.sources.items()}
    assert sources["api_port"] == f"{tmp_path}/staging.env:2"
    assert sources["workers"] == "environment"
    assert "lease_seconds" not in sources  # the default


def test_the_environment_picks_its_own_file(tmp_path: Path) -> None:
    write(tmp_path, "staging.env", "ATLAS_API_PORT=8100\n")
    write(tmp_path, "production.env", "ATLAS_API_PORT=8200\n")
    assert load_settings(env_for(tmp_path, "production")).api_port == 8200
    assert load_settings(env_for(tmp_path, "development")).api_port == 8000  # no file: defaults


def test_a_bad_value_names_file_line_key_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "production.env", "\n" * 11 + "ATLAS_API_PORT=80a\n")
    assert errors(env_for(tmp_path, "production")) == [
        f"{path}:12: ATLAS_API_PORT: expected an integer 1-65535, got '80a'"
    ]


def test_every_bad_line_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, "staging.env", "ATLAS_API_PORT=0\nATLAS_LEASE_SECONDS=soon\nATLAS_WORKRES=2\n")
    assert errors(env_for(tmp_path)) == [
        f"{path}:1: ATLAS_API_PORT: expected an integer 1-65535, got '0'",
        f"{path}:2: ATLAS_LEASE_SECONDS: expected a number 1-3600, got 'soon'",
        f"{path}:3: ATLAS_WORKRES: not a setting (did you mean ATLAS_WORKERS?)",
    ]


def test_unknown_keys_in_the_process_environment_are_errors_too(tmp_path: Path) -> None:
    assert errors(env_for(tmp_path, ATLAS_LEASE_SECOND="5")) == [
        "ATLAS_LEASE_SECOND: not a setting (did you mean ATLAS_LEASE_SECONDS?)"
    ]
    assert load_settings(env_for(tmp_path, ATLAS_REQUIRE_INTEGRATION="1")).environment == "staging"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ATLAS_ENVIRONMENT=production", "ATLAS_ENVIRONMENT: chooses the file itself"),
        ("ATLAS_CONFIG_DIR=/etc/atlas", "ATLAS_CONFIG_DIR: chooses the file itself"),
        ("ATLAS_API_KEY_PEPPER=abc", "ATLAS_API_KEY_PEPPER: a secret does not belong in an env file"),
        ("ATLAS_SECRETS_KEY=abc", "ATLAS_SECRETS_KEY: set it in the process environment, not in a file"),
        ("HOME=/root", "HOME: not an Atlas setting"),
        (
            "ATLAS_COMPLETELY_DIFFERENT=1",
            "ATLAS_COMPLETELY_DIFFERENT: not a setting (see config/REFERENCE.md)",
        ),
        ("ATLAS_API_PORT=1\nATLAS_API_PORT=2", "ATLAS_API_PORT: set twice (first at line 2)"),
        ("ATLAS_API_HOST='unclosed", "ATLAS_API_HOST: the value's opening ' is never closed"),
        (
            "ATLAS_FETCH_HOST_CONCURRENCY=a.example",
            "ATLAS_FETCH_HOST_CONCURRENCY: 'a.example' is not host=limit",
        ),
        ("ATLAS_MEMORY_BUDGET_BYTES=lots", "ATLAS_MEMORY_BUDGET_BYTES: expected a size in bytes"),
    ],
)
def test_file_errors_name_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, "staging.env", "# first line\n" + line + "\n")
    found = errors(env_for(tmp_path))
    assert len(found) == 1
    number = 3 if "set twice" in message else 2
    assert found[0].startswith(f"{path}:{number}: {message}"), found[0]


@pytest.mark.parametrize(
    ("name", "content", "extra", "message"),
    [
        (
            "staging.env",
            b"ATLAS_API_PORT=\xff\n",
            {},
            "{path}: cannot read the file: 'utf-8' codec can't decode",
        ),
        (
            "staging.secrets",
            b'{"format": 2}',
            {"ATLAS_SECRETS_KEY": sec.DEVELOPMENT_KEY.decode()},
            '{path}: not a secrets file: expected {{"format": 1',
        ),
        (
            "staging.secrets",
            b'{"format": 1, "secrets": {}}',
            {"ATLAS_SECRETS_KEY": "short"},
            "ATLAS_SECRETS_KEY: expected a Fernet key",
        ),
        (
            "staging.secrets",
            b'{"format": 1, "secrets": {}}',
            {"ATLAS_SECRETS_KEY_FILE": "{dir}/k"},
            "{dir}/k: holds no key",
        ),
    ],
)
def test_unreadable_and_malformed_files_name_the_file(
    tmp_path: Path, name: str, content: bytes, extra: dict[str, str], message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    (tmp_path / "k").write_text("# no key here\n")
    extra = {k: v.replace("{dir}", str(tmp_path)) for k, v in extra.items()}
    found = errors(env_for(tmp_path, **extra))
    assert found[0].startswith(message.format(path=tmp_path / name, dir=tmp_path)), found


def test_a_bad_environment_name_is_an_error(tmp_path: Path) -> None:
    assert errors({"ATLAS_CONFIG_DIR": str(tmp_path), "ATLAS_ENVIRONMENT": "prod"}) == [
        "ATLAS_ENVIRONMENT: expected one of development, staging, production, got 'prod'"
    ]


def test_sizes_accept_units(tmp_path: Path) -> None:
    write(tmp_path, "staging.env", "ATLAS_MEMORY_BUDGET_BYTES=2GiB\nATLAS_DISK_LOW_WATER_BYTES=100MB\n")
    s = load_settings(env_for(tmp_path))
    assert (s.memory_budget_bytes, s.disk_low_water_bytes) == (2 << 30, 100_000_000)


def test_cross_field_errors_name_the_line_of_the_variable_at_fault(tmp_path: Path) -> None:
    path = write(tmp_path, "staging.env", "ATLAS_BACKOFF_BASE_SECONDS=10\nATLAS_BACKOFF_CAP_SECONDS=5\n")
    assert errors(env_for(tmp_path)) == [
        f"{path}:2: ATLAS_BACKOFF_CAP_SECONDS: must be >= ATLAS_BACKOFF_BASE_SECONDS (got 5 < 10)"
    ]
    path = write(tmp_path, "staging.env", "# db\nATLAS_DATABASE_URL=mysql://x\n")
    assert errors(env_for(tmp_path))[0].startswith(f"{path}:2: ATLAS_DATABASE_URL: expected sqlite:///PATH")


def test_a_damaged_secrets_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "staging.secrets", '{\n  "format": 1,\n  "secrets": {,}\n}\n')
    found = errors(env_for(tmp_path, ATLAS_SECRETS_KEY=Fernet.generate_key().decode()))
    assert found == [f"{path}:3: not a secrets file: Expecting property name enclosed in double quotes"]


def test_files_false_reads_no_file(tmp_path: Path) -> None:
    write(tmp_path, "staging.env", "ATLAS_API_PORT=80a\n")
    assert load_settings(env_for(tmp_path), files=False).api_port == 8000


def test_secret_settings_come_from_the_secrets_file(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    ring = sec.KeyRing((key,), "test")
    sec.set_secret(tmp_path / "staging.secrets", ring, "api_key_pepper", "pepper-value-123")
    sec.set_secret(tmp_path / "staging.secrets", ring, "smtp_password", "smtp-pass-456")
    loaded = collect(env_for(tmp_path, ATLAS_SECRETS_KEY=key.decode()))
    assert loaded.settings is not None
    assert loaded.settings.api_key_pepper == "pepper-value-123"
    assert dict(loaded.settings.secrets) == {
        "api_key_pepper": "pepper-value-123",
        "api_key_pepper_previous": sec.EMPTY_PREVIOUS,  # the first pepper keeps the empty one
        "smtp_password": "smtp-pass-456",
    }
    assert str(loaded.sources["api_key_pepper"]) == f"{tmp_path}/staging.secrets"
    assert "pepper-value" not in repr(loaded.settings)  # secrets stay out of reprs (and tracebacks)


def test_a_pepper_change_keeps_the_old_one_the_empty_one_included(tmp_path: Path) -> None:
    path, ring = tmp_path / "staging.secrets", sec.KeyRing((Fernet.generate_key(),), "test")
    previous = "api_key_pepper_previous"
    assert sec.set_secret(path, ring, "api_key_pepper", "p1") == sec.Kept(previous, "")
    assert sec.decrypt_all(path, ring)[previous] == sec.EMPTY_PREVIOUS
    assert sec.set_secret(path, ring, "api_key_pepper", "p1") is None  # unchanged: nothing kept
    assert sec.set_secret(path, ring, "api_key_pepper", "p2") == sec.Kept(previous, "p1")
    assert sec.previous_values(sec.decrypt_all(path, ring)[previous]) == ["p1", ""]
    assert sec.set_secret(path, ring, "smtp_password", "s1") is None
    assert sec.set_secret(path, ring, "smtp_password", "s2") is None  # only peppers keep theirs
    # Removed, then set again: keys made in between have no pepper, so "" is kept again (once).
    assert sec.remove_secret(path, "api_key_pepper")
    assert sec.set_secret(path, ring, "api_key_pepper", "p3") == sec.Kept(previous, "")
    assert sec.previous_values(sec.decrypt_all(path, ring)[previous]) == ["", "p1"]
    with pytest.raises(ConfigError, match="refusing '<empty>'"):
        sec.set_secret(path, ring, "api_key_pepper", "<empty>")
    # Kept values are read back a line each, stripped: such a pepper would stop verifying its keys.
    for bad in (" p4", "p4 ", "p4\np5", "p4\r"):
        with pytest.raises(ConfigError, match="spaces at either end or a line break"):
            sec.set_secret(path, ring, "api_key_pepper", bad)
    assert sec.decrypt_all(path, ring)["api_key_pepper"] == "p3"  # nothing was changed


def test_previous_values_written_before_the_empty_marker_still_load() -> None:
    assert sec.previous_values("old-2\n  old-1 \n\n") == ["old-2", "old-1"]
    assert sec.previous_values(None) == []


def test_a_secrets_file_without_a_key_is_refused_outside_development(tmp_path: Path) -> None:
    sec.set_secret(tmp_path / "staging.secrets", sec.KeyRing((Fernet.generate_key(),), "t"), "x_y", "v")
    found = errors(env_for(tmp_path, ATLAS_DATA_DIR=str(tmp_path / "data")))
    assert found == [
        f"{tmp_path}/staging.secrets: no key to decrypt it: set ATLAS_SECRETS_KEY or put the key in "
        f"{tmp_path}/data/secrets.key (ATLAS_SECRETS_KEY_FILE)"
    ]


def test_a_wrong_key_names_the_key_id_needed(tmp_path: Path) -> None:
    right, wrong = Fernet.generate_key(), Fernet.generate_key()
    sec.set_secret(tmp_path / "staging.secrets", sec.KeyRing((right,), "t"), "smtp_password", "v")
    found = errors(env_for(tmp_path, ATLAS_SECRETS_KEY=wrong.decode()))
    assert found == [
        f"cannot decrypt {tmp_path}/staging.secrets: the key does not match (key id {sec.key_id(right)} "
        f"is needed; ATLAS_SECRETS_KEY has {sec.key_id(wrong)})"
    ]


def test_a_malformed_key_file_names_file_and_line(tmp_path: Path) -> None:
    key_file = write(tmp_path, "k", "# keys\nnot-a-key\n")
    sec.set_secret(tmp_path / "staging.secrets", sec.KeyRing((Fernet.generate_key(),), "t"), "a_b", "v")
    found = errors(env_for(tmp_path, ATLAS_SECRETS_KEY_FILE=str(key_file)))
    assert found[0].startswith(f"{key_file}:2: expected a Fernet key")


def test_development_needs_no_key_and_uses_the_public_development_key(tmp_path: Path) -> None:
    sec.set_secret(tmp_path / "development.secrets", sec.KeyRing((sec.DEVELOPMENT_KEY,), "t"), "a_b", "v")
    s = load_settings(env_for(tmp_path, "development", ATLAS_DATA_DIR=str(tmp_path / "none")))
    assert dict(s.secrets) == {"a_b": "v"}


# -- the production guard ------------------------------------------------------------------------


def production(tmp_path: Path, env_text: str, **extra: str) -> list[str]:
    write(tmp_path, "production.env", env_text)
    return errors(env_for(tmp_path, "production", ATLAS_DATA_DIR=str(tmp_path / "data"), **extra))


def test_production_refuses_auth_disabled(tmp_path: Path) -> None:
    assert production(tmp_path, "ATLAS_API_AUTH_DISABLED=true\n") == [
        f"{tmp_path}/production.env:1: ATLAS_API_AUTH_DISABLED: "
        "authentication cannot be disabled in production"
    ]


def test_production_refuses_cors_star(tmp_path: Path) -> None:
    found = production(tmp_path, "# x\nATLAS_API_CORS_ORIGINS=https://a.example,*\n")
    assert found[0].startswith(f"{tmp_path}/production.env:2: ATLAS_API_CORS_ORIGINS: CORS '*' is refused")


def test_production_refuses_the_development_key(tmp_path: Path) -> None:
    found = production(tmp_path, "", ATLAS_SECRETS_KEY=sec.DEVELOPMENT_KEY.decode())
    assert found[0].startswith(
        "ATLAS_SECRETS_KEY: ATLAS_SECRETS_KEY holds the development key, which is public"
    )


def test_production_refuses_readable_key_and_secrets_files(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secrets.key"
    sec.write_key_file(key_file, (Fernet.generate_key(),))
    ring = sec.load_keyring({}, key_file, "production")
    assert ring is not None
    sec.set_secret(tmp_path / "production.secrets", ring, "smtp_password", "v")
    os.chmod(key_file, 0o640)
    os.chmod(tmp_path / "production.secrets", 0o644)
    assert production(tmp_path, "") == [
        f"{key_file}: ATLAS_SECRETS_KEY_FILE: the key file is readable by others (mode 0640); expected 0600 "
        "(chmod 600)",
        f"{tmp_path}/production.secrets: the secrets file is readable by others (mode 0644); expected not "
        "readable by others (chmod 600)",
    ]
    os.chmod(key_file, 0o600)
    os.chmod(tmp_path / "production.secrets", 0o600)
    assert load_settings(env_for(tmp_path, "production", ATLAS_DATA_DIR=str(tmp_path / "data"))).secrets


# -- the shipped files and the reference ---------------------------------------------------------


@pytest.mark.parametrize("environment", ["development", "staging", "production"])
def test_the_shipped_env_files_validate_clean(environment: str) -> None:
    loaded = collect({"ATLAS_CONFIG_DIR": str(ROOT / "config")}, environment=environment, overrides=False)
    assert [str(f) for f in loaded.findings] == []
    assert loaded.sources  # the file was read


def test_reference_md_is_generated_from_the_model() -> None:
    shipped = (ROOT / "config" / "REFERENCE.md").read_text(encoding="utf-8")
    assert shipped == reference_markdown(), "regenerate: atlas-ops config schema > config/REFERENCE.md"


def _reference_sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in reference_markdown().splitlines():
        if line.startswith("## "):
            current = line[3:]
            sections[current] = []
        elif current and line.startswith("| `ATLAS_"):
            sections[current].append(line.split("`")[1])
    return sections


def test_the_reference_groups_settings_by_their_own_category() -> None:
    sections = _reference_sections()
    assert list(sections) == list(CATEGORIES.values())
    by_category = {
        CATEGORIES[c]: [f.metadata["env"] for f in setting_fields() if f.metadata["category"] == c]
        for c in CATEGORIES
    }
    assert sections == by_category
    assert sum(map(len, sections.values())) == len(setting_fields())  # none dropped
    assert all(v.startswith("ATLAS_EXPORTER_") for v in sections["Exporter"])
    assert "ATLAS_FETCH_ALLOW_HOSTS" in sections["Fetching"]
    assert "ATLAS_HOST_RATE_OVERRIDES" in sections["Per-host politeness and circuit breakers"]
    assert "ATLAS_FEED_POLL_INTERVAL_SECONDS" in sections["Feeds"]


def test_a_setting_must_name_a_known_category() -> None:
    with pytest.raises(ValueError, match="ATLAS_X: category 'nope' is not one of general, api"):
        _setting("ATLAS_X", 1, int, "x", category="nope")
