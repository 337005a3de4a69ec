"""Grafana dashboards as code: the typed builder (model), the dashboards (boards), the generated
files (build), PromQL reading (promql) and rendering to PNG without Grafana (render)."""
