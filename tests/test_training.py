"""train_round: labels, LoRA continuation round to round, determinism, base model left intact."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import TrainerCallback

from p3_pruning import training
from p3_pruning.adapters import LoraAdapter
from p3_pruning.chat import encode_pair
from p3_pruning.evaluation import response_nll
from p3_pruning.models import load_model, tiny_model
from p3_pruning.training import (
    IGNORE_INDEX,
    PadCollator,
    TrainingDiverged,
    build_features,
    divergence,
    n_target_tokens,
    train_round,
)

torch.set_num_threads(2)
SYSTEM = "Be brief."  # short prompts keep the tiny-model steps fast
FAST = dict(system=SYSTEM, batch_size=4, max_length=48, progress=False, lora={"r": 8, "alpha": 16})


@pytest.fixture(scope="module")
def tokenizer():
    return load_model("tiny-random")[1]


def fresh_base(tokenizer):
    """Same weights as ``load_model("tiny-random", seed=0)[0]``."""
    return tiny_model(tokenizer, seed=0).eval()


@pytest.fixture(scope="module")
def samples():
    pairs = [(a, b) for a in (3, 5, 7, 9) for b in (2, 4)]
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(len(pairs))],
            "source": "reasoning_gym/chain_sum",
            "prompt": [f"{a} + {b} =" for a, b in pairs],
            "response": [f"{a} + {b} = {a + b}\nAnswer: {a + b}" for a, b in pairs],
        }
    )


@pytest.fixture(scope="module")
def round_1(tokenizer, samples):
    """Round 1 on a base model whose state is recorded before and after training."""
    base = fresh_base(tokenizer)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    grads = {n: p.requires_grad for n, p in base.named_parameters()}
    adapter, metrics = train_round(
        base, tokenizer, samples, seed=0, learning_rate=3e-2, epochs=3, **FAST
    )
    return {"base": base, "before": before, "grads": grads, "adapter": adapter, "metrics": metrics}


# ---------------------------------------------------------------------------------------------
# Labels and batches
# ---------------------------------------------------------------------------------------------
def test_response_labels_mask_the_prompt_and_keep_the_eos(tokenizer, samples):
    (feature,) = build_features(tokenizer, samples.iloc[:1], system=SYSTEM)
    ids, prompt_len, _ = encode_pair(
        tokenizer, samples.prompt[0], samples.response[0], system=SYSTEM
    )
    assert feature["input_ids"] == ids
    assert feature["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert feature["labels"][prompt_len:] == ids[prompt_len:]
    assert feature["labels"][-1] == tokenizer.eos_token_id == tokenizer.pad_token_id
    response_ids = tokenizer(samples.response[0], add_special_tokens=False)["input_ids"]
    assert n_target_tokens(feature) == len(response_ids) + 1  # response + end-of-turn

    (whole,) = build_features(tokenizer, samples.iloc[:1], system=SYSTEM, loss_on="all")
    assert whole["labels"] == ids
    with pytest.raises(ValueError, match="loss_on"):
        build_features(tokenizer, samples, loss_on="prompt")


def test_collator_pads_by_length_not_by_token_id(tokenizer, samples):
    feats = build_features(
        tokenizer,
        samples.iloc[:2].assign(response=["1\nAnswer: 1", "2 + 2 = 4\nthen 4\nAnswer: 4"]),
        system=SYSTEM,
    )
    batch = PadCollator(tokenizer.pad_token_id)(feats)
    short, long_ = (0, 1) if len(feats[0]["input_ids"]) < len(feats[1]["input_ids"]) else (1, 0)
    n = len(feats[short]["input_ids"])
    assert batch["input_ids"].shape[1] == len(feats[long_]["input_ids"])
    assert batch["attention_mask"][short, :n].all() and not batch["attention_mask"][short, n:].any()
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    # The eos target survives although the padding uses the same token id.
    assert batch["labels"][short, n - 1].item() == tokenizer.eos_token_id
    assert (batch["input_ids"][short, n:] == tokenizer.eos_token_id).all()


def test_truncation_is_counted_and_all_prompt_samples_are_refused(tokenizer, samples):
    (feature,) = build_features(tokenizer, samples.iloc[:1], system=SYSTEM, max_length=10)
    assert len(feature["input_ids"]) == 10 and feature["truncated"]
    assert n_target_tokens(feature) == 0
    with pytest.raises(ValueError, match="max_length"):
        train_round(fresh_base(tokenizer), tokenizer, samples, **{**FAST, "max_length": 10})


def test_bad_samples_are_named(tokenizer, samples):
    with pytest.raises(ValueError, match="response"):
        build_features(tokenizer, samples.drop(columns=["response"]))
    with pytest.raises(ValueError, match="s1"):
        build_features(tokenizer, samples.assign(response=["ok", "", *samples.response[2:]]))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def test_training_lowers_the_response_loss(round_1, tokenizer, samples):
    m = round_1["metrics"]
    assert m["steps"] == 6 == len(m["loss_curve"])  # 8 samples / batch 4 × 3 epochs
    assert m["n_samples"] == 8
    feats = build_features(tokenizer, samples, system=SYSTEM, max_length=48)
    assert m["n_tokens"] == 3 * sum(n_target_tokens(f) for f in feats)
    assert m["loss_curve"][-1] < m["loss_curve"][0]
    assert m["train_loss"] == pytest.approx(sum(m["loss_curve"]) / len(m["loss_curve"]), rel=1e-4)

    base = fresh_base(tokenizer)
    nll_before, n = response_nll(base, tokenizer, samples, system=SYSTEM, progress=False)
    trained = round_1["adapter"].apply(base)
    nll_after, n_after = response_nll(trained, tokenizer, samples, system=SYSTEM, progress=False)
    assert (n == n_after).all()
    assert (nll_after < nll_before).all()  # every sample of the batch got likelier
    assert nll_after.sum() / n.sum() < nll_before.sum() / n.sum() - 0.2  # nats per response token


def test_base_model_is_left_as_it_was(round_1, tokenizer, samples):
    base = round_1["base"]
    after = base.state_dict()
    assert after.keys() == round_1["before"].keys()
    assert all(torch.equal(after[k], v) for k, v in round_1["before"].items())
    assert type(base.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert {n: p.requires_grad for n, p in base.named_parameters()} == round_1["grads"]
    assert not base.training
    # The adapter applies the same way to the used base and to a freshly loaded one.
    ids = torch.tensor([encode_pair(tokenizer, "2 + 2 =", "4", system=SYSTEM)[0]])
    on_used, on_fresh = (
        round_1["adapter"].apply(base),
        round_1["adapter"].apply(fresh_base(tokenizer)),
    )
    with torch.inference_mode():
        assert torch.equal(on_used(ids).logits, on_fresh(ids).logits)
    on_used.unload()


def test_round_2_starts_from_round_1_weights(round_1, tokenizer, samples):
    first = round_1["adapter"]
    assert max(v.abs().max().item() for k, v in first.state_dict.items() if "lora_B" in k) > 1e-3
    # A vanishing learning rate leaves the weights where round 2 started: at round 1's output.
    second, metrics = train_round(
        fresh_base(tokenizer),
        tokenizer,
        samples.iloc[:4],
        adapter=first,
        seed=5,
        learning_rate=1e-12,
        warmup_ratio=0.0,
        **FAST,
    )
    assert metrics["steps"] == 1
    assert second.state_dict.keys() == first.state_dict.keys()
    for k, v in first.state_dict.items():
        assert torch.allclose(second.state_dict[k], v, atol=1e-7), k
    assert second.config["r"] == first.config["r"] == 8


def test_same_seed_same_adapter_other_seed_other_adapter(tokenizer, samples):
    run = dict(learning_rate=1e-2, epochs=1, **{**FAST, "batch_size": 2})
    samples = samples.iloc[:4]  # 2 steps: init, shuffle and dropout all draw from the seed
    a, _ = train_round(fresh_base(tokenizer), tokenizer, samples, seed=11, **run)
    b, _ = train_round(fresh_base(tokenizer), tokenizer, samples, seed=11, **run)
    assert isinstance(a, LoraAdapter)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    # qlora without CUDA/bitsandbytes: a clear warning, then plain LoRA.
    with pytest.warns(UserWarning, match="qlora=True ignored"):
        c, _ = train_round(fresh_base(tokenizer), tokenizer, samples, seed=12, qlora=True, **run)
    assert not all(torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)


# ---------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------
# The settings: constant schedule, batch 1, no warm-up (8 samples → 8 steps).
DIVERGING = {**FAST, "batch_size": 1, "lr_scheduler": "constant", "warmup_ratio": 0.0}


@pytest.mark.parametrize(
    ("learning_rate", "why"),
    [
        (1e30, "the loss is nan"),  # weights go NaN after the first step
        (1e6, "the gradient is exactly zero while the loss is 10.8"),  # collapsed to uniform
    ],
)
def test_divergence_stops_training_at_the_step_it_happens(tokenizer, samples, learning_rate, why):
    base = fresh_base(tokenizer)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    with pytest.raises(TrainingDiverged) as caught:
        train_round(
            base,
            tokenizer,
            samples,
            seed=0,
            learning_rate=learning_rate,
            label="p3 round 2",
            **DIVERGING,
        )
    message = str(caught.value)
    assert message.startswith("p3 round 2: training diverged at step 2 of 8: " + why), message
    assert "training.learning_rate" in message
    # no adapter came back, and the caller's base model is as it was (LoRA layers taken out)
    assert type(base.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert all(torch.equal(base.state_dict()[k], v) for k, v in before.items())


def test_nan_weights_are_refused_even_when_no_step_showed_it(tokenizer, samples, monkeypatch):
    """Behind the per-step checks: with them off, lr 1e30 ends in NaN weights, and the final check
    still refuses the adapter (a healthy run passes it: every other training test here)."""
    monkeypatch.setattr(training, "_divergence_guard", lambda *_, **__: TrainerCallback())
    with pytest.raises(
        TrainingDiverged, match=r"^spl round 1: \d+ of \d+ adapter tensors hold non-finite"
    ):
        train_round(
            fresh_base(tokenizer),
            tokenizer,
            samples,
            learning_rate=1e30,
            label="spl round 1",
            **DIVERGING,
        )


def test_batch_to_batch_spread_passes_and_a_rise_that_stays_is_caught():
    # SmolLM2-135M on the default task (batch 4, lr 2e-3): single steps spread up to 11x
    measured = [0.988, 0.535, 0.585, 0.203, 0.558, 0.086, 0.504, 0.114]
    for n in range(1, len(measured) + 1):
        assert divergence(measured[:n], 0.5, training.DIVERGENCE_FACTOR) is None
    rising = [1.0, 1.2, 0.9, 1.1, 3.0, 6.0, 9.0, 11.0]
    found = [divergence(rising[:n], 0.5, 4.0) for n in range(1, len(rising) + 1)]
    # 4 x the first 4's mean (1.05) is 4.2: two of the last 4 above it at step 7, three at step 8
    assert found[:7] == [None] * 7
    assert found[7] == (
        "3 of the last 4 steps lost more than 4 times the mean of the first 4 (1.05; "
        "losses 3, 6, 9, 11; training.divergence_factor = 4)"
    )
    assert divergence(rising, 0.5, None) is None  # ratio check off
    assert "gradient norm is inf" in divergence([1.0], float("inf"), None)
    assert divergence([0.0], 0.0, 4.0) is None  # a perfect fit has no gradient left: not divergence


@pytest.mark.parametrize(
    "measured",
    [
        # random, round 1 of the off-task regime (30 % spell_backward / letter_counting, batch 4,
        # lr 2e-3, length-grouped): the last steps hold the shortest samples, two of them batches
        # of one-token answers the model has not learnt; the others are fitted below the start
        [0.891, 0.666, 1.026, 0.593, 0.070, 1.082, 0.550, 0.471, 3.043, 0.470, 0.348, 8.744]
        + [0.465, 0.119, 8.257],
        # random, round 2 of the same regime, seed 2: one such batch at step 6 while the fitted
        # steps sit above round 2's low start (a round-1 model), stopped as "diverged" at step 7
        [0.3302, 0.2708, 0.2422, 0.4098, 0.5004, 4.5536, 0.4923],
    ],
    ids=["round_1", "round_2"],
)
def test_a_few_batches_of_unlearnt_samples_are_not_divergence(measured):
    assert (
        sum(measured[-4:]) / 4 > 4 * sum(measured[:4]) / 4
    )  # what a 4-step mean called divergence
    for n in range(1, len(measured) + 1):
        assert divergence(measured[:n], 0.5, training.DIVERGENCE_FACTOR) is None
    # the same curve followed by a rise that stays (5x the start) is a divergence within 3 steps
    risen = [*measured, *[5 * sum(measured[:4]) / 4] * 4]
    found = [divergence(risen[:n], 0.5, 4.0) for n in range(1, len(risen) + 1)]
    first = next(n for n, why in enumerate(found, start=1) if why)
    assert len(measured) < first <= len(measured) + 3
    assert found[-1].startswith(
        "4 of the last 4 steps lost more than 4 times the mean of the first 4"
    )


class _ProbedModel(torch.nn.Module):
    """A model whose loss is 0.7 plus its one trainable weight: what the guard's probe reads."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, input_ids, labels, attention_mask):
        self.calls += 1
        assert not self.training  # the probe runs with dropout off
        return type("Out", (), {"loss": 0.7 + self.weight.detach().sum()})()


