"""The round template (score → threshold → select → finetune → evaluate → summarize), unrolled per method."""

from .pipeline import METHODS, create_pipeline, round_pipeline

__all__ = ["METHODS", "create_pipeline", "round_pipeline"]
