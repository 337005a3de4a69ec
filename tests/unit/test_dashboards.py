"""The generated dashboards: equal to what the build produces, structurally sound for Grafana's file
provisioning, and every metric they name exists in the catalog or the exporter's output."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from atlas.cli.ops import ops
from atlas.dashboards.boards import MAY_BE_EMPTY, all_dashboards
from atlas.dashboards.build import render_files
from atlas.dashboards.model import DATASOURCE_UID
from atlas.dashboards.promql import metric_names, substitute
from atlas.observability.metrics import CATALOG
from atlas.settings import Settings
from exporters import build_registry
from tests.conftest import ROOT

OUT = ROOT / "dashboards"
BOARDS = ["overview", "api", "system", "alerts"]
PROMETHEUS_BUILTIN = {"ALERTS", "ALERTS_FOR_STATE", "up"}


def board(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((OUT / f"{name}.json").read_text())
    return data


def expressions(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard: panel targets, annotations, variable queries."""
    exprs = [t["expr"] for p in model["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in model["annotations"]["list"] if "expr" in a]
    for v in model["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"]
            assert q.startswith("label_values(") and q.endswith(")")
            exprs.append(q.removeprefix("label_values(").rsplit(",", 1)[0])
    return exprs


@pytest.fixture(scope="module")
def known_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Catalog names (histograms with their _bucket/_sum/_count series) and every sample name a real
    exporter registry serves when scraped, plus Prometheus's own series."""
    names = set(PROMETHEUS_BUILTIN)
    for spec in CATALOG.values():
        names.add(spec.name)
        if spec.kind == "histogram":
            names |= {f"{spec.name}{s}" for s in ("_bucket", "_sum", "_count")}
    data_dir = tmp_path_factory.mktemp("exporter")
    text = generate_latest(build_registry(Settings(data_dir=data_dir), commit="test")).decode()
    for fam in text_string_to_metric_families(text):
        names |= {s.name for s in fam.samples}
    assert "node_cpu_seconds_total" in names and "node_filefd_maximum" in names
    # Series the compiled alert rules record (level:metric:operations), which per-alert panels show.
    rules = yaml.safe_load((ROOT / "alertrules" / "atlas.rules.yml").read_text())
    names |= {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    return names


def unknown_names(model: dict[str, Any], known: set[str]) -> dict[str, list[str]]:
    return {e: sorted(metric_names(e) - known) for e in expressions(model) if metric_names(e) - known}


def test_committed_files_are_exactly_what_the_build_produces() -> None:
    files = render_files(ROOT / "config")
    committed = {str(p.relative_to(OUT)) for p in OUT.rglob("*") if p.is_file() and p.name != "README.md"}
    assert committed - {"overview.png"} == set(files), "run `atlas-ops dashboards build`"
    stale = [rel for rel, text in files.items() if (OUT / rel).read_text() != text]
    assert not stale, f"{stale} differ from the build: run `atlas-ops dashboards build`"


def test_cli_build_writes_the_same_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        ops, ["dashboards", "build", "--config-dir", str(ROOT / "config"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    for rel, text in render_files(ROOT / "config").items():
        assert (tmp_path / rel).read_text() == text


@pytest.mark.parametrize("name", BOARDS)
def test_dashboard_structure(name: str) -> None:
    text = (OUT / f"{name}.json").read_text()
    model = json.loads(text)
    assert "${DS_" not in text and "DS_PROMETHEUS" not in text
    panels = model["panels"]
    assert panels
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        assert p["fieldConfig"]["defaults"]["unit"], f"{name}: {p['title']} has no unit"
        assert len(p["description"]) > 20, f"{name}: {p['title']} has no description"
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"] and all(t["expr"] for t in p["targets"])
    for a, b in combinations(panels, 2):
        ga, gb = a["gridPos"], b["gridPos"]
        overlap = (
            ga["x"] < gb["x"] + gb["w"]
            and gb["x"] < ga["x"] + ga["w"]
            and ga["y"] < gb["y"] + gb["h"]
            and gb["y"] < ga["y"] + ga["h"]
        )
        assert not overlap, f"{name}: {a['title']!r} overlaps {b['title']!r}"


@pytest.mark.parametrize("name", BOARDS)
def test_variables_links_and_annotations(name: str) -> None:
    model = board(name)
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"}
    provisioned = yaml.safe_load((OUT / "provisioning" / "datasources.yaml").read_text())["datasources"]
    assert variables["datasource"]["current"]["value"] == DATASOURCE_UID == provisioned[0]["uid"]
    assert variables["datasource"]["query"] == provisioned[0]["type"] == "prometheus"
    assert {link["url"] for link in model["links"]} == {f"/d/atlas-{b}" for b in BOARDS if b != name}
    assert all(board(b)["uid"] == f"atlas-{b}" for b in BOARDS)
    names = {a["name"] for a in model["annotations"]["list"]}
    assert {"Maintenance", "Deployments"} <= names
    exprs = " ".join(a.get("expr", "") for a in model["annotations"]["list"])
    assert "atlas_maintenance_mode" in exprs and "atlas_process_start_time_seconds" in exprs


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    providers = yaml.safe_load((OUT / "provisioning" / "dashboards.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]


@pytest.mark.parametrize("name", BOARDS)
def test_every_metric_name_exists_in_the_catalog_or_the_exporter(name: str, known_names: set[str]) -> None:
    model = board(name)
    assert all(metric_names(e) for e in expressions(model))
    assert unknown_names(model, known_names) == {}


def test_the_name_check_catches_a_metric_that_does_not_exist(known_names: set[str]) -> None:
    model = board("overview")
    model["panels"][0]["targets"][0]["expr"] = 'sum(rate(atlas_items_acepted_total{job=~"$job"}[5m]))'
    assert unknown_names(model, known_names) == {
        'sum(rate(atlas_items_acepted_total{job=~"$job"}[5m]))': ["atlas_items_acepted_total"]
    }


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, stage) (rate(a_bucket{job=~"x|y",le!="1e3"}[5m]))', {"a_bucket"}),
        ('x / on (instance) group_left count by (instance) (y{mode="idle"})', {"x", "y"}),
        ("(sum(rate(x[1m])) or vector(0)) / sum(z)", {"x", "z"}),
        ("histogram_quantile(0.99, sum by (le) (h_bucket)) > 1e3 and bool 2", {"h_bucket"}),
        (
            'predict_linear(node_filesystem_avail_bytes{fstype!~"tmpfs"}[6h], 86400)',
            {"node_filesystem_avail_bytes"},
        ),
        ('count by (host) (s{a="by (x)"} == 2) unless ignoring (a) t offset 5m', {"s", "t"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_variables_are_substituted_like_grafanas_all() -> None:
    assert substitute(
        'rate(x{job=~"$job",instance=~"$instance"}[$__rate_interval])', rate_interval="15s"
    ) == ('rate(x{job=~".+",instance=~".+"}[15s])')


def test_every_may_be_empty_entry_names_a_real_panel() -> None:
    titles = {(b.uid, p.title) for b in all_dashboards(ROOT / "config") for p in b.panels}
    assert set(MAY_BE_EMPTY) <= titles


def test_render_refuses_a_bad_time_range_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        ops,
        ["dashboards", "render", "--dashboard", "overview", "--from", "yesterday", "--out", str(tmp_path)],
    )
    assert result.exit_code == 2
    assert "--from" in result.output and "'yesterday'" in result.output


def test_every_compiled_alert_links_to_a_panel_of_the_committed_dashboards() -> None:
    """Each alert of the committed alertrules/ has a dashboard_url naming a dashboard uid and panel
    id that exist in the committed dashboards/ JSON; a threshold alert's panel plots its series."""
    panels = {
        (model["uid"], panel["id"]): panel
        for model in (board(name) for name in BOARDS)
        for panel in model["panels"]
    }
    rules = yaml.safe_load((ROOT / "alertrules" / "atlas.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert len(alerts) > 40
    for alert in alerts:
        url = urlsplit(alert["annotations"]["dashboard_url"])
        assert f"{url.scheme}://{url.netloc}" == "http://localhost:3000", alert["alert"]
        uid = url.path.split("/")[2]
        (panel_id,) = parse_qs(url.query)["viewPanel"]
        panel = panels.get((uid, int(panel_id)))
        assert panel is not None, f"{alert['alert']}: no panel {panel_id} on dashboard {uid}"
        series = alert["expr"].split()[0]
        if series.count(":") == 2 and not series.startswith("slo:"):  # a signal's recorded series
            assert [t["expr"] for t in panel["targets"]] == [series], alert["alert"]
            assert panel["title"].startswith(alert["alert"] + ":")
