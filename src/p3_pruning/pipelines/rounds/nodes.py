"""Nodes of one round. Each adapts catalog entries and parameters to the Kedro-free core."""

from __future__ import annotations

import logging
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from p3_pruning import strategies
from p3_pruning.adapters import LoraAdapter
from p3_pruning.audit import selection_audit, with_origin
from p3_pruning.compute import count_parameters
from p3_pruning.evaluation import cheap_eval
from p3_pruning.models import load_model, policy_model
from p3_pruning.scoring import score_samples
from p3_pruning.stats import difficulty_level_spearman
from p3_pruning.training import train_round

plt.switch_backend("Agg")  # plots are written to files; no display
log = logging.getLogger(__name__)


# keys of the scoring block that the node handles itself (the rest go to score_samples)
NODE_SCORING_KEYS = ("candidates", "backend", "ray")
NOT_CANDIDATE = "not_candidate"  # status of pool rows left out by scoring.candidates


def score(
    pool: pd.DataFrame,
    model_params: dict,
    scoring: dict,
    seed: int,
    adapter: LoraAdapter | None = None,
    *,
    round_index: int,
):
    """Score the pool with the current policy: difficulty per sample + embeddings.

    With ``scoring.candidates`` (a count, or a fraction of the pool) only a seeded random subset is
    scored each round; the other rows get difficulty +inf and status ``not_candidate``, so they are
    never eligible and the threshold's percentile is taken on the scored candidates.
    """
    options = {k: v for k, v in scoring.items() if k not in NODE_SCORING_KEYS}
    chosen = candidate_rows(
        len(pool), scoring.get("candidates"), seed=seed, round_index=round_index
    )
    if scoring["backend"] == "ray":  # one merged replica per Ray worker, same scorer per block
        from p3_pruning.distributed.ray_engine import score_on_ray

        start = time.perf_counter()  # the workers' start-up and model loads count: Ray's cost
        scores, embeddings = score_on_ray(
            model_params, adapter, pool.iloc[chosen], ray=scoring["ray"], **options
        )
    else:
        model, tokenizer = policy_model(model_params, adapter, merge=True)
        start = time.perf_counter()
        scores, embeddings = score_samples(model, tokenizer, pool.iloc[chosen], **options)
    seconds = time.perf_counter() - start
    if len(chosen) < len(pool):
        scores, embeddings = _widen(scores, embeddings, pool, chosen)
    scores.insert(1, "round", round_index + 1)
    status = scores["status"].value_counts().to_dict()
    info = {
        "score_seconds": seconds,
        "score_candidates": len(chosen),
        "score_tokens": int(scores["n_tokens"].sum()),
        "score_tokens_per_s": float(scores["n_tokens"].sum() / max(seconds, 1e-9)),
        "score_failed": int((~scores["status"].isin(["ok", NOT_CANDIDATE])).sum()),
        "score_truncated": int(scores["truncated"].sum()),
        "score_status": {str(k): int(v) for k, v in status.items()},
        # does policy difficulty track the source's own difficulty label? (NaN without levels)
        "score_level_spearman": difficulty_level_spearman(scores, pool),
    }
    return scores, embeddings.astype(np.float32, copy=False), info


def candidate_rows(n: int, candidates, *, seed: int, round_index: int) -> np.ndarray:
    """Row positions to score: all ``n`` (candidates None), or a seeded random subset in pool order
    (an int count, or a float fraction in (0, 1] of the pool), drawn afresh each round."""
    if candidates is None:
        return np.arange(n)
    k = strategies.resolve_budget(candidates, n)
    rng = np.random.default_rng([int(seed), int(round_index), 0x5C0])
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def _widen(scores: pd.DataFrame, embeddings: np.ndarray, pool: pd.DataFrame, chosen: np.ndarray):
    """Scores and embeddings of the candidates spread back over every pool row (pool order)."""
    full = pd.DataFrame({"sample_id": pool["sample_id"].to_numpy()})
    full = full.merge(scores, on="sample_id", how="left")
    rest = ~full["sample_id"].isin(set(scores["sample_id"]))
    full.loc[rest, "difficulty"] = np.inf
    full.loc[rest, "status"] = NOT_CANDIDATE
    for column, fill in (("n_actions", 0), ("n_tokens", 0), ("truncated", False)):
        if column in full:
            full[column] = (
                full[column].astype(object).where(~rest, fill).astype(scores[column].dtype)
            )
    if "action_probs" in full:
        full["action_probs"] = [
            v if isinstance(v, (list, np.ndarray)) else [] for v in full["action_probs"]
        ]
    wide = np.zeros((len(pool), embeddings.shape[1]), dtype=embeddings.dtype)
    wide[chosen] = embeddings
    return full[scores.columns], wide


