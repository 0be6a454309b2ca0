"""Nodes of one round. Each adapts catalog entries and parameters to the Kedro-free core."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from p3_pruning import pacing as pacing_rules
from p3_pruning import strategies
from p3_pruning.adapters import LoraAdapter
from p3_pruning.audit import selection_audit, with_origin
from p3_pruning.compute import count_parameters, stage_flops, stage_tokens
from p3_pruning.evaluation import cheap_eval
from p3_pruning.models import load_model, policy_model
from p3_pruning.plotting import subplots
from p3_pruning.refresh import FULL, incremental_scores, score_until_admitted
from p3_pruning.scoring import score_samples
from p3_pruning.shards import DEFAULT_DIR as DEFAULT_SHARD_DIR
from p3_pruning.shards import ShardedScoring, call_key
from p3_pruning.stats import difficulty_level_spearman
from p3_pruning.train_scores import empty_train_scores
from p3_pruning.training import train_round

log = logging.getLogger(__name__)


# keys of the scoring block that the node handles itself (the rest go to score_samples)
NODE_SCORING_KEYS = ("candidates", "backend", "ray", "refresh", "incremental", "shards")
NOT_CANDIDATE = "not_candidate"  # status of pool rows left out by scoring.candidates
# keys that decide which rows are scored, or how they are shown, not their values
_ROWS_ONLY = ("candidates", "refresh", "incremental", "shards", "progress")


class _Scorer:
    """``scorer(rows) -> (scores, embeddings)``: those pool rows scored with the round's policy
    (loaded once; on Ray a call per block of rows), seconds summed in ``seconds``.

    With ``scoring.shards.rows`` each call is written to disk in shards as it goes
    (``p3_pruning.shards``): a rerun after a crash scores only the missing shards. ``finish()``
    removes them once the round's scores are assembled."""

    def __init__(self, pool, model_params, scoring, adapter):
        self.pool, self.model_params, self.scoring, self.adapter = (
            pool,
            model_params,
            scoring,
            adapter,
        )
        self.options = {k: v for k, v in scoring.items() if k not in NODE_SCORING_KEYS}
        self.policy = None
        self.seconds = 0.0
        shards = scoring.get("shards") or {}
        self.shard_rows = shards.get("rows")
        self.shard_dir = shards.get("dir") or DEFAULT_SHARD_DIR
        self.calls: list[ShardedScoring] = []

    def __call__(self, rows: np.ndarray):
        frame = self.pool.iloc[np.asarray(rows, dtype=np.int64)]
        if not self.shard_rows:
            return self._score(frame)
        key = call_key(
            frame,
            model_params=self.model_params,
            adapter=self.adapter,
            options={k: v for k, v in self.scoring.items() if k not in _ROWS_ONLY},
            rows=self.shard_rows,
        )
        call = ShardedScoring(self.shard_dir, key, self.shard_rows)
        self.calls.append(call)
        if self.scoring["backend"] == "ray":  # one cluster for all the call's shards
            from p3_pruning.distributed.ray_engine import ray_cluster

            with ray_cluster(self.scoring["ray"]):
                return call.run(frame, self._score)
        return call.run(frame, self._score)

    def _score(self, frame: pd.DataFrame):
        if self.scoring["backend"] == "ray":  # one merged replica per Ray worker
            from p3_pruning.distributed.ray_engine import score_on_ray

            start = time.perf_counter()  # the workers' start-up and model loads count: Ray's cost
            out = score_on_ray(
                self.model_params, self.adapter, frame, ray=self.scoring["ray"], **self.options
            )
        else:
            if self.policy is None:
                self.policy = policy_model(self.model_params, self.adapter, merge=True)
            start = time.perf_counter()
            out = score_samples(*self.policy, frame, **self.options)
        self.seconds += time.perf_counter() - start
        return out

    def finish(self) -> dict:
        """Remove the shards of every call (the result is in hand); how many were resumed."""
        loaded = sum(c.loaded for c in self.calls)
        for call in self.calls:
            call.clear()
        return {"score_shards_resumed": loaded} if self.shard_rows else {}


