"""docs/operations.md and the operations guide: every atlas-ops command they show parses (the
behaviour of each is tested by the test files the doc names)."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from atlas.cli.ops import ops
from tests.conftest import ROOT

DOC = ROOT / "docs" / "operations.md"
# The seed's operations guide, commands in this branch's scope, as written there.
GUIDE = [
    "service start api",
    "service status --all",
    "service restart core",
    "service restart all",
    "service start all",
    "backup create",
    "backup create --full",
    "backup create --database-only",
    "backup restore /backups/atlas_backup_20250917.tar.gz",
    "backup restore --database /path/to/backup.sql",
    "backup schedule --daily --retain 7",
    "backup schedule --weekly --retain 4",
    "maintenance mode --enable",
    "system check --health",
    "system check --database",
    "monitoring status",
    "monitoring metrics --format json",
    "monitoring metrics --filter memory",
    "monitoring analyze --memory",
    "database optimize",
    "database vacuum",
    # tools/deployment_manager.py (the same commands)
    "version list",
    "deploy --version v2.1.0 --environment staging --strategy rolling",
    "rollback --environment staging --target-version v2.0.0",
    "deploy --version v2.1.0 --environment production --strategy blue-green",
    "deployment status --environment production",
    "rollback --environment production --target-version v2.0.0",
]


def doc_commands() -> list[str]:
    found = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("atlas-ops "):
                found.append(line.removeprefix("atlas-ops "))
    return found


def parses(command: str) -> None:
    """The words resolve to a command (not a group) whose options and arguments parse; nothing runs."""
    args = shlex.split(command)
    cmd: click.Command = ops
    while isinstance(cmd, click.Group) and args and args[0] in cmd.commands:
        cmd = cmd.commands[args.pop(0)]
    # A group runs by itself only when it says so (`deploy --version ...`).
    runnable = not isinstance(cmd, click.Group) or cmd.invoke_without_command
    assert runnable, f"atlas-ops {command}: {args[:1]} is not a command of {cmd.name}"
    cmd.make_context(cmd.name, args)  # raises click.UsageError / BadParameter on a bad line


@pytest.mark.parametrize("command", doc_commands())
def test_every_documented_command_parses(command: str) -> None:
    parses(command)


@pytest.mark.parametrize("command", GUIDE)
def test_the_operations_guide_commands_parse(command: str) -> None:
    parses(command)


def test_the_doc_has_commands() -> None:
    assert len(doc_commands()) >= 20
