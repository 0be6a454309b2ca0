"""The GPU check in one prepared call: the device agrees with the CPU, and what every stage achieves.

It runs where there is no hub, no package index and no Kedro, MLflow, reasoning-gym or math-verify:
it imports only the core library (``p3_pruning.models``, ``scoring``, ``encoding``, ``training``,
``evaluation``, ``dpp``, ``compute``) and fails at once, naming them, if any of those packages gets
loaded. What it needs from them is written beforehand by ``--prepare`` on a machine that has them:
the SmolLM2 tokenizer (a 3.4 MB ``tokenizer.json`` folder instead of the 93 MB GGUF) and a samples
file from ``p3_pruning.data.generate_default``. ``benchmarks/device_check.sh`` prepares and runs it.

One markdown table, three groups of rows:

1. ``device = CPU``, on the same inputs. The tiny model of the tests (``load_model("tiny-random")``,
   a 2-layer Llama, random weights) runs on the CPU and, as a copy, on the device: the scorer's action
   probabilities and difficulties in fp32 and in bf16 (the device's production setting: bf16 weights
   and autocast); ``greedy_map`` picks, exact and stochastic (in --cpu mode the "device" side runs
   the torch code path CUDA takes instead of numpy); the loss of one LoRA training step
   (``train_round`` trains under bf16 autocast on CUDA); greedy tokens in fp32 (``evaluation.greedy_decode``). A
   random model's probabilities sit near 1/|V|, so they are compared on the log scale and the
   difficulties d through 1 − d (the mean action probability) relatively: small numbers still
   differ visibly there. TF32 is off (``torch.set_float32_matmul_precision("highest")``).
2. ``throughput``, randomly initialised weights of a real architecture (``--config``, by default
   ``benchmarks/configs/qwen2.5-1.5b.json``) with the SmolLM2 tokenizer (its ids are valid rows of
   the larger vocabulary): the scorer at each ``--budgets`` token budget, then at the best one a bare
   batched forward and the authors' one-forward-per-action procedure (``run_bare``/``run_authors``
   of ``bench_scoring.py``) on the same token ids; LoRA training (``train_round``); generation
   (``evaluation.generate``, no stop at the answer line: random weights never write one; its tokens
   counted exactly as the forward calls read and predict them). Output rows past the tokenizer's
   vocabulary are zeroed (they still cost their matmul), so greedy decoding only picks ids the
   tokenizer can decode. Each stage's tokens/s, its MFU = FLOPs as ``p3_pruning.compute.stage_flops`` counts them / (seconds ×
   peak), the peak being a large matmul in the model's dtype timed in the same run, and its peak
   device memory (``torch.cuda.max_memory_allocated``; NaN on the CPU).
3. ``dpp``: ``greedy_map`` on the device at n = 1M unit-norm float32 rows, d = the model's hidden
   size, k = 10k: exact and stochastic (δ = 0.01) seconds and peak memory.

``--cpu``: the device is the CPU again and every size is tiny (the config shrinks to 2 layers of 64,
same architecture), so the script runs end to end in about a minute on 2 cores; the fp32
scorer, generation and training comparisons are then equal by construction; the bf16 ones and
``greedy_map``'s (two code paths) are not. This is what CI runs
(tests/test_device_check.py). Exit status 1 when a comparison fails or a stage raises (its row says
which and why); the other stages still run.

    python benchmarks/bench_gpu.py --prepare --payload benchmarks/device_payload
    PYTHONPATH=src python benchmarks/bench_gpu.py --payload benchmarks/device_payload [--cpu]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench_dpp import unit_features
from bench_scoring import run_authors, run_bare
from p3_pruning.chat import prompt_text
from p3_pruning.compute import count_parameters, stage_flops
from p3_pruning.dpp import DEFAULT_RIDGE, exact_greedy, greedy_map
from p3_pruning.dpp import stochastic as dpp_stochastic
from p3_pruning.dpp.kernel import Kernel
from p3_pruning.encoding import encode
from p3_pruning.evaluation import generate, greedy_decode
from p3_pruning.models import TINY, load_model, pick_dtype
from p3_pruning.scoring import default_token_budget, score_samples
from p3_pruning.training import train_round

# Packages the device machine does not have: the core library must run without them.
FORBIDDEN = ("kedro", "kedro_datasets", "kedro_mlflow", "mlflow", "reasoning_gym", "math_verify")
CONFIG = Path(__file__).resolve().parent / "configs" / "qwen2.5-1.5b.json"
SAMPLES_FILE = "samples.parquet"
GIB = 1024**3

# Sizes on a GPU (H100: about 3 minutes in all, see device_check.sh) and in --cpu mode.
SIZES = {
    "gpu": dict(
        compare_n=64,
        gen_check="16,32",
        dpp_check="100000,128,1000",
        score_n=4096,
        budgets="4096,8192,16384,32768",
        authors_n=48,
        train_n=1024,
        train_batch=16,
        gen_n=128,
        gen_batch=64,
        gen_new=128,
        dpp="1000000,0,10000",
        matmul=8192,
    ),
    "cpu": dict(
        compare_n=12,
        gen_check="4,16",
        dpp_check="4000,32,200",
        score_n=16,
        budgets="1024,2048",
        authors_n=3,
        train_n=8,
        train_batch=4,
        gen_n=4,
        gen_batch=4,
        gen_new=8,
        dpp="20000,0,500",
        matmul=1024,
    ),
}
# --cpu: the same architecture as --config, small enough for seconds on 2 cores.
TINY_OVERRIDES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
# device = CPU criteria. fp32: what the one-pass scorer meets against the per-action reference in
# tests/test_scoring_reference.py (|Δ log p| ≤ 1e-4; 1 − d is a mean of p, so the same bound holds
# relatively). bf16 (8-bit mantissa, relative rounding 2^-8 = 0.4 %): a few of those per logit move
# a token's log-probability by a few hundredths.
TOL = {
    "fp32": {"logp": 1e-4, "mean_p": 1e-4},
    "bf16": {"logp": 0.05, "mean_p": 0.05},
    "loss": {"cuda": 2e-2, "cpu": 1e-6},  # relative; CUDA trains under bf16 autocast
    "log_det": 1e-9,  # relative, exact greedy_map
}


@dataclass
class Row:
    group: str
    check: str
    result: str
    criterion: str = ""
    ok: bool | None = None


def markdown(row: Row) -> str:
    mark = {True: "yes", False: "NO", None: ""}
    cells = [row.group, row.check, row.result, row.criterion, mark[row.ok]]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


class Report:
    """The table's rows. Each is printed to stdout the moment it is added (after ``HEADER``), so
    stdout is the one table, and a run cut short by a time limit still leaves every finished row.
    Progress, timings and warnings go to stderr."""

    HEADER = "| group | check | result | criterion | pass |\n| --- | --- | --- | --- | --- |"

    def __init__(self):
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(markdown(row), flush=True)

    def stage(self, group: str, name: str, fn) -> None:
        """Run ``fn()`` (it adds rows); if it raises, one failed row says why and the next runs."""
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - one failing stage must not hide the others
            traceback.print_exc()
            self.add(Row(group, name, f"error: {type(exc).__name__}: {exc}"[:300], ok=False))
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", file=sys.stderr, flush=True)

    def table(self) -> str:
        return "\n".join([self.HEADER, *map(markdown, self.rows)])

    @property
    def failed(self) -> bool:
        return any(r.ok is False for r in self.rows)


def forbidden_loaded() -> list[str]:
    """Top-level packages of ``FORBIDDEN`` that this process has imported."""
    return sorted({name.split(".")[0] for name in sys.modules} & set(FORBIDDEN))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    """``(seconds, fn())`` with the device's queue drained on both sides."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class PeakMemory:
    """Peak device memory allocated by torch inside the block, in GiB (NaN off CUDA)."""

    def __init__(self, device: torch.device):
        self.device, self.gib = device, math.nan

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.gib = torch.cuda.max_memory_allocated(self.device) / GIB


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, reps: int = 10) -> float:
    """FLOP/s of a ``size``³ matmul in ``dtype`` on ``device``: the peak MFU is measured against."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=g)
    a @ b  # warm-up: kernel choice, clocks
    seconds, _ = timed(device, lambda: [a @ b for _ in range(reps)])
    return 2.0 * size**3 * reps / seconds


# ----------------------------------------------------------------------------------------------
# Payload (written here, read on the device)
# ----------------------------------------------------------------------------------------------


def prepare(payload: Path, n: int, seed: int) -> None:
    """Write the tokenizer folder and ``n`` default-task samples into ``payload``."""
    from p3_pruning.data import generate_default
    from p3_pruning.models import smollm2_tokenizer

    payload.mkdir(parents=True, exist_ok=True)
    smollm2_tokenizer(payload)  # <payload>/smollm2-135m-instruct-tokenizer, where load_model looks
    samples = generate_default(n, seed)[["sample_id", "prompt", "response"]]
    samples.to_parquet(payload / SAMPLES_FILE, index=False)
    size = sum(f.stat().st_size for f in payload.rglob("*") if f.is_file())
    (payload / "manifest.json").write_text(json.dumps({"samples": n, "seed": seed, "bytes": size}))
    print(f"payload {payload}: tokenizer + {n} samples, {size / 2**20:.1f} MiB")


def load_payload(payload: Path):
    """``(tokenizer, samples)`` from a prepared payload, with a clear error when it is missing."""
    manifest = payload / "manifest.json"
    if not manifest.is_file():
        raise SystemExit(
            f"no payload at {payload} (no manifest.json): run `bash benchmarks/device_check.sh "
            "prepare` on a machine with the project installed, and carry the folder"
        )
    tokenizer = load_model(TINY, device="cpu", cache_dir=payload)[1]
    return tokenizer, pd.read_parquet(payload / SAMPLES_FILE)


def take(samples: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows: the samples in order, cycled when there are fewer (repeats get new ids)."""
    reps = -(-n // len(samples))
    out = pd.concat([samples] * reps, ignore_index=True).iloc[:n].copy()
    rounds = np.arange(len(out)) // len(samples)
    out["sample_id"] = [
        f"{s}#{r}" if r else s for s, r in zip(out["sample_id"], rounds, strict=True)
    ]
    return out


# ----------------------------------------------------------------------------------------------
# 1. device = CPU
# ----------------------------------------------------------------------------------------------
G_SAME = "device = CPU"


def compare_scorer(report, cpu_model, device, tokenizer, samples) -> None:
    budget = 2048  # the same batches on both sides
    ref, _ = score_samples(
        cpu_model, tokenizer, samples, token_budget=budget, autocast=False, progress=False
    )
    ref_logp = np.log(np.concatenate(ref["action_probs"].to_list()))
    for label, dtype, autocast in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, True)):
        model = copy.deepcopy(cpu_model).to(device=device, dtype=dtype)
        got, _ = score_samples(
            model, tokenizer, samples, token_budget=budget, autocast=autocast, progress=False
        )
        del model
        same_status = got["status"].tolist() == ref["status"].tolist()
        logp = np.log(np.concatenate(got["action_probs"].to_list()))
        if not same_status or logp.shape != ref_logp.shape:
            report.add(Row(G_SAME, f"scorer {label}", "statuses or action counts differ", ok=False))
            continue
        d_logp = float(np.max(np.abs(logp - ref_logp)))
        ref_p, got_p = 1.0 - ref["difficulty"].to_numpy(), 1.0 - got["difficulty"].to_numpy()
        d_mean = float(np.max(np.abs(got_p - ref_p) / ref_p))
        tol = TOL[label]
        report.add(
            Row(
                G_SAME,
                f"scorer {label}: action probabilities",
                f"max abs diff of log p {d_logp:.1e} over {len(logp)} actions "
                f"(log p from {ref_logp.min():.2f} to {ref_logp.max():.2f})",
                f"<= {tol['logp']:g}",
                d_logp <= tol["logp"],
            )
        )
        report.add(
            Row(
                G_SAME,
                f"scorer {label}: difficulties",
                f"max rel. diff of 1 - d {d_mean:.1e} over {len(ref)} samples "
                f"(1 - d from {ref_p.min():.1e} to {ref_p.max():.1e})",
                f"<= {tol['mean_p']:g}",
                d_mean <= tol["mean_p"],
            )
        )


