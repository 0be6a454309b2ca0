"""P3 against `full` and `random` on the same pool, rounds and seed: accuracy, compute and wall time.

Runs, in one scratch workspace: the `data` pipeline once, then, per method, the `compare` pipeline
restricted to that method's namespace (its rounds `<method>.round_<e>` and its final evaluation
`<method>.final`). The figures come from the records the pipelines write: each round's summary
(`data/08_reporting/<method>/round_<e>/summary.json`: tokens, `*_seconds`, parameter counts) and the
final evaluation's metrics (`data/08_reporting/<method>/final/metrics.json`), turned into FLOPs by
`p3_pruning.compute.run_compute` (forward 2·P per token; LoRA training 4·P + 6·P_lora). Prints, per
method: accuracy ± stderr, samples trained, tokens and FLOPs per stage, wall seconds per stage, the
measured wall time of its pipeline run (model loads and saving included), and the ratios of P3's
total FLOPs and wall seconds to `full`'s and `random`'s. P3 with `scoring.refresh: incremental`
(`p3_incremental`) runs as `p3` in a second workspace with the same parameters (the same seeded
pool and eval set) plus that setting, and is printed beside them with its own ratios.

    .venv/bin/python benchmarks/bench_end_to_end.py        # SmolLM2-135M, the default run's sizes
    .venv/bin/python benchmarks/bench_end_to_end.py --model tiny-random --pool 24 --eval 8 \\
        --rounds 2 --budget 4 --max-new-tokens 8                                  # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from p3_pruning.compute import SECONDS_KEYS, TOKEN_STAGES, run_compute
from p3_pruning.workspace import latest_version

METHODS = ("p3", "random", "full")
INCREMENTAL = "p3_incremental"  # p3 with scoring.refresh: incremental, in its own workspace
REFERENCES = ("full", "random")
STAGES = TOKEN_STAGES  # the stages that read tokens
SECOND_STAGES = tuple(SECONDS_KEYS)


def load_records(workspace: Path, method: str, rounds: int) -> tuple[list[dict], dict]:
    """``method``'s round summaries (rounds 1..``rounds``, in order) and its final metrics."""
    reporting = f"data/08_reporting/{method}"
    summaries = [
        json.loads(latest_version(workspace, f"{reporting}/round_{e}/summary.json").read_text())
        for e in range(1, rounds + 1)
    ]
    final = json.loads(latest_version(workspace, f"{reporting}/final/metrics.json").read_text())
    return summaries, final


def method_row(
    method: str,
    summaries: Sequence[Mapping],
    final: Mapping,
    *,
    wall_seconds: float = math.nan,
    checkpointing: bool = False,
) -> dict:
    """One method's accuracy, samples trained, tokens/FLOPs/seconds per stage and totals.

    summaries: the method's round summaries (each with ``train_params`` / ``train_lora_params``,
    the matmul and LoRA parameter counts the finetune node recorded). final: its final
    evaluation's metrics. wall_seconds: the measured wall time of the method's pipeline run.
    """
    if not summaries:
        raise ValueError(f"{method}: no round summary")
    for key in ("train_params", "train_lora_params", "selected"):
        missing = [s.get("round", i + 1) for i, s in enumerate(summaries) if key not in s]
        if missing:
            raise KeyError(f"{method}: round summary of round(s) {missing} has no {key!r}")
    for key in ("accuracy", "n_eval"):
        if key not in final:
            raise KeyError(f"{method}: final metrics have no {key!r}")
    params = {int(s["train_params"]) for s in summaries}
    lora = {int(s["train_lora_params"]) for s in summaries}
    if len(params) > 1 or len(lora) > 1:
        raise ValueError(
            f"{method}: parameter counts differ across rounds: train_params {sorted(params)}, "
            f"train_lora_params {sorted(lora)}"
        )
    params, lora = params.pop(), lora.pop()
    compute = run_compute(summaries, params, lora, final=final, checkpointing=checkpointing)
    return {
        "method": method,
        "params": params,
        "lora_params": lora,
        "accuracy": float(final["accuracy"]),
        "accuracy_stderr": float(final.get("accuracy_stderr", math.nan)),
        "n_eval": int(final["n_eval"]),
        "rounds": len(summaries),
        "samples_trained": int(sum(int(s["selected"]) for s in summaries)),
        **compute,
        "wall_seconds": float(wall_seconds),
    }


def ratios(
    rows: Mapping[str, Mapping],
    method: str = "p3",
    references: Sequence[str] = REFERENCES,
    keys: Sequence[str] = ("total_flops", "total_seconds", "wall_seconds"),
) -> dict[str, dict[str, float]]:
    """``{reference: {key: rows[method][key] / rows[reference][key]}}`` (nan where the reference is 0)."""
    out = {}
    for ref in references:
        out[ref] = {}
        for key in keys:
            num, den = float(rows[method][key]), float(rows[ref][key])
            out[ref][key] = num / den if den > 0 else math.nan
    return out