def _round_percentile(pacing: dict, round_index: int, rounds: int) -> float:
    """P_e of the pacing block for this round (the threshold node's percentile)."""
    keys = ("start", "end", "schedule", "power")
    return pacing_rules.percentile(
        round_index, rounds, **{k: pacing[k] for k in keys if pacing.get(k) is not None}
    )


def _score_info(scores: pd.DataFrame, pool: pd.DataFrame, seconds: float, tokens: int) -> dict:
    status = scores["status"].value_counts().to_dict()
    return {
        "score_seconds": seconds,
        "score_tokens": int(tokens),
        "score_tokens_per_s": float(tokens / max(seconds, 1e-9)),
        "score_failed": int((~scores["status"].isin(["ok", NOT_CANDIDATE])).sum()),
        "score_truncated": int(scores["truncated"].sum()),
        "score_status": {str(k): int(v) for k, v in status.items()},
        # does policy difficulty track the source's own difficulty label? (NaN without levels)
        "score_level_spearman": difficulty_level_spearman(scores, pool),
    }


def score(
    pool: pd.DataFrame,
    model_params: dict,
    scoring: dict,
    seed: int,
    pacing: dict | None = None,
    budget: float | int | None = None,
    adapter: LoraAdapter | None = None,
    *,
    round_index: int,
    rounds: int | None = None,
):
    """Score the pool with the current policy: difficulty per sample + embeddings.

    With ``scoring.candidates`` (a count, or a fraction of the pool) only a seeded random subset is
    scored each round; the other rows get difficulty +inf and status ``not_candidate``, so they are
    never eligible and the threshold's percentile is taken on the scored candidates. Given the
    ``pacing`` block, the ``budget`` and ``rounds``, candidates keep the budget: while the round's
    percentile admits fewer than k of the scored candidates, more are scored in a seeded order
    (``refresh.score_until_admitted``).
    """
    if round_index > 0 and scoring.get("refresh", FULL) != FULL:
        raise ValueError(
            "scoring.refresh: incremental shapes the pipeline (the score step reads the last "
            "round's scores): set it in a config file, not with --params"
        )
    scorer = _Scorer(pool, model_params, scoring, adapter)
    chosen = candidate_rows(
        len(pool), scoring.get("candidates"), seed=seed, round_index=round_index
    )
    extensions = 0
    if len(chosen) < len(pool) and pacing is not None and budget is not None and rounds:
        chosen, scores, embeddings, extensions = score_until_admitted(
            len(pool),
            chosen,
            scorer,
            percentile=_round_percentile(pacing, round_index, rounds),
            k=strategies.resolve_budget(budget, len(pool)),
            seed=seed,
            round_index=round_index,
        )
    else:
        scores, embeddings = scorer(chosen)
    if len(chosen) < len(pool):
        scores, embeddings = _widen(scores, embeddings, pool, chosen)
    scores.insert(1, "round", round_index + 1)
    info = {
        "score_candidates": len(chosen),
        "score_candidate_extensions": extensions,
        **_score_info(scores, pool, scorer.seconds, int(scores["n_tokens"].sum())),
        **scorer.finish(),
    }
    return scores, embeddings.astype(np.float32, copy=False), info


