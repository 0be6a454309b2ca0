"""Scoring and generation spread over a Ray cluster: Ray Data ``map_batches`` on an actor pool.

Each worker (a Ray actor) loads one replica of the policy: the base model from ``load_model``, with the
round's LoRA adapter merged in (the adapter is put in the object store once and fetched by each worker
when it starts, never shipped per batch). The pool goes to the workers in blocks of ``batch_rows``
rows; every block runs through the same core function as the local backend
(``scoring.score_samples``, ``evaluation.generate``, ``evaluation.evaluate_generation``) and the
driver puts the results back in pool order. Rows are sent longest first (by characters), so a block
holds samples of similar length and the scorer's length bucketing wastes little padding.

``ray`` options (the ``scoring.ray`` / ``generation.ray`` parameter blocks):

- ``address``: ``null`` starts a local cluster for the call (and stops it after); ``"auto"`` or
  ``"ray://<head>:10001"`` connects to a running one. If Ray is already initialised in this process,
  that cluster is used as it is.
- ``num_workers``: model replicas (actors). ``num_gpus_per_worker``: GPUs per replica (0 on CPU).
- ``num_cpus_per_worker``: CPUs each actor reserves; ``null`` → ``min(1, cluster CPUs / (workers + 1))``,
  which leaves a slot for Ray Data's own tasks (a 2-CPU cluster hangs with 1 CPU per actor).
- ``threads_per_worker``: torch threads per replica; ``null`` → ``max(1, int(num_cpus_per_worker))``.
- ``batch_rows``: rows per block handed to a worker.
- ``num_cpus``, ``object_store_memory``: limits of a local cluster (``address: null``) only.

On a multi-node cluster every node needs this project installed in the same environment and the model
reachable under the same ``name_or_path`` (a hub id or a shared folder). Ray 2.60 turns token
authentication on: the driver needs the cluster's token (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from p3_pruning.adapters import LoraAdapter
from p3_pruning.models import policy_model

log = logging.getLogger(__name__)

RAY_DEFAULTS = {
    "address": None,
    "num_workers": 2,
    "num_gpus_per_worker": 0,
    "num_cpus_per_worker": None,
    "threads_per_worker": None,
    "batch_rows": 64,
    "num_cpus": None,
    "object_store_memory": None,
}
_ROW = "_row"  # pool position, carried through the workers to put the results back in order


def ray_options(ray: dict | None) -> dict:
    """``ray`` merged over ``RAY_DEFAULTS``; unknown keys and bad counts raise, naming the key."""
    options = dict(RAY_DEFAULTS)
    unknown = sorted(set(ray or {}) - set(RAY_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown ray option(s) {unknown}; expected some of {sorted(RAY_DEFAULTS)}"
        )
    options.update({k: v for k, v in (ray or {}).items()})
    for key, low in (("num_workers", 1), ("batch_rows", 1)):
        if int(options[key]) < low:
            raise ValueError(f"ray.{key} must be ≥ {low}, got {options[key]}")
    for key in ("num_gpus_per_worker", "num_cpus_per_worker", "threads_per_worker"):
        if options[key] is not None and float(options[key]) < 0:
            raise ValueError(f"ray.{key} must be ≥ 0, got {options[key]}")
    return options


def _import_ray():
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "backend 'ray' needs Ray: pip install -e \".[ray]\" (scripts/setup.sh installs it)"
        ) from exc
    return ray


@contextmanager
def ray_cluster(ray: dict | None = None) -> Iterator:
    """The Ray module, initialised: the running cluster if any, else a local one (``address: null``,
    stopped on exit) or a connection to ``address``."""
    options = ray_options(ray)
    ray_mod = _import_ray()
    if ray_mod.is_initialized():
        yield ray_mod
        return
    if options["address"] is None:
        start = time.perf_counter()
        ray_mod.init(
            num_cpus=options["num_cpus"],
            object_store_memory=options["object_store_memory"],
            include_dashboard=False,
        )
        log.info("Started a local Ray cluster in %.1f s", time.perf_counter() - start)
    else:
        ray_mod.init(address=options["address"])
    try:
        yield ray_mod
    finally:
        ray_mod.shutdown()


def load_policy(model_params: dict, adapter: LoraAdapter | None = None):
    """``(model, tokenizer)`` for inference on a worker: ``models.policy_model`` with the adapter
    merged into the fresh base weights (a plain model; not merged on a 4-bit base), eval mode."""
    return policy_model(model_params, adapter, merge=True)


# ----------------------------------------------------------------------------------------------
# What a worker does with one block of rows (module functions: the workers import them by name)
# ----------------------------------------------------------------------------------------------
def _score_block(model, tokenizer, block: pd.DataFrame, options: dict) -> pd.DataFrame:
    from p3_pruning.scoring import score_samples

    scores, embeddings = score_samples(model, tokenizer, block, **options, progress=False)
    scores = scores.drop(columns="sample_id")  # the driver puts the pool's own ids back
    scores["embedding"] = list(embeddings.astype(np.float32, copy=False))
    return scores


def _generate_block(model, tokenizer, block: pd.DataFrame, options: dict) -> pd.DataFrame:
    from p3_pruning.evaluation import generate

    return pd.DataFrame({"response": generate(model, tokenizer, block, **options, progress=False)})


def _evaluate_block(model, tokenizer, block: pd.DataFrame, options: dict) -> pd.DataFrame:
    from p3_pruning.evaluation import evaluate_generation

    per_sample, _ = evaluate_generation(model, tokenizer, block, **options, progress=False)
    return per_sample


_TASKS: dict[str, Callable] = {
    "score": _score_block,
    "generate": _generate_block,
    "evaluate": _evaluate_block,
}


class _Replica:
    """One Ray Data actor: a policy replica that runs one task on every block it is given."""

    def __init__(self, model_params: dict, adapter_ref: list, task: str, options: dict, threads):
        import ray
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        adapter = ray.get(adapter_ref[0]) if adapter_ref else None
        self.model, self.tokenizer = load_policy(model_params, adapter)
        self.task = _TASKS[task]
        self.options = options

    def __call__(self, block: pd.DataFrame) -> pd.DataFrame:
        rows = block[_ROW].to_numpy()
        out = self.task(self.model, self.tokenizer, block.drop(columns=_ROW), self.options)
        out = out.reset_index(drop=True)
        out.insert(0, _ROW, rows)
        return out


def _check_options(func: Callable, options: dict, what: str) -> None:
    """Unknown keyword options fail here, on the driver, naming the key (not inside a worker)."""
    params = inspect.signature(func).parameters
    unknown = sorted(set(options) - {k for k, p in params.items() if p.kind == p.KEYWORD_ONLY})
    if unknown:
        raise TypeError(f"unknown {what} option(s) {unknown} for {func.__module__}.{func.__name__}")


def _map_pool(
    task: str,
    model_params: dict,
    adapter: LoraAdapter | None,
    frame: pd.DataFrame,
    columns: list[str],
    options: dict,
    ray: dict | None,
    progress: bool,
) -> pd.DataFrame:
    """Run ``task`` over ``frame`` on an actor pool; the workers' tables concatenated in ``frame``'s order."""
    cfg = ray_options(ray)
    blocks = _blocks(task, frame, columns, int(cfg["batch_rows"]))

    with ray_cluster(cfg) as ray_mod:
        import ray.data

        workers = int(cfg["num_workers"])
        cpus = cfg["num_cpus_per_worker"]
        if cpus is None:
            total = float(ray_mod.cluster_resources().get("CPU", 1.0))
            cpus = min(1.0, total / (workers + 1))
        threads = cfg["threads_per_worker"] or max(1, int(cpus))
        context = ray.data.DataContext.get_current()
        bars = context.enable_progress_bars
        context.enable_progress_bars = bool(progress)
        adapter_ref = [ray_mod.put(adapter)] if adapter is not None else []
        start = time.perf_counter()
        try:
            result = (
                ray.data.from_pandas(blocks)
                .map_batches(
                    _Replica,
                    batch_format="pandas",
                    batch_size=None,  # one block per call: blocks are batch_rows rows already
                    compute=ray.data.ActorPoolStrategy(size=workers),
                    fn_constructor_kwargs={
                        "model_params": dict(model_params),
                        "adapter_ref": adapter_ref,
                        "task": task,
                        "options": options,
                        "threads": threads,
                    },
                    num_cpus=cpus,
                    num_gpus=cfg["num_gpus_per_worker"] or None,
                )
                .to_pandas()
            )
        finally:
            context.enable_progress_bars = bars
        log.info(
            "Ray %s: %d rows on %d worker(s) (%.2f CPU, %s GPU, %d thread(s) each) in %.1f s",
            task,
            len(frame),
            workers,
            cpus,
            cfg["num_gpus_per_worker"],
            threads,
            time.perf_counter() - start,
        )
    return _in_frame_order(result, task, len(frame))


def _blocks(task: str, frame: pd.DataFrame, columns: list[str], step: int) -> list[pd.DataFrame]:
    """``frame[columns]`` with row numbers (``_ROW``), longest rows first, ``step`` rows a block."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"samples table lacks column(s) {missing}; found {list(frame.columns)}")
    if len(frame) == 0:
        raise ValueError(f"the samples table is empty: nothing to {task} on Ray")
    shipped = frame[columns].reset_index(drop=True)
    shipped.insert(0, _ROW, np.arange(len(shipped)))
    lengths = shipped["prompt"].astype(str).str.len()
    if "response" in shipped.columns:
        lengths = lengths + shipped["response"].fillna("").astype(str).str.len()
    order = np.argsort(-lengths.to_numpy(), kind="stable")
    return [shipped.iloc[order[i : i + step]] for i in range(0, len(order), step)]


