"""P3 inside an ordinary Hugging Face training loop (``Trainer``, TRL's ``SFTTrainer``), no Kedro.

At the start of every epoch :class:`P3Callback` rescores the pool with the model being trained
(``scoring.score_samples``), applies the threshold and the DPP (``strategies.select``), and hands the
selection to :class:`SelectionSampler`, so that epoch trains on the selected samples only. The
trainer has to read its sampler from the callback: :func:`p3_trainer` makes that subclass of any
trainer class.

    callback = P3Callback(pool, tokenizer, budget=0.2)        # pool: the samples table
    trainer = p3_trainer(Trainer)(model=model, args=args, train_dataset=dataset,
                                  data_collator=collator, callbacks=[callback])
    trainer.train()                                           # callback.history: per-epoch selections

``dataset[i]`` must be the training example of ``pool.iloc[i]`` (same rows, same order). Every epoch
yields ``k`` = the budget samples (``len(sampler)`` is fixed before training starts, because the
trainer sizes its schedule from it); when fewer samples pass the threshold the epoch is shorter and
a warning says so. With mixed precision (e.g. SFTConfig's default ``bf16``) the pool is scored
through the trainer's autocast forward. Why this works: the trainer calls ``on_epoch_begin`` before it iterates the
dataloader, and iterating calls the sampler's ``__iter__`` afresh. Methods that never score
(``random``, ``full``) skip scoring; ``static`` and ``curriculum`` score once, at the first epoch.

``scoring={"refresh": "incremental"}`` (``p3_pruning.refresh``): from the second epoch a rescoring
method rescores only the samples near the threshold, a seeded drift sample and the never-scored;
the samples the last epoch trained on keep the difficulty read off their training step (the
trainer from :func:`p3_trainer` hands its logits to the callback; ``p3_pruning.train_scores``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from transformers import TrainerCallback

from p3_pruning import methods, pacing, strategies
from p3_pruning.refresh import FULL, INCREMENTAL, REFRESH, incremental_scores
from p3_pruning.scoring import score_samples
from p3_pruning.train_scores import TrainPassRecorder, measuring_trainer

log = logging.getLogger(__name__)


class SelectionSampler(torch.utils.data.Sampler):
    """Yields the current epoch's selection (dataset indices) in a seeded shuffled order.

    ``len`` is fixed at ``length`` (the budget); :meth:`set_selection` replaces the indices.
    """

    def __init__(self, length: int, *, seed: int = 0) -> None:
        self.length, self.seed = int(length), int(seed)
        self.indices = np.arange(0)
        self.epoch = 0
        self.order: list[int] = []  # this epoch's indices in the order yielded
        self.cursor = 0

    def set_selection(self, indices, epoch: int) -> None:
        self.indices, self.epoch = np.asarray(indices, dtype=np.int64), int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's dataloader; the epoch is already set by the callback."""

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.indices))
        self.order, self.cursor = self.indices[order].tolist(), 0
        return iter(self.order)

    def take(self, n: int) -> list[int]:
        """The next ``n`` indices of this epoch's order: the rows of the batch being trained on
        (one process; batches are consumed in the order the sampler yields them)."""
        rows = self.order[self.cursor : self.cursor + n]
        self.cursor += n
        return rows


