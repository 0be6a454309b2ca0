"""P3Callback in a plain Trainer (and TRL's SFTTrainer): each epoch trains on exactly the selection that
strategies.select makes from the scores the model had when the epoch started."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from p3_pruning import strategies
from p3_pruning.data import generate_default
from p3_pruning.integrations import P3Callback, SelectionSampler, p3_trainer
from p3_pruning.models import load_model
from p3_pruning.scoring import score_samples
from p3_pruning.training import PadCollator, build_features

torch.set_num_threads(2)
EPOCHS, BUDGET = 3, 4


class Snapshots(TrainerCallback):
    """At every epoch start: the scores and the ``strategies.select`` selection of a copy of the model
    as it is then (scored right away: a trainer may change how the model runs, e.g. hooks for
    gradient checkpointing, between then and the end of training), and the epoch the dataset is
    being read in."""

    def __init__(self, tok, pool):
        self.tok, self.pool, self.expected, self.epoch = tok, pool, [], -1

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        self.epoch += 1
        snapshot = copy.deepcopy(model).eval()
        self.expected.append(expected_selection(snapshot, self.tok, self.pool, self.epoch))


class Logged(torch.utils.data.Dataset):
    def __init__(self, features, snapshots):
        self.features, self.snapshots, self.seen = features, snapshots, []

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        self.seen.append((self.snapshots.epoch, i))
        return {k: self.features[i][k] for k in ("input_ids", "labels")}


def args(tmp_path, **overrides):
    return TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        lr_scheduler_type="constant",
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=0,
        **overrides,
    )


def expected_selection(model, tok, pool, epoch):
    scores, embeddings = score_samples(model, tok, pool, progress=False)
    selection = strategies.select(
        "p3", scores, embeddings, round_index=epoch, rounds=EPOCHS, budget=BUDGET, seed=0
    )
    return scores, selection


def small_model():
    """The tiny model with its embedding and output layer frozen (most of its weights): fast steps."""
    model, tok = load_model("tiny-random", seed=0)
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        module.requires_grad_(False)
    return model, tok


@pytest.mark.slow
def test_each_epoch_trains_on_the_selection_of_its_start(tmp_path):
    model, tok = small_model()
    pool = generate_default(12, seed=0)
    snapshots = Snapshots(tok, pool)
    dataset = Logged(build_features(tok, pool), snapshots)
    callback = P3Callback(pool, tok, budget=BUDGET, seed=0)
    trainer = p3_trainer(Trainer)(
        model=model,
        args=args(tmp_path),
        train_dataset=dataset,
        data_collator=PadCollator(tok.pad_token_id),
        callbacks=[snapshots, callback],
    )
    trainer.train()
    assert [h["epoch"] for h in callback.history] == [0, 1, 2]
    assert trainer.state.global_step == EPOCHS * BUDGET // 2
    difficulties = []
    for epoch, (scores, want) in enumerate(snapshots.expected):
        got = callback.history[epoch]
        np.testing.assert_allclose(got["scores"]["difficulty"], scores["difficulty"], atol=1e-6)
        assert got["selection"]["sample_id"].tolist() == want["sample_id"].tolist()
        trained = sorted(i for e, i in dataset.seen if e == epoch)
        assert trained == sorted(pool.index[pool["sample_id"].isin(want["sample_id"])].tolist())
        difficulties.append(scores["difficulty"].to_numpy())
    # training moved the scores (1 − d grew several-fold), so each epoch really rescored
    assert np.abs(np.log1p(-difficulties[2]) - np.log1p(-difficulties[0])).min() > 0.1


def test_sampler_shuffles_by_epoch_and_keeps_its_length():
    sampler = SelectionSampler(4, seed=1)
    sampler.set_selection([7, 3, 5], epoch=0)
    first = list(sampler)
    sampler.set_selection([7, 3, 5], epoch=1)
    assert sorted(first) == sorted(sampler) == [3, 5, 7] and len(sampler) == 4
    with pytest.raises(ValueError, match="unknown method"):
        P3Callback(generate_default(4, seed=0), None, method="best")


@pytest.mark.slow
def test_sft_trainer_trains_on_the_selection(tmp_path):
    datasets = pytest.importorskip("datasets")
    from trl import SFTConfig, SFTTrainer

    model, tok = small_model()
    pool = generate_default(8, seed=1)
    rows = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": r}]}
        for p, r in zip(pool["prompt"], pool["response"], strict=True)
    ]
    snapshots = Snapshots(tok, pool)
    callback = P3Callback(pool, tok, budget=BUDGET, seed=0)
    config = SFTConfig(
        output_dir=str(tmp_path),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=2,
        learning_rate=5e-3,
        bf16=False,  # SFTConfig's default bf16 scores through autocast: close, not bit-equal
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = p3_trainer(SFTTrainer)(
        model=model,
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[snapshots, callback],
    )
    trained = []
    getitems = type(trainer.train_dataset).__getitems__

    class Logged(type(trainer.train_dataset)):
        def __getitems__(self, keys):  # the dataloader fetches a batch at once
            trained.extend((snapshots.epoch, i) for i in keys)
            return getitems(self, keys)

    trainer.train_dataset.__class__ = Logged
    trainer.train()
    for epoch, (_, want) in enumerate(snapshots.expected):
        got = callback.history[epoch]["selection"]["sample_id"].tolist()
        assert got == want["sample_id"].tolist()
        rows = sorted(i for e, i in trained if e == epoch)
        assert rows == sorted(pool.index[pool["sample_id"].isin(want["sample_id"])].tolist())


@pytest.mark.slow
def test_incremental_refresh_in_the_callback_reads_the_training_pass_and_rescores_part(tmp_path):
    model, tok = small_model()
    pool = generate_default(24, seed=1)
    dataset = build_features(tok, pool)
    scoring = {"refresh": "incremental", "incremental": {"margin": 10, "min_drift": 2}}
    callback = P3Callback(pool, tok, budget=BUDGET, seed=0, scoring=scoring)
    trainer = p3_trainer(Trainer)(
        model=model,
        args=args(tmp_path),
        train_dataset=[{k: f[k] for k in ("input_ids", "labels")} for f in dataset],
        data_collator=PadCollator(tok.pad_token_id),
        callbacks=[callback],
    )
    trainer.train()
    assert "refresh" not in callback.history[0]  # the first epoch scores the whole pool
    for epoch in (1, 2):
        got = callback.history[epoch]
        info, scores = got["refresh"], got["scores"]
        assert 0 < info["score_rescored"] < len(pool)
        # the last epoch's selection was measured on its training steps, not rescored
        last = set(callback.history[epoch - 1]["selection"]["sample_id"])
        from_training = set(scores.loc[scores["measured"] == "train_pass", "sample_id"])
        assert from_training and from_training <= last
        assert info["score_train_pass"] == len(from_training)
        assert len(got["indices"]) == BUDGET
