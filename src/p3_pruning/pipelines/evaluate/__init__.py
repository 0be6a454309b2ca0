"""Final evaluation: generation accuracy of a method's last adapter (and of the base model)."""

from .pipeline import create_pipeline, final_pipeline

__all__ = ["create_pipeline", "final_pipeline"]