def _in_frame_order(result: pd.DataFrame, task: str, n: int) -> pd.DataFrame:
    """The workers' rows in the pool's order, each of the ``n`` exactly once, ``_ROW`` dropped."""
    result = result.sort_values(_ROW, kind="stable").reset_index(drop=True)
    if not np.array_equal(result[_ROW].to_numpy(), np.arange(n)):
        raise RuntimeError(
            f"Ray {task} returned {len(result)} rows for a pool of {n}: rows lost or repeated"
        )
    # Rebuilt from Python values (Arrow nulls as None), as the local functions build their tables,
    # so the dtypes match theirs rather than the Arrow-backed ones Ray Data hands back.
    return pd.DataFrame(
        {
            c: [None if v is pd.NA else v for v in result[c].tolist()]
            for c in result.columns
            if c != _ROW
        }
    )


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------
def score_on_ray(
    model_params: dict,
    adapter: LoraAdapter | None,
    pool: pd.DataFrame,
    *,
    ray: dict | None = None,
    progress: bool = True,
    **scoring_options,
) -> tuple[pd.DataFrame, np.ndarray]:
    """``scoring.score_samples`` of the policy (base + merged ``adapter``) over ``pool``, on Ray.

    model_params: keyword arguments of ``models.load_model`` (each worker loads its own replica).
    scoring_options: those of ``score_samples`` (``segmenter``, ``embed``, ``max_length``, …).
    Returns the same ``(scores, embeddings)`` as the local backend: scores in pool order with
    ``scoring.SCORE_COLUMNS``, embeddings (n, d) float32.
    """
    from p3_pruning.scoring import SCORE_COLUMNS, score_samples

    _check_options(score_samples, {**scoring_options, "progress": progress}, "scoring")
    out = _map_pool(
        "score",
        model_params,
        adapter,
        pool,
        ["sample_id", "prompt", "response"],
        scoring_options,
        ray,
        progress,
    )
    out["sample_id"] = pool["sample_id"].tolist()
    out["action_probs"] = [[float(p) for p in probs] for probs in out["action_probs"]]
    embeddings = np.stack([np.asarray(e, dtype=np.float32) for e in out.pop("embedding")])
    return out[SCORE_COLUMNS], embeddings


