"""The training pass's difficulty: equal to the scorer's when nothing moves (dropout 0, lr 0),
with the scorer's token → action rule, and different from it once the model learns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning.models import load_model, tiny_model
from p3_pruning.scoring import score_samples
from p3_pruning.train_scores import TRAIN_SCORE_COLUMNS
from p3_pruning.training import train_round

torch.set_num_threads(2)
SYSTEM = "Be brief."
OPTS = dict(system=SYSTEM, batch_size=3, max_length=64, progress=False)
STILL = {"r": 8, "alpha": 16, "dropout": 0.0}


@pytest.fixture(scope="module")
def tokenizer():
    return load_model("tiny-random")[1]


@pytest.fixture(scope="module")
def samples():
    rows = []
    for i, (a, b, c) in enumerate([(3, 4, 5), (12, 7, 1), (9, 9, 9), (25, 3, 8), (6, 1, 40)]):
        lines = [f"{a} + {b} = {a + b}", f"{a + b} + {c} = {a + b + c}", f"Answer: {a + b + c}"]
        sep = "\n\n" if i % 2 else "\n"  # separator runs of either length: context, not scored
        rows.append(
            dict(sample_id=f"s{i}", prompt=f"Add {a}, {b} and {c}.", response=sep.join(lines))
        )
    return pd.DataFrame(rows)


def _scorer(model, tokenizer, samples):
    scores, _ = score_samples(
        model, tokenizer, samples, system=SYSTEM, max_length=64, progress=False, prefix_cache=False
    )
    return scores.set_index("sample_id")


def _log_probs(table) -> np.ndarray:
    """Every action's log p_k, row after row (the random tiny model's p_k are ~1e-5: compared on
    the log scale, a 1e-5 tolerance means something)."""
    return np.log(np.concatenate([np.asarray(p, dtype=float) for p in table["action_probs"]]))


def _assert_same(train_scores, reference):
    train = train_scores.set_index("sample_id").loc[reference.index]
    assert (train["status"] == "ok").all()
    assert train["n_actions"].tolist() == reference["n_actions"].tolist()
    np.testing.assert_allclose(_log_probs(train), _log_probs(reference), atol=1e-5, rtol=0)
    np.testing.assert_allclose(train["difficulty"], reference["difficulty"], atol=1e-5, rtol=0)


def test_train_pass_equals_the_scorer_with_dropout_off_and_learning_rate_zero(tokenizer, samples):
    base = tiny_model(tokenizer, seed=0)
    reference = _scorer(base, tokenizer, samples)  # a fresh LoRA is the identity (B = 0)
    _, metrics = train_round(
        base, tokenizer, samples, lora=STILL, learning_rate=0.0, seed=0, measure={}, **OPTS
    )
    table = metrics["train_scores"]
    assert list(table.columns) == TRAIN_SCORE_COLUMNS
    assert sorted(table["sample_id"]) == sorted(samples["sample_id"])
    assert (table["step"] >= 0).all()  # every sample was read off a training step
    _assert_same(table, reference)


def test_a_continued_adapter_is_measured_as_the_scorer_sees_it_and_learning_moves_it(
    tokenizer, samples
):
    base = tiny_model(tokenizer, seed=0)
    adapter, _ = train_round(
        base, tokenizer, samples, lora=STILL, learning_rate=5e-2, epochs=2, seed=1, **OPTS
    )
    policy = adapter.apply(tiny_model(tokenizer, seed=0)).merge_and_unload().eval()
    reference = _scorer(policy, tokenizer, samples)
    base_scores = _scorer(tiny_model(tokenizer, seed=0), tokenizer, samples)
    # the adapter did change the policy: the comparison below is not between equal models
    assert np.abs(_log_probs(reference) - _log_probs(base_scores)).max() > 1e-2

    _, still = train_round(
        base, tokenizer, samples, adapter=adapter, learning_rate=0.0, seed=2, measure={}, **OPTS
    )
    _assert_same(still["train_scores"], reference)

    # with learning, samples fed after the first step are measured on an updated adapter
    _, moving = train_round(
        base,
        tokenizer,
        samples,
        adapter=adapter,
        learning_rate=5e-2,
        warmup_ratio=0.0,  # the first update is a real one
        seed=2,
        measure={},
        **OPTS,
    )
    table = moving["train_scores"].set_index("sample_id").loc[reference.index]
    later = (table["step"] > 0).to_numpy()
    assert later.any() and not later.all()
    gap = np.array(
        [
            np.abs(np.log(got) - np.log(want)).max()
            for got, want in zip(table["action_probs"], reference["action_probs"], strict=True)
        ]
    )
    assert gap[later].max() > 1e-3
    assert gap[~later].max() < 1e-5  # the first step's samples: read before any update


def test_measuring_leaves_the_training_unchanged(tokenizer, samples):
    runs = []
    for measure in (None, {}):
        base = tiny_model(tokenizer, seed=0)
        adapter, metrics = train_round(
            base,
            tokenizer,
            samples,
            lora=STILL,
            learning_rate=3e-2,
            seed=0,
            measure=measure,
            **OPTS,
        )
        runs.append((adapter, metrics))
    (a, ma), (b, mb) = runs
    assert "train_scores" not in ma and "train_scores" in mb
    assert ma["loss_curve"] == mb["loss_curve"]
    for key, tensor in a.state_dict.items():
        torch.testing.assert_close(tensor, b.state_dict[key], rtol=0, atol=0)
