"""`atlas-ops config`: validate, show, diff, schema, and the encrypted secrets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from cryptography.fernet import Fernet

from atlas import secrets as sec
from atlas.cli.common import clean_errors, emit, format_choice, format_option
from atlas.config.loader import collect
from atlas.config.reference import diff, effective, reference_markdown, schema, validate_environment
from atlas.errors import ConfigError
from atlas.settings import ENVIRONMENTS

env_option = click.option(
    "--env", "environment", type=click.Choice(ENVIRONMENTS), default=None, help="Default: ATLAS_ENVIRONMENT."
)


@click.group()
def config() -> None:
    """Settings, config files and secrets."""


@config.command("validate")
@env_option
@click.option("--all", "every", is_flag=True, help="Every environment.")
@format_option
@clean_errors
def config_validate(environment: str | None, every: bool, fmt: str) -> None:
    """Check env files, secrets (decryptable), alerting.yaml and monitoring.yaml; exit 2 on errors."""
    chosen = ENVIRONMENTS if every else (environment or os.environ.get("ATLAS_ENVIRONMENT", "development"),)
    rows = []
    for env in chosen:
        rows += [{"environment": env, **f.as_dict()} for f in validate_environment(os.environ, env)]
    errors = sum(r["severity"] == "error" for r in rows)
    if fmt == "json":
        emit(fmt, {"ok": errors == 0, "environments": list(chosen), "findings": rows})
    elif rows:
        emit(fmt, rows, ["environment", "severity", "file", "line", "key", "message"])
    click.echo(f"{len(chosen)} environment(s): {errors} error(s), {len(rows) - errors} warning(s)", err=True)
    sys.exit(2 if errors else 0)


@config.command("show")
@env_option
@format_option
@clean_errors
def config_show(environment: str | None, fmt: str) -> None:
    """Effective settings and where each value came from (default, file:line, environment)."""
    loaded = collect(os.environ, environment=environment)
    if loaded.errors or loaded.settings is None:
        raise ConfigError("\n".join(str(f) for f in loaded.errors))
    emit(fmt, effective(loaded), ["key", "value", "source"])


@config.command("diff")
@click.argument("first", type=click.Choice(ENVIRONMENTS))
@click.argument("second", type=click.Choice(ENVIRONMENTS))
@format_option
@clean_errors
def config_diff(first: str, second: str, fmt: str) -> None:
    """Settings that differ between two environments' files."""
    rows, errors = diff(os.environ, first, second)
    if errors:
        raise ConfigError("\n".join(str(f) for f in errors))
    emit(fmt, rows)


@config.command("schema")
@format_choice(["markdown", "json"], "markdown (config/REFERENCE.md) for people, json for programs.")
def config_schema(fmt: str) -> None:
    """Every setting with its default and meaning (markdown: this is config/REFERENCE.md)."""
    if fmt == "json":
        emit(fmt, schema())
    else:
        click.echo(reference_markdown(), nl=False)


# -- secrets -------------------------------------------------------------------------------------


def _context(environment: str | None, *, need_key: bool = True) -> tuple[Path, Path, sec.KeyRing | None]:
    """The secrets file, the key file and the key ring of the chosen environment."""
    loaded = collect(os.environ, environment=environment, secrets=False)
    if loaded.errors or loaded.settings is None:
        raise ConfigError("\n".join(str(f) for f in loaded.errors))
    key_file = loaded.settings.key_file_path
    ring = sec.load_keyring(os.environ, key_file, loaded.environment)
    if ring is None and need_key:
        raise ConfigError(
            f"no key for {loaded.secrets_path}: set {sec.KEY_VARIABLE} or create {key_file} "
            "with `atlas-ops config secrets keygen`"
        )
    return loaded.secrets_path, key_file, ring


@config.group("secrets")
def secrets_group() -> None:
    """Encrypted secrets of CONFIG_DIR/<env>.secrets (values never on the command line)."""


