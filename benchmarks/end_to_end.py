"""P3 against `full` fine-tuning on the same pool, rounds and seed: wall time and accuracy.

Runs, in a scratch workspace: the `data` pipeline, then P3's rounds and their final evaluation, then
`full`'s rounds and final evaluation. Prints the rounds' wall time of each method (scoring + selection
+ training + cheap eval), their ratio (goal ≤ 0.6 at a 25 % budget) and both accuracies.

    .venv/bin/python benchmarks/end_to_end.py                       # SmolLM2-135M, CPU: ~35 min
    .venv/bin/python benchmarks/end_to_end.py --model tiny-random --pool 48 --eval 16   # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from p3_pruning.workspace import PROJECT_ROOT, make_workspace, run_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--pool", type=int, default=200)
    parser.add_argument("--eval", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--workdir", default=None, help="keep the workspace here (default: a temp dir)"
    )
    args = parser.parse_args()

    params = {
        "seed": args.seed,
        "rounds": args.rounds,
        "budget": args.budget,
        "model": {
            "name_or_path": args.model,
            "cache_dir": str(PROJECT_ROOT / "data" / "06_models"),
        },
        "data": {
            "default": {"n": args.pool + args.eval, "seed": args.seed},
            "split": {"eval_size": args.eval},
        },
    }
    root = Path(args.workdir or tempfile.mkdtemp(prefix="p3-e2e-"))
    ws = make_workspace(root, params)
    print(
        f"workspace {ws}  model={args.model} pool={args.pool} eval={args.eval} "
        f"rounds={args.rounds} budget={args.budget}"
    )
    run_pipeline(ws, "data")

    seconds, accuracy = {}, {}
    for method in ("p3", "full"):
        start = time.perf_counter()
        run_pipeline(ws, method)
        seconds[method] = time.perf_counter() - start
        run_pipeline(ws, "compare", namespaces=[f"{method}.final"])  # its final evaluation only
        latest = sorted(
            (ws / "data/08_reporting" / method / "final" / "metrics.json").glob("*/metrics.json")
        )[-1]
        accuracy[method] = json.loads(latest.read_text())["accuracy"]
        print(f"{method:>5}: rounds {seconds[method]:8.1f} s   accuracy {accuracy[method]:.3f}")

    print(
        f"wall-time ratio p3/full (rounds only): {seconds['p3'] / seconds['full']:.3f}  (goal ≤ 0.6)"
    )
    print(
        f"accuracy p3 {accuracy['p3']:.3f} vs full {accuracy['full']:.3f} "
        f"(Δ {accuracy['p3'] - accuracy['full']:+.3f})"
    )


if __name__ == "__main__":
    main()