def device_greedy_map(features, quality, k: int, device, mode: str, seed: int):
    """``greedy_map`` on ``device``; on the CPU, through the torch code path CUDA takes (the CPU
    default is numpy), so that the CPU rehearsal compares two different code paths too."""
    if device.type != "cpu":
        return greedy_map(features, quality, k, device=device, mode=mode, seed=seed)
    kernel = Kernel.build(
        torch.as_tensor(features), quality, ridge=DEFAULT_RIDGE, numpy_on_cpu=False
    )
    if mode == "exact":
        picks, log_det, _ = exact_greedy(kernel, k)
    else:
        size = dpp_stochastic.sample_size(len(features), k, 0.01)
        picks, log_det, _ = dpp_stochastic.stochastic_greedy(kernel, k, size=size, seed=seed)
    return np.asarray(picks, dtype=np.int64), log_det


def compare_dpp(report, device, n: int, d: int, k: int, seed: int) -> None:
    features = unit_features(n, d, seed).numpy()
    quality = np.random.default_rng(seed).uniform(0.2, 1.0, n)
    path = "" if device.type != "cpu" else " (torch path)"
    for mode in ("exact", "stochastic"):
        cpu_picks, cpu_ld = greedy_map(features, quality, k, device="cpu", mode=mode, seed=seed)
        dev_picks, dev_ld = device_greedy_map(features, quality, k, device, mode, seed)
        same = np.array_equal(cpu_picks, dev_picks)
        m = min(len(cpu_picks), len(dev_picks))
        diverge = int(np.argmax(cpu_picks[:m] != dev_picks[:m])) if not same and m else m
        rel = abs(dev_ld - cpu_ld) / max(abs(cpu_ld), 1e-300)
        where = "identical" if same else f"differ from pick {diverge}"
        report.add(
            Row(
                G_SAME,
                f"greedy_map {mode} picks{path}, n={n:,} d={d} k={k:,}",
                f"{len(dev_picks):,} picks {where}; log det rel. diff {rel:.1e}",
                f"identical; <= {TOL['log_det']:g}",
                same and rel <= TOL["log_det"],
            )
        )


