"""The ``data`` pipeline: ingest (generate or load), validate, split into train pool and eval set."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
