"""The deployment manager's rules that need no processes: the migration marker, the nginx include
switch (with real `true`/`false` programs as reload commands), release names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atlas.errors import ConfigError
from atlas.ops.nginx import Nginx, NginxError
from atlas.ops.releases import check_version, incompatible
from atlas.store.sqlite import migrations

MARKED = "-- Adds a nullable column.\n-- deploy: backward-compatible\nALTER TABLE items ADD COLUMN a TEXT;\n"
BREAKING = "-- Renames a column.\n-- deploy: breaking\nALTER TABLE items RENAME COLUMN source TO origin;\n"
UNMARKED = "ALTER TABLE items ADD COLUMN b TEXT;\n"
LATE_MARKER = "ALTER TABLE items ADD COLUMN c TEXT;\n-- deploy: backward-compatible\n"


def test_only_pending_migrations_marked_in_their_header_pass() -> None:
    shipped = [(1, "init", UNMARKED), (2, "marked", MARKED), (3, "breaking", BREAKING)]
    shipped += [(4, "unmarked", UNMARKED), (5, "late", LATE_MARKER)]
    # Applied ones (<= the database's schema) are not checked; a marker after SQL does not count.
    assert incompatible(shipped, schema=1) == ["0003_breaking.sql", "0004_unmarked.sql", "0005_late.sql"]
    assert incompatible(shipped, schema=5) == []
    assert incompatible(shipped[:2], schema=1) == []


# Migrations up to this one predate the deployment manager (and are applied everywhere it runs).
LAST_UNMARKED = 8


def test_every_new_migration_says_whether_it_is_backward_compatible() -> None:
    marker = re.compile(r"^--\s*deploy:\s*(backward-compatible|breaking)\s*$", re.M)
    missing = [
        f"{v:04d}_{n}.sql" for v, n, sql in migrations() if v > LAST_UNMARKED and not marker.search(sql)
    ]
    assert missing == [], "add `-- deploy: backward-compatible` (or `-- deploy: breaking`) to their header"


def test_switch_rewrites_the_include_atomically_and_restores_it_when_reload_fails(tmp_path: Path) -> None:
    include = tmp_path / "atlas-upstream.conf"
    ok = Nginx(include, reload_command="true")
    assert ok.current_port() is None
    assert ok.switch(8000) is None  # no pid file: no workers to watch
    assert ok.current_port() == 8000
    assert "upstream atlas_api {" in include.read_text(encoding="utf-8")
    with pytest.raises(NginxError, match="`false` failed"):
        Nginx(include, reload_command="false").switch(8001)
    assert ok.current_port() == 8000  # put back: nginx still runs the old config
    assert [p.name for p in tmp_path.iterdir()] == ["atlas-upstream.conf"]  # no temporary left


@pytest.mark.parametrize("bad", ["", "../x", "v 1", "/abs", "." * 2])
def test_release_names_are_plain_directory_names(bad: str) -> None:
    with pytest.raises(ConfigError, match="--version"):
        check_version(bad)
    assert check_version("v2.1.0-rc1") == "v2.1.0-rc1"
