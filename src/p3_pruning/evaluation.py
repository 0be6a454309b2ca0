"""Evaluation: batched greedy generation + graders (accuracy tables), and cheap forward-only metrics.

Kedro-free.
- ``generate(model, tokenizer, samples) -> list[str]``: greedy (own KV-cache loop that drops finished
  rows from the batch), chat template, left padding, stops at eos or
  once a complete final-answer line is written.
- ``evaluate_generation(model, tokenizer, samples) -> (per_sample, summary)``.
- ``cheap_eval(model, tokenizer, samples) -> dict``: response NLL / perplexity and mean P3 difficulty.
- ``grade(source, response, sample) -> float``: see ``p3_pruning.graders``.
"""

from __future__ import annotations

import inspect
import logging
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from p3_pruning.chat import DEFAULT_SYSTEM, prompt_text
from p3_pruning.graders import (  # noqa: F401 (public)
    Grade,
    answer_end,
    apps_strict,
    grade,
    grade_detail,
    make_grader,
)
from p3_pruning.training import MAX_LENGTH

log = logging.getLogger(__name__)

# Library defaults, equal to conf/base's (tests/test_defaults.py keeps them so); a Kedro run passes
# its own. Generation: the default task's solutions take ~80 tokens, GSM8K / MATH ones ~250 (conf/gpu
# sets 320); finished rows leave the batch, so a large batch costs what its rows need. NLL:
# sequences are cut where training cuts them.
MAX_NEW_TOKENS = 128
GENERATION_BATCH = 64
NLL_BATCH = 8