def compare_train_step(report, device, tokenizer, samples, payload: Path) -> None:
    losses = {}
    for where in ("cpu", device):
        model, _ = load_model(TINY, device=where, dtype="float32", cache_dir=payload, seed=0)
        _, metrics = train_round(
            model,
            tokenizer,
            samples,
            batch_size=len(samples),
            lora={"dropout": 0.0},
            progress=False,
        )
        losses[str(where)] = (metrics["loss_curve"][0], metrics["steps"])
        del model
    (ref, ref_steps), (got, steps) = losses["cpu"], losses[str(device)]
    rel = abs(got - ref) / abs(ref)
    tol = TOL["loss"]["cuda" if device.type == "cuda" else "cpu"]
    report.add(
        Row(
            G_SAME,
            "LoRA training step: loss",
            f"{got:.5f} vs {ref:.5f} on the CPU, rel. diff {rel:.1e} ({len(samples)} samples, "
            f"{steps} step)",
            f"rel. <= {tol:g}" + (" (bf16 autocast)" if device.type == "cuda" else ""),
            rel <= tol and steps == ref_steps == 1,
        )
    )


def compare_generation(report, cpu_model, device, tokenizer, samples, max_new: int) -> None:
    texts = [prompt_text(tokenizer, p) for p in samples["prompt"]]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = side
    out = []
    for model in (cpu_model, copy.deepcopy(cpu_model).to(device)):
        dev = next(model.parameters()).device
        out.append(
            greedy_decode(
                model,
                enc["input_ids"].to(dev),
                enc["attention_mask"].to(dev),
                max_new_tokens=max_new,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
    same = sum(a == b for a, b in zip(*out, strict=True))
    n_tokens = sum(map(len, out[0]))
    report.add(
        Row(
            G_SAME,
            "greedy generation fp32: tokens",
            f"{same} of {len(texts)} rows identical ({n_tokens} tokens on the CPU)",
            "every row identical",
            same == len(texts),
        )
    )


# ----------------------------------------------------------------------------------------------
# 2. throughput
# ----------------------------------------------------------------------------------------------
G_RATE = "throughput"


def build_model(config_path: Path, overrides: dict, tokenizer, device, dtype, seed: int = 0):
    """Random weights of ``config_path``'s architecture (with ``overrides``) on ``device``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_path)
    for key, value in overrides.items():
        setattr(config, key, value)
    if config.vocab_size < len(tokenizer):
        raise ValueError(
            f"{config_path}: vocab_size {config.vocab_size} < tokenizer's {len(tokenizer)}"
        )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to(device)  # a no-op when the device context above already placed every weight
    with torch.no_grad():  # ids the tokenizer cannot decode: logit 0, below the best real one
        model.get_output_embeddings().weight[len(tokenizer) :] = 0
    return model.eval(), config


class TokenCounter:
    """Tokens a generation reads (unpadded prompt tokens) and predicts (one per row per forward)."""

    def __init__(self, model):
        self.read = self.written = 0
        self.handle = model.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] > 1:  # the prefill
            self.read += int(kwargs["attention_mask"].sum())
        self.written += ids.shape[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


class Rates:
    """The throughput rows, one stage each (a stage that fails leaves the others to run), on one
    randomly initialised model and the same token ids."""

    def __init__(self, report: Report, args, device, tokenizer, samples, overrides: dict):
        self.report, self.args, self.device, self.tokenizer = report, args, device, tokenizer
        self.samples = samples
        dtype = pick_dtype(device)  # bf16 on CUDA, fp32 on the CPU: what load_model gives
        self.model, config = build_model(args.config, overrides, tokenizer, device, dtype)
        self.P = count_parameters(self.model)["matmul"]
        self.peak = matmul_peak(device, dtype, args.matmul)
        free(device)
        shrunk = " with " + ", ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else ""
        report.add(
            Row(
                G_RATE,
                "model and peak",
                f"{Path(args.config).name}{shrunk}: {config.model_type}, "
                f"{self.P / 1e6:,.1f} M matmul params, {dtype}; "
                f"peak {self.peak / 1e12:,.2f} TFLOP/s ({dtype} matmul {args.matmul}^3)",
            )
        )
        self.data = take(samples, args.score_n)
        self.encoded = [encode(tokenizer, row) for _, row in self.data.iterrows()]
        self.tokens = float(sum(len(ids) for ids, _ in self.encoded))
        self.best, self.rates = default_token_budget(self.model), {}

    def run(self) -> None:
        for name, stage in (
            ("scorer", self.scorer),
            ("bare forward and authors' procedure", self.references),
            ("LoRA training", self.training),
            ("generation", self.generation),
        ):
            self.report.stage(G_RATE, name, stage)
            free(self.device)

    def row(self, check, tokens, seconds, flops, mem, extra="") -> None:
        mfu = flops / (seconds * self.peak)
        result = (
            f"{tokens / seconds:,.0f} tok/s ({tokens:,.0f} tokens in {seconds:.2f} s), "
            f"MFU {mfu:.1%}, peak mem {mem:.2f} GiB"
        )
        self.report.add(Row(G_RATE, check, result + (f"; {extra}" if extra else "")))

    def scorer(self) -> None:
        model, tok, data = self.model, self.tokenizer, self.data
        budgets = [int(b) for b in self.args.budgets.split(",")]
        score_samples(model, tok, data.iloc[:8], token_budget=budgets[0], progress=False)  # warm-up
        flops = stage_flops("score", self.tokens, self.P)
        for budget in budgets:
            with PeakMemory(self.device) as mem:
                seconds, _ = timed(
                    self.device,
                    lambda b=budget: score_samples(
                        model, tok, data, token_budget=b, progress=False
                    ),
                )
            self.rates[budget] = self.tokens / seconds
            self.row(f"scorer, token_budget {budget}", self.tokens, seconds, flops, mem.gib)
        self.best = max(self.rates, key=self.rates.get)
        default = default_token_budget(model)
        vs_default = (
            f"{self.rates[self.best] / self.rates[default]:.2f}x the default budget {default}"
            if default in self.rates
            else f"the default {default} was not measured"
        )
        self.report.add(
            Row(
                G_RATE,
                "scorer, best token_budget",
                f"{self.best}: {self.rates[self.best]:,.0f} tok/s = {vs_default}",
            )
        )

    def versus(self, tokens: float, seconds: float) -> str:
        if self.best not in self.rates:
            return "no scorer rate to compare"
        return f"scorer = {self.rates[self.best] / (tokens / seconds):.2f}x this"

    def references(self) -> None:
        model, tok, encoded, best = self.model, self.tokenizer, self.encoded, self.best
        run_bare(model, tok, encoded[:8], best)  # warm-up
        with PeakMemory(self.device) as mem:
            seconds, _ = timed(self.device, lambda: run_bare(model, tok, encoded, best))
        flops = stage_flops("score", self.tokens, self.P)
        self.row(
            f"bare batched forward, token_budget {best}",
            self.tokens,
            seconds,
            flops,
            mem.gib,
            self.versus(self.tokens, seconds),
        )
        few = encoded[: self.args.authors_n]
        tokens = float(sum(len(ids) for ids, _ in few))
        with PeakMemory(self.device) as mem:
            seconds, _ = timed(self.device, lambda: run_authors(model, tok, few))
        self.row(
            f"authors' one forward per action ({len(few)} samples)",
            tokens,
            seconds,
            stage_flops("score", tokens, self.P),
            mem.gib,
            self.versus(tokens, seconds),
        )

    def training(self) -> None:
        args = self.args
        train_set = take(self.samples, args.train_n)
        with PeakMemory(self.device) as mem:
            adapter, metrics = train_round(
                self.model, self.tokenizer, train_set, batch_size=args.train_batch, progress=False
            )
        trainable = count_parameters(self.model, adapter)["trainable"]
        tokens = metrics["n_input_tokens"]
        self.row(
            f"LoRA training ({len(train_set)} samples, batch {args.train_batch}, "
            f"{metrics['steps']} steps)",
            tokens,
            metrics["seconds"],
            stage_flops("train", tokens, self.P, trainable),
            mem.gib,
            f"{trainable:,} LoRA params; seconds of Trainer.train",
        )

    def generation(self) -> None:
        args = self.args
        gen_set = take(self.samples, args.gen_n)
        with PeakMemory(self.device) as mem, TokenCounter(self.model) as counted:
            seconds, _ = timed(
                self.device,
                lambda: generate(
                    self.model,
                    self.tokenizer,
                    gen_set,
                    max_new_tokens=args.gen_new,
                    batch_size=args.gen_batch,
                    stop_at_answer=False,
                    progress=False,
                ),
            )
        tokens = counted.read + counted.written
        self.row(
            f"generation ({len(gen_set)} prompts, batch {args.gen_batch}, <= {args.gen_new} new)",
            tokens,
            seconds,
            stage_flops("generation", tokens, self.P),
            mem.gib,
            f"{counted.written / seconds:,.0f} new tok/s",
        )


# ----------------------------------------------------------------------------------------------
# 3. DPP at scale
# ----------------------------------------------------------------------------------------------
G_DPP = "dpp"


def dpp_at_scale(report, device, n: int, d: int, k: int, seed: int) -> None:
    g = torch.Generator(device=device).manual_seed(seed)
    features = torch.randn(n, d, device=device, generator=g)
    features /= features.norm(dim=1, keepdim=True)
    quality = 0.2 + 0.8 * torch.rand(n, device=device, generator=g, dtype=torch.float64)
    feature_gib = features.numel() * features.element_size() / GIB
    greedy_map(features[:4096], quality[:4096], 64, device=device, progress=False)  # warm-up
    exact = None
    for mode in ("exact", "stochastic"):
        with PeakMemory(device) as mem:
            seconds, (picks, log_det) = timed(
                device,
                lambda m=mode: greedy_map(
                    features, quality, k, device=device, mode=m, delta=0.01, progress=False
                ),
            )
        result = f"{seconds:.1f} s, {len(picks):,} picks, peak mem {mem.gib:.2f} GiB"
        if exact is None:
            exact = (seconds, log_det)
            result += f" (features {feature_gib:.2f} GiB)"
        else:
            result += (
                f"; exact / stochastic seconds = {exact[0] / seconds:.1f}x, "
                f"log det {(log_det - exact[1]) / abs(exact[1]):+.2%} vs exact"
            )
        report.add(Row(G_DPP, f"greedy_map {mode}, n={n:,} d={d} k={k:,}", result))


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payload", type=Path, default=Path("benchmarks/device_payload"))
    parser.add_argument("--prepare", action="store_true", help="write the payload and stop")
    parser.add_argument("--prepare-n", type=int, default=512, help="samples in the payload")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes, the device is the CPU")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --cpu)")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip", default="", help="comma-separated groups to leave out: same, rate, dpp"
    )
    for key, value in SIZES["gpu"].items():
        parser.add_argument(
            "--" + key.replace("_", "-"),
            type=type(value),
            default=None,
            help=f"GPU default {value}",
        )
    args = parser.parse_args(argv)
    for key, value in SIZES["cpu" if args.cpu else "gpu"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(args.payload, args.prepare_n, args.seed)
        return 0
    loaded = forbidden_loaded()
    if loaded:
        print(
            f"FAIL: importing the core library loaded {loaded}, absent on the device",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device or ("cpu" if args.cpu else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("FAIL: no CUDA device here; run with --cpu for the CPU rehearsal", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")  # no TF32: fp32 means fp32 on both sides
    import transformers

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({where or 'cpu'}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, python {platform.python_version()}\n",
        flush=True,
    )
    tokenizer, samples = load_payload(args.payload)
    report = Report()
    print(Report.HEADER, flush=True)
    start = time.perf_counter()
    try:
        run_all(report, args, device, tokenizer, samples)
    except KeyboardInterrupt:  # `timeout -s INT` in device_check.sh: keep what is done
        report.add(
            Row("run", "interrupted", "stopped by a time limit; later rows missing", ok=False)
        )
    loaded = forbidden_loaded()
    report.add(
        Row(
            "imports",
            "packages absent on the device",
            "none loaded" if not loaded else f"loaded: {', '.join(loaded)}",
            f"none of {', '.join(FORBIDDEN)}",
            not loaded,
        )
    )
    print(f"[wall {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.table() + "\n")
    return 1 if report.failed else 0


def run_all(report: Report, args, device, tokenizer, samples) -> None:
    """The three groups, each skippable with ``--skip``."""
    skip = set(filter(None, args.skip.split(",")))
    if "same" not in skip:
        compared = samples.iloc[: args.compare_n]
        cpu_model, _ = load_model(TINY, device="cpu", dtype="float32", cache_dir=args.payload)
        report.stage(
            G_SAME,
            "scorer",
            lambda: compare_scorer(report, cpu_model, device, tokenizer, compared),
        )
        rows, new = (int(x) for x in args.gen_check.split(","))
        report.stage(
            G_SAME,
            "generation",
            lambda: compare_generation(
                report, cpu_model, device, tokenizer, compared.iloc[:rows], new
            ),
        )
        n, d, k = (int(x) for x in args.dpp_check.split(","))
        report.stage(G_SAME, "greedy_map", lambda: compare_dpp(report, device, n, d, k, args.seed))
        report.stage(
            G_SAME,
            "training step",
            lambda: compare_train_step(
                report, device, tokenizer, compared.iloc[: args.train_batch], args.payload
            ),
        )
        free(device)
    from transformers import AutoConfig

    overrides = {**TINY_OVERRIDES, "vocab_size": len(tokenizer)} if args.cpu else {}
    if "rate" not in skip:
        report.stage(
            G_RATE,
            "throughput setup",
            lambda: Rates(report, args, device, tokenizer, samples, overrides).run(),
        )
        free(device)  # the model went with the stage
    if "dpp" not in skip:
        n, d, k = (int(x) for x in args.dpp.split(","))
        hidden = overrides.get("hidden_size") or AutoConfig.from_pretrained(args.config).hidden_size
        d = d or int(hidden)
        report.stage(
            G_DPP,
            "greedy_map at scale",
            lambda: dpp_at_scale(report, device, n, d, k, args.seed),
        )
        free(device)


if __name__ == "__main__":
    sys.exit(main())
