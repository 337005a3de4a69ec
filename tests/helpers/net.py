"""Loopback helpers for tests that run real servers."""

from __future__ import annotations

from atlas.ops.teststack import free_port

__all__ = ["free_port"]