def _guard_run(model, losses, probe_values=None, factor=4.0):
    """Feed ``losses`` to a probed guard step by step; ``probe_values[step]`` sets the probe's loss
    from that step on (the weights change, as training changes them). The step at which it raised,
    with its message, or (None, None); the weights are as training left them either way."""
    features = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]} for _ in range(40)]
    probe = training.probe_batches(features, 0, 4)
    guard = training._divergence_guard(factor, "random round 1", probe=probe)
    state = type("State", (), {"global_step": 0, "max_steps": len(losses)})()
    model.train()
    guard.on_train_begin(None, state, None, model=model)
    for step, loss in enumerate(losses, start=1):
        state.global_step = step
        if step in (probe_values or {}):
            model.weight.data.fill_(probe_values[step] - 0.7)
        weights = model.weight.detach().clone()
        try:
            guard.on_log(None, state, None, logs={"loss": loss, "grad_norm": 0.5}, model=model)
        except TrainingDiverged as err:
            return step, str(err)
        finally:
            assert torch.equal(model.weight, weights)  # starting weights swapped in and back
        assert model.training  # the probe put the train mode back
    return None, None


def test_hard_batches_in_a_row_are_not_divergence_when_the_model_is_fine(caplog):
    # random, round 1 of the off-task regime at a 90 % budget (135 rows): three batches of unlearnt
    # one-token answers in a row held the majority of the window; the model itself was fine
    measured = [1.0282, 0.9279, 0.7213, 0.2431, 0.4044, 7.8989, 9.5041, 8.6278, 0.5, 0.3]
    model = _ProbedModel()
    assert divergence(measured[:8], 0.5, training.DIVERGENCE_FACTOR) is not None
    with caplog.at_level("WARNING", logger="p3_pruning.training"):
        assert _guard_run(model, measured) == (None, None)
    assert "batches of samples the model has not learnt, not divergence" in caplog.text
    assert "on 16 fixed samples of the round the loss is 0.7 against 0.7" in caplog.text
    # nothing read before a rise; at step 8 the probe with the current and the starting weights,
    # not again while the window is cleared: 16 samples in batches of 4, twice
    assert model.calls == 2 * 4


