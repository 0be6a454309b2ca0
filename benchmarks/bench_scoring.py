"""Throughput of the difficulty scorer against a bare forward pass and the authors' procedure.

On GSM-style samples (reasoning-gym ``gsm_symbolic``, responses cleaned to one step per line plus
``Answer: <answer>``) this measures, on the same token ids:

  (a) ``score_samples``: tokenization, length-bucketed batches, one pass, chunked log-softmax;
  (b) a bare batched forward ``model(input_ids, attention_mask)`` over the same batches;
  (c) the authors' procedure: for every action k one input, the prefix through a_k right-padded to
      prompt + all actions, in batches of ≤ 5, with a softmax over the full vocabulary.

Tokens/s counts the samples' tokens (prompt + response) for all three. The machine is shared, so
the three phases alternate over groups of ``--group`` samples (they see the same load), and the
slow procedure (c) runs on every ``--authors-every``-th sample only; its tokens/s is over those.
Rates are given per wall-clock second and per process CPU second (the latter is less sensitive to
other users). Peak memory is the process's peak RSS during each phase (``VmHWM`` after resetting it).

    python benchmarks/bench_scoring.py --model smollm2-135m-instruct --n 200

``--scale`` measures instead how scoring spreads out: the same samples scored by the local backend
and by ``distributed.score_on_ray`` on a local Ray cluster with 1 and 2 workers (the threads split
between them), each also on a small subset so the fixed cost of a call (actors start, each loads
the model) and the marginal per-sample overhead Ray adds are told apart:

    python benchmarks/bench_scoring.py --scale --model smollm2-135m-instruct --n 100
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from p3_pruning.encoding import encode, length_batches
from p3_pruning.models import load_model
from p3_pruning.scoring import default_token_budget, score_samples


def gsm_samples(n: int, seed: int) -> pd.DataFrame:
    """``n`` gsm_symbolic problems; response = cleaned ``answer_cot`` lines + ``Answer: <answer>``."""
    import reasoning_gym

    rows = []
    for i, entry in enumerate(reasoning_gym.create_dataset("gsm_symbolic", size=n, seed=seed)):
        steps = []
        for line in entry["metadata"]["answer_cot"].split("\n"):
            line = re.sub(r"^\s*(?:[•*-]\s*)", "", line).strip()
            if line and not line.startswith("####"):
                steps.append(line)
        steps.append(f"Answer: {entry['answer']}")
        rows.append(dict(sample_id=f"gsm{i}", prompt=entry["question"], response="\n".join(steps)))
    return pd.DataFrame(rows)


class PeakRSS:
    """Peak resident memory of this process inside a ``with`` block (Linux ``VmHWM``), in MiB."""

    def __enter__(self):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        status = Path("/proc/self/status").read_text()
        self.mib = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def padded(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    return ids, mask


def run_scorer(model, tok, samples, budget):
    scores, _ = score_samples(model, tok, samples, token_budget=budget, progress=False)
    return scores


def run_bare(model, tok, encoded, budget):
    seqs = [ids for ids, _ in encoded]
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for batch in tqdm(length_batches([len(s) for s in seqs], budget), desc="bare", leave=False):
            ids, mask = padded([seqs[i] for i in batch], tok.pad_token_id)
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev))


def run_authors(model, tok, encoded, batch_size=5):
    """Per sample: one input per action (prefix through it, right-padded), full softmax, ≤ 5 a batch."""
    out = []
    dev = next(model.parameters()).device
    with torch.inference_mode():
        for ids, spans in tqdm(encoded, desc="authors", leave=False):
            full = ids[: spans[-1][1]]
            probs = []
            for c in range(0, len(spans), batch_size):
                group = spans[c : c + batch_size]
                inputs = [full[:e] + [tok.pad_token_id] * (len(full) - e) for _, e in group]
                mask = torch.tensor([[1] * e + [0] * (len(full) - e) for _, e in group])
                logits = model(
                    input_ids=torch.tensor(inputs, device=dev), attention_mask=mask.to(dev)
                ).logits
                p = torch.softmax(logits.float(), dim=-1)
                for b, (s, e) in enumerate(group):
                    targets = torch.tensor(full[s:e], device=dev)
                    tp = p[b, torch.arange(s - 1, e - 1, device=dev), targets]
                    probs.append(float(torch.exp(torch.log(tp).mean())))
            out.append(probs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", choices=["smollm2-135m-instruct", "tiny-random"]
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--token-budget", type=int, default=None, help="default: the scorer's for the device"
    )
    parser.add_argument("--group", type=int, default=25, help="samples per interleaved group")
    parser.add_argument(
        "--authors-every", type=int, default=5, help="authors' procedure on every k-th sample"
    )
    parser.add_argument(
        "--scale", action="store_true", help="local backend vs Ray with --workers workers"
    )
    parser.add_argument("--workers", default="1,2", help="Ray worker counts for --scale")
    parser.add_argument("--small", type=int, default=8, help="subset for the fixed cost (--scale)")
    args = parser.parse_args()
    if args.scale:
        scale(args)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, tok = load_model(args.model, device="cpu")
    if args.token_budget is None:
        args.token_budget = default_token_budget(model)  # the scorer's and the bare forward's
    samples = gsm_samples(args.n, args.seed)
    encoded = [encode(tok, row) for _, row in samples.iterrows()]
    n_tokens = sum(len(ids) for ids, _ in encoded)
    n_actions = [len(sp) for _, sp in encoded]
    print(
        f"model={args.model} n={args.n} tokens={n_tokens} "
        f"mean_len={n_tokens / args.n:.1f} actions/sample={np.mean(n_actions):.2f} "
        f"(min {min(n_actions)}, max {max(n_actions)}) threads={args.threads} "
        f"token_budget={args.token_budget} cpus={os.cpu_count()} "
        f"loadavg={os.getloadavg()[0]:.2f}"
    )

    run_scorer(model, tok, samples.iloc[:8], args.token_budget)  # warm-up
    run_bare(model, tok, encoded[:8], args.token_budget)
    # Phases alternate group by group so that all three see the same load on a shared machine.
    secs = {"scorer": 0.0, "bare": 0.0, "authors": 0.0}
    cpu = {"scorer": 0.0, "bare": 0.0, "authors": 0.0}  # process CPU seconds: robust to other users
    toks = {"scorer": 0, "bare": 0, "authors": 0}
    peak = {"scorer": 0.0, "bare": 0.0, "authors": 0.0}
    parts, ours, theirs = [], [], []
    for g0 in range(0, args.n, args.group):
        idx = list(range(g0, min(g0 + args.group, args.n)))
        sub = [i for i in idx if i % args.authors_every == 0]
        group_tokens = sum(len(encoded[i][0]) for i in idx)
        phases = [
            (
                "scorer",
                group_tokens,
                lambda idx=idx: run_scorer(model, tok, samples.iloc[idx], args.token_budget),
            ),
            (
                "bare",
                group_tokens,
                lambda idx=idx: run_bare(model, tok, [encoded[i] for i in idx], args.token_budget),
            ),
            (
                "authors",
                sum(len(encoded[i][0]) for i in sub),
                lambda sub=sub: run_authors(model, tok, [encoded[i] for i in sub]),
            ),
        ]
        for name, n_tok, fn in phases:
            with PeakRSS() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                result = fn()
                secs[name] += time.perf_counter() - t0
                cpu[name] += time.process_time() - c0
            toks[name] += n_tok
            peak[name] = max(peak[name], mem.mib)
            if name == "scorer":
                parts.append(result)
                scored = result.set_index("sample_id")["action_probs"]
            elif name == "authors":
                theirs.extend(np.concatenate(result).tolist())
                ours.extend(np.concatenate([scored[f"gsm{i}"] for i in sub]).tolist())
        print(
            f"  group {g0 // args.group + 1}: "
            + "  ".join(f"{k} {toks[k] / secs[k]:.1f} tok/s" for k in secs)
            + f"  loadavg {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    scores = pd.concat(parts)

    rate = {k: toks[k] / secs[k] for k in secs}
    cpu_rate = {k: toks[k] / cpu[k] for k in cpu}
    for name, label in [
        ("scorer", "(a) scorer"),
        ("bare", "(b) bare forward"),
        ("authors", "(c) authors' procedure"),
    ]:
        print(
            f"{label:24s} {rate[name]:8.1f} tokens/s  ({toks[name]} tokens in {secs[name]:.1f} s)  "
            f"{cpu_rate[name]:7.1f} tokens/CPU-s  peak RSS {peak[name]:5.0f} MiB"
        )
    for a, b, goal in [("scorer", "authors", 6), ("scorer", "bare", 0.9)]:
        print(
            f"{a} / {b:8s} = {rate[a] / rate[b]:.2f}x wall, "
            f"{cpu_rate[a] / cpu_rate[b]:.2f}x CPU time  (goal >= {goal})"
        )
    print(
        f"max |action prob scorer - authors| = {np.max(np.abs(np.array(ours) - theirs)):.2e} "
        f"over {len(ours)} actions; statuses {scores['status'].value_counts().to_dict()}"
    )
    print(f"loadavg at end {os.getloadavg()[0]:.2f}")


def scale(args) -> None:
    """tokens/s of the local backend and of Ray with each worker count, on the same samples."""
    from p3_pruning.distributed.ray_engine import load_policy, ray_cluster, score_on_ray

    torch.set_num_threads(args.threads)
    model_params = {"name_or_path": args.model, "device": "cpu"}
    samples = gsm_samples(args.n, args.seed)
    small = samples.iloc[: args.small]
    options = {"token_budget": args.token_budget, "progress": False}
    model, tok = load_policy(model_params)
    print(
        f"model={args.model} n={args.n} small={args.small} threads={args.threads} "
        f"cpus={os.cpu_count()} loadavg={os.getloadavg()[0]:.2f}"
    )

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    score_samples(model, tok, small, **options)  # warm-up
    t_small, _ = timed(lambda: score_samples(model, tok, small, **options))
    t_full, (local, _) = timed(lambda: score_samples(model, tok, samples, **options))
    tokens = int(local["n_tokens"].sum())
    rows = [("local", t_small, t_full, 0.0)]
    t0 = time.perf_counter()
    with ray_cluster({"num_cpus": os.cpu_count()}):
        start_s = time.perf_counter() - t0
        for workers in [int(w) for w in args.workers.split(",")]:
            cfg = {
                "num_workers": workers,
                "threads_per_worker": max(1, args.threads // workers),
                "batch_rows": max(1, -(-args.n // (4 * workers))),  # ~4 blocks per worker
            }

            def run(frame, cfg=cfg):
                return score_on_ray(model_params, None, frame, ray=cfg, **options)

            t_s, _ = timed(lambda run=run: run(small))
            t_f, (scores, _) = timed(lambda run=run: run(samples))
            ok = np.isfinite(local["difficulty"].to_numpy())
            delta = np.max(np.abs(scores["difficulty"].to_numpy()[ok] - local["difficulty"][ok]))
            rows.append((f"ray {workers} worker(s)", t_s, t_f, float(delta)))
            print(f"  ray {workers} worker(s) done, loadavg {os.getloadavg()[0]:.2f}", flush=True)
    print(f"local Ray cluster start-up {start_s:.1f} s (once per process, not in the rows below)")
    print(
        f"{'backend':20s} {'tokens/s':>9s} {'seconds':>8s} {'vs local':>9s} "
        f"{'fixed s/call':>12s} {'overhead ms/sample':>18s} {'max |d diff|':>12s}"
    )
    local_marginal = (t_full - t_small) / (args.n - args.small)
    for name, t_s, t_f, delta in rows:
        marginal = (t_f - t_s) / (args.n - args.small)
        fixed = t_s - args.small * marginal
        print(
            f"{name:20s} {tokens / t_f:9.1f} {t_f:8.1f} {t_full / t_f:8.2f}x "
            f"{fixed:12.1f} {1000 * (marginal - local_marginal):18.1f} {delta:12.1e}"
        )
    print(f"tokens={tokens} loadavg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
