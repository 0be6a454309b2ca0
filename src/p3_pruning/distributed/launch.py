"""LoRA training over several processes, launched from the calling process (the ``finetune`` node).

``train_launched`` writes the round's inputs to a temporary folder and runs

    python -m torch.distributed.run --standalone --nproc_per_node=N -m p3_pruning.distributed.train_entry --inputs DIR

(or ``accelerate launch --num_processes N … -m p3_pruning.distributed.train_entry``). Every process
runs ``training.train_round`` under DDP over the selected samples; rank 0 writes the adapter, which the
caller loads back as a ``LoraAdapter``. Only the training runs under the launcher: wrapping
``kedro run`` itself would run every node once per rank.

``batch_size`` keeps its meaning (samples per device step × processes = the global batch, as in a
single-process run), so it must be divisible by the number of processes; each process gets
``batch_size / N`` rows per step, and steps, schedule and warm-up stay those of one process.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from p3_pruning.adapters import LoraAdapter

log = logging.getLogger(__name__)

LAUNCHERS = ("torchrun", "accelerate")
ENTRY = "p3_pruning.distributed.train_entry"


def write_inputs(
    directory: Path,
    model_params: dict,
    samples: pd.DataFrame,
    adapter: LoraAdapter | None,
    options: dict,
) -> Path:
    """What ``train_entry`` reads: model params, samples, train_round options and the adapter."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model_params.json").write_text(json.dumps(model_params, indent=2))
    (directory / "options.json").write_text(json.dumps(options, indent=2))
    samples.reset_index(drop=True).to_parquet(directory / "samples.parquet", index=False)
    if adapter is not None:
        adapter.save(directory / "adapter")
    return directory


def launch_command(
    launcher: str, nproc_per_node: int, inputs: Path, launcher_args: list[str] | None = None
) -> list[str]:
    """The launcher command line that runs ``train_entry`` on ``inputs`` in ``nproc_per_node`` processes.

    ``launcher_args`` go to the launcher before the module (e.g. ``--nnodes=2 --rdzv-endpoint=host:29400``
    for torchrun across nodes; then ``--standalone`` is left out).
    """
    extra = [str(a) for a in (launcher_args or [])]
    entry = ["-m", ENTRY, "--inputs", str(inputs)]
    if launcher == "torchrun":
        multi_node = any(a.startswith(("--nnodes", "--rdzv")) for a in extra)
        standalone = [] if multi_node else ["--standalone"]
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *standalone,
            f"--nproc_per_node={nproc_per_node}",
            *extra,
            *entry,
        ]
    if launcher == "accelerate":
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            str(nproc_per_node),
            "--num_machines",
            "1",
            *(["--multi_gpu"] if nproc_per_node > 1 else []),
            *extra,
            *entry,
        ]
    raise ValueError(f"training.launcher must be one of {LAUNCHERS} or 'local', got {launcher!r}")


def _run(cmd: list[str], env: dict) -> None:
    """Run ``cmd``, echoing its output; on failure raise with the command and its last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        for line in proc.stdout:
            sys.stderr.write(line)
            tail.append(line)
    if proc.returncode != 0:
        raise RuntimeError(
            f"training launcher exited with status {proc.returncode}: {' '.join(cmd)}\n"
            + "".join(tail)
        )


def train_launched(
    model_params: dict,
    samples: pd.DataFrame,
    *,
    adapter: LoraAdapter | None = None,
    launcher: str = "torchrun",
    nproc_per_node: int = 2,
    seed: int = 0,
    launcher_args: list[str] | None = None,
    **training_options,
) -> tuple[LoraAdapter, dict]:
    """``training.train_round`` in ``nproc_per_node`` DDP processes; returns ``(adapter, metrics)``.

    model_params: keyword arguments of ``models.load_model`` (every process loads the base model).
    samples: the round's selected rows of the samples table. adapter: the previous round's, or None.
    training_options: ``train_round``'s keywords; ``batch_size`` is the global batch (see module doc).
    metrics: ``train_round``'s (from rank 0, whose Trainer averages the loss over ranks) plus
    ``world_size``, ``launcher`` and ``launch_seconds`` (the whole launch, start-up included).
    Divergence in the launched processes raises ``training.TrainingDiverged`` here, as a local run.
    """
    from p3_pruning.distributed.train_entry import DIVERGED
    from p3_pruning.training import TrainingDiverged, train_round

    if launcher not in LAUNCHERS:
        raise ValueError(
            f"training.launcher must be one of {LAUNCHERS} or 'local', got {launcher!r}"
        )
    nproc = int(nproc_per_node)
    if nproc < 1:
        raise ValueError(f"training.nproc_per_node must be ≥ 1, got {nproc_per_node}")
    known = set(train_round.__kwdefaults__) - {"adapter", "seed", "output_dir"}
    unknown = sorted(set(training_options) - known)
    if unknown:
        raise TypeError(f"unknown training option(s) {unknown} for train_round")
    batch_size = int(training_options.get("batch_size", train_round.__kwdefaults__["batch_size"]))
    if batch_size % nproc:
        raise ValueError(
            f"training.batch_size={batch_size} (the global batch) is not divisible by "
            f"training.nproc_per_node={nproc}"
        )
    options = {**training_options, "seed": int(seed), "batch_size": batch_size // nproc}

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="p3-launch-") as tmp:
        inputs = write_inputs(Path(tmp), dict(model_params), samples, adapter, options)
        cmd = launch_command(launcher, nproc, inputs, launcher_args)
        log.info("Launching %d training process(es): %s", nproc, " ".join(cmd))
        out = inputs / "output"
        try:
            _run(cmd, dict(os.environ))
        except RuntimeError as exc:
            if (out / DIVERGED).is_file():  # the same error as a local run, not a launcher failure
                raise TrainingDiverged((out / DIVERGED).read_text()) from exc
            raise
        if not (out / "metrics.json").is_file():
            raise RuntimeError(f"the launched training wrote no {out / 'metrics.json'}: {cmd}")
        trained = LoraAdapter.load(out / "adapter")
        metrics = json.loads((out / "metrics.json").read_text())
    metrics.update(launcher=launcher, launch_seconds=time.perf_counter() - start)
    return trained, metrics


__all__ = ["LAUNCHERS", "launch_command", "train_launched", "write_inputs"]
