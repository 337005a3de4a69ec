"""node_exporter's collectors beyond the core system set, one module per source area.

Every collector here is a `Part`: a function that reads its sources at scrape time and returns
metric families, raising OSError/ValueError/IndexError (or NoData) when its source is missing or
unreadable. `exporters.collectors.base.NodeCollector` runs the parts by name, times each and
exports node_scrape_collector_duration_seconds / node_scrape_collector_success like node_exporter.
"""
