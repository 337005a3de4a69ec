"""What reading the configuration yields: where each value came from (`Source`), each thing wrong
with it (`Finding`), and the outcome of reading one environment (`Loaded`).

Its own module so that the loader and the checks it runs (the production guard, alerting.yaml and
monitoring.yaml checks) all import it, instead of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.secrets import KeyRing
from atlas.settings import Settings


@dataclass(frozen=True)
class Source:
    """Where a value came from: `default`, `environment`, or a file and line."""

    kind: str
    path: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.path is None:
            return self.kind
        return f"{self.path}:{self.line}" if self.line else self.path


DEFAULT = Source("default")
ENVIRONMENT = Source("environment")


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth a look) in the configuration."""

    key: str
    message: str
    source: Source = ENVIRONMENT
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        # Messages from atlas.secrets name their file themselves ("cannot decrypt config/x.secrets").
        where = f"{self.source}: " if self.source.path and self.source.path not in self.message else ""
        return f"{where}{self.key + ': ' if self.key else ''}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.source.path or self.source.kind,
            "line": self.source.line,
            "key": self.key,
            "message": self.message,
        }


@dataclass
class Loaded:
    """The outcome of reading one environment's configuration."""

    environment: str
    config_dir: Path
    settings: Settings | None
    sources: dict[str, Source] = field(default_factory=dict)  # field name -> source
    findings: list[Finding] = field(default_factory=list)
    keyring: KeyRing | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def env_path(self) -> Path:
        return self.config_dir / f"{self.environment}.env"

    @property
    def secrets_path(self) -> Path:
        return self.config_dir / f"{self.environment}.secrets"
