"""Difficulty read off the training pass: the scorer's measurement at no extra forward (Kedro-free).

A LoRA training step already runs the teacher-forced forward pass over prompt + response that the
scorer runs (the same ids: ``chat.encode_pair`` / ``encode_conversation`` build both). Its logits
give every action probability of every sample it trains on:

    p_k = exp(mean over tokens t of a_k of log p(t | x, a_<k, …))      difficulty = 1 − mean_k p_k

with the scorer's own token → action rule (``encoding.encode_fields`` gives the action spans,
``scoring.action_probs`` turns logits into p_k). Nothing is run again: the trainer's
``compute_loss`` hands its logits (detached) to a :class:`TrainPassRecorder`, which pays one
log-softmax + gather over the response positions — the cost of the loss itself, not of a forward.

What such a value measures, and how it differs from a rescoring (docs/method.md):

- **In-epoch updates.** A sample is measured at the step that trains on it, *before* that step's
  update: with the adapter of round e−1 plus the updates of the earlier steps of round e. The
  scorer of round e+1 sees the adapter after all of round e's steps. So the value is between one
  round old (the first batch) and one step old (the last); samples learnt during the round read as
  harder than a rescoring would find them. With several epochs the last measurement is kept.
- **Dropout.** Training runs in train mode, so LoRA dropout (``training.lora.dropout``, 0.05 by
  default, on the adapter branch only; the base model's own dropout is 0 for the models used here)
  perturbs the values; the scorer runs in eval mode. The perturbation is a noise of the adapter's
  contribution, not a bias we correct for; incremental refresh (``p3_pruning.refresh``) measures the
  remaining offset of the train-pass values against fresh scores on a seeded sample and shifts them
  by its median.
- With dropout 0 and learning rate 0 both effects vanish and the values equal ``score_samples``'s
  to float rounding (tests/test_train_scores.py).

Embeddings are not taken from the training pass (the model returns no hidden states there);
incremental refresh keeps each sample's last scored embedding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from p3_pruning.chat import DEFAULT_SYSTEM
from p3_pruning.encoding import MAX_LENGTH, Encoded, ScoringError, encode_rows
from p3_pruning.scoring import CHUNK_TOKENS, SCORE_COLUMNS, action_probs, unscored_row
from p3_pruning.segment import get_segmenter

log = logging.getLogger(__name__)

TRAIN_SCORE_COLUMNS = [*SCORE_COLUMNS, "step"]  # step: the optimizer step the value was read at
NOT_MEASURED = "not_measured"  # a sample the trainer never fed (e.g. a dropped last batch)
MISMATCH = "ids_mismatch"  # the trainer's ids differ from the scorer's encoding of the row


class TrainPassRecorder:
    """Collects per-action probabilities of the rows a trainer feeds, from its logits.

    ``samples``: the rows, position ``i`` being the trainer's row ``i`` (``sample_id``, ``prompt``,
    ``response``, optional ``messages``). ``segmenter`` / ``pattern`` / ``system`` /
    ``max_length``: the scorer's options (``scoring`` block), so the spans are the scorer's.
    """

    def __init__(
        self,
        samples: pd.DataFrame,
        tokenizer,
        *,
        segmenter: str | Callable = "newline",
        pattern: str | None = None,
        system: str | None = DEFAULT_SYSTEM,
        max_length: int | None = MAX_LENGTH,
        chunk_tokens: int = CHUNK_TOKENS,
    ) -> None:
        split = get_segmenter(segmenter, pattern=pattern)
        self.sample_ids = [str(s) for s in samples["sample_id"]]
        self.chunk_tokens = int(chunk_tokens)
        self.encoded: list[Encoded | ScoringError] = encode_rows(
            tokenizer, samples, split, system=system, max_length=max_length
        )
        self.measured: dict[int, tuple[list[float] | None, int, str]] = {}

    def record(self, rows: Sequence[int], input_ids: torch.Tensor, logits: torch.Tensor, step: int):
        """Read the action probabilities of ``rows`` (the batch's rows, in order) off ``logits``
        (B, T, V) for ``input_ids`` (B, T); a row measured again keeps the later value."""
        keep, spans = [], []
        ids = input_ids.detach()
        for b, row in enumerate(rows):
            enc = self.encoded[int(row)]
            if isinstance(enc, ScoringError):
                continue
            n = len(enc.input_ids)
            same = n <= ids.shape[1] and ids[b, :n].tolist() == enc.input_ids
            if not same:
                self.measured[int(row)] = (None, step, MISMATCH)
                continue
            keep.append(b)
            spans.append(enc.action_spans)
        if not keep:
            return
        with torch.no_grad():
            index = torch.tensor(keep, device=logits.device)
            probs = action_probs(
                logits.detach().index_select(0, index),
                ids.index_select(0, index.to(ids.device)),
                spans,
                chunk_tokens=self.chunk_tokens,
            )
        for b, p in zip(keep, probs, strict=True):
            self.measured[int(rows[b])] = (p, step, "ok")

    def table(self) -> pd.DataFrame:
        """The train scores: the scores table's columns (``SCORE_COLUMNS``) plus ``step``, one row
        per sample in row order; unmeasured or unencodable rows get difficulty +inf and a status."""
        out = []
        for i, (sid, enc) in enumerate(zip(self.sample_ids, self.encoded, strict=True)):
            row = {**unscored_row(sid), "step": -1}
            if isinstance(enc, ScoringError):
                row.update(status=enc.status, reason=enc.reason, n_tokens=enc.n_tokens)
                out.append(row)
                continue
            row.update(n_tokens=enc.n_tokens, truncated=enc.truncated)
            probs, step, status = self.measured.get(i, (None, -1, NOT_MEASURED))
            row.update(step=step, status=status)
            if status == NOT_MEASURED:
                row["reason"] = "the trainer did not feed this sample"
            elif status == MISMATCH:
                row["reason"] = "the trainer's token ids differ from the scorer's encoding"
            elif not all(np.isfinite(probs)):
                row.update(status="non_finite", reason="an action probability is NaN or infinite")
            else:
                row.update(
                    n_actions=len(probs), action_probs=probs, difficulty=1.0 - float(np.mean(probs))
                )
            out.append(row)
        return pd.DataFrame(out, columns=TRAIN_SCORE_COLUMNS)


def empty_train_scores() -> pd.DataFrame:
    """A train scores table with no row (a round that measured nothing)."""
    return pd.DataFrame({c: [] for c in TRAIN_SCORE_COLUMNS}).astype(
        {"difficulty": float, "n_actions": int, "n_tokens": int, "step": int, "truncated": bool}
    )


def measuring_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` whose ``compute_loss`` also hands the logits it already has to
    ``self.train_pass`` (a :class:`TrainPassRecorder`, None: measure nothing).

    Which dataset rows a batch holds: ``self.batch_rows(inputs)``; by default the batch's ``row``
    entry (popped, so the model never sees it). Only training forwards are read (the model in
    train mode), never an evaluation loop's.
    """

    class Measuring(trainer_cls):
        train_pass: TrainPassRecorder | None = None

        def batch_rows(self, inputs) -> list[int] | None:
            rows = inputs.pop("row", None)
            return None if rows is None else [int(r) for r in rows.tolist()]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            rows = self.batch_rows(inputs) if model.training else inputs.pop("row", None)
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            logits = getattr(outputs, "logits", None)
            if self.train_pass is not None and model.training and rows and logits is not None:
                self.train_pass.record(rows, inputs["input_ids"], logits, self.state.global_step)
            return (loss, outputs) if return_outputs else loss

    Measuring.__name__ = Measuring.__qualname__ = f"Measuring{trainer_cls.__name__}"
    return Measuring


__all__ = ["TRAIN_SCORE_COLUMNS", "TrainPassRecorder", "empty_train_scores", "measuring_trainer"]
