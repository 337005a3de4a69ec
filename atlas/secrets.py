"""Fernet-encrypted per-environment secrets (`CONFIG_DIR/<env>.secrets`) and key rotation.

A secrets file is JSON: `{"format": 1, "secrets": {NAME: {"value": TOKEN, "key_id": ID,
"changed": ISO-8601}}}`; only the values are encrypted, so names and dates can be listed without a
key. Keys come from `ATLAS_SECRETS_KEY` (comma-separated, primary first) or the key file
(`ATLAS_SECRETS_KEY_FILE`, mode 0600, one key a line, primary first). Several keys may be active at
once (MultiFernet): values are encrypted with the primary and decrypt with any of them, so a
rotation never breaks a process that holds the old and the new key.

Development needs no key: with none configured it uses DEVELOPMENT_KEY, which is public (it is
right here) and therefore refused in production by the production guard.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from atlas.errors import ConfigError

DEVELOPMENT_KEY = b"Lw_Bn_3iWCH1Dq9U64B0EnFY3qe0cmSFyK-5Za4y7TQ="
KEY_VARIABLE = "ATLAS_SECRETS_KEY"
FORMAT = 1
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (its SHA-256, 8 hex digits): names a key, reveals nothing."""
    return hashlib.sha256(key).hexdigest()[:8]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"secret name: expected lowercase letters, digits and _ (e.g. smtp_password), got {name!r}"
        )
    return name


@dataclass(frozen=True)
class KeyRing:
    """The active keys, primary first, and where they came from (for messages)."""

    keys: tuple[bytes, ...]
    source: str
    path: Path | None = None

    @property
    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    @property
    def has_development_key(self) -> bool:
        return DEVELOPMENT_KEY in self.keys

    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.keys])


def parse_keys(text: str, where: str) -> tuple[bytes, ...]:
    """Keys from a key file's text or ATLAS_SECRETS_KEY (comma or newline separated, # comments)."""
    keys: list[bytes] = []
    pieces = [
        (number, piece.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        for piece in line.split("#", 1)[0].split(",")
    ]
    for number, raw in pieces:
        if not raw:
            continue
        try:
            Fernet(raw.encode())
        except ValueError:
            at = f"{where}:{number}" if where != KEY_VARIABLE else where
            raise ConfigError(
                f"{at}: expected a Fernet key (44 URL-safe base64 characters, see `atlas-ops config "
                f"secrets keygen`), got {len(raw)} characters"
            ) from None
        keys.append(raw.encode())
    if not keys:
        raise ConfigError(f"{where}: holds no key")
    return tuple(keys)


def load_keyring(environ: Mapping[str, str], key_file: Path, environment: str) -> KeyRing | None:
    """ATLAS_SECRETS_KEY, else the key file, else (development only) DEVELOPMENT_KEY, else None."""
    if environ.get(KEY_VARIABLE, "").strip():
        return KeyRing(parse_keys(environ[KEY_VARIABLE], KEY_VARIABLE), KEY_VARIABLE)
    if key_file.exists():
        try:
            text = key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{key_file}: cannot read the key file: {exc.strerror}") from None
        return KeyRing(parse_keys(text, str(key_file)), str(key_file), key_file)
    if environment == "development":
        return KeyRing((DEVELOPMENT_KEY,), "the development key")
    return None


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (the file never exists with wider modes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_key_file(path: Path, keys: tuple[bytes, ...]) -> None:
    lines = ["# Atlas secrets keys, primary first (atlas-ops config secrets keygen / rotate). Mode 0600."]
    lines += [f"{k.decode()}  # key id {key_id(k)}" for k in keys]
    _write_private(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class StoredSecret:
    token: str
    key_id: str
    changed: str


def read_secrets(path: Path) -> dict[str, StoredSecret]:
    """The entries of a secrets file ({} when it does not exist); values stay encrypted."""
    if not path.exists():
        return {}
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not a secrets file: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the secrets file: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("secrets"), dict)
    ):
        raise ConfigError(f'{path}: not a secrets file: expected {{"format": {FORMAT}, "secrets": {{...}}}}')
    out: dict[str, StoredSecret] = {}
    for name, entry in data["secrets"].items():
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("value", "key_id")):
            raise ConfigError(f"{path}: secret {name!r}: expected value and key_id strings")
        out[name] = StoredSecret(entry["value"], entry["key_id"], str(entry.get("changed", "")))
    return out


def write_secrets(path: Path, entries: Mapping[str, StoredSecret]) -> None:
    body = {
        name: {"value": e.token, "key_id": e.key_id, "changed": e.changed}
        for name, e in sorted(entries.items())
    }
    _write_private(path, json.dumps({"format": FORMAT, "secrets": body}, indent=2) + "\n")


def _no_match(path: Path, needed: str, ring: KeyRing) -> ConfigError:
    return ConfigError(
        f"cannot decrypt {path}: the key does not match (key id {needed} is needed; "
        f"{ring.source} has {', '.join(ring.ids)})"
    )