class P3Callback(TrainerCallback):
    """Rescore, threshold and select at every epoch start; the epoch trains on the selection.

    Args:
        pool: the samples table (``sample_id``, ``prompt``, ``response``, optional ``messages``),
            row ``i`` being ``train_dataset[i]``.
        tokenizer: the model's tokenizer (for scoring).
        method: any ``strategies.METHODS`` (default ``p3``).
        budget: samples per epoch, an int or a fraction of the pool.
        rounds: epochs of the pacing schedule; None → the trainer's ``num_train_epochs``.
        seed: selection and shuffle seed.
        scoring: options of ``score_samples`` (``segmenter``, ``max_length``, ``system`` …), plus
            ``refresh`` (``full``, the default, or ``incremental``) and ``incremental`` (the rule's
            ``margin``, ``drift_fraction``, ``min_drift``).
        options: options of ``strategies.select`` (``start``, ``end``, ``schedule``, ``ridge`` …).

    ``history``: one dict per epoch with ``epoch`` (0-based), ``scores`` (None when not scored
    this epoch), ``selection`` (the ``strategies.select`` table), ``indices`` (pool rows, pick
    order) and, with incremental refresh, ``refresh`` (what was rescored and why).
    """

    def __init__(
        self,
        pool: pd.DataFrame,
        tokenizer,
        *,
        method: str = methods.P3,
        budget: int | float = 0.2,
        rounds: int | None = None,
        seed: int = 0,
        scoring: dict | None = None,
        options: dict | None = None,
    ) -> None:
        traits = methods.get(method)
        if not pool["sample_id"].is_unique:
            raise ValueError("pool: sample_id must be unique")
        self.pool = pool.reset_index(drop=True)
        self.tokenizer, self.method, self.budget = tokenizer, method, budget
        self.rounds, self.seed = rounds, int(seed)
        self.scoring = {"progress": False, **(scoring or {})}
        self.refresh = self.scoring.pop("refresh", None) or FULL
        self.incremental = dict(self.scoring.pop("incremental", None) or {})
        if self.refresh not in REFRESH:
            raise ValueError(f"scoring.refresh must be one of {REFRESH}, got {self.refresh!r}")
        self.recorder = None  # the training pass's measurements (incremental refresh)
        if self.refresh == INCREMENTAL and traits.scoring == "rescore":
            keys = ("segmenter", "pattern", "system", "max_length")
            self.recorder = TrainPassRecorder(
                self.pool, tokenizer, **{k: self.scoring[k] for k in keys if k in self.scoring}
            )
        self.options = dict(options or {})
        k = (
            len(self.pool)
            if traits.selector == "all"
            else strategies.resolve_budget(budget, len(pool))
        )
        self.sampler = SelectionSampler(k, seed=seed)
        self.history: list[dict] = []
        self._row = {sid: i for i, sid in enumerate(self.pool["sample_id"])}
        self._epoch = 0
        self._scored: tuple[pd.DataFrame, np.ndarray] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._epoch = int(round(state.epoch or 0))
        if self.rounds is None:
            self.rounds = int(np.ceil(args.num_train_epochs))

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        epoch, regime = self._epoch, methods.get(self.method).scoring
        scores, refresh = None, None
        if self.recorder is not None and self._scored is not None:
            scores, embeddings, refresh = self._refresh(model, epoch)
            self._scored = (scores, embeddings)
        elif regime == "rescore" or (regime == "once" and self._scored is None):
            scores, embeddings = score_samples(model, self.tokenizer, self.pool, **self.scoring)
            self._scored = (scores, embeddings)
        elif regime == "never":
            self._scored = (
                pd.DataFrame({"sample_id": self.pool["sample_id"], "difficulty": np.nan}),
                np.zeros((len(self.pool), 1), dtype=np.float32),
            )
        selection = strategies.select(
            self.method,
            *self._scored,
            round_index=epoch,
            rounds=self.rounds,
            budget=self.budget,
            seed=self.seed,
            **self.options,
        )
        indices = [self._row[sid] for sid in selection["sample_id"]]
        if len(indices) < len(self.sampler):
            log.warning(
                "epoch %d: %d samples selected, fewer than the budget of %d; the epoch is shorter",
                epoch,
                len(indices),
                len(self.sampler),
            )
        self.sampler.set_selection(indices, epoch)
        self.history.append(
            {"epoch": epoch, "scores": scores, "selection": selection, "indices": indices}
        )
        if refresh is not None:
            self.history[-1]["refresh"] = refresh
        self._epoch += 1

    def _refresh(self, model, epoch: int):
        """This epoch's scores by incremental refresh from the last epoch's scores and the
        training pass's values (read, then cleared, from the recorder)."""
        trained = self.recorder.table()
        self.recorder.measured.clear()
        opts = {**strategies.OPTION_DEFAULTS, **self.options}
        keys = ("start", "end", "schedule", "power")
        percent = pacing.percentile(
            epoch, self.rounds, **{k: opts[k] for k in keys if opts.get(k) is not None}
        )

        def score_rows(rows):
            return score_samples(model, self.tokenizer, self.pool.iloc[rows], **self.scoring)

        return incremental_scores(
            self._scored[0],
            self._scored[1],
            trained,
            score_rows,
            percentile=percent,
            round_index=epoch,
            seed=self.seed,
            **self.incremental,
        )


def p3_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` (``Trainer``, ``SFTTrainer`` …) whose train sampler is the
    :class:`P3Callback`'s, which must be among its callbacks."""

    class P3Trainer(measuring_trainer(trainer_cls)):
        def _p3_callback(self) -> P3Callback | None:
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, P3Callback):
                    return callback
            return None

        @property
        def train_pass(self):  # the callback's recorder: set under incremental refresh
            callback = self._p3_callback()
            return callback.recorder if callback is not None else None

        def batch_rows(self, inputs):
            callback = self._p3_callback()
            if callback is None or callback.recorder is None:
                return None
            return callback.sampler.take(int(inputs["input_ids"].shape[0]))

        def _get_train_sampler(self, *args, **kwargs):
            for callback in self.callback_handler.callbacks:
                if isinstance(callback, P3Callback):
                    n = len(self.train_dataset)
                    if n != len(callback.pool):
                        raise ValueError(
                            f"train_dataset has {n} rows but the P3Callback pool {len(callback.pool)}; "
                            "row i of the dataset must be pool row i (did the trainer drop rows?)"
                        )
                    return callback.sampler
            raise ValueError(f"{type(self).__name__} needs a P3Callback in its callbacks")

    P3Trainer.__name__ = P3Trainer.__qualname__ = f"P3{trainer_cls.__name__}"
    return P3Trainer


__all__ = ["P3Callback", "SelectionSampler", "p3_trainer"]
