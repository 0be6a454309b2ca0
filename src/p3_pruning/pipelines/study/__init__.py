"""Methods × seeds from the same round template, each with its final evaluation, and the report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
