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
