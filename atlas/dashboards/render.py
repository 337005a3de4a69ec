"""Draw a dashboard to one PNG without Grafana: each panel's queries go to Prometheus's query_range
API and are plotted with matplotlib where the panel sits on Grafana's grid.

For incident reports and README pictures. Variables take their "All" value; `$__rate_interval`
is Grafana's rule, max(4 x scrape interval, step + scrape interval).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from atlas.dashboards.boards import MAY_BE_EMPTY
from atlas.dashboards.model import GRID_COLUMNS, Dashboard, Panel
from atlas.dashboards.promql import substitute
from atlas.errors import AtlasError

WIDTH_PX = 1600
ROW_PX = 30  # Grafana's grid row height
HEADER_PX = 50  # the title line above the panels
DPI = 100
POINTS = 240  # samples per series, like a Grafana panel a few hundred pixels wide
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class RenderError(AtlasError):
    """A dashboard could not be rendered (bad time range, Prometheus unreachable or refusing)."""


def seconds(text: str, what: str) -> float:
    """`15s`, `1h` -> seconds; RenderError naming `what` otherwise."""
    m = _DURATION.match(text.strip())
    if not m:
        raise RenderError(f"{what}: expected a duration like 30s, 5m, 1h, got {text!r}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def time_at(text: str, now: float, what: str) -> float:
    """`now`, `-1h` or `now-1h` -> Unix seconds."""
    t = text.strip()
    if t == "now":
        return now
    t = t.removeprefix("now")
    if not t.startswith("-"):
        raise RenderError(f"{what}: expected now, -DURATION or now-DURATION (e.g. -1h), got {text!r}")
    return now - seconds(t[1:], what)


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list[Series]:
    """Prometheus's range query; RenderError when it is unreachable or refuses the query."""
    try:
        response = httpx.get(
            f"{prometheus.rstrip('/')}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise RenderError(f"Prometheus at {prometheus}: {exc}") from exc
    body: dict[str, Any] = response.json()
    if body.get("status") != "success":
        raise RenderError(f"Prometheus refused {expr!r}: {body.get('error', response.text)}")
    return [
        Series(
            r["metric"],
            [float(t) for t, _ in r["values"]],
            [float(v) for _, v in r["values"]],
        )
        for r in body["data"]["result"]
    ]


def legend(template: str, labels: dict[str, str]) -> str:
    if template in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def _scale(unit: str) -> tuple[float, str]:
    return {"percentunit": (100.0, "%"), "bytes": (1 / 2**20, "MiB"), "Bps": (1 / 2**10, "KiB/s")}.get(
        unit, (1.0, unit)
    )


def panel_data(
    panel: Panel, prometheus: str, start: float, end: float, step: float, rate_interval: str
) -> list[tuple[str, Series]]:
    data = []
    for q in panel.queries:
        expr = substitute(q.expr, rate_interval=rate_interval)
        data += [(legend(q.legend, s.labels), s) for s in query_range(prometheus, expr, start, end, step)]
    return data


def render(
    board: Dashboard,
    prometheus: str,
    out_dir: Path,
    *,
    start: float,
    end: float,
    scrape_interval_seconds: float = 15,
) -> Path:
    """Draw `board` over [start, end] to `out_dir/<uid>.png`; returns the path."""
    # Imported here: only rendering needs matplotlib, and it is slow to import.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if end <= start:
        raise RenderError(f"--from must be before --to (got {start:.0f} >= {end:.0f})")
    step = max(1.0, round((end - start) / POINTS))
    rate_interval = f"{int(max(4 * scrape_interval_seconds, step + scrape_interval_seconds))}s"
    placed = board.layout()
    rows = max(pos["y"] + pos["h"] for _, pos in placed)
    height_px = rows * ROW_PX + HEADER_PX
    fig = plt.figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI)
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.text(
        0.01,
        1 - 18 / height_px,
        f"{board.title}  ·  {(end - start) / 60:.0f} min to {stamp}",
        fontsize=13,
        weight="bold",
        va="top",
    )
    for panel, pos in placed:
        pad_x, pad_top, pad_bottom = 0.035, 26, 22  # room for the y labels, title and time axis
        left = pos["x"] / GRID_COLUMNS + pad_x * 0.6
        width = pos["w"] / GRID_COLUMNS - pad_x
        top_px = HEADER_PX + pos["y"] * ROW_PX + pad_top
        h_px = pos["h"] * ROW_PX - pad_top - pad_bottom
        ax = fig.add_axes((left, 1 - (top_px + h_px) / height_px, width, h_px / height_px))
        factor, unit_label = _scale(panel.unit)
        ax.set_title(
            f"{panel.title} ({unit_label})" if unit_label not in ("short", "") else panel.title,
            fontsize=9,
            loc="left",
        )
        ax.tick_params(labelsize=7)
        data = panel_data(panel, prometheus, start, end, step, rate_interval)
        if not data:
            reason = MAY_BE_EMPTY.get((board.uid, panel.title), "")
            ax.text(
                0.5,
                0.5,
                "no data" + (f"\n({reason})" if reason else ""),
                ha="center",
                va="center",
                fontsize=8,
                color="grey",
                transform=ax.transAxes,
                wrap=True,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if panel.kind == "heatmap":
            _heatmap(ax, data)
        else:
            for name, s in data:
                ax.plot(
                    [t - end for t in s.times], [v * factor for v in s.values], linewidth=1, label=name[:40]
                )
            ax.set_xlim(start - end, 0)
            if len(data) <= 8:
                ax.legend(fontsize=6, loc="upper left", frameon=False)
        for t in panel.thresholds:
            ax.axhline(t.value * factor, color=t.color, linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
        ax.set_xlabel("seconds before end", fontsize=6, labelpad=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{board.uid}.png"
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _heatmap(ax: Any, data: list[tuple[str, Any]]) -> None:
    def upper(name: str) -> float:
        return float("inf") if name in ("+Inf", "inf") else float(name)

    ordered = sorted(data, key=lambda d: upper(d[0]))
    cumulative = [s.values for _, s in ordered]
    width = min(len(row) for row in cumulative)
    # Buckets are cumulative (le); a cell is what fell into that bucket alone, as Grafana shows it.
    grid = [
        [row[i] - (cumulative[n - 1][i] if n else 0.0) for i in range(width)]
        for n, row in enumerate(cumulative)
    ]
    ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(ordered)), [name for name, _ in ordered], fontsize=6)


def now() -> float:
    return time.time()
