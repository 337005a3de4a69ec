"""atlas-ops refuses writes during maintenance mode, as the API does (real store, click runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlas.api.pressure import Pressure
from atlas.cli.ops import ops
from atlas.settings import Settings
from atlas.store.sqlite import SQLiteStore


def test_items_add_is_refused_during_maintenance_and_accepted_after(
    settings: Settings, store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATLAS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ATLAS_DB_SYNCHRONOUS", "NORMAL")
    switch = Pressure(settings, store)  # what POST /v1/admin/maintenance calls
    switch.set_maintenance(True, "disk swap")
    refused = CliRunner().invoke(ops, ["items", "add", "--format", "json"], input="hello")
    assert refused.exit_code == 1
    assert "maintenance mode is on (disk swap)" in refused.output and "refused" in refused.output
    assert store.counts() == {}

    switch.set_maintenance(False, None)
    added = CliRunner().invoke(ops, ["items", "add", "--format", "json"], input="hello")
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["state"] == "queued"
    assert store.counts() == {("queued", "document"): 1}
