"""The PostgreSQL backend (issue 17): many API and engine processes on many hosts, one database."""

from __future__ import annotations

from atlas.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
