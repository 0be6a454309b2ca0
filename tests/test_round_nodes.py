"""Round nodes: the held-out difficulty is computed by the pool's scoring rule."""

from __future__ import annotations

import numpy as np
import pytest

from p3_pruning.data import generate_default
from p3_pruning.models import load_model
from p3_pruning.pipelines.rounds import nodes
from p3_pruning.scoring import score_samples
from p3_pruning.workspace import PROJECT_ROOT

MODEL = {"name_or_path": "tiny-random", "cache_dir": str(PROJECT_ROOT / "data" / "06_models")}
# not the code defaults: a sentence-ish regex segmenter and a short max_length
SCORING = {"segmenter": "regex", "pattern": r"[=\n]+", "max_length": 120, "progress": False}


@pytest.fixture(scope="module")
def eval_set():
    return generate_default(6, 3)


def pool_rule_difficulty(samples, scoring):
    model, tokenizer = load_model(**MODEL)
    scores, _ = score_samples(model.eval(), tokenizer, samples, **scoring)
    d = scores["difficulty"].to_numpy(dtype=float)
    return float(d[np.isfinite(d)].mean())


def test_held_out_difficulty_uses_the_scoring_block(eval_set):
    metrics = nodes.evaluate_round(
        eval_set, None, MODEL, {"progress": False}, {**SCORING, "candidates": 3, "backend": "local"}
    )
    # compared as mean action probability 1 - d: the random tiny model's d is 1 - O(1e-5)
    got = 1 - metrics["eval_difficulty"]
    assert got == pytest.approx(1 - pool_rule_difficulty(eval_set, SCORING), rel=1e-6)
    # and the rule matters: the code defaults give another value, so the test can tell them apart
    defaults = 1 - pool_rule_difficulty(eval_set, {"progress": False})
    assert abs(got - defaults) / defaults > 1e-5
    # both passes of the cheap eval are in the round's compute: the NLL pass and the difficulty pass
    from p3_pruning.compute import stage_tokens

    assert metrics["eval_n_input_tokens"] > 0 and metrics["eval_score_tokens"] > 0
    assert stage_tokens(metrics, "eval") == (
        metrics["eval_n_input_tokens"] + metrics["eval_score_tokens"]
    )


def test_candidates_score_a_seeded_subset_and_leave_the_rest_ineligible():
    pool = generate_default(12, 4)
    scoring = {"progress": False, "max_length": 256, "backend": "local", "candidates": 5}
    scores, embeddings, info = nodes.score(pool, MODEL, scoring, 3, round_index=1)
    assert list(scores["sample_id"]) == list(pool["sample_id"]) and embeddings.shape[0] == 12
    picked = scores["status"] == "ok"
    assert picked.sum() == 5 == info["score_candidates"] and info["score_failed"] == 0
    assert (scores.loc[~picked, "status"] == nodes.NOT_CANDIDATE).all()
    assert np.isinf(scores.loc[~picked, "difficulty"]).all()
    assert not embeddings[~picked.to_numpy()].any()
    # the candidates' rows are exactly what the scorer gives on those samples
    model, tokenizer = load_model(**MODEL)
    alone, emb = score_samples(
        model.eval(), tokenizer, pool[picked.to_numpy()], progress=False, max_length=256
    )
    np.testing.assert_array_equal(scores.loc[picked, "difficulty"], alone["difficulty"])
    np.testing.assert_allclose(embeddings[picked.to_numpy()], emb, rtol=0, atol=1e-6)
    # seeded per round: the same seed and round draw the same rows, another round others
    again = nodes.candidate_rows(12, 5, seed=3, round_index=1)
    assert list(again) == list(np.flatnonzero(picked))
    assert list(nodes.candidate_rows(12, 5, seed=3, round_index=2)) != list(again)
    assert len(nodes.candidate_rows(12, 0.5, seed=3, round_index=1)) == 6
    # the threshold is taken on the scored candidates only
    from p3_pruning.strategies import threshold

    eligible, _ = threshold("p3", scores, round_index=1, rounds=3)
    assert set(eligible.loc[eligible["eligible"], "sample_id"]) <= set(
        scores.loc[picked, "sample_id"]
    )


def test_a_diverging_round_stops_in_finetune_naming_it_and_saves_no_adapter(tmp_path):
    """lr 1e30 (constant, batch 1): the run stops in round 1's finetune, and no adapter version
    exists to be taken for a finished round by a resumed run."""
    from kedro.io import DataCatalog, MemoryDataset, Version
    from kedro.runner import SequentialRunner

    from p3_pruning.datasets.lora_adapter import LoraAdapterDataset
    from p3_pruning.pipelines.rounds.pipeline import create_pipeline
    from p3_pruning.training import TrainingDiverged

    pool = generate_default(6, 1)
    training = {
        "learning_rate": 1e30,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "batch_size": 1,
        "max_length": 256,
        "system": "Be brief.",
        "lora": {"r": 4, "alpha": 8},
        "progress": False,
        "launcher": "local",
    }
    params = {
        "model": MODEL,
        "training": training,
        "selection": {},
        "budget": 4,
        "seed": 0,
        "cheap_eval": {"progress": False},
        "scoring": SCORING,
    }
    catalog = DataCatalog(
        {
            "train_pool": MemoryDataset(pool),
            "eval_set": MemoryDataset(pool.head(2)),
            **{f"params:{k}": MemoryDataset(v) for k, v in params.items()},
        }
    )
    adapter = LoraAdapterDataset(filepath=str(tmp_path / "adapter"), version=Version(None, None))
    catalog["random.round_1.adapter"] = adapter
    with pytest.raises(
        TrainingDiverged, match=r"^random round 1: training diverged at step 2 of 4"
    ):
        SequentialRunner().run(create_pipeline("random", 1), catalog)
    assert not adapter.exists()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