def test_a_rise_the_probe_confirms_stops_training():
    measured = [1.0282, 0.9279, 0.7213, 0.2431, 0.4044, 7.8989, 9.5041, 8.6278]
    step, message = _guard_run(_ProbedModel(), measured, probe_values={6: 0.7 * 5})
    assert step == 8
    assert message.startswith("random round 1: training diverged at step 8 of 8: 3 of the last 4")
    assert message.endswith(
        "on 16 fixed samples of the round the loss rose from 0.7 to 3.5. Nothing was saved for "
        "this round; lower training.learning_rate (or raise training.warmup_ratio) and rerun it"
    )
    # a model that breaks after a cleared window is caught once the window has passed
    rising = [1.0, 1.0, 1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]
    assert _guard_run(_ProbedModel(), rising, probe_values={9: 0.7 * 5})[0] == 11
    # without a probe (factor off) nothing is measured
    model = _ProbedModel()
    assert _guard_run(model, rising, factor=None) == (None, None) and model.calls == 0


def test_probe_batches_spread_over_the_round():
    features = [{"input_ids": [i] * (1 + i % 3), "labels": [i] * (1 + i % 3)} for i in range(40)]
    batches = training.probe_batches(features, 0, 4)
    firsts = [int(row[0]) for b in batches for row in b["input_ids"]]
    assert len(firsts) == training.PROBE_SAMPLES and firsts[0] == 0 and firsts[-1] == 39
    assert [len(b["input_ids"]) for b in batches] == [4, 4, 4, 4]
    assert len(training.probe_batches(features[:3], 0, 4)[0]["input_ids"]) == 3


def test_divergence_docstring_examples():
    import doctest

    failures, tried = doctest.testmod(training)
    assert tried >= 3 and failures == 0


def test_divergence_factor_must_exceed_one(tokenizer, samples):
    with pytest.raises(ValueError, match="divergence_factor must be > 1"):
        train_round(fresh_base(tokenizer), tokenizer, samples, divergence_factor=1.0, **FAST)
