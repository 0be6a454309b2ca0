"""Sweeps from one round's cached scores: percentile × budget × ridge, and schedules across rounds."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
