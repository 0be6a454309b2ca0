"""Can P3 see near-duplicates? Its DPP's features and its round-1 selections on a pool with copies.

A pool with near-duplicates (``data.inject.duplicate``; a copy's id names its source,
``inject.problem_of``) is scored once with the base model per DPP feature (``scoring.embed``:
``prompt``, the default, ``response``, ``all``, ``prompt_probs``). For each feature it prints

- how the DPP's feature space (``strategies.dpp_features``: z-scored columns, unit rows) places a
  copy against its source: the share of copies whose source is their nearest neighbour, the
  source's median rank among the other rows (0 = nearest), the mean cosine copy–source and
  between any two rows. The DPP can only avoid a pair it can see;
- round 1's selection at budgets of 40 / 20 / 10 % of the pool (the paper's threshold at P_1,
  then the DPP; the scores are the base model's, as in a run's round 1): distinct problems per
  selected row (``audit.distinct_share``) for ``p3`` (q = d), ``p3`` with ``quality: flat``
  (diversity only) and ``dpp`` (no threshold), against a random draw's expectation.

No training: it measures the selection, not what the selection is worth.

    .venv/bin/python benchmarks/bench_redundancy.py WORKSPACE [--embed prompt,response] [--seed 0]

``WORKSPACE``: a run workspace whose ``data/03_primary/train_pool.parquet`` holds near-duplicates
(``kedro run --pipeline data --env regime_redundant`` writes one in a few seconds).
"""

from __future__ import annotations

import argparse
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

from p3_pruning import strategies
from p3_pruning.audit import distinct_share
from p3_pruning.data.inject import ORIGIN, problem_of
from p3_pruning.models import load_model
from p3_pruning.scoring import score_samples
from p3_pruning.workspace import TRAIN_POOL, latest_version

BUDGETS = (0.4, 0.2, 0.1)
VARIANTS = {  # the selectors compared: name -> (method, selection options)
    "p3": ("p3", {}),
    "p3, quality flat": ("p3", {"quality": "flat"}),
    "dpp (no threshold)": ("dpp", {}),
}
EMBEDS = ("prompt", "response", "all", "prompt_probs")


def copy_pairs(sample_ids) -> list[tuple[int, int]]:
    """``(copy row, source row)`` for every near-duplicate whose source is in ``sample_ids``."""
    ids = list(sample_ids)
    row = {s: i for i, s in enumerate(ids)}
    return [
        (i, row[problem_of(s)])
        for i, s in enumerate(ids)
        if problem_of(s) in row and problem_of(s) != s
    ]


def partner_view(embeddings, pairs) -> dict[str, float]:
    """How the DPP's feature space places each copy against its source (module doc)."""
    f = strategies.dpp_features(embeddings).astype(np.float64)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    ranks = np.array([(sim[a] > sim[a, b]).sum() for a, b in pairs])
    upper = sim[np.triu_indices(len(f), 1)]
    return {
        "nearest": float((ranks == 0).mean()),
        "median_rank": float(np.median(ranks)),
        "cos_pair": float(np.mean([sim[a, b] for a, b in pairs])),
        "cos_any": float(upper.mean()),
    }


def random_distinct(copies: np.ndarray, k: int) -> float:
    """Expected distinct problems per row of a uniform draw of ``k`` rows, where ``copies[j]`` is
    how many rows pose problem j (each problem counts once if any of its rows is drawn)."""
    n = int(copies.sum())
    hit = sum(1 - comb(n - int(c), k) / comb(n, k) for c in copies)
    return hit / k


def selections(scores: pd.DataFrame, embeddings, budgets, seed: int) -> dict[tuple, float]:
    """``{(variant, budget): distinct share}`` of round 1's selection (module doc)."""
    out = {}
    for budget in budgets:
        k = round(budget * len(scores))
        for name, (method, options) in VARIANTS.items():
            chosen = strategies.select(
                method, scores, embeddings, round_index=0, rounds=2, budget=k, seed=seed, **options
            )
            out[(name, budget)] = distinct_share(chosen["sample_id"])
    return out


def main(
    workspace: Path, embeds=("prompt",), *, model: str = "smollm2-135m-instruct", seed: int = 0
) -> pd.DataFrame:
    pool = pd.read_parquet(latest_version(workspace, TRAIN_POOL))
    if ORIGIN not in pool or not (pool[ORIGIN] == "duplicate").any():
        raise ValueError(
            f"{workspace / TRAIN_POOL}: no near-duplicates in the pool (data.inject.duplicate)"
        )
    pairs = copy_pairs(pool["sample_id"])
    copies = pool["sample_id"].map(problem_of).value_counts().to_numpy()
    lm, tokenizer = load_model(model, device="cpu")
    rows = []
    for embed in embeds:
        scores, embeddings = score_samples(lm, tokenizer, pool, embed=embed, progress=False)
        picked = selections(scores, embeddings, BUDGETS, seed)
        rows.append(
            {
                "embed": embed,
                **partner_view(embeddings, pairs),
                **{f"{name} @ {int(100 * b)} %": share for (name, b), share in picked.items()},
            }
        )
    table = pd.DataFrame(rows)
    print(
        f"{len(pool)} rows, {len(copies)} problems, {len(pairs)} near-duplicates "
        f"(pool: {100 * len(copies) / len(pool):.1f} distinct problems per row), "
        f"model {model}, seed {seed}\n"
    )
    print(
        "| DPP feature | copy's nearest neighbour is its source | source's median rank "
        "| cosine copy–source | cosine any two |"
    )
    print("| --- | --- | --- | --- | --- |")
    for _, r in table.iterrows():
        print(
            f"| {r['embed']} | {100 * r['nearest']:.0f} % | {r['median_rank']:.0f} of "
            f"{len(pool) - 1} | {r['cos_pair']:.3f} | {r['cos_any']:.3f} |"
        )
    print("\nRound 1, distinct problems per selected row (%):\n")
    head = " | ".join(f"{int(100 * b)} %" for b in BUDGETS)
    print(f"| selector | DPP feature | {head} |")
    print("| --- | --- |" + " --- |" * len(BUDGETS))
    expected = [random_distinct(copies, round(b * len(pool))) for b in BUDGETS]
    print("| random (expected) | — | " + " | ".join(f"{100 * v:.1f}" for v in expected) + " |")
    for name in VARIANTS:
        for _, r in table.iterrows():
            cells = " | ".join(f"{100 * r[f'{name} @ {int(100 * b)} %']:.1f}" for b in BUDGETS)
            print(f"| {name} | {r['embed']} | {cells} |")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspace", type=Path)
    parser.add_argument(
        "--embed", default="prompt", help=f"comma-separated, of {', '.join(EMBEDS)}"
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.workspace, args.embed.split(","), model=args.model, seed=args.seed)