def format_report(rows: Mapping[str, Mapping], method: str = "p3") -> str:
    """The table the benchmark prints: one column per method, one line per figure, then ratios."""
    names = list(rows)
    width = max(12, *(len(n) for n in names))

    def line(label: str, values: list[str]) -> str:
        return f"{label:<26}" + "".join(f"{v:>{width}}" for v in values)

    out = [line("", names)]
    out.append(
        line(
            "accuracy ± stderr",
            [f"{r['accuracy']:.3f}±{r['accuracy_stderr']:.3f}" for r in rows.values()],
        )
    )
    out.append(line("n_eval", [str(r["n_eval"]) for r in rows.values()]))
    out.append(line("samples trained", [str(r["samples_trained"]) for r in rows.values()]))
    for stage in STAGES:
        out.append(line(f"{stage} tokens", [f"{r[f'{stage}_tokens']:.0f}" for r in rows.values()]))
    for stage in STAGES:
        out.append(line(f"{stage} FLOPs", [f"{r[f'{stage}_flops']:.3e}" for r in rows.values()]))
    out.append(
        line(
            "score reused FLOPs",
            [f"{r.get('score_reused_flops', 0.0):.3e}" for r in rows.values()],
        )
    )
    out.append(line("total FLOPs", [f"{r['total_flops']:.3e}" for r in rows.values()]))
    for stage in SECOND_STAGES:
        out.append(line(f"{stage} s", [f"{r[f'{stage}_seconds']:.1f}" for r in rows.values()]))
    out.append(line("total s (stages)", [f"{r['total_seconds']:.1f}" for r in rows.values()]))
    out.append(line("wall s (pipeline run)", [f"{r['wall_seconds']:.1f}" for r in rows.values()]))
    compared = [method] + ([INCREMENTAL] if INCREMENTAL in rows and method != INCREMENTAL else [])
    for name in compared:
        refs = [ref for ref in (*REFERENCES, method) if ref in rows and ref != name]
        for ref, figures in ratios(rows, name, refs).items():
            out.append(
                f"{name}/{ref}: total FLOPs {figures['total_flops']:.3f}×  "
                f"stage seconds {figures['total_seconds']:.3f}×  "
                f"wall seconds {figures['wall_seconds']:.3f}×  "
                f"accuracy {rows[name]['accuracy'] - rows[ref]['accuracy']:+.3f}"
            )
    return "\n".join(out)


def main() -> None:
    from p3_pruning.pipeline_registry import configured_parameters
    from p3_pruning.workspace import PROJECT_ROOT, make_workspace, run_pipeline

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct", help="or tiny-random")
    parser.add_argument("--pool", type=int, default=None, help="train pool size (default: config)")
    parser.add_argument("--eval", type=int, default=None, help="eval set size (default: config)")
    parser.add_argument("--rounds", type=int, default=None, help="default: config")
    parser.add_argument(
        "--budget",
        type=lambda text: float(text) if "." in text else int(text),
        default=None,
        help="a fraction such as 0.4, or samples per round such as 60 (default: config)",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: config")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="final generation (default: config)"
    )
    parser.add_argument(
        "--workdir", default=None, help="keep the workspace here (default: a temp dir)"
    )
    args = parser.parse_args()

    config = configured_parameters(PROJECT_ROOT / "conf")
    eval_size = args.eval if args.eval is not None else config["data"]["split"]["eval_size"]
    params: dict = {
        "model": {
            "name_or_path": args.model,
            "cache_dir": str(PROJECT_ROOT / "data" / "06_models"),
        }
    }
    for key in ("seed", "rounds", "budget"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    if args.pool is not None:
        if not isinstance(eval_size, int):
            raise ValueError(f"--pool needs --eval: data.split.eval_size is {eval_size!r}")
        params["data"] = {"default": {"n": args.pool + eval_size}}
    if args.eval is not None:
        params.setdefault("data", {})["split"] = {"eval_size": args.eval}
    if args.max_new_tokens is not None:
        params["generation"] = {"max_new_tokens": args.max_new_tokens}

    root = Path(args.workdir or tempfile.mkdtemp(prefix="p3-e2e-"))
    ws = make_workspace(root, params)
    effective = configured_parameters(ws / "conf")
    rounds = int(effective["rounds"])
    checkpointing = bool(effective["training"].get("gradient_checkpointing"))
    print(
        f"workspace {ws}  model={args.model} pool+eval={effective['data']['default']['n']} "
        f"eval={effective['data']['split']['eval_size']} rounds={rounds} "
        f"budget={effective['budget']} seed={effective['seed']}",
        flush=True,
    )
    run_pipeline(ws, "data")

    rows = {}
    for method in METHODS:
        start = time.perf_counter()
        run_pipeline(ws, "compare", namespaces=[method])  # its rounds and its final evaluation
        wall = time.perf_counter() - start
        summaries, final = load_records(ws, method, rounds)
        rows[method] = method_row(
            method, summaries, final, wall_seconds=wall, checkpointing=checkpointing
        )
        print(f"{method}: done in {wall:.1f} s", flush=True)

    # P3 with incremental refresh: the same parameters (so the same seeded pool) in a second
    # workspace, where the p3 pipeline is built for scoring.refresh: incremental
    inc_params = {**params, "scoring": {"refresh": "incremental"}}
    ws_inc = make_workspace(root / INCREMENTAL, inc_params)
    run_pipeline(ws_inc, "data")
    start = time.perf_counter()
    run_pipeline(ws_inc, "compare", namespaces=["p3"])
    wall = time.perf_counter() - start
    summaries, final = load_records(ws_inc, "p3", rounds)
    rows[INCREMENTAL] = method_row(
        INCREMENTAL, summaries, final, wall_seconds=wall, checkpointing=checkpointing
    )
    print(f"{INCREMENTAL}: done in {wall:.1f} s", flush=True)

    train_rule = "4·P + 6·P_lora" + (" + 2·(P + P_lora) recomputed" if checkpointing else "")
    print(
        f"\nFLOPs: forward 2·P per token (score, eval, generation), LoRA training {train_rule} "
        f"per token; P = {rows['p3']['params']:,}, P_lora = {rows['p3']['lora_params']:,}"
    )
    print(format_report(rows))


if __name__ == "__main__":
    main()
