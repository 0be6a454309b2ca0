"""Real-model check of one fine-tuning round and of generation, on SmolLM2-135M-Instruct (CPU is fine).

Prints, all measured in this run:
- generation: batched vs one-at-a-time decoding, and decoding steps + seconds with the answer-line stop vs
  without it (same prompts, one batch; base model and tuned model); the ratios are the claims;
- one ``train_round`` over ``--train`` chain_sum samples, then held-out accuracy, response NLL and mean
  difficulty before → after, and what one read of the divergence guard's probe costs against the
  round's training time.

    python benchmarks/bench_train_eval.py --train 64 --eval 32
"""

from __future__ import annotations

import argparse
import time

import torch

from p3_pruning.chat import DEFAULT_SYSTEM
from p3_pruning.data import generate_default, split_samples
from p3_pruning.evaluation import cheap_eval, evaluate_generation, generate
from p3_pruning.models import load_model
from p3_pruning.training import MAX_LENGTH, build_features, probe_batches, probe_loss, train_round


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def n_tokens(tokenizer, texts) -> int:
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def compare_stop(model, tokenizer, probe, label: str, opts: dict) -> None:
    """Decoding steps and seconds with and without the answer-line stop (best of two, alternating)."""
    steps = []
    inner = (
        model.get_base_model() if hasattr(model, "get_base_model") else model
    )  # peft: the HF model
    hook = inner.register_forward_hook(lambda *_: steps.append(1))
    runs = {True: [], False: []}
    try:
        for stop in (False, True, True, False):
            steps.clear()
            out, seconds = timed(
                generate,
                model,
                tokenizer,
                probe,
                batch_size=len(probe),
                stop_at_answer=stop,
                **opts,
            )
            runs[stop].append((seconds, len(steps), out))
    finally:
        hook.remove()
    (t_free, n_free, free), (t_stop, n_stop, stopped) = (min(runs[s]) for s in (False, True))
    same = sum(a == b[: len(a)] for a, b in zip(stopped, free, strict=True))
    print(
        f"[{label}] generate {len(probe)} prompts in one batch (max {opts['max_new_tokens']} new tokens): "
        f"answer-line stop {n_stop} decoding steps, {t_stop:.1f} s vs none {n_free} steps, "
        f"{t_free:.1f} s -> {t_free / t_stop:.2f}x faster; {same}/{len(probe)} stopped outputs are "
        f"prefixes of the unstopped ones"
    )


def accuracy(summary) -> float:
    return float(summary.loc[summary.scope == "all", "accuracy"].item())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--train", type=int, default=64)
    ap.add_argument("--eval", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--probe", type=int, default=8, help="prompts in the stop/no-stop comparison")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    levels = {
        "chain_sum": {"1": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}}
    }
    pool = generate_default(args.train + args.eval, args.seed, levels=levels)
    train, held_out = split_samples(pool, eval_size=args.eval, seed=args.seed)
    model, tokenizer = load_model(args.model)
    print(
        f"model {args.model} on {next(model.parameters()).device}, {args.threads} threads; "
        f"train {len(train)}, eval {len(held_out)} chain_sum L1 samples"
    )

    # --- generation: batched vs one at a time; answer-line stop vs none (base model) ----------
    probe = held_out.iloc[: args.probe]
    opts = dict(max_new_tokens=args.max_new_tokens, progress=False)
    generate(
        model, tokenizer, probe.iloc[:2], batch_size=2, max_new_tokens=4, progress=False
    )  # warm-up
    few = probe.iloc[:4]
    (one, t_one), (four, t_four) = (
        timed(generate, model, tokenizer, few, batch_size=b, **opts) for b in (1, 4)
    )
    print(
        f"generate 4 prompts: one at a time {t_one:.1f} s vs batch 4 {t_four:.1f} s -> "
        f"{t_one / t_four:.2f}x faster; identical outputs: {one == four}"
    )
    compare_stop(model, tokenizer, probe, "base", opts)
    # --- one round: accuracy, NLL and difficulty before -> after ------------------------------
    before_rows, before = timed(evaluate_generation, model, tokenizer, held_out, **opts)
    cheap_before = cheap_eval(model, tokenizer, held_out, progress=False)
    (adapter, metrics), t_train = timed(
        train_round, model, tokenizer, train, seed=args.seed, progress=False
    )
    features = build_features(
        tokenizer, train, max_length=MAX_LENGTH, loss_on="response", system=DEFAULT_SYSTEM
    )
    probe_rows = probe_batches(features, tokenizer.pad_token_id, 4)
    _, t_probe = timed(probe_loss, model, probe_rows)
    print(
        f"divergence probe: {sum(len(b['input_ids']) for b in probe_rows)} samples read in "
        f"{t_probe:.2f} s = {t_probe / t_train:.1%} of the round's {t_train:.1f} s (read only when "
        "the step losses rise: twice then, with the current and the starting weights)"
    )
    tuned = adapter.apply(model)
    after_rows, after = timed(evaluate_generation, tuned, tokenizer, held_out, **opts)
    cheap_after = cheap_eval(tuned, tokenizer, held_out, progress=False)
    compare_stop(tuned, tokenizer, probe, "tuned", opts)
    few_opts = dict(opts, batch_size=len(few))
    (merged, t_merged), (unmerged, t_unmerged) = (
        timed(generate, tuned, tokenizer, few, merge_lora=m, **few_opts) for m in (True, False)
    )
    print(
        f"[tuned] generate 4 prompts: unmerged LoRA {t_unmerged:.1f} s vs merged copy {t_merged:.1f} s "
        f"-> {t_unmerged / t_merged:.2f}x faster; identical outputs: {merged == unmerged}"
    )
    print(
        f"train_round: {metrics['n_samples']} samples, {metrics['n_tokens']} tokens, {metrics['steps']} steps, "
        f"{t_train:.1f} s ({metrics['n_tokens'] / metrics['seconds']:.0f} tok/s), "
        f"loss {metrics['loss_curve'][0]:.3f} -> {metrics['loss_curve'][-1]:.3f} (mean {metrics['train_loss']:.3f})"
    )
    print(
        f"held-out accuracy {accuracy(before_rows[1]):.3f} -> {accuracy(after_rows[1]):.3f} "
        f"(n={len(held_out)}; eval {before:.1f} s -> {after:.1f} s)"
    )
    print(
        f"held-out NLL/token {cheap_before['nll']:.3f} -> {cheap_after['nll']:.3f}; "
        f"mean difficulty {cheap_before['difficulty']:.3f} -> {cheap_after['difficulty']:.3f}"
    )


if __name__ == "__main__":
    main()
