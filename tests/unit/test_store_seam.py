"""Nothing outside atlas/store knows which backend it runs on (issue 17, "the seam first").

Every Python module of the product (atlas/ outside atlas/store, exporters/, tools/) is walked:
an import of sqlite3, psycopg or a backend module (atlas.store.sqlite*, atlas.store.postgres), or
the text `sqlite3` / `SQLiteStore` / `PostgresStore` / `atlas.store.sqlite` anywhere in it (a
string handed to a subprocess, a docstring pointing callers at the backend), or a string constant
that is an SQL statement, fails the test with file:line. Tests and benchmarks may still use SQLite directly.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("atlas", "exporters", "tools")
STORE = ROOT / "atlas" / "store"
FORBIDDEN_MODULES = re.compile(r"^(sqlite3|psycopg|psycopg_pool|atlas\.store\.(sqlite\w*|postgres))(\.|$)")
FORBIDDEN_TEXT = re.compile(r"sqlite3|SQLiteStore|PostgresStore|atlas\.store\.(sqlite|postgres)")
# A string constant that is a statement (messages that name a PRAGMA, "PRAGMA integrity_check: ok",
# are not): SQL lives in atlas/store's named query files.
SQL = re.compile(
    r"^\s*(SELECT\s.*\bFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|CREATE\s+(TABLE|INDEX)\s"
    r"|PRAGMA\s+\w+\s*(=|\(|;|$))",
    re.DOTALL,
)


def product_modules() -> list[Path]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not path.is_relative_to(STORE):
                found.append(path)
    return found


def imports(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
            # `from atlas.store import sqlite` names the backend module too
            names += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return names


def violations(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(root)
    flagged: dict[int, str] = {}  # one finding per line: the import if it is one
    tree = ast.parse(text, str(path))
    for line, name in imports(tree):
        if FORBIDDEN_MODULES.match(name):
            flagged.setdefault(line, f"imports {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            flagged.setdefault(node.lineno, f"holds SQL {node.value.strip()[:40]!r}")
    for n, line_text in enumerate(text.splitlines(), 1):
        if n not in flagged and (m := FORBIDDEN_TEXT.search(line_text)):
            flagged[n] = f"mentions {m.group(0)!r}"
    return [f"{where}:{n}: {what}" for n, what in sorted(flagged.items())]


def test_the_walk_sees_the_product() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in product_modules()}
    assert {"atlas/api/app.py", "exporters/business.py", "atlas/ops/backup.py"} <= modules
    assert not any(m.startswith("atlas/store/") for m in modules)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "atlas" / "_seam_probe.py"
    bad.parent.mkdir()
    bad.write_text(
        "import sqlite3\nfrom atlas.store import sqlite\nx = 'SQLiteStore'\n"
        "q = 'SELECT n FROM stats_items'\nok = 'PRAGMA integrity_check: ok'\n",
        encoding="utf-8",
    )
    found = violations(bad, tmp_path)
    assert found == [
        "atlas/_seam_probe.py:1: imports sqlite3",
        "atlas/_seam_probe.py:2: imports atlas.store.sqlite",
        "atlas/_seam_probe.py:3: mentions 'SQLiteStore'",
        "atlas/_seam_probe.py:4: holds SQL 'SELECT n FROM stats_items'",
    ]


def test_nothing_outside_the_store_knows_its_backend() -> None:
    found = [v for path in product_modules() for v in violations(path)]
    assert not found, "backend knowledge outside atlas/store:\n" + "\n".join(found)