def _progress(iterable, *, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------


def answer_complete(tokenizer, new_ids: list[int]) -> bool:
    """Whether the generated ids ``new_ids`` hold a complete final answer. Only their last token is
    decoded unless it holds a newline or a closing brace (the only tokens that can complete one)."""
    if not new_ids:
        return False
    piece = tokenizer.decode(new_ids[-1:])
    if "\n" not in piece and "}" not in piece:
        return False
    return answer_end(tokenizer.decode(new_ids, skip_special_tokens=True)) is not None


def _accepts(model, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic forward
        return False


@torch.inference_mode()
def greedy_decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    stop=None,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch with a KV cache; returns each row's new token ids
    (without the eos that ended it).

    A row ends at ``eos_token_id``, after ``max_new_tokens`` or once ``stop(row_new_ids)`` is true;
    finished rows leave the batch (their cache rows are dropped), so a batch costs what its rows
    need, not ``batch × longest row``. Same tokens as ``model.generate`` with greedy search.
    """
    batch = input_ids.shape[0]
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    kwargs = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    with_positions = _accepts(model, "position_ids")
    cache_arg = "cache" if _accepts(model, "cache") else "past_key_values"  # renamed in v5
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        use_cache=True,
        **({"position_ids": position_ids} if with_positions else {}),
        **kwargs,
    )
    cache = out.get("cache", out.get("past_key_values"))
    can_prune = hasattr(cache, "batch_select_indices")
    new: list[list[int]] = [[] for _ in range(batch)]
    rows = list(range(batch))  # batch row -> sample row
    live = [True] * batch
    last = position_ids[:, -1]
    mask = attention_mask
    while True:
        token = out.logits[:, -1].argmax(-1)
        for j, t in enumerate(token.tolist()):
            if not live[j]:
                continue
            if t == eos_token_id:
                live[j] = False
                continue
            ids = new[rows[j]]
            ids.append(t)
            if len(ids) >= max_new_tokens or (stop is not None and stop(ids)):
                live[j] = False
        if not any(live):
            return new
        if can_prune and not all(live):
            keep = [j for j, alive in enumerate(live) if alive]
            index = torch.tensor(keep, device=input_ids.device)
            cache.batch_select_indices(index)
            token, last, mask = token[index], last[index], mask[index]
            rows, live = [rows[j] for j in keep], [True] * len(keep)
        last = last + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            use_cache=True,
            **({"position_ids": last[:, None]} if with_positions else {}),
            **kwargs,
            **{cache_arg: cache},
        )


def merged_copy(model):
    """For inference: a ``PeftModel`` with its LoRA folded into a copy of the base weights (a plain HF
    model), else ``model`` itself. The caller's model is untouched; the copy costs one model of memory.
    benchmarks/bench_train_eval.py measures merged vs unmerged decoding."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return model
    if not isinstance(model, PeftModel) or getattr(
        model.get_base_model(), "is_loaded_in_4bit", False
    ):
        return model
    import copy

    return copy.deepcopy(model).merge_and_unload()


def _check_prompts(samples: pd.DataFrame, columns=("prompt",)) -> None:
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise ValueError(
            f"samples table is missing column(s) {missing}; has {list(samples.columns)}"
        )


def generate(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = GENERATION_BATCH,
    system: str | None = DEFAULT_SYSTEM,
    stop_at_answer: bool = True,
    merge_lora: bool = False,
    progress: bool = True,
) -> list[str]:
    """Greedy responses to ``samples["prompt"]``, in row order.

    Prompts are chat-formatted by ``chat.prompt_text``, sorted by length and left-padded in batches of
    ``batch_size``. A row stops at eos, after ``max_new_tokens``, or (``stop_at_answer``) once its final
    answer line is complete; the text is cut right after that answer. ``merge_lora``: decode a
    ``PeftModel`` through a merged copy (see :func:`merged_copy`).
    """
    _check_prompts(samples)
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens and batch_size must be ≥ 1, got {max_new_tokens}, {batch_size}"
        )
    if len(samples) == 0:
        return []
    texts = [prompt_text(tokenizer, p, system=system) for p in samples["prompt"]]
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    device = _model_device(model)
    stop = (lambda ids: answer_complete(tokenizer, ids)) if stop_at_answer else None
    out: list[str | None] = [None] * len(texts)
    caller = model
    if merge_lora:
        model = merged_copy(model)
    padding_side, was_training = tokenizer.padding_side, caller.training
    tokenizer.padding_side = "left"
    model.eval()
    try:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in _progress(batches, enabled=progress, desc="generate", unit="batch"):
            enc = tokenizer(
                [texts[i] for i in batch],
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            ).to(device)
            new_ids = greedy_decode(
                model,
                enc["input_ids"],
                enc["attention_mask"],
                max_new_tokens=max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                stop=stop,
            )
            for ids, i in zip(new_ids, batch, strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                if stop_at_answer:
                    end = answer_end(text)
                    text = text[:end] if end is not None else text
                out[i] = text.strip()
    finally:
        tokenizer.padding_side = padding_side
        caller.train(was_training)
    return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# Accuracy tables
# ----------------------------------------------------------------------------------------------
def _column(samples: pd.DataFrame, name: str) -> list:
    return list(samples[name]) if name in samples.columns else [None] * len(samples)


def accuracy_table(per_sample: pd.DataFrame) -> pd.DataFrame:
    """Accuracy overall, per source, per level and per (source, level).

    per_sample: columns ``source``, ``level``, ``score``, ``correct``. Returns columns ``scope``
    (all / source / level / source_level), ``source``, ``level``, ``n``, ``accuracy`` (mean of correct),
    ``mean_score`` (mean score; APPS test-case accuracy), ``stderr`` (binomial standard error of accuracy),
    and the means of ``nll`` and ``difficulty`` (finite values) when per_sample has them.
    """
    frame = per_sample.assign(
        level=per_sample["level"].astype("object").where(per_sample["level"].notna(), None)
    )
    rows = []
    extra = [c for c in ("nll", "difficulty") if c in frame.columns]

    def add(scope, source, level, part):
        n = len(part)
        acc = float(part["correct"].astype(float).mean()) if n else float("nan")
        rows.append(
            {
                "scope": scope,
                "source": source,
                "level": level,
                "n": n,
                "accuracy": acc,
                "mean_score": float(part["score"].mean()) if n else float("nan"),
                "stderr": math.sqrt(acc * (1 - acc) / n) if n else float("nan"),
                **{c: _finite_mean(part[c]) for c in extra},
            }
        )

    add("all", None, None, frame)
    for source, part in frame.groupby("source", sort=True):
        add("source", source, None, part)
    with_level = frame[frame["level"].notna()]
    for level, part in with_level.groupby("level", sort=True):
        add("level", None, level, part)
    for (source, level), part in with_level.groupby(["source", "level"], sort=True):
        add("source_level", source, level, part)
    return pd.DataFrame(
        rows, columns=["scope", "source", "level", "n", "accuracy", "mean_score", "stderr", *extra]
    )


def _finite_mean(values: pd.Series) -> float:
    x = values.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def evaluate_generation(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = GENERATION_BATCH,
    system: str | None = DEFAULT_SYSTEM,
    stop_at_answer: bool = True,
    merge_lora: bool = False,
    grade_options: dict | None = None,
    grader: str | dict | None = None,
    scoring_options: dict | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate for every sample, grade it, and tabulate.

    Returns ``per_sample`` (sample_id, source, level, response, extracted, score, correct) in the input's
    row order and ``summary`` (see :func:`accuracy_table`). ``grade_options`` reach the APPS sandbox.
    ``grader`` grades generic sources (``graders.make_grader``: a name or ``{"name": ..., "pattern": ...}``
    with name ``auto`` (default), ``exact``, ``numeric``, ``math``, ``regex`` or ``none``); GSM8K, MATH,
    reasoning-gym and APPS keep their own graders. ``none`` generates nothing: ``response``/``extracted``
    are null, ``score``/``correct`` NaN, and per_sample gets ``nll`` (mean per response token) and
    ``difficulty`` (P3 difficulty, ``scoring_options`` reach ``score_samples``) instead.
    """
    _check_prompts(samples, ("sample_id", "source", "prompt"))
    grade_fn = make_grader(grader)
    if grade_fn is None:
        return _ungraded(model, tokenizer, samples, system, scoring_options, progress)
    responses = generate(
        model,
        tokenizer,
        samples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        system=system,
        stop_at_answer=stop_at_answer,
        merge_lora=merge_lora,
        progress=progress,
    )
    grades: list[Grade] = []
    records = samples.to_dict("records")
    for record, response in zip(
        _progress(records, enabled=progress and len(records) > 50, desc="grade"),
        responses,
        strict=True,
    ):
        grades.append(
            grade_detail(
                record["source"], response, record, grader=grade_fn, **(grade_options or {})
            )
        )
    per_sample = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].astype(str).to_list(),
            "source": samples["source"].astype(str).to_list(),
            "level": _column(samples, "level"),
            "response": responses,
            "extracted": [g.extracted for g in grades],
            "score": [float(g.score) for g in grades],
            "correct": [bool(g.correct) for g in grades],
        }
    )
    return per_sample, accuracy_table(per_sample)


def _ungraded(model, tokenizer, samples, system, scoring_options, progress):
    """``evaluate_generation`` with grader ``none``: NLL and difficulty per sample, no generation."""
    from p3_pruning.scoring import score_samples

    nll_sum, n_tokens = response_nll(model, tokenizer, samples, system=system, progress=progress)
    options = {"system": system, "progress": progress, **(scoring_options or {})}
    scores, _ = score_samples(model, tokenizer, samples, **options)
    n = len(samples)
    per_sample = pd.DataFrame(
        {
            "sample_id": samples["sample_id"].astype(str).to_list(),
            "source": samples["source"].astype(str).to_list(),
            "level": _column(samples, "level"),
            "response": [None] * n,
            "extracted": [None] * n,
            "score": np.full(n, np.nan),
            "correct": np.full(n, np.nan),
            "nll": nll_sum / np.maximum(n_tokens, 1),
            "difficulty": scores["difficulty"].to_numpy(dtype=float),
        }
    )
    return per_sample, accuracy_table(per_sample)


# ----------------------------------------------------------------------------------------------
# Cheap per-round metrics
# ----------------------------------------------------------------------------------------------
def response_nll(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    batch_size: int = NLL_BATCH,
    max_length: int = MAX_LENGTH,
    system: str | None = DEFAULT_SYSTEM,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced NLL summed over each sample's response tokens (end-of-turn included).

    Returns ``(nll_sum, n_tokens)``: (n,) float64 and (n,) int64, in row order. Forward only, batched by
    length; the cross-entropy is taken at response positions only (no B×T×V log-softmax kept).
    """
    nll_sum, n_tokens, _ = _nll_pass(
        model,
        tokenizer,
        samples,
        batch_size=batch_size,
        max_length=max_length,
        system=system,
        progress=progress,
    )
    return nll_sum, n_tokens


def _nll_pass(
    model, tokenizer, samples, *, batch_size, max_length, system, progress
) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`response_nll`'s pass, plus the tokens the model read (prompt included, no padding)."""
    from p3_pruning.training import IGNORE_INDEX, PadCollator, build_features

    features = build_features(
        tokenizer, samples, max_length=max_length, loss_on="response", system=system
    )
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
    collate = PadCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    device = _model_device(model)
    nll_sum = np.zeros(len(features), dtype=np.float64)
    n_tokens = np.zeros(len(features), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for batch in _progress(batches, enabled=progress, desc="nll", unit="batch"):
            enc = collate([features[i] for i in batch])
            with torch.inference_mode():
                logits = model(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                ).logits
            targets = enc["labels"][:, 1:].to(device)
            mask = targets != IGNORE_INDEX
            token_nll = F.cross_entropy(
                logits[:, :-1][mask].float(), targets[mask], reduction="none"
            )
            rows = mask.nonzero()[:, 0]
            per_row = torch.zeros(len(batch), dtype=torch.float64, device=device)
            per_row.index_add_(0, rows, token_nll.double())
            nll_sum[batch] = per_row.cpu().numpy()
            n_tokens[batch] = mask.sum(dim=1).cpu().numpy()
    finally:
        model.train(was_training)
    return nll_sum, n_tokens, int(sum(len(f["input_ids"]) for f in features))


def cheap_eval(
    model,
    tokenizer,
    samples: pd.DataFrame,
    *,
    batch_size: int = NLL_BATCH,
    max_length: int = MAX_LENGTH,
    system: str | None = DEFAULT_SYSTEM,
    difficulty: bool = True,
    scoring_options: dict | None = None,
    progress: bool = True,
) -> dict:
    """Forward-only metrics of the current model (base + adapter) on the eval set.

    Returns ``nll`` (mean NLL per response token), ``perplexity`` (exp of it), ``n_samples``,
    ``n_tokens`` (response tokens), ``n_input_tokens`` (every token the NLL pass read, prompt
    included) and, when ``difficulty``, ``difficulty`` (mean finite P3 difficulty from
    ``scoring.score_samples``), ``difficulty_median`` and ``n_failed`` (samples scored +inf).
    A non-finite NLL over a non-empty eval set raises ``ValueError`` (broken weights, not a metric).
    """
    nll_sum, n_tokens, n_input = _nll_pass(
        model,
        tokenizer,
        samples,
        batch_size=batch_size,
        max_length=max_length,
        system=system,
        progress=progress,
    )
    total = int(n_tokens.sum())
    nll = float(nll_sum.sum() / total) if total else float("nan")
    if total and not math.isfinite(nll):
        bad = np.flatnonzero(~np.isfinite(np.asarray(nll_sum, dtype=np.float64)))
        ids = samples["sample_id"] if "sample_id" in samples.columns else samples.index
        raise ValueError(
            f"cheap_eval: the held-out NLL is {nll} ({len(bad)} of {len(samples)} samples non-finite, "
            f"e.g. {[str(ids.iloc[i]) for i in bad[:3]]}): the model's weights are broken (a "
            "diverged adapter?); refusing to record it as a metric"
        )
    metrics = {
        "nll": nll,
        "perplexity": float(math.exp(nll)) if total else float("nan"),
        "n_samples": int(len(samples)),
        "n_tokens": total,
        "n_input_tokens": n_input,  # read by the NLL pass (prompt included): compute accounting
    }
    if difficulty:
        from p3_pruning.scoring import score_samples

        options = {"system": system, "progress": progress, **(scoring_options or {})}
        scores, _ = score_samples(model, tokenizer, samples, **options)
        d = np.asarray(scores["difficulty"], dtype=np.float64)
        finite = d[np.isfinite(d)]
        metrics["difficulty"] = float(finite.mean()) if finite.size else float("nan")
        metrics["difficulty_median"] = float(np.median(finite)) if finite.size else float("nan")
        metrics["n_failed"] = int((~np.isfinite(d)).sum())
        metrics["score_tokens"] = int(scores["n_tokens"].sum())  # read by the difficulty pass
    return metrics
