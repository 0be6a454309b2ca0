"""The round template (score → threshold → select → finetune → evaluate → summarize), unrolled per method."""

from p3_pruning.methods import METHODS

from .pipeline import create_pipeline, round_pipeline

__all__ = ["METHODS", "create_pipeline", "round_pipeline"]
