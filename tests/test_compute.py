import logging

import pytest
from torch import nn

from p3_pruning.compute import (
    TOKEN_KEYS,
    count_parameters,
    round_compute,
    run_compute,
    stage_flops,
    stage_tokens,
)


class TinyLM(nn.Module):
    """Embedding (10×4) → linear (4×4, bias) → head (4×10, no bias), optionally tied."""

    def __init__(self, tied: bool):
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.hidden = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.head


def test_count_parameters_counts_tied_tensors_once_and_drops_an_untied_lookup():
    untied = count_parameters(TinyLM(tied=False))
    assert untied == {"params": 40 + 20 + 40, "matmul": 20 + 40, "trainable": 0}
    tied = count_parameters(TinyLM(tied=True))
    assert tied == {"params": 40 + 20, "matmul": 40 + 20, "trainable": 0}


def test_count_parameters_of_a_lora_model_and_of_a_detached_adapter():
    from peft import LoraConfig, get_peft_model

    from p3_pruning.adapters import LoraAdapter
    from p3_pruning.models import load_model

    model, _ = load_model("tiny-random")
    base = count_parameters(model)
    assert base["trainable"] == 0
    assert base["params"] == base["matmul"]  # tied embeddings
    assert base["params"] == sum(p.numel() for p in model.parameters())
    # LoRA r=2 on every linear layer: r·(in + out) per layer; hidden 64, kv 32, mlp 128, 2 layers
    per_layer = (64 + 64) + (64 + 32) + (64 + 32) + (64 + 64) + 3 * (64 + 128)
    expected = 2 * 2 * per_layer
    target = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=target))
    counted = count_parameters(peft_model)
    assert counted == {**base, "trainable": expected}
    adapter = LoraAdapter.from_peft(peft_model)
    peft_model.unload()
    assert count_parameters(model, adapter) == {**base, "trainable": expected}


def test_stage_flops_per_token_rules():
    P, L = 1_000, 10
    assert stage_flops("score", 3, P) == 2 * P * 3
    assert stage_flops("eval", 3, P) == 2 * P * 3
    assert stage_flops("generation", 3, P, L) == 2 * (P + L) * 3  # unmerged adapter
    assert stage_flops("train", 3, P, L) == (4 * P + 6 * L) * 3
    assert stage_flops("train_full", 3, P) == 6 * P * 3
    assert stage_flops("train", 3, P, L, checkpointing=True) == (6 * P + 8 * L) * 3
    assert stage_flops("train_full", 3, P, checkpointing=True) == 8 * P * 3
    # LoRA training costs between a forward pass and full fine-tuning
    assert (
        stage_flops("score", 1, P)
        < stage_flops("train", 1, P, L)
        < stage_flops("train_full", 1, P + L)
    )
    with pytest.raises(ValueError, match="unknown compute stage 'backward'"):
        stage_flops("backward", 1, P)
    with pytest.raises(ValueError, match="tokens must be a number >= 0"):
        stage_flops("score", -1, P)
    with pytest.raises(ValueError, match="params must be a number"):
        stage_flops("score", 1, "many")


def summary(**overrides):
    record = {
        "method": "p3",
        "round": 1,
        "score_tokens": 1_000,
        "score_seconds": 2.0,
        "threshold_seconds": 0.25,
        "select_seconds": 0.25,
        "train_n_tokens": 300,  # target tokens
        "train_n_input_tokens": 800,
        "train_seconds": 4.0,
        "eval_n_tokens": 50,
        "eval_n_input_tokens": 120,
        "eval_score_tokens": 110,
        "eval_seconds": 1.0,
    }
    record.update(overrides)
    return record


def test_round_compute_from_a_summary_record():
    P, L = 1_000, 10
    out = round_compute(summary(), P, L)
    assert out["score_tokens"] == 1_000 and out["score_flops"] == 2 * P * 1_000
    assert out["train_tokens"] == 800 and out["train_flops"] == (4 * P + 6 * L) * 800
    assert out["eval_tokens"] == 230 and out["eval_flops"] == 2 * P * 230
    assert out["generation_tokens"] == 0 and out["generation_flops"] == 0
    assert out["total_flops"] == 2 * P * 1_000 + (4 * P + 6 * L) * 800 + 2 * P * 230
    assert out["total_seconds"] == pytest.approx(7.5)
    assert out["threshold_seconds"] == out["select_seconds"] == 0.25
    assert out["generation_seconds"] == 0.0
    full = round_compute(summary(), P, L, full_finetune=True)
    assert full["train_flops"] == 6 * P * 800


def test_a_method_that_never_scores_costs_no_scoring():
    record = summary(score_tokens=None, score_seconds=float("nan"))
    del record["score_tokens"]
    out = round_compute(record, 1_000, 10)
    assert out["score_tokens"] == 0 and out["score_flops"] == 0 and out["score_seconds"] == 0


def test_missing_input_token_counts_fall_back_to_target_tokens_with_a_warning(caplog):
    record = summary()
    for key in ("train_n_input_tokens", "eval_n_input_tokens", "eval_score_tokens"):
        del record[key]
    with caplog.at_level(logging.WARNING, logger="p3_pruning.compute"):
        assert stage_tokens(record, "train") == 300
        assert stage_tokens(record, "eval") == 50
    assert "train_n_tokens" in caplog.text and "undercount" in caplog.text


def test_run_compute_sums_rounds_and_the_final_generation():
    P, L = 1_000, 10
    final = {"generation_prompt_tokens": 400, "generation_new_tokens": 100, "generation_seconds": 3}
    total = run_compute([summary(), summary(round=2)], P, L, final=final)
    one = round_compute(summary(), P, L)
    assert total["train_tokens"] == 2 * 800
    assert total["generation_tokens"] == 500 and total["generation_flops"] == 2 * P * 500
    assert total["total_flops"] == 2 * one["total_flops"] + 2 * P * 500
    assert total["total_seconds"] == pytest.approx(2 * 7.5 + 3)
    empty = run_compute([], P, L)
    assert set(empty) == set(one) and not any(empty.values())
    assert set(TOKEN_KEYS) == {"score", "score_reused", "train", "eval", "generation"}


def test_reused_scoring_is_reported_beside_the_rescored_and_left_out_of_the_total():
    P, L = 1_000, 10
    full = round_compute(summary(), P, L)
    inc = round_compute({**summary(), "score_reused_tokens": 700}, P, L)
    assert inc["score_reused_tokens"] == 700 and inc["score_reused_flops"] == 2 * P * 700
    assert full["score_reused_flops"] == 0
    assert inc["score_flops"] == full["score_flops"]  # the rescored tokens alone are paid
    assert inc["total_flops"] == full["total_flops"]
