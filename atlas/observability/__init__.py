"""Metrics catalog, tracing setup and health checks."""