def generate_on_ray(
    model_params: dict,
    adapter: LoraAdapter | None,
    samples: pd.DataFrame,
    *,
    ray: dict | None = None,
    progress: bool = True,
    **generation_options,
) -> list[str]:
    """``evaluation.generate`` (greedy) of the policy over ``samples["prompt"]`` on Ray, in row order."""
    from p3_pruning.evaluation import generate

    _check_options(generate, {**generation_options, "progress": progress}, "generation")
    out = _map_pool(
        "generate", model_params, adapter, samples, ["prompt"], generation_options, ray, progress
    )
    return out["response"].astype(str).tolist()


def evaluate_generation_on_ray(
    model_params: dict,
    adapter: LoraAdapter | None,
    samples: pd.DataFrame,
    *,
    ray: dict | None = None,
    progress: bool = True,
    **generation_options,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``evaluation.evaluate_generation`` on Ray: each worker generates and grades its rows; the driver
    gathers ``per_sample`` in row order and tabulates ``summary`` with ``evaluation.accuracy_table``."""
    from p3_pruning.evaluation import accuracy_table, evaluate_generation

    _check_options(evaluate_generation, {**generation_options, "progress": progress}, "generation")
    per_sample = _map_pool(
        "evaluate",
        model_params,
        adapter,
        samples,
        list(samples.columns),
        generation_options,
        ray,
        progress,
    )
    return per_sample, accuracy_table(per_sample)


__all__ = [
    "RAY_DEFAULTS",
    "evaluate_generation_on_ray",
    "generate_on_ray",
    "load_policy",
    "ray_cluster",
    "ray_options",
    "score_on_ray",
]
