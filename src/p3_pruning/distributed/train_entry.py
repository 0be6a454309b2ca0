"""Entry point of one training process under ``torchrun`` / ``accelerate launch`` (see ``launch.py``).

    python -m torch.distributed.run --standalone --nproc_per_node=N \\
        -m p3_pruning.distributed.train_entry --inputs DIR

``DIR`` holds what ``launch.write_inputs`` wrote: ``model_params.json``, ``samples.parquet``,
``options.json`` (``train_round`` keywords, with ``batch_size`` already per process) and, when a round
continues an adapter, ``adapter/``. Every rank loads the base model and calls
``training.train_round``; the HF ``Trainer`` inside sees the launcher's environment (``RANK``,
``WORLD_SIZE``, …) and trains under DDP (gloo on CPU, NCCL on GPUs). Rank 0 writes the trained
adapter to ``DIR/output/adapter`` and the metrics to ``DIR/output/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from p3_pruning.adapters import LoraAdapter
from p3_pruning.models import load_model
from p3_pruning.training import TrainingDiverged, train_round

DIVERGED = "diverged.txt"  # rank 0 writes the divergence message here, for the launching process


def run(inputs: Path) -> None:
    """Train on the inputs in ``inputs`` (every rank); rank 0 writes ``inputs/output``.

    A diverging run writes nothing but ``output/diverged.txt`` (the message) and fails.
    """
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    model_params = json.loads((inputs / "model_params.json").read_text())
    options = json.loads((inputs / "options.json").read_text())
    samples = pd.read_parquet(inputs / "samples.parquet")
    adapter = LoraAdapter.load(inputs / "adapter") if (inputs / "adapter").is_dir() else None
    options["progress"] = bool(options.get("progress", True)) and rank == 0

    model, tokenizer = load_model(**model_params)
    out = inputs / "output"
    try:
        trained, metrics = train_round(model, tokenizer, samples, adapter=adapter, **options)
    except TrainingDiverged as exc:
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / DIVERGED).write_text(str(exc))
        raise
    if rank == 0:
        trained.save(out / "adapter")
        metrics = {**metrics, "world_size": world_size}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=Path, required=True, help="folder written by write_inputs")
    args = parser.parse_args(argv)
    run(args.inputs)


if __name__ == "__main__":
    main()
