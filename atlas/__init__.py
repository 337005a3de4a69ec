"""Atlas: a self-hosted, Prometheus-native content ingest engine."""

__version__ = "0.1.0"
