"""Alerting: the alerting.yaml and monitoring.yaml models (more arrives with the alerting issues)."""
