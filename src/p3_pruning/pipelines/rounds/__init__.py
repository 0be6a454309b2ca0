"""The round template (score → select → finetune → cheap eval → summarize), unrolled per method."""

from .pipeline import METHODS, create_pipeline, round_pipeline

__all__ = ["METHODS", "create_pipeline", "round_pipeline"]
