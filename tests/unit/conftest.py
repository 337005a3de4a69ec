"""Unit tests load settings only from files they chose.

The loader's default config dir is the relative `config`: from the repository root (where pytest
runs) that is the developer's own config/development.env and development.secrets, so a test that
loads settings without naming ATLAS_CONFIG_DIR would silently depend on whatever that file holds
today (issue 10). Every env or secrets file a unit test reads must come from an absolute config
dir it named: a tmp_path, or ROOT / "config" for the tests of the shipped files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas.config import loader


def _chosen(path: Path) -> None:
    if not path.is_absolute():
        pytest.fail(
            f"settings were loaded from the default config dir ({path}, relative to the working"
            " directory): give the test its own ATLAS_CONFIG_DIR, or pass files=False"
        )


@pytest.fixture(autouse=True)
def settings_files_come_from_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Wraps the loader's real readers (they still read the file): only where the path came from is checked.
    read_env, decrypt = loader._read_env_file, loader.decrypt_all

    def read_env_checked(path: Path, *args: Any) -> Any:
        _chosen(path)
        return read_env(path, *args)

    def decrypt_checked(path: Path, *args: Any) -> Any:
        _chosen(path)
        return decrypt(path, *args)

    monkeypatch.setattr(loader, "_read_env_file", read_env_checked)
    monkeypatch.setattr(loader, "decrypt_all", decrypt_checked)
    yield
