"""P3 pruning: policy-driven, pace-adaptive, diversity-promoted data selection for LLM fine-tuning."""

__version__ = "0.1.0"
