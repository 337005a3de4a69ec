"""Every command's --help states its exit codes (docs/operations.md promises it), cleanly rendered."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from atlas.cli.main import atlas
from atlas.cli.ops import ops


def commands(group: click.Group, path: list[str]) -> Iterator[list[str]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, [*path, name])
        else:
            yield [*path, name]


@pytest.mark.parametrize(
    ("root", "path"),
    [(ops, p) for p in commands(ops, [])] + [(atlas, p) for p in commands(atlas, [])],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v.name,
)
def test_every_command_help_names_its_exit_codes(root: click.Group, path: list[str]) -> None:
    result = CliRunner().invoke(root, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "exit codes" in result.output.lower(), result.output
    # A docstring's "\\b" (no-rewrap marker) written as a literal backslash-b showed up as text.
    assert "\\b" not in result.output and "\b" not in result.output, result.output
