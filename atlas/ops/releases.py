"""Releases: one virtual environment per version under <prefix>/releases/<version>/.

`prepare(src, version)` builds one:

- from a wheel (`atlas-*.whl`) or a source tree (a directory with pyproject.toml): a fresh venv
  and `pip install SRC` into it, dependencies pinned by the source's constraints.txt when it has
  one. This is what a host does; it costs a minute and the network (or a warm pip cache).
- `link_env=True` (tests, development): a venv without pip whose site-packages holds one .pth
  file that puts the source tree first on sys.path and then runs site.addsitedir() on the
  environment running atlas-ops (so its editable installs and dependencies load too). The release
  runs its own interpreter and its own copy of the code, shares the installed dependencies, and
  costs well under a second. It needs SRC to be a source tree.

Every release holds `release.json` (version, source, how it was built, when). A process reads it
from its interpreter's prefix (`running_release()`), so `/health` answers the release that runs,
whichever backend (local supervisor or systemd through <prefix>/current) started it.

Migrations: a release's pending migrations (newer than the database's schema) must say they are
backward compatible, i.e. the previous release keeps working on the migrated schema while both
run (blue-green overlap, rolling restarts, a rollback): a line `-- deploy: backward-compatible` in
the migration's leading comment block. `-- deploy: breaking` (or no marker) makes deploy refuse.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.errors import AtlasError, ConfigError

RELEASE_FILE = "release.json"
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
COMPATIBLE_MARKER = re.compile(r"^--\s*deploy:\s*backward-compatible\s*$", re.M)
PIP_TIMEOUT_SECONDS = 900


class ReleaseError(AtlasError):
    """A release could not be built, found or used."""


@dataclass(frozen=True)
class Release:
    version: str
    root: Path
    meta: dict[str, Any]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def releases_dir(prefix: Path) -> Path:
    return prefix / "releases"


def check_version(version: str) -> str:
    if not VERSION.match(version):
        raise ConfigError(f"--version: {version!r} must match {VERSION.pattern} (it names a directory)")
    return version


def get(prefix: Path, version: str) -> Release:
    """The prepared release `version`; raises ConfigError naming the ones that exist."""
    root = releases_dir(prefix) / check_version(version)
    try:
        meta = json.loads((root / RELEASE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = ", ".join(r.version for r in installed(prefix)) or "none"
        raise ConfigError(
            f"no release {version!r} under {releases_dir(prefix)} (prepared: {known}); "
            f"run `atlas-ops deploy prepare SRC --version {version}`"
        ) from None
    return Release(version, root, meta)


def installed(prefix: Path) -> list[Release]:
    """Every prepared release, oldest first."""
    found = []
    base = releases_dir(prefix)
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        try:
            meta = json.loads((entry / RELEASE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being prepared, or not a release
        found.append(Release(entry.name, entry, meta))
    return sorted(found, key=lambda r: float(r.meta.get("prepared_at", 0)))


def prepare(prefix: Path, src: Path, version: str, *, link_env: bool = False) -> Release:
    """Build release `version` from `src` (a wheel or a source tree). Built in a temporary
    directory and renamed into place, so a failed build leaves no half release behind."""
    check_version(version)
    src = src.resolve()
    wheel = src.is_file() and src.suffix == ".whl"
    if not wheel and not (src / "pyproject.toml").is_file():
        raise ConfigError(f"SRC: {src} is neither a wheel (.whl) nor a source tree (no pyproject.toml)")
    if link_env and wheel:
        raise ConfigError("--link-current-env needs a source tree, not a wheel")
    target = releases_dir(prefix) / version
    if target.exists():
        raise ReleaseError(f"release {version} exists already ({target}); pick another version")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{version}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _venv(staging, pip=not link_env)
        if link_env:
            _link(staging, src)
        else:
            _pip_install(staging, src, wheel)
        meta = {
            "version": version,
            "source": str(src),
            "built": "linked" if link_env else ("wheel" if wheel else "source"),
            "prepared_at": time.time(),
        }
        (staging / RELEASE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Release(version, target, meta)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False)
    if done.returncode != 0:
        raise ReleaseError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}")


def _venv(root: Path, *, pip: bool) -> None:
    # The base interpreter, not this venv's: a venv made from a venv would point its home at ours.
    base = Path(getattr(sys, "_base_executable", sys.executable))
    _run([str(base), "-m", "venv", *([] if pip else ["--without-pip"]), str(root)])


def _site_packages(root: Path) -> Path:
    rel = Path(sysconfig.get_path("purelib")).relative_to(sys.prefix)
    return root / rel


def _link(root: Path, src: Path) -> None:
    # A .pth line starting with `import` is executed: addsitedir also processes the .pth files of
    # the current environment (its editable installs), which a plain path line would not.
    current = Path(sysconfig.get_path("purelib"))
    pth = _site_packages(root) / "atlas-release.pth"
    pth.write_text(f"{src}\nimport site; site.addsitedir({str(current)!r})\n", encoding="utf-8")


def _pip_install(root: Path, src: Path, wheel: bool) -> None:
    argv = [str(root / "bin" / "python"), "-m", "pip", "install", "-q"]
    constraints = src / "constraints.txt"
    if not wheel and constraints.is_file():
        argv += ["-c", str(constraints)]
    _run([*argv, str(src)])


def running_release() -> str | None:
    """The release this interpreter belongs to (its prefix's release.json), None outside one."""
    try:
        return str(json.loads((Path(sys.prefix) / RELEASE_FILE).read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def release_migrations(release: Release) -> list[tuple[int, str, str]]:
    """(version, name, sql) of the migrations the release's own code ships (asked of its own
    interpreter, so a wheel-built and a linked release answer alike). A release never changes once
    prepared (built aside, renamed into place), so the answer is kept for the process's life:
    a process deploying several times (tests, a long-lived caller) asks each release once."""
    key = (str(release.root), str(release.meta.get("prepared_at")))
    if key not in _MIGRATIONS:
        _MIGRATIONS[key] = _ask_migrations(release)
    return list(_MIGRATIONS[key])


_MIGRATIONS: dict[tuple[str, str], list[tuple[int, str, str]]] = {}


def _ask_migrations(release: Release) -> list[tuple[int, str, str]]:
    # Releases from before the store seam (issue 17) lack shipped_migrations: they cannot answer.
    code = "import json; from atlas.store import shipped_migrations; print(json.dumps(shipped_migrations()))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(release.python), "-P", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise ReleaseError(f"release {release.version}: cannot list its migrations: {done.stderr.strip()}")
    return [(int(v), str(n), str(sql)) for v, n, sql in json.loads(done.stdout)]


def incompatible(migrations: list[tuple[int, str, str]], schema: int) -> list[str]:
    """The pending migrations (newer than `schema`) not marked backward compatible."""
    return [
        f"{version:04d}_{name}.sql"
        for version, name, sql in migrations
        if version > schema and not COMPATIBLE_MARKER.search(_leading_comments(sql))
    ]


def _leading_comments(sql: str) -> str:
    lines = []
    for line in sql.splitlines():
        if line.strip() and not line.lstrip().startswith("--"):
            break
        lines.append(line.strip())
    return "\n".join(lines)
