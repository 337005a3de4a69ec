"""`atlas-ops install`: lay out a host for the systemd units.

    <prefix>/config    root:atlas 0750   the environment's .env, alerting.yaml, monitoring.yaml, atlas.env
    <prefix>/data      atlas:atlas 0750  the database, secrets key, pid files
    <prefix>/logs      atlas:atlas 0750
    <prefix>/backups   atlas:atlas 0700  archives hold every item
    <prefix>/releases  root:root 0755    one virtual environment per version (the deployment manager)
    <prefix>/current   -> the environment the units run (the one running this command, if none yet)
    /etc/systemd/system/  the units of systemd/, rendered for <prefix> with the resource limits
                          of the environment's settings (ATLAS_SYSTEMD_*)

The code, config and units belong to root so a compromised Atlas process cannot rewrite what
runs it; only data, logs and backups are the service user's (the units' ReadWritePaths).

`plan()` computes the steps (pure: reads the filesystem, changes nothing); `apply()` does them.
`root` puts every path under another directory (like `useradd --root`, DESTDIR), for images and
tests: the units still name the prefix as the running host will see it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from atlas.config.loader import collect
from atlas.errors import AtlasError, ConfigError
from atlas.ops.units import LIMIT_DIRECTIVES, Layout, render_units
from atlas.settings import Settings

UNIT_DIR = Path("/etc/systemd/system")
# (directory, owner as "user:group" with {u} for the service user, mode)
DIRS = (
    ("config", "root:{u}", 0o750),
    ("data", "{u}:{u}", 0o750),
    ("logs", "{u}:{u}", 0o750),
    ("backups", "{u}:{u}", 0o700),
    ("releases", "root:root", 0o755),
)
CONFIG_FILES = ("alerting.yaml", "monitoring.yaml")


class InstallError(AtlasError):
    """The installation could not be done (a path, a user, a program)."""


@dataclass(frozen=True)
class Step:
    action: str  # user, mkdir, link, copy, write, unit, keep
    path: str
    detail: str = ""
    owner: str = ""  # user:group
    mode: int | None = None
    content: str | None = None  # write/unit: the text
    source: str | None = None  # copy/link: where from

    def describe(self) -> str:
        parts = [f"{self.action:6} {self.path}"]
        if self.mode is not None:
            parts.append(f"mode {self.mode:04o}")
        if self.owner:
            parts.append(f"owner {self.owner}")
        if self.source:
            parts.append(f"<- {self.source}")
        if self.detail:
            parts.append(f"({self.detail})")
        return "  ".join(parts)


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/") if path.is_absolute() else root / path


def atlas_env(layout: Layout, environment: str) -> str:
    """config/atlas.env (the units' EnvironmentFile=): which environment, and the paths the prefix
    decides. Everything else comes from config/<environment>.env, which Atlas reads itself (with
    file:line in its errors), so this file stays short."""
    return (
        "# Written by atlas-ops install. The environment's settings: config/<ATLAS_ENVIRONMENT>.env.\n"
        f"ATLAS_ENVIRONMENT={environment}\n"
        f"ATLAS_DATA_DIR={layout.dir('data')}\n"
        f"ATLAS_BACKUP_DIR={layout.dir('backups')}\n"
    )


def environment_settings(config_dir: Path, environment: str) -> Settings:
    """The settings `config_dir/<environment>.env` gives (over the defaults). The process
    environment of whoever runs install is not the units' environment, so it is ignored, and so are
    the secrets (no limit is secret). Raises ConfigError listing every finding with file:line."""
    loaded = collect(
        {"ATLAS_CONFIG_DIR": str(config_dir)}, environment=environment, overrides=False, secrets=False
    )
    if loaded.settings is None:
        raise ConfigError("\n".join(str(f) for f in loaded.errors) or "invalid configuration")
    return loaded.settings


def plan(
    layout: Layout,
    *,
    root: Path = Path("/"),
    environment: str = "production",
    config_src: Path,
    runtime: Path = Path(sys.prefix),
    create_user: bool = True,
    unit_dir: Path = UNIT_DIR,
) -> list[Step]:
    """The steps that install Atlas for `layout` under `root`. Existing config is kept, never
    overwritten; units are always rewritten (they are generated), with the resource limits of the
    environment's .env that will be in place: the installed one when there is one, else the one
    copied from `config_src`. Raises ConfigError when the environment's .env is missing from
    `config_src` or does not validate."""
    env_file = config_src / f"{environment}.env"
    if not env_file.is_file():
        raise ConfigError(f"--environment {environment}: no {env_file}")
    steps: list[Step] = []
    if create_user:
        if _user_exists(layout.user):
            steps.append(Step("keep", f"user {layout.user}", "exists"))
        else:
            steps.append(Step("user", f"user {layout.user}", "system user, no login, home <prefix>/data"))
    prefix = _under(root, layout.prefix)
    u = layout.user
    steps.append(Step("mkdir", str(prefix), owner="root:root", mode=0o755))
    for name, owner, mode in DIRS:
        steps.append(Step("mkdir", str(prefix / name), owner=owner.format(u=u), mode=mode))
    current = prefix / "current"
    if current.exists() or current.is_symlink():
        steps.append(
            Step("keep", str(current), f"-> {os.readlink(current) if current.is_symlink() else '?'}")
        )
    else:
        steps.append(Step("link", str(current), "the environment running atlas-ops", source=str(runtime)))
    config = prefix / "config"
    settings = environment_settings(config if (config / env_file.name).is_file() else config_src, environment)
    for name in (env_file.name, *CONFIG_FILES):
        target = config / name
        if target.exists():
            steps.append(Step("keep", str(target), "exists"))
        elif (config_src / name).is_file():
            steps.append(
                Step("copy", str(target), owner=f"root:{u}", mode=0o640, source=str(config_src / name))
            )
    steps.append(
        # Read by systemd (root) only.
        Step(
            "write",
            str(config / "atlas.env"),
            owner="root:root",
            mode=0o600,
            content=atlas_env(layout, environment),
        )
    )
    units = _under(root, unit_dir)
    for name, text in render_units(layout, settings).items():
        # The limits in the text, so a dry run shows what the environment's settings made of them.
        limits = " ".join(line for line in text.splitlines() if line.split("=")[0] in LIMIT_DIRECTIVES)
        steps.append(Step("unit", str(units / name), limits, owner="root:root", mode=0o644, content=text))
    return steps


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def apply(steps: list[Step], layout: Layout) -> list[str]:
    """Do `steps`; returns one line per step saying what was done. Ownership is set only when
    running as root (the line says when it was not). Raises InstallError naming the step."""
    done = []
    for step in steps:
        try:
            note = _apply_one(step, layout)
        except (OSError, subprocess.SubprocessError, KeyError) as exc:
            raise InstallError(f"{step.action} {step.path}: {exc}") from exc
        done.append(step.describe() + (f"  [{note}]" if note else ""))
    return done


def _apply_one(step: Step, layout: Layout) -> str:
    path = Path(step.path)
    if step.action == "keep":
        return ""
    if step.action == "user":
        useradd = shutil.which("useradd")
        if useradd is None:
            raise InstallError("useradd not found: create the user yourself and pass --no-create-user")
        subprocess.run(
            [
                *(useradd, "--system", "--user-group", "--no-create-home"),
                *("--home-dir", str(layout.dir("data")), "--shell", "/usr/sbin/nologin", layout.user),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return ""
    if step.action == "mkdir":
        path.mkdir(parents=True, exist_ok=True)
    elif step.action == "link":
        path.symlink_to(step.source or "")
        return ""
    elif step.action == "copy":
        shutil.copyfile(step.source or "", path)
    elif step.action in ("write", "unit"):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(step.content or "", encoding="utf-8")
        os.replace(tmp, path)
    if step.mode is not None:
        path.chmod(step.mode)
    return _chown(path, step.owner, layout.user)


def _chown(path: Path, owner: str, service_user: str) -> str:
    if not owner:
        return ""
    if os.geteuid() != 0:
        return "owner unchanged: not root"
    user, group = owner.split(":")
    # The service user's group is its primary group, whatever it is called (nobody: nogroup).
    gid = pwd.getpwnam(service_user).pw_gid if group == service_user else grp.getgrnam(group).gr_gid
    os.chown(path, pwd.getpwnam(user).pw_uid, gid, follow_symlinks=False)
    return ""
