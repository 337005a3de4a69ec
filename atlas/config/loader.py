"""Build `Settings` from defaults < CONFIG_DIR/<env>.env (+ <env>.secrets) < the process environment.

Every value remembers where it came from (`Source`), every mistake becomes a `Finding` naming
file, line, key, the bad value and what was expected. `collect` gathers all findings (for
`atlas-ops config validate`); `load` raises ConfigError with them (for starting a process).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atlas.config.envfile import parse_env
from atlas.config.findings import DEFAULT as DEFAULT
from atlas.config.findings import ENVIRONMENT as ENVIRONMENT
from atlas.config.findings import Finding as Finding
from atlas.config.findings import Loaded as Loaded
from atlas.config.findings import Source as Source
from atlas.config.guard import production_findings
from atlas.errors import ConfigError
from atlas.secrets import KEY_VARIABLE, decrypt_all, load_keyring
from atlas.settings import SecretValues, Settings, setting_fields, validate

# ATLAS_* variables that are not settings: they may be set in the process environment only.
PROCESS_ONLY = frozenset({KEY_VARIABLE, "ATLAS_REQUIRE_INTEGRATION"})


def _by_env() -> dict[str, dataclasses.Field[Any]]:
    return {f.metadata["env"]: f for f in setting_fields()}


def unknown_key(key: str) -> str:
    """The message for an ATLAS_* key that is not a setting, with a did-you-mean when one is close."""
    close = difflib.get_close_matches(key, [*_by_env(), *PROCESS_ONLY], n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]}?)" if close else " (see config/REFERENCE.md)"
    return f"not a setting{hint}"


def collect(
    environ: Mapping[str, str],
    *,
    environment: str | None = None,
    files: bool = True,
    secrets: bool = True,
    overrides: bool = True,
) -> Loaded:
    """Read one environment's configuration, gathering every finding.

    `environment` overrides ATLAS_ENVIRONMENT; `overrides=False` ignores the process environment's
    settings (for validating and comparing the files themselves), keeping ATLAS_CONFIG_DIR and the
    key. `settings` is None when there are errors.
    """
    by_env = _by_env()
    findings: list[Finding] = []
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}

    def put(f: dataclasses.Field[Any], raw: str, source: Source) -> None:
        try:
            values[f.name] = f.metadata["parse"](raw)
            sources[f.name] = source
        except ValueError as exc:
            findings.append(Finding(f.metadata["env"], str(exc), source))

    if overrides:
        for key in sorted(k for k in environ if k.startswith("ATLAS_")):
            if key not in by_env and key not in PROCESS_ONLY:
                findings.append(Finding(key, unknown_key(key)))
    for key in ("ATLAS_ENVIRONMENT", "ATLAS_CONFIG_DIR"):
        if key in environ:
            put(by_env[key], environ[key], ENVIRONMENT)
    if environment is not None:
        put(by_env["ATLAS_ENVIRONMENT"], environment, Source("argument"))
    env_name: str = values.get("environment", Settings.environment)
    config_dir: Path = values.get("config_dir", Settings.config_dir)
    loaded = Loaded(env_name, config_dir, None, sources, findings)

    if files and loaded.env_path.exists():
        findings += _read_env_file(loaded.env_path, by_env, put)
    if overrides:
        for key in sorted(
            k for k in environ if k in by_env and k not in ("ATLAS_ENVIRONMENT", "ATLAS_CONFIG_DIR")
        ):
            put(by_env[key], environ[key], ENVIRONMENT)
    if loaded.errors:
        return loaded
    settings = Settings(**values)
    try:
        validate(settings)
    except ConfigError as exc:
        # Cross-field messages start with the variable at fault: point at where its value came from.
        key, _, message = str(exc).partition(": ")
        f = by_env.get(key)
        source = sources.get(f.name, DEFAULT) if f else DEFAULT
        findings.append(Finding(key, message, source) if f else Finding("", str(exc)))
        return loaded
    if files and secrets:
        settings = _with_secrets(loaded, settings, environ, values)
    if settings.environment == "production":
        findings += production_findings(settings, loaded)
    loaded.settings = None if loaded.errors else settings
    return loaded


def _read_env_file(path: Path, by_env: dict[str, dataclasses.Field[Any]], put: Any) -> list[Finding]:
    where = str(path)
    try:
        entries = parse_env(path.read_text(encoding="utf-8"), where)
    except (OSError, UnicodeDecodeError) as exc:
        return [Finding("", f"cannot read the file: {exc}", Source("file", where))]
    except ConfigError as exc:
        return [
            Finding("", str(exc).removeprefix(f"{where}:").split(": ", 1)[-1], _source_of(str(exc), where))
        ]
    findings: list[Finding] = []
    for entry in entries:
        source = Source("file", where, entry.line)
        f = by_env.get(entry.key)
        if f is None:
            message = unknown_key(entry.key) if entry.key.startswith("ATLAS_") else "not an Atlas setting"
            if entry.key in PROCESS_ONLY:
                message = "set it in the process environment, not in a file"
            findings.append(Finding(entry.key, message, source))
        elif f.metadata.get("bootstrap"):
            findings.append(
                Finding(entry.key, "chooses the file itself: set it in the process environment", source)
            )
        elif "secret" in f.metadata:
            name = f.metadata["secret"]
            findings.append(
                Finding(
                    entry.key,
                    f"a secret does not belong in an env file: store it with "
                    f"`atlas-ops config secrets set {name}` (it is read from the {name!r} secret)",
                    source,
                )
            )
        else:
            put(f, entry.value, source)
    return findings


def _source_of(message: str, where: str) -> Source:
    head = message.removeprefix(f"{where}:").split(":", 1)[0]
    return Source("file", where, int(head) if head.isdigit() else None)


def _with_secrets(
    loaded: Loaded, settings: Settings, environ: Mapping[str, str], values: dict[str, Any]
) -> Settings:
    path = loaded.secrets_path
    try:
        ring = load_keyring(environ, settings.key_file_path, settings.environment)
    except ConfigError as exc:
        from_env = bool(environ.get(KEY_VARIABLE, "").strip())
        source = ENVIRONMENT if from_env else Source("file", str(settings.key_file_path))
        loaded.findings.append(Finding("", str(exc), source))
        return settings
    loaded.keyring = ring
    if not path.exists():
        return settings
    if ring is None:
        loaded.findings.append(
            Finding(
                "",
                f"no key to decrypt it: set {KEY_VARIABLE} or put the key in {settings.key_file_path} "
                "(ATLAS_SECRETS_KEY_FILE)",
                Source("file", str(path)),
            )
        )
        return settings
    try:
        decrypted = decrypt_all(path, ring)
    except ConfigError as exc:
        loaded.findings.append(Finding("", str(exc), Source("file", str(path))))
        return settings
    for f in setting_fields():
        name = f.metadata.get("secret")
        if name in decrypted and loaded.sources.get(f.name) != ENVIRONMENT:
            values[f.name] = decrypted[name]
            loaded.sources[f.name] = Source("secrets", str(path))
    return dataclasses.replace(Settings(**values), secrets=SecretValues(decrypted))


def load(environ: Mapping[str, str], *, files: bool = True, secrets: bool = True) -> tuple[Settings, Loaded]:
    """`collect`, raising ConfigError listing every error (one a line) when there is any.

    `atlas-ops config validate` calls `collect` with the same arguments (see
    `atlas.config.reference.validate_environment`): what it passes, a process starts with.
    """
    loaded = collect(environ, files=files, secrets=secrets)
    if loaded.errors or loaded.settings is None:
        raise ConfigError("\n".join(str(f) for f in loaded.errors) or "invalid configuration")
    return loaded.settings, loaded


def load_settings(
    environ: Mapping[str, str] | None = None, *, files: bool = True, secrets: bool = True
) -> Settings:
    """Build the settings: defaults < CONFIG_DIR/<env>.env < `environ` (default: os.environ).

    `files=False` skips the env and secrets files (defaults and `environ` only); `secrets=False`
    skips only the secrets. In production the production guard runs too.
    Raises ConfigError naming the file, line, variable, the bad value and what was expected.
    """
    env = os.environ if environ is None else environ
    return load(env, files=files, secrets=secrets)[0]
