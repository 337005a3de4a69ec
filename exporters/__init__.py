"""The Atlas node exporter: system metrics under node_exporter's names, Atlas service processes and
business gauges read from the store, all read at scrape time by custom collectors.

`build_registry(settings)` gives a registry holding every collector; `serve` runs it over HTTP.
"""

from __future__ import annotations

from exporters.server import build_registry, serve, start_exporter

__all__ = ["build_registry", "serve", "start_exporter"]
