"""What a fresh clone holds: the README points only at files that exist, and secrets files made
while developing are never committed by accident."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_path_the_readme_names_exists() -> None:
    links = re.findall(r"\]\(([^)#]+)\)", README)
    quoted = re.findall(r"`((?:[\w.-]+/)+[\w.-]+\.\w+)`", README)  # `tests/e2e/test_tour.py`
    # DATA_DIR/... names a file Atlas writes at run time, not one in the repository.
    named = [p for p in [*links, *quoted] if not p.startswith(("http", "/", "DATA_DIR/"))]
    assert named, "the README names no file: has its format changed?"
    assert [p for p in named if not (ROOT / p).exists()] == []


def test_the_readme_points_at_no_document_outside_the_repository() -> None:
    for phrase in ("the notes", "design page", "DESIGN.md", "../"):
        assert phrase not in README.replace('"source": "notes"', ""), phrase


def test_secrets_files_in_config_are_ignored_by_git(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: .gitignore is not in effect")
    for name in ("development.secrets", "production.secrets"):
        checked = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", f"config/{name}"], timeout=30, check=False
        )
        assert checked.returncode == 0, f"config/{name} is not ignored by git"
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "config/"], capture_output=True, text=True, timeout=30
    )
    assert not [f for f in listed.stdout.split() if f.endswith(".secrets")]
