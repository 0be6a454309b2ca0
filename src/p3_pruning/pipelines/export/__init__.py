"""The ``export`` pipeline: every round's selection as the original records (JSONL, datasets folder, manifest)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