def decrypt_all(path: Path, ring: KeyRing) -> dict[str, str]:
    """Every value of the secrets file, decrypted. Raises ConfigError naming the key id needed."""
    fernet = ring.fernet()
    values: dict[str, str] = {}
    for name, entry in read_secrets(path).items():
        try:
            values[name] = fernet.decrypt(entry.token.encode()).decode("utf-8")
        except InvalidToken:
            raise _no_match(path, entry.key_id, ring) from None
    return values


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Secrets whose replaced values stay on as verifiers under a second entry, newest first: API keys
# are stored as hashes made with the pepper, so a changed pepper must still verify the keys hashed
# with the old one (the API re-hashes each key with the new pepper when it is next used).
KEEP_PREVIOUS = {"api_key_pepper": "api_key_pepper_previous"}
MAX_PREVIOUS = 5
# How a previous-values entry records the empty value (an unset pepper: keys made before the first
# pepper are hashed with ""), as blank lines are dropped. set_secret refuses it as a value of a
# KEEP_PREVIOUS name, so no real value reads as empty; files without it load as before.
EMPTY_PREVIOUS = "<empty>"


@dataclass(frozen=True)
class Kept:
    """What set_secret kept: the previous-values entry's name and the value it kept ("" for unset)."""

    name: str
    value: str


def previous_values(raw: str | None) -> list[str]:
    """The values kept in a KEEP_PREVIOUS entry (one a line, newest first; EMPTY_PREVIOUS is "")."""
    lines = (line.strip() for line in (raw or "").splitlines())
    return ["" if line == EMPTY_PREVIOUS else line for line in lines if line]


def set_secret(path: Path, ring: KeyRing, name: str, value: str) -> Kept | None:
    """Encrypt `value` under the primary key and store it as `name`.

    Raises ConfigError for an empty value (or EMPTY_PREVIOUS for a KEEP_PREVIOUS name). For a
    KEEP_PREVIOUS name whose value changes, the old value ("" when it was unset: the first pepper
    must still verify the keys hashed without one) is kept, newest first and at most MAX_PREVIOUS,
    in its previous-values entry; returns what was kept, else None.
    """
    check_name(name)
    if not value.strip():
        raise ConfigError(f"{name}: refusing to store an empty value (nothing was changed)")
    kept = KEEP_PREVIOUS.get(name)
    if kept is not None and (value != value.strip() or "\n" in value or "\r" in value):
        # Kept values are stored a line each and read back stripped: such a value, once replaced,
        # would no longer verify the keys hashed with it.
        raise ConfigError(
            f"{name}: refusing a value with spaces at either end or a line break (nothing was changed)"
        )
    if kept is not None and value == EMPTY_PREVIOUS:  # stripped already, checked just above
        raise ConfigError(
            f"{name}: refusing {EMPTY_PREVIOUS!r}: {kept} uses it for the empty value (nothing was changed)"
        )
    entries = read_secrets(path)
    old = decrypt_all(path, ring)  # refuse to mix keys: a file this ring cannot read stays untouched
    fernet, primary, now = ring.fernet(), key_id(ring.keys[0]), _now()
    result = None
    was = old.get(name, "")  # "" when unset: keys made without a pepper are hashed with it
    if kept is not None and was != value:
        previous = [was, *(v for v in previous_values(old.get(kept)) if v not in (was, value))]
        text = "\n".join(v or EMPTY_PREVIOUS for v in previous[:MAX_PREVIOUS])
        entries[kept] = StoredSecret(fernet.encrypt(text.encode("utf-8")).decode(), primary, now)
        result = Kept(kept, was)
    entries[name] = StoredSecret(fernet.encrypt(value.encode("utf-8")).decode(), primary, now)
    write_secrets(path, entries)
    return result


def remove_secret(path: Path, name: str) -> bool:
    entries = read_secrets(path)
    if entries.pop(name, None) is None:
        return False
    write_secrets(path, entries)
    return True


def _reencrypt(path: Path, ring: KeyRing) -> int:
    fernet, primary = ring.fernet(), key_id(ring.keys[0])
    entries = read_secrets(path)
    for name, entry in entries.items():
        try:
            token = fernet.rotate(entry.token.encode()).decode()
        except InvalidToken:
            raise _no_match(path, entry.key_id, ring) from None
        entries[name] = StoredSecret(token, primary, entry.changed)
    write_secrets(path, entries)
    return len(entries)


def rotate(path: Path, ring: KeyRing, key_file: Path) -> KeyRing:
    """Start a rotation: a new primary key first in the key file, every value re-encrypted with it.

    The old keys stay in the key file until `finish_rotation`. The key file is written before the
    values, so a crash in between leaves values that the (new + old) key file still decrypts.
    """
    decrypt_all(path, ring)
    new = KeyRing((Fernet.generate_key(), *ring.keys), str(key_file), key_file)
    write_key_file(key_file, new.keys)
    _reencrypt(path, new)
    return new


def finish_rotation(path: Path, ring: KeyRing, key_file: Path) -> KeyRing:
    """End a rotation: every value under the primary key, then only the primary kept in the key file."""
    _reencrypt(path, ring)
    done = KeyRing(ring.keys[:1], str(key_file), key_file)
    decrypt_all(path, done)
    write_key_file(key_file, done.keys)
    return done