def score_incremental(
    pool: pd.DataFrame,
    model_params: dict,
    scoring: dict,
    seed: int,
    pacing: dict,
    budget: float | int,
    adapter: LoraAdapter,
    previous_scores: pd.DataFrame,
    previous_embeddings: np.ndarray,
    train_scores: pd.DataFrame,
    *,
    round_index: int,
    rounds: int,
):
    """``scoring.refresh: incremental`` (round 2 on): the freshest value each sample has — the last
    round's training pass for the samples it trained on, the last scoring for the others — with
    only the samples near the threshold, a seeded drift sample and the never-scored rescored
    (``p3_pruning.refresh``; docs/method.md). ``refresh: full`` here scores as :func:`score`."""
    if scoring.get("refresh", FULL) == FULL:
        return score(
            pool,
            model_params,
            {**scoring, "refresh": FULL},
            seed,
            pacing,
            budget,
            adapter,
            round_index=round_index,
            rounds=rounds,
        )
    if list(previous_scores["sample_id"]) != list(pool["sample_id"]):
        raise ValueError("the last round's scores are not in the train pool's row order")
    scorer = _Scorer(pool, model_params, scoring, adapter)
    scores, embeddings, info = incremental_scores(
        previous_scores,
        previous_embeddings,
        train_scores,
        scorer,
        percentile=_round_percentile(pacing, round_index, rounds),
        round_index=round_index,
        seed=seed,
        **(scoring.get("incremental") or {}),
    )
    scores["round"] = round_index + 1
    info = {
        **info,
        "score_candidates": info["score_rescored"],
        **_score_info(scores, pool, scorer.seconds, info["score_tokens"]),
        **scorer.finish(),
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


def select_scored(
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
    """``select_scored`` for methods that need no scores (random, full)."""
    scores, _ = unscored(pool)
    return select_scored(
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
    new_adapter, info, _ = _finetune(
        pool, chosen, model_params, training, seed, adapter, method=method, round_index=round_index
    )
    return new_adapter, info


def finetune_measured(
    pool: pd.DataFrame,
    chosen: pd.DataFrame,
    model_params: dict,
    training: dict,
    scoring: dict,
    seed: int,
    adapter: LoraAdapter | None = None,
    *,
    method: str | None = None,
    round_index: int | None = None,
):
    """:func:`finetune`, plus every trained sample's difficulty read off its training step
    (``train_scores``, the scoring block's segmenter and max_length; ``p3_pruning.train_scores``)
    for the next round's incremental refresh."""
    measure = {k: scoring[k] for k in ("segmenter", "pattern", "max_length") if scoring.get(k)}
    return _finetune(
        pool,
        chosen,
        model_params,
        training,
        seed,
        adapter,
        measure=measure,
        method=method,
        round_index=round_index,
    )


def _finetune(
    pool, chosen, model_params, training, seed, adapter, *, measure=None, method, round_index
):
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
            model, tokenizer, batch, adapter=adapter, seed=seed, measure=measure, **options
        )
    else:  # DDP processes under torchrun / accelerate; rank 0 writes the adapter, loaded back here
        from p3_pruning.distributed.launch import train_launched

        if measure is not None:
            log.warning(
                "training.launcher %s: the training pass is not measured (train_scores empty); "
                "the next incremental refresh reuses the last scores of the trained samples",
                training["launcher"],
            )
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
    train_scores = metrics.pop("train_scores", None)
    if train_scores is None:
        train_scores = empty_train_scores()
    info = {f"train_{k}" if not k.startswith("train_") else k: v for k, v in metrics.items()}
    counts = count_parameters(model, new_adapter)  # for compute accounting
    info.update(train_params=counts["matmul"], train_lora_params=counts["trainable"])
    if measure is not None:
        info["train_measured"] = int((train_scores["status"] == "ok").sum())
    return new_adapter, info, train_scores


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
    fig, ax = subplots(figsize=(6, 3.5))
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


def summarize_round(
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
    summary.update(_scoring_flops(summary))
    summary = {k: _plain(v) for k, v in summary.items()}
    threshold = float(threshold_info["threshold"])
    fig = difficulty_histogram(
        scores, chosen, threshold, f"{arm or method} round {round_index + 1}"
    )
    return summary, fig


def _scoring_flops(record: dict) -> dict:
    """Scoring FLOPs of the round split into rescored (paid) and reused (what a full rescoring
    would have added), from its tokens and the parameter count the finetune step recorded."""
    if "train_params" not in record or "score_tokens" not in record:
        return {}
    params = float(record["train_params"])
    return {
        "score_flops": stage_flops("score", stage_tokens(record, "score"), params),
        "score_reused_flops": stage_flops("score", stage_tokens(record, "score_reused"), params),
    }


def _plain(value):
    """JSON-friendly scalars (numpy → python, lists kept)."""
    if isinstance(value, np.generic):
        return value.item()
    return value
