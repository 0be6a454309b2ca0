"""Writes golden_selections.json: the selections of strategies.run_strategy as of commit 38213ae (before
the round was split into threshold and select nodes). Kept to show how the reference was made."""

import json

import numpy as np
import pandas as pd

from p3_pruning import strategies


def inputs(seed):
    """Scores (80 rows, 4 failed), embeddings (80, 12) and previous-round scores for ``seed``."""
    rng = np.random.default_rng(1000 + seed)
    n, d = 80, 12
    diff = rng.uniform(0, 1, n)
    diff[rng.choice(n, 4, replace=False)] = np.inf
    scores = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(n)], "difficulty": diff})
    emb = rng.normal(size=(n, d)).astype(np.float32)
    prev = pd.DataFrame(
        {
            "sample_id": scores["sample_id"],
            "difficulty": np.clip(diff + rng.normal(0, 0.1, n), 0, None),
        }
    )
    return scores, emb, prev


def main():
    out = []
    for seed in (0, 1, 7):
        scores, emb, prev = inputs(seed)
        for method in strategies.METHODS:
            for rounds, r in ((3, 0), (3, 1), (3, 2), (1, 0)):
                for budget in (10, 0.25, 200):
                    for opts in (
                        {},
                        {"alpha": 0.5, "previous": prev},
                        {"schedule": "root", "dpp_mode": "stochastic", "ridge": 0.01},
                    ):
                        sel, info = strategies.run_strategy(
                            method,
                            scores,
                            emb,
                            round_index=r,
                            rounds=rounds,
                            budget=budget,
                            seed=seed,
                            **opts,
                        )
                        out.append(
                            {
                                "seed": seed,
                                "method": method,
                                "rounds": rounds,
                                "round_index": r,
                                "budget": budget,
                                "options": {k: v for k, v in opts.items() if k != "previous"},
                                "trend": "previous" in opts,
                                "sample_id": sel["sample_id"].tolist(),
                                "threshold": None
                                if np.isnan(info["threshold"])
                                else info["threshold"],
                                "eligible": info["eligible"],
                                "dpp_log_det": None
                                if np.isnan(info["dpp_log_det"])
                                else info["dpp_log_det"],
                            }
                        )
    json.dump(out, open("tests/data/golden_selections.json", "w"))
    print(len(out))


if __name__ == "__main__":
    main()
