"""The monitoring agent (`atlas monitor`, `tools/monitoring_agent.py`): health checks, test
notifications, and alerting.yaml evaluated without Prometheus."""
