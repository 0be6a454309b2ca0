"""P3 with `scoring.refresh: full` (the paper) against `incremental` on the same pool, rounds and seed.

Runs the `p3` pipeline in two scratch workspaces that differ only in `scoring.refresh` (the same
seeded pool and eval set), then prints, per round: the samples rescored (and why) in the
incremental run, the overlap of its selection with full P3's (|A ∩ B| / |A|), and both runs'
scoring FLOPs (`p3_pruning.compute`: 2·P per token read) with their ratio; then totals over the
rounds. Last, from the same cost model and the token counts measured here, the scoring FLOPs
against the training FLOPs of one round at budgets 20 % and 10 % of a 1,000-sample pool, for
full rescoring and for the rescored share measured in this run.

    .venv/bin/python benchmarks/bench_refresh.py                         # SmolLM2-135M, pool 150
    .venv/bin/python benchmarks/bench_refresh.py --model tiny-random --pool 40 --budget 8 \\
        --rounds 3                                                        # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from p3_pruning.compute import stage_flops
from p3_pruning.workspace import PROJECT_ROOT, latest_version, make_workspace, run_pipeline

MODES = ("full", "incremental")


def summaries(ws: Path, rounds: int) -> list[dict]:
    return [
        json.loads(latest_version(ws, f"data/08_reporting/p3/round_{e}/summary.json").read_text())
        for e in range(1, rounds + 1)
    ]


def selection(ws: Path, e: int) -> set:
    path = latest_version(ws, f"data/05_model_input/p3/round_{e}/selection.parquet")
    return set(pd.read_parquet(path)["sample_id"])


def cost_model(pool: int, budget: float, score_tokens: float, train_tokens: float, P, L):
    """Scoring and training FLOPs of one round: the pool scored at ``score_tokens`` a sample,
    ``budget`` × pool trained at ``train_tokens`` a sample."""
    score = stage_flops("score", pool * score_tokens, P)
    train = stage_flops("train", budget * pool * train_tokens, P, L)
    return score, train


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="or tiny-random")
    parser.add_argument("--pool", type=int, default=150)
    parser.add_argument("--eval", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=lambda t: float(t) if "." in t else int(t), default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="keep the workspaces here")
    args = parser.parse_args()

    root = Path(args.workdir or tempfile.mkdtemp(prefix="p3-refresh-"))
    base = {
        "seed": args.seed,
        "rounds": args.rounds,
        "budget": args.budget,
        "model": {
            "name_or_path": args.model,
            "cache_dir": str(PROJECT_ROOT / "data" / "06_models"),
        },
        "data": {"default": {"n": args.pool + args.eval}, "split": {"eval_size": args.eval}},
        "cheap_eval": {"max_samples": 2},
    }
    runs = {}
    for mode in MODES:
        ws = make_workspace(root / mode, {**base, "scoring": {"refresh": mode}})
        print(f"{mode}: running p3 in {ws}", flush=True)
        run_pipeline(ws, "p3")
        runs[mode] = ws

    full, inc = (summaries(runs[m], args.rounds) for m in MODES)
    P, L = int(full[0]["train_params"]), int(full[0]["train_lora_params"])
    print(
        f"\nmodel {args.model}: P = {P:,}, P_lora = {L:,}; pool {args.pool}, budget {args.budget}"
    )
    header = (
        f"{'round':>5} {'rescored':>9} {'margin':>7} {'drift':>6} {'unscored':>8} {'train pass':>10} "
        f"{'overlap':>8} {'score FLOPs full':>17} {'incremental':>12} {'ratio':>6}"
    )
    print(header)
    totals = {m: 0.0 for m in MODES}
    shares = []
    for e in range(1, args.rounds + 1):
        a, b = selection(runs["full"], e), selection(runs["incremental"], e)
        f_fl = stage_flops("score", full[e - 1]["score_tokens"], P)
        i_fl = stage_flops("score", inc[e - 1]["score_tokens"], P)
        totals["full"] += f_fl
        totals["incremental"] += i_fl
        s = inc[e - 1]
        rescored = s.get("score_rescored", s["score_candidates"])
        if e > 1:
            shares.append(s["score_tokens"] / full[e - 1]["score_tokens"])
        print(
            f"{e:>5} {rescored:>9} {s.get('score_rescored_margin', '-'):>7} "
            f"{s.get('score_rescored_drift', '-'):>6} {s.get('score_rescored_unscored', '-'):>8} "
            f"{s.get('score_train_pass', '-'):>10} {len(a & b) / max(len(a), 1):>8.2f} "
            f"{f_fl:>17.3e} {i_fl:>12.3e} {i_fl / f_fl:>6.2f}"
        )
    print(
        f"total scoring FLOPs: full {totals['full']:.3e}, incremental {totals['incremental']:.3e} "
        f"= {totals['incremental'] / totals['full']:.2f}×"
    )

    # the cost model at paper-like budgets, with this run's tokens per sample
    score_tokens = full[0]["score_tokens"] / args.pool
    train_tokens = sum(s["train_n_input_tokens"] for s in full) / sum(s["selected"] for s in full)
    share = sum(shares) / len(shares) if shares else float("nan")
    print(
        f"\ncost model, pool 1,000 ({score_tokens:.0f} tokens a sample scored, {train_tokens:.0f} "
        f"trained; incremental rescoring {share:.0%} of the full scoring's tokens, measured above):"
    )
    for budget in (0.2, 0.1):
        score, train = cost_model(1000, budget, score_tokens, train_tokens, P, L)
        print(
            f"  budget {budget:.0%}: scoring/training a round = full {score / train:.2f}×, "
            f"incremental {share * score / train:.2f}×"
        )


if __name__ == "__main__":
    main()
