"""What every Atlas dashboard shares: the rate window and the deployment / maintenance annotations."""

from __future__ import annotations

from atlas.dashboards.model import SEL, Annotation

RI = "$__rate_interval"

ANNOTATIONS = (
    Annotation(
        "Maintenance",
        f"max by (instance) (atlas_maintenance_mode{{{SEL}}}) == 1",
        "Maintenance mode on",
        "orange",
        "instance",
    ),
    # A deployment restarts the Atlas services: atlas_process_start_time_seconds (the exporter's
    # per-service gauge) changes value exactly then, whichever deploy tool ran.
    Annotation(
        "Deployments",
        f"changes(atlas_process_start_time_seconds{{{SEL}}}[2m]) > 0",
        "{{service}} (re)started",
        "blue",
        "service,instance",
    ),
)


def rate(metric: str, extra: str = "") -> str:
    return f"rate({metric}{{{SEL}{extra}}}[{RI}])"
