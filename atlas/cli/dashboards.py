"""`atlas-ops dashboards build|render`: generate dashboards/ and draw a dashboard to PNG."""

from __future__ import annotations

from pathlib import Path

import click

from atlas.cli.common import clean_errors
from atlas.dashboards.build import write_files


@click.group()
def dashboards() -> None:
    """Grafana dashboards: generate them, or draw one without Grafana."""


@dashboards.command("build")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("config"),
    show_default=True,
    help="Where alerting.yaml lives (per-alert panels).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("dashboards"),
    show_default=True,
    help="Directory to write the dashboards and provisioning files to.",
)
@clean_errors
def build(config_dir: Path, out: Path) -> None:
    """Write dashboards/*.json and dashboards/provisioning/*.yaml."""
    for path in write_files(config_dir, out):
        click.echo(str(path))


@dashboards.command("render")
@click.option(
    "--dashboard", "name", required=True, type=click.Choice(["overview", "api", "system", "alerts"])
)
@click.option(
    "--from", "from_", default="-1h", show_default=True, help="Start: now, -DURATION, now-DURATION."
)
@click.option("--to", "to", default="now", show_default=True, help="End, like --from.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory for the PNG."
)
@click.option("--prometheus", default="http://127.0.0.1:9090", show_default=True, help="Prometheus base URL.")
@click.option("--scrape-interval", default="15s", show_default=True, help="Prometheus's scrape interval.")
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("config"),
    show_default=True,
)
@clean_errors
def render_cmd(
    name: str, from_: str, to: str, out: Path, prometheus: str, scrape_interval: str, config_dir: Path
) -> None:
    """Draw one dashboard's panels from Prometheus (query_range) to DIR/atlas-NAME.png."""
    from atlas.dashboards.boards import all_dashboards
    from atlas.dashboards.render import RenderError, now, render, seconds, time_at

    t = now()
    try:  # a bad time or interval is bad input: exit 2 naming the option
        start, end = time_at(from_, t, "--from"), time_at(to, t, "--to")
        interval = seconds(scrape_interval, "--scrape-interval")
    except RenderError as exc:
        raise click.UsageError(str(exc)) from exc
    board = next(b for b in all_dashboards(config_dir) if b.uid == f"atlas-{name}")
    path = render(board, prometheus, out, start=start, end=end, scrape_interval_seconds=interval)
    click.echo(str(path))