@secrets_group.command("set")
@click.argument("name")
@env_option
@clean_errors
def secrets_set(name: str, environment: str | None) -> None:
    """Store NAME; the value is read from stdin (or a hidden prompt on a terminal)."""
    path, _, ring = _context(environment)
    assert ring is not None
    if sys.stdin.isatty():
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n")
    kept = sec.set_secret(path, ring, sec.check_name(name), value)
    click.echo(f"{name}: stored in {path} (key id {ring.ids[0]})", err=True)
    if kept is not None:
        what = "previous value" if kept.value else "previous value (none: keys so far have no pepper)"
        click.echo(
            f"{name}: the {what} is kept in {kept.name}, so existing API keys keep working; each is "
            "re-hashed with the new pepper when next used (restart the API processes to load it). "
            "Once `atlas-ops apikey list` shows no key on an old pepper: "
            f"`atlas-ops config secrets rm {kept.name}`",
            err=True,
        )


@secrets_group.command("get")
@click.argument("name")
@env_option
@click.option("--reveal", is_flag=True, help="Required: print the decrypted value to stdout.")
@clean_errors
def secrets_get(name: str, environment: str | None, reveal: bool) -> None:
    """Print NAME's value (only with --reveal)."""
    path, _, ring = _context(environment)
    assert ring is not None
    values = sec.decrypt_all(path, ring)
    if name not in values:
        raise ConfigError(f"{path}: no secret {name!r}")
    if not reveal:
        raise ConfigError(f"{name}: exists; add --reveal to print its value")
    click.echo(values[name])


@secrets_group.command("list")
@env_option
@format_option
@clean_errors
def secrets_list(environment: str | None, fmt: str) -> None:
    """Names, last change and key id (never values)."""
    path, _, _ = _context(environment, need_key=False)
    rows = [{"name": n, "changed": e.changed, "key_id": e.key_id} for n, e in sec.read_secrets(path).items()]
    emit(fmt, rows, ["name", "changed", "key_id"])


@secrets_group.command("rm")
@click.argument("name")
@env_option
@clean_errors
def secrets_rm(name: str, environment: str | None) -> None:
    """Remove NAME."""
    path, _, _ = _context(environment, need_key=False)
    if not sec.remove_secret(path, name):
        raise ConfigError(f"{path}: no secret {name!r}")
    click.echo(f"{name}: removed from {path}", err=True)


@secrets_group.command("rotate")
@env_option
@click.option("--finish", is_flag=True, help="End a rotation: drop every key but the primary.")
@clean_errors
def secrets_rotate(environment: str | None, finish: bool) -> None:
    """Make a new primary key and re-encrypt every value; old keys stay until --finish."""
    path, key_file, ring = _context(environment)
    assert ring is not None
    if ring.source == sec.KEY_VARIABLE:
        raise ConfigError(
            f"{sec.KEY_VARIABLE}: rotate maintains the key file ({key_file}); unset {sec.KEY_VARIABLE} "
            "or rotate by hand: keygen, put the new key first, re-set the values"
        )
    if finish:
        done = sec.finish_rotation(path, ring, key_file)
        click.echo(f"rotation finished: {key_file} holds only key id {done.ids[0]}", err=True)
    else:
        new = sec.rotate(path, ring, key_file)
        click.echo(
            f"new primary key id {new.ids[0]} in {key_file}; values re-encrypted. Old key ids "
            f"{', '.join(new.ids[1:])} stay until `atlas-ops config secrets rotate --finish`",
            err=True,
        )


@secrets_group.command("keygen")
@env_option
@click.option("--print", "to_stdout", is_flag=True, help="Print the key instead of writing the key file.")
@clean_errors
def secrets_keygen(environment: str | None, to_stdout: bool) -> None:
    """Create a key: write the key file (mode 0600, refused if it exists) or print it."""
    key = Fernet.generate_key()
    if to_stdout:
        click.echo(key.decode())
        return
    _, key_file, _ = _context(environment, need_key=False)
    if key_file.exists():
        raise ConfigError(f"{key_file}: exists; use `atlas-ops config secrets rotate` to replace its key")
    sec.write_key_file(key_file, (key,))
    click.echo(f"key id {sec.key_id(key)} written to {key_file} (mode 0600)", err=True)
