"""The production guard: settings Atlas refuses to start with in `production`.

Each refusal is a Finding at the place the value came from, so the operator knows what to change.
"""

from __future__ import annotations

import stat
from pathlib import Path

from atlas.config.findings import DEFAULT, Finding, Loaded, Source
from atlas.secrets import KEY_VARIABLE
from atlas.settings import Settings


def _mode_finding(path: Path, key: str, what: str, *, group_too: bool) -> Finding | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    mask = 0o077 if group_too else 0o007
    if not mode & mask:
        return None
    wanted = "0600" if group_too else "not readable by others"
    return Finding(
        key,
        f"the {what} is readable by others (mode {mode:04o}); expected {wanted} (chmod 600)",
        Source("file", str(path)),
    )


def production_findings(settings: Settings, loaded: Loaded) -> list[Finding]:
    """What makes `settings` unfit for production (an empty list when nothing does)."""
    findings: list[Finding] = []

    def at(name: str) -> Source:
        return loaded.sources.get(name, DEFAULT)

    if settings.api_auth_disabled:
        findings.append(
            Finding(
                "ATLAS_API_AUTH_DISABLED",
                "authentication cannot be disabled in production",
                at("api_auth_disabled"),
            )
        )
    if "*" in settings.api_cors_origins:
        findings.append(
            Finding(
                "ATLAS_API_CORS_ORIGINS",
                "CORS '*' is refused in production: list the origins that may call the API",
                at("api_cors_origins"),
            )
        )
    ring = loaded.keyring
    if ring is not None and ring.has_development_key:
        key = KEY_VARIABLE if ring.source == KEY_VARIABLE else "ATLAS_SECRETS_KEY_FILE"
        findings.append(
            Finding(
                key,
                f"{ring.source} holds the development key, which is public: generate a production key "
                "with `atlas-ops config secrets keygen`",
                Source("file", str(ring.path)) if ring.path else Source("environment"),
            )
        )
    key_file = _mode_finding(settings.key_file_path, "ATLAS_SECRETS_KEY_FILE", "key file", group_too=True)
    secrets_file = _mode_finding(loaded.secrets_path, "", "secrets file", group_too=False)
    findings += [f for f in (key_file, secrets_file) if f is not None]
    return findings
