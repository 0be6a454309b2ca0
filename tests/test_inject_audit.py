"""Composed pools (p3_pruning.data.inject) and the selection audit (p3_pruning.audit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from p3_pruning import methods, strategies
from p3_pruning.audit import audit_summary, audit_table, auroc, selection_audit, with_origin
from p3_pruning.data import SAMPLE_COLUMNS, check_steps, generate_default
from p3_pruning.data.inject import compose_pool, corrupt_steps, origin_counts, problem_of
from p3_pruning.pipelines.rounds import nodes


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    return generate_default(60, 0)


def test_off_by_default_adds_a_clean_origin_only(pool):
    out = compose_pool(pool)
    pd.testing.assert_frame_equal(out[list(SAMPLE_COLUMNS)], pool)
    assert (out["origin"] == "clean").all()


def test_same_seed_same_pool_other_seed_other_pool(pool):
    kinds = {"noise": 0.2, "duplicate": 0.2, "off_task": 0.1, "too_hard": 0.1}
    a, b = compose_pool(pool, seed=3, **kinds), compose_pool(pool, seed=3, **kinds)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(compose_pool(pool, seed=4, **kinds))
    assert len(a) == len(pool) and a["sample_id"].is_unique
    assert origin_counts(a) == {
        "clean": 24,
        "noise": 12,
        "duplicate": 12,
        "off_task": 6,
        "too_hard": 6,
    }


def test_noise_is_one_wrong_step_carried_to_the_answer(pool):
    out = compose_pool(pool, seed=1, noise=0.5)
    noisy = out[out["origin"] == "noise"]
    originals = pool.set_index("sample_id")
    for _, row in noisy.iterrows():
        clean = originals.loc[row["sample_id"].removesuffix("~noise")]
        assert row["prompt"] == clean["prompt"]
        lines, clean_lines = row["response"].split("\n"), clean["response"].split("\n")
        assert len(lines) == len(clean_lines) and lines[-1].startswith("Answer: ")
        gap = int(row["answer"]) - int(clean["answer"])
        assert 1 <= abs(gap) <= 3 and lines[-1] == f"Answer: {row['answer']}"
        with pytest.raises(ValueError, match="is false"):  # exactly the corrupted step is false
            check_steps(row["response"])
        false = [
            line
            for line in lines[:-1]
            if len({eval(side.replace(" ", "")) for side in line.split("=")}) > 1  # noqa: S307
        ]
        assert len(false) == 1


def test_corrupt_steps_carries_the_error_through_running_sums():
    rng = np.random.default_rng(0)
    response = "12 + 7 = 19\n19 - 4 = 15\n15 + 30 = 45\nAnswer: 45"
    for _ in range(20):
        out, answer = corrupt_steps("chain_sum", response, rng)
        lines = out.split("\n")
        assert lines[-1] == f"Answer: {answer}" and answer != 45
        # each later step starts from the previous step's (possibly wrong) result
        for before, after in zip(lines[:-2], lines[1:-1], strict=True):
            assert after.split(" ")[0] == before.rsplit(" = ", 1)[1]


def test_near_duplicates_are_the_same_problem_reworded(pool):
    out = compose_pool(pool, seed=2, duplicate=0.5)
    dups = out[out["origin"] == "duplicate"]
    originals = pool.set_index("sample_id")
    assert len(dups) == 30
    for _, row in dups.iterrows():
        source = originals.loc[problem_of(row["sample_id"])]
        assert row["answer"] == source["answer"]  # same value
        assert row["prompt"] != source["prompt"]  # reworded (and reordered)
        assert check_steps(row["response"]) == int(source["answer"])  # a correct solution
    exact = compose_pool(pool, seed=2, duplicate=0.5, exact_duplicates=True)
    copies = exact[exact["origin"] == "duplicate"]
    for _, row in copies.iterrows():
        assert row["prompt"] == originals.loc[problem_of(row["sample_id"]), "prompt"]


def test_the_audit_counts_a_problem_and_its_near_duplicates_once(pool):
    out = compose_pool(pool, seed=2, duplicate=0.5)
    dup = out.loc[out["origin"] == "duplicate", "sample_id"].iloc[0]
    source, other = problem_of(dup), out.loc[out["origin"] == "clean", "sample_id"]
    other = other[other != source].iloc[0]
    assert problem_of(source) == source and problem_of(f"{source}~dupe") == f"{source}~dupe"
    chosen = pd.DataFrame({"sample_id": [dup, source, other, other + "~dup7"]})
    audit = selection_audit(out, chosen)
    assert audit["audit_distinct_share/pool"] == pytest.approx(30 / 60)  # 30 problems, twice each
    assert audit["audit_distinct_share/selection"] == pytest.approx(2 / 4)
    table = audit_table([{"method": "p3", "seed": 0, "round": 1, **audit}])
    row = table[table["origin"] == "duplicate"].iloc[0]
    assert (row["pool_distinct"], row["selected_distinct"]) == (0.5, 0.5)
    assert table.loc[table["origin"] == "clean", "selected_distinct"].isna().all()
    assert audit_summary(table)["selected_distinct"].notna().sum() == 1
    # a pool without near-duplicates has no distinct share to report
    assert not any("distinct" in key for key in selection_audit(pool, chosen.head(1)))


def test_off_task_and_too_hard(pool):
    out = compose_pool(pool, seed=0, off_task=0.2, too_hard=0.2)
    off = out[out["origin"] == "off_task"]
    assert set(off["source"]) == {"reasoning_gym/spell_backward", "reasoning_gym/letter_counting"}
    hard = out[out["origin"] == "too_hard"]
    assert (hard["level"] == "4").all()
    for _, row in hard.iterrows():
        assert check_steps(row["response"]) == int(row["answer"])
    longest_clean = out[out["origin"] == "clean"]["response"].str.count("\n").max()
    assert hard["response"].str.count("\n").mean() > longest_clean / 2
    task = {json.loads(m)["task"] for m in hard["meta"]}
    assert task <= {"chain_sum", "products"}


def test_bad_fractions_are_refused(pool):
    with pytest.raises(ValueError, match="sum to < 1"):
        compose_pool(pool, noise=0.6, duplicate=0.5)
    with pytest.raises(ValueError, match="too_hard needs the default source"):
        compose_pool(pool, too_hard=0.1, default_source=False)
    with pytest.raises(ValueError, match=r"data.inject.noise"):
        compose_pool(pool, noise=1.5)


def test_generic_noise_swaps_responses():
    pool = generate_default(30, 1)
    out = compose_pool(pool, seed=0, noise=0.3, default_source=False)
    noisy = out[out["origin"] == "noise"]
    responses = dict(zip(pool["sample_id"], pool["response"], strict=True))
    for _, row in noisy.iterrows():
        assert row["response"] != responses[row["sample_id"].removesuffix("~noise")]
        assert row["response"] in set(pool["response"])


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 40).round(1), rng.normal(0, 1, 50).round(1)
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(pos, neg) == pytest.approx(pairs)
    assert auroc([1.0], []) != auroc([1.0], [])  # NaN


def test_selection_audit_shares_and_auroc():
    pool = pd.DataFrame({"sample_id": list("abcdef"), "origin": ["clean"] * 4 + ["noise"] * 2})
    scores = pd.DataFrame(
        {"sample_id": list("abcdef"), "difficulty": [0.1, 0.2, 0.3, 0.4, 0.9, 0.8]}
    )
    chosen = pd.DataFrame({"sample_id": ["a", "b", "e"]})
    audit = selection_audit(pool, chosen, scores)
    assert audit["audit_pool_share/noise"] == pytest.approx(2 / 6)
    assert audit["audit_selected_share/noise"] == pytest.approx(1 / 3)
    assert audit["audit_selected_share/clean"] == pytest.approx(2 / 3)
    assert audit["audit_auroc/noise"] == 1.0  # every noisy row is harder than every clean one
    unscored = selection_audit(pool, chosen)
    assert np.isnan(unscored["audit_auroc/noise"])
    table = audit_table([{"method": "p3", "seed": 0, "round": 1, **audit}])
    assert set(table["origin"]) == {"clean", "noise"}
    summary = audit_summary(table)
    assert summary.loc[summary["origin"] == "noise", "seeds"].item() == 1
    assert list(with_origin(chosen, pool)["origin"]) == ["clean", "clean", "noise"]


@pytest.mark.parametrize("method", ["p3", "spl", "dpp", "random"])
def test_selectors_never_see_origin(pool, method):
    """A pool whose origins are shuffled gives the same selection: the pick reads scores only."""
    composed = compose_pool(pool, seed=0, noise=0.3, duplicate=0.2)
    rng = np.random.default_rng(0)
    scores = pd.DataFrame(
        {"sample_id": composed["sample_id"], "difficulty": rng.random(len(composed))}
    )
    embeddings = rng.normal(size=(len(composed), 8)).astype(np.float32)
    shuffled = composed.assign(origin=rng.permutation(composed["origin"].to_numpy()))
    picks = []
    where = {"method": method, "round_index": 1, "rounds": 2}
    for frame in (composed, shuffled):  # the round's own nodes, the pool handed to the pick node
        eligible = None
        if methods.get(method).thresholded:
            eligible, _ = nodes.threshold(scores, {}, **where)
        chosen, _ = nodes.select_scored(scores, {}, 0.4, 7, eligible, embeddings, frame, **where)
        picks.append(chosen)
    pd.testing.assert_frame_equal(picks[0].drop(columns="origin"), picks[1].drop(columns="origin"))
    assert not picks[0]["origin"].equals(picks[1]["origin"]) or method == "random"


def test_quality_rules_change_the_dpp_preference():
    rng = np.random.default_rng(1)
    n = 80
    scores = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "difficulty": rng.random(n)})
    X = rng.normal(size=(n, 6)).astype(np.float32)
    mean = {}
    for rule in strategies.QUALITY_RULES:
        chosen = strategies.select(
            "dpp", scores, X, round_index=0, rounds=2, budget=20, seed=0, quality=rule
        )
        mean[rule] = chosen["difficulty"].mean()
    assert mean["difficulty"] > mean["flat"] > mean["easiness"]
    with pytest.raises(ValueError, match="quality rule"):
        strategies.select("dpp", scores, X, round_index=0, rounds=2, budget=5, seed=0, quality="x")
