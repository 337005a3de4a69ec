"""Pipeline stages. `default_pipeline` is what `atlas core` runs unless told otherwise."""

from __future__ import annotations

from atlas.pipeline.base import ItemContext, Pipeline, Stage
from atlas.pipeline.document import DocumentDecode, Normalise


def default_pipeline() -> Pipeline:
    return Pipeline(stages=(DocumentDecode(), Normalise()))


__all__ = ["ItemContext", "Pipeline", "Stage", "default_pipeline"]
