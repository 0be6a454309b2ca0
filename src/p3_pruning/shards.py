"""Resumable scoring: a scoring call written to disk in shards, so a crash loses one shard, not the
round.

A call's rows are cut into consecutive shards of ``rows`` samples; each shard is scored, then
written whole into a folder named by a key of everything that determines its values (the model
parameters, the adapter's weights, the scoring options and the rows' ids and contents). Each shard
is written to a temporary folder that is renamed into place, so a shard exists whole or not at
all. A rerun of the same call (``kedro run --only-missing-outputs`` after a crash, the same seeds)
finds the key's folder, loads the shards that are there and scores only the missing ones. When the
call completes, its folder is removed: the round's scores are then a Kedro output of their own.

The shard boundaries are part of the computation (a scoring batch never spans two shards), so a
sharded run, interrupted or not, gives the same scores and embeddings; they may differ from an
unsharded run's in the last float bits (other batches), which is why sharding is off by default
(``scoring.shards.rows: null``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_DIR = "data/05_model_input/score_shards"
SCORES_FILE = "scores.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
PARTIAL = ".partial-"  # a shard being written: ignored, removed by the next writer

Scorer = Callable[[pd.DataFrame], tuple[pd.DataFrame, np.ndarray]]


def adapter_fingerprint(adapter) -> str:
    """SHA-256 of a ``LoraAdapter``'s config and weights (``"none"`` for the base model)."""
    if adapter is None:
        return "none"
    import torch

    digest = hashlib.sha256(json.dumps(adapter.config, sort_keys=True, default=str).encode())
    for name in sorted(adapter.state_dict):
        tensor = adapter.state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def call_key(
    samples: pd.DataFrame, *, model_params: dict, adapter, options: dict, rows: int
) -> str:
    """The key of one scoring call: what its scores depend on, hashed (24 hex digits)."""
    digest = hashlib.sha256()
    described = {"model": model_params, "options": options, "rows": int(rows)}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    digest.update(adapter_fingerprint(adapter).encode())
    columns = [c for c in ("sample_id", "prompt", "response", "messages") if c in samples.columns]
    contents = pd.util.hash_pandas_object(samples[columns].astype(str), index=False)
    digest.update(contents.to_numpy().tobytes())
    return digest.hexdigest()[:24]


class ShardedScoring:
    """One scoring call in shards under ``root/<key>``: ``run(samples, scorer)`` returns what
    ``scorer(samples)`` would, scoring only the shards not on disk yet.

    ``scorer``: ``samples -> (scores, embeddings)`` in row order, as ``scoring.score_samples``.
    """

    def __init__(self, root: str | Path, key: str, rows: int):
        if int(rows) < 1:
            raise ValueError(f"scoring.shards.rows must be ≥ 1, got {rows}")
        self.folder = Path(root) / key
        self.rows = int(rows)
        self.scored = 0  # shards scored by this call (the others were loaded)
        self.loaded = 0

    def _shard(self, index: int) -> Path:
        return self.folder / f"shard_{index:06d}"

    def run(self, samples: pd.DataFrame, scorer: Scorer) -> tuple[pd.DataFrame, np.ndarray]:
        if len(samples) == 0:  # nothing to keep: the scorer says what an empty call gives
            return scorer(samples)
        starts = range(0, len(samples), self.rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_partial()
        parts = []
        for index, start in enumerate(starts):
            chunk = samples.iloc[start : start + self.rows]
            path = self._shard(index)
            found = _read(path, chunk) if path.exists() else None
            if found is None:
                _write(path, *scorer(chunk))
                found = _read(path, chunk)  # as a resumed run will read it: the same values
                if found is None:
                    raise OSError(f"score shard {path} could not be read back after writing")
                self.scored += 1
            else:
                self.loaded += 1
            parts.append(found)
        if self.loaded:
            log.info(
                "Scoring resumed from %s: %d shard(s) of %d rows loaded, %d scored",
                self.folder,
                self.loaded,
                self.rows,
                self.scored,
            )
        scores = pd.concat([p[0] for p in parts], ignore_index=True)
        embeddings = np.concatenate([p[1] for p in parts], axis=0)
        return scores, embeddings

    def clear(self) -> None:
        """Remove the call's shards (once its result is in hand)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _remove_partial(self) -> None:
        for leftover in self.folder.glob(f"*{PARTIAL}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _write(path: Path, scores: pd.DataFrame, embeddings: np.ndarray) -> None:
    """Both files into a temporary folder, renamed into place: the shard exists whole or not."""
    partial = path.with_name(f"{path.name}{PARTIAL}{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    scores.to_parquet(partial / SCORES_FILE, index=False)
    with open(partial / EMBEDDINGS_FILE, "wb") as f:
        np.save(f, np.asarray(embeddings))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _read(path: Path, chunk: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray] | None:
    """A finished shard, checked against the rows it should hold; ``None`` (rescored) if it does
    not match or cannot be read."""
    try:
        scores = pd.read_parquet(path / SCORES_FILE)
        embeddings = np.load(path / EMBEDDINGS_FILE)
    except Exception as exc:  # noqa: BLE001 - a damaged shard is scored again, said why
        log.warning("score shard %s unreadable (%s): scoring it again", path, exc)
        shutil.rmtree(path, ignore_errors=True)
        return None
    ids = chunk["sample_id"].astype(str).tolist()
    if scores["sample_id"].astype(str).tolist() != ids or len(embeddings) != len(ids):
        log.warning("score shard %s holds other rows: scoring it again", path)
        shutil.rmtree(path, ignore_errors=True)
        return None
    scores["sample_id"] = chunk["sample_id"].tolist()  # the pool's own dtype
    for column in ("action_probs", "turn_probs"):  # Parquet lists come back as arrays
        if column in scores.columns:
            scores[column] = [None if v is None else [float(x) for x in v] for v in scores[column]]
    return scores, embeddings
