"""Every third-party module Atlas runs is installed by `pip install .` alone (no constraints file).

Two sources of imports are checked against pyproject's `dependencies`:
- what atlas/ and exporters/ import (every `import` statement in the AST, in functions too): each
  must come from a distribution declared there directly;
- what really gets loaded when a worker extracts a page and parses a feed (run in a subprocess, so
  the libraries' own eager and lazy imports count): each must come from a distribution that the
  declared ones pull in through plain requirements. A requirement that only an *extra* of a
  transitive dependency brings (justext's `lxml[html_clean]` -> lxml_html_clean) does not count:
  it is how a worker once died at import while the test venv, built from constraints.txt, was fine.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
OWN = {"atlas", "exporters", "tests"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def _installed_closure(declared: list[Requirement]) -> set[str]:
    """Distributions `pip install .` brings: declared ones with their declared extras, then
    their requirements without extras (an extra only counts where we ask for it ourselves)."""
    seen: set[str] = set()
    todo = [(r.name, set(r.extras)) for r in declared]
    while todo:
        name, extras = todo.pop()
        if _norm(name) in seen and not extras:
            continue
        seen.add(_norm(name))
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if _wanted(req, extras):
                todo.append((req.name, set()))
    return seen


def _third_party(modules: set[str]) -> dict[str, set[str]]:
    """Top-level module -> normalised distributions providing it (modules no distribution
    provides, such as the stdlib and compiled helpers, are left out)."""
    providers = metadata.packages_distributions()
    return {
        m: {_norm(d) for d in providers[m]}
        for m in modules
        if m not in OWN and m not in sys.stdlib_module_names and m in providers
    }


def _imported_by_source() -> dict[str, list[str]]:
    """Top-level module -> the files importing it, from every module's AST."""
    found: dict[str, list[str]] = {}
    for package in ("atlas", "exporters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


# Runs with every distribution outside the install closure made unimportable, as on a machine
# where only `pip install .` ran: optional imports (httpx tries rich) fail quietly as they would
# there, and a needed module fails the extraction with ModuleNotFoundError.
RUN_EXTRACTION = """
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name}: not installed by `pip install .`", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
from atlas.pipeline.extract import extract_page
from atlas.pipeline.feeds import parse_feed
from tests.helpers.origin import article_html, rss
page = extract_page(article_html("h1.test", 1), "http://h1.test/article/1")
assert page.text, "the extraction found no text"
feed = parse_feed(rss("h1.test", range(3)).encode(), "http://h1.test/feed.rss")
assert len(feed.entries) == 3, feed
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_every_module_the_source_imports_is_declared() -> None:
    declared = {_norm(r.name) for r in _declared()}
    imports = _imported_by_source()
    missing = {
        module: (sorted(dists), sorted(set(imports[module]))[:3])
        for module, dists in _third_party(set(imports)).items()
        if not dists & declared
    }
    assert missing == {}, f"imported but not declared in pyproject dependencies: {missing}"


def test_an_extraction_runs_with_only_what_the_declared_dependencies_install() -> None:
    closure = _installed_closure(_declared())
    providers = metadata.packages_distributions()
    blocked = sorted(m for m, d in _third_party(set(providers)).items() if not d & closure)
    ran = subprocess.run(
        [sys.executable, "-c", RUN_EXTRACTION, json.dumps(blocked)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, f"an extraction fails after `pip install .` alone:\n{ran.stderr}"
    loaded = set(json.loads(ran.stdout.splitlines()[-1]))
    assert {"trafilatura", "lxml", "feedparser"} <= loaded  # the extraction really ran them