def unscored(pool: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Stand-in scores for methods that never score (random, full): difficulty unknown (NaN)."""
    scores = pd.DataFrame({"sample_id": pool["sample_id"].to_numpy(), "difficulty": np.nan})
    return scores, np.zeros((len(pool), 1), dtype=np.float32)


def threshold(
    scores: pd.DataFrame,
    pacing: dict,
    previous_scores: pd.DataFrame | None = None,
    *,
    method: str,
    round_index: int,
    rounds: int,
):
    """Pace-adaptive threshold: which samples are easy enough for this round (the eligible table)."""
    options = dict(pacing)
    if previous_scores is not None:
        options["previous"] = previous_scores  # matched on sample_id by the strategy
    start = time.perf_counter()
    eligible, info = strategies.threshold(
        method, scores, round_index=round_index, rounds=rounds, **options
    )
    return eligible, {**info, "threshold_seconds": time.perf_counter() - start}


def select(
    scores: pd.DataFrame,
    selection: dict,
    budget: float | int,
    seed: int,
    eligible: pd.DataFrame | None = None,
    embeddings: np.ndarray | None = None,
    pool: pd.DataFrame | None = None,
    *,
    method: str,
    round_index: int,
    rounds: int,
):
    """The round's pick: the DPP over the candidates (dpp_select), or a seeded uniform pick.

    The selector sees the scores (and eligible table, embeddings) only; the pool's ``origin`` is
    appended to the selection table afterwards, for the audit and for people.
    """
    start = time.perf_counter()
    chosen, info = strategies.pick(
        method,
        scores,
        embeddings,
        eligible=eligible,
        round_index=round_index,
        rounds=rounds,
        budget=budget,
        seed=seed,
        **selection,
    )
    seconds = time.perf_counter() - start
    if pool is not None:
        chosen = with_origin(chosen, pool)
    # the threshold node reports the threshold; keep only what this step decided
    info = {k: v for k, v in info.items() if k not in ("percentile", "threshold")}
    return chosen, {**info, "select_seconds": seconds}


def pick_unscored(
    pool: pd.DataFrame,
    selection: dict,
    budget: float | int,
    seed: int,
    *,
    method: str,
    round_index: int,
    rounds: int,
):
    """``select`` for methods that need no scores (random, full)."""
    scores, _ = unscored(pool)
    return select(
        scores,
        selection,
        budget,
        seed,
        pool=pool,
        method=method,
        round_index=round_index,
        rounds=rounds,
    )


LAUNCH_KEYS = (
    "launcher",
    "nproc_per_node",
    "launcher_args",
)  # how to run train_round, not its options


def finetune(
    pool: pd.DataFrame,
    chosen: pd.DataFrame,
    model_params: dict,
    training: dict,
    seed: int,
    adapter: LoraAdapter | None = None,
    *,
    method: str | None = None,
    round_index: int | None = None,
):
    """One LoRA pass over the selected samples, continuing the previous round's adapter.

    A diverging run raises ``training.TrainingDiverged`` naming ``method``, round and step, so
    nothing of this round is saved.
    """
    model, tokenizer = load_model(**model_params)
    missing = set(chosen["sample_id"]) - set(pool["sample_id"])
    if missing:
        raise KeyError(
            f"selection names {len(missing)} sample_id(s) not in the train pool, e.g. {sorted(missing)[:3]}"
        )
    batch = pool.set_index("sample_id").loc[chosen["sample_id"]].reset_index()
    options = {k: v for k, v in training.items() if k not in LAUNCH_KEYS}
    if method is not None and round_index is not None:
        options["label"] = f"{method} round {round_index + 1}"
    if training["launcher"] == "local":
        new_adapter, metrics = train_round(
            model, tokenizer, batch, adapter=adapter, seed=seed, **options
        )
    else:  # DDP processes under torchrun / accelerate; rank 0 writes the adapter, loaded back here
        from p3_pruning.distributed.launch import train_launched

        new_adapter, metrics = train_launched(
            model_params,
            batch,
            adapter=adapter,
            seed=seed,
            launcher=training["launcher"],
            nproc_per_node=training["nproc_per_node"],
            launcher_args=training.get("launcher_args"),
            **options,
        )
    info = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in metrics.items()}
    counts = count_parameters(model, new_adapter)  # for compute accounting
    info.update(train_params=counts["matmul"], train_lora_params=counts["trainable"])
    return new_adapter, info


def evaluate_round(
    eval_set: pd.DataFrame, adapter: LoraAdapter, model_params: dict, options: dict, scoring: dict
) -> dict:
    """Cheap held-out metrics under the round's adapter (forward passes only).

    The held-out difficulty is computed by the same rule as the pool's: the scoring block's
    segmenter, max_length and the rest (scoring.candidates aside: every held-out sample is scored).
    """
    options = dict(options)
    options["scoring_options"] = {
        k: v for k, v in scoring.items() if k not in (*NODE_SCORING_KEYS, "progress")
    }
    max_samples = options.pop("max_samples", None)
    if max_samples is not None:
        eval_set = eval_set.head(int(max_samples))  # the split already shuffled it (seeded)
    model, tokenizer = policy_model(model_params, adapter, merge=True)
    start = time.perf_counter()
    metrics = cheap_eval(model, tokenizer, eval_set, **options)
    return {
        **{f"eval_{k}": v for k, v in metrics.items()},
        "eval_seconds": time.perf_counter() - start,
    }


def overlap(current: pd.DataFrame, previous: pd.DataFrame | None) -> float:
    """Fraction of this round's selection that the previous round also selected (nan in round 1)."""
    if previous is None or len(current) == 0:
        return float("nan")
    return float(current["sample_id"].isin(set(previous["sample_id"])).mean())


def difficulty_histogram(scores: pd.DataFrame, chosen: pd.DataFrame, threshold: float, title: str):
    """Difficulty distribution of the pool, the threshold, and where the selected samples sit."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    finite = scores["difficulty"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite):
        bins = np.linspace(finite.min(), finite.max() + 1e-9, 31)
        ax.hist(finite, bins=bins, color="#9ab", label=f"pool ({len(finite)})")
        sel = chosen["difficulty"].to_numpy(dtype=float)
        sel = sel[np.isfinite(sel)]
        if len(sel):
            ax.hist(sel, bins=bins, color="#d62", alpha=0.8, label=f"selected ({len(sel)})")
    if np.isfinite(threshold):
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("difficulty  1 − mean action probability")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def summarize(
    select_info: dict,
    train_info: dict,
    eval_info: dict,
    chosen: pd.DataFrame,
    budget: float | int,
    seed: int,
    score_info: dict | None = None,
    threshold_info: dict | None = None,
    scores: pd.DataFrame | None = None,
    previous: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
    *,
    method: str,
    round_index: int,
    arm: str | None = None,
):
    """One flat record of everything the round measured, plus its difficulty histogram.

    ``arm``: the study arm the round belongs to, when it is not the method's own name.

    With the ``pool``, the record carries the selection audit (``p3_pruning.audit``): origin
    shares in the pool and the selection, and the AUROC of difficulty per origin.

    ``threshold_info`` is absent for methods without a threshold step (dpp, random, full).
    ``score_info`` is absent when the round did not score (static scores, or methods that never
    score); ``scores`` is absent for methods that never score; ``previous`` is absent in round 1.
    """
    score_info = score_info or {}
    threshold_info = threshold_info or {"percentile": float("nan"), "threshold": float("nan")}
    audit = selection_audit(pool, chosen, scores) if pool is not None else {}
    if scores is None:
        scores = chosen[["sample_id", "difficulty"]]
    d = scores["difficulty"].to_numpy(dtype=float)
    finite = d[np.isfinite(d)]
    quantiles = (
        {
            f"difficulty_q{int(q * 100):02d}": float(np.quantile(finite, q))
            for q in (0.1, 0.25, 0.5, 0.75, 0.9)
        }
        if len(finite)
        else {}
    )
    summary = {
        "method": method,
        **({"arm": arm} if arm else {}),
        "round": round_index + 1,
        "seed": int(seed),
        "budget_param": budget,
        **{k: v for k, v in score_info.items() if not isinstance(v, dict)},
        **threshold_info,
        **select_info,
        **train_info,
        **eval_info,
        **quantiles,
        "difficulty_mean": float(finite.mean()) if len(finite) else float("nan"),
        "selected_difficulty_mean": float(np.nanmean(chosen["difficulty"]))
        if chosen["difficulty"].notna().any()
        else float("nan"),
        "overlap_prev": overlap(chosen, previous),
        **audit,
    }
    summary = {k: _plain(v) for k, v in summary.items()}
    threshold = float(threshold_info["threshold"])
    fig = difficulty_histogram(
        scores, chosen, threshold, f"{arm or method} round {round_index + 1}"
    )
    return summary, fig


def _plain(value):
    """JSON-friendly scalars (numpy → python, lists kept)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
