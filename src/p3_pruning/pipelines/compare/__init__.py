"""All methods on the same pool, budget and seeds, their final evaluation, and a comparison report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
