"""Which samples a round rescores: incremental refresh, and candidates that keep the budget (Kedro-free).

Difficulty is a measurement with an age. ``scoring.refresh: full`` (the paper) rescores the whole
pool with the current policy every round. ``incremental`` (:func:`incremental_scores`) starts
from the freshest value each sample already has and rescores only where the round's decision is
open:

1. **Stale values.** A sample trained in round e−1 has its training-pass value
   (``p3_pruning.train_scores``: read at its own step, before its update); every other sample
   its last score (a rescoring, or a value carried over from an earlier round).
2. **Margin.** τ_e is the P_e-th percentile of the difficulties, so a sample's eligibility can
   change only if its difficulty lies near τ_e. Every sample whose stale value lies between the
   (P_e − m)-th and the (P_e + m)-th percentile of the stale values is rescored (``margin`` m in
   percentile points, default 10: 2m % of the pool).
3. **Drift.** Stale values are biased: the policy learnt since they were taken (difficulties fall)
   and training-pass values are read mid-round and with dropout. A seeded ``drift_fraction`` of
   the remaining samples of each kind (training pass / last score; at least ``min_drift`` when
   there are that many) is rescored, and every stale value of that kind is shifted by the median
   of (fresh − stale) over its drift sample — a median, so a few samples that were learnt (or
   forgotten) do not move the rest.
4. **Second look.** After the shift τ_e is taken on the merged values; samples not yet rescored
   whose shifted value falls within the inner half of the margin around the new τ_e are rescored
   too (the drift moved the threshold further than the first band reached).
5. **Never scored** (``not_candidate``, a failed training-pass measurement, …) samples are
   rescored; samples whose encoding fails (too long, empty response …) keep +inf and their status.

Each row of the result says where its value came from (``measured``: ``margin``, ``drift``,
``unscored``, ``train_pass``, ``reused``, ``failed``) and when (``measured_round``).

``candidates`` (:func:`score_until_admitted`): the seeded subset is scored first; while the
threshold (the pacing percentile, taken on the scored candidates) admits fewer than k, more
candidates are scored in a seeded order until k are admitted or the pool is exhausted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"  # scoring.refresh: full is the paper's
REFRESH = (FULL, INCREMENTAL)
MARGIN = 10.0  # percentile points each side of P_e (docs/method.md)
DRIFT_FRACTION = 0.1
MIN_DRIFT = 8
# statuses of samples whose encoding fails: rescoring would fail the same way
PERMANENT = frozenset(
    {"empty_response", "no_actions", "missing_prompt", "too_long", "bad_messages", "template"}
)
REASONS = ("margin", "drift", "unscored")  # why a sample was rescored
KEPT = ("train_pass", "reused", "failed")  # where a sample's value came from otherwise

ScoreRows = Callable[[np.ndarray], tuple[pd.DataFrame, np.ndarray]]


def stale_values(
    previous: pd.DataFrame, train_scores: pd.DataFrame | None, *, round_index: int
) -> pd.DataFrame:
    """Each sample's freshest measurement before round ``round_index`` (0-based) rescores.

    previous: the last round's scores (pool order); train_scores: the last round's training-pass
    table (``train_scores.TrainPassRecorder.table``) or None. Returns ``previous`` with the trained
    samples' values replaced, plus ``kind`` (``train_pass`` / ``reused`` / ``unscored`` /
    ``failed``) and ``measured_round`` (1-based round whose model gave the value).
    """
    out = previous.copy().reset_index(drop=True)
    if "measured_round" not in out:
        out["measured_round"] = out["round"] if "round" in out else round_index
    d = out["difficulty"].to_numpy(dtype=float)
    status = out["status"].astype(str).to_numpy()
    kind = np.where(np.isfinite(d) & (status == "ok"), "reused", "unscored").astype(object)
    kind[np.isin(status, list(PERMANENT))] = "failed"
    if train_scores is not None and len(train_scores):
        ok = train_scores[
            (train_scores["status"] == "ok") & np.isfinite(train_scores["difficulty"])
        ].drop_duplicates("sample_id", keep="last")
        where = pd.Series(np.arange(len(out)), index=out["sample_id"].astype(str))
        rows = where.reindex(ok["sample_id"].astype(str)).to_numpy()
        found = ~np.isnan(rows)
        rows, ok = rows[found].astype(int), ok[found]
        for column in ("difficulty", "n_actions", "action_probs", "status", "reason"):
            if column in ok:
                out[column] = out[column].astype(object)
                out.loc[rows, column] = pd.Series(list(ok[column]), index=rows, dtype=object)
        out["difficulty"] = out["difficulty"].astype(float)
        out["n_actions"] = out["n_actions"].astype(int)
        kind[rows] = "train_pass"
        out.loc[rows, "measured_round"] = round_index  # trained in round e−1 = 1-based round e
    out["kind"] = kind
    return out


def _band(values: np.ndarray, percentile: float, margin: float) -> tuple[float, float]:
    lo, hi = max(percentile - margin, 0.0), min(percentile + margin, 100.0)
    return float(np.percentile(values, lo)), float(np.percentile(values, hi))


def incremental_scores(
    previous: pd.DataFrame,
    previous_embeddings: np.ndarray,
    train_scores: pd.DataFrame | None,
    score_rows: ScoreRows,
    *,
    percentile: float,
    round_index: int,
    seed: int,
    margin: float = MARGIN,
    drift_fraction: float = DRIFT_FRACTION,
    min_drift: int = MIN_DRIFT,
) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Round ``round_index``'s scores from stale values plus a partial rescoring (module doc).

    previous / previous_embeddings: the last round's scores and (n, d) embeddings, pool order.
    score_rows(rows): scores (``scoring.SCORE_COLUMNS``) and embeddings of those pool rows with the
    current policy. percentile: P_e of this round. Returns ``(scores, embeddings, info)``: scores
    in pool order with ``measured`` and ``measured_round`` columns; info counts per reason, the
    drift per kind, the rescored and reused tokens.
    """
    if not 0 <= margin <= 100 or not 0 <= drift_fraction <= 1:
        raise ValueError(
            f"margin must be in [0, 100] and drift_fraction in [0, 1], got {margin}, {drift_fraction}"
        )
    stale = stale_values(previous, train_scores, round_index=round_index)
    n = len(stale)
    d = stale["difficulty"].to_numpy(dtype=float)
    kind = stale["kind"].to_numpy(dtype=object)
    reason = np.full(n, "", dtype=object)
    reason[kind == "unscored"] = "unscored"
    measured = np.isfinite(d) & np.isin(kind, ["train_pass", "reused"])
    if measured.any():
        lo, hi = _band(d[measured], percentile, margin)
        reason[measured & (d >= lo) & (d <= hi)] = "margin"
    rng = np.random.default_rng([int(seed), int(round_index), 0xD81F7])
    for group in ("train_pass", "reused"):
        rest = np.flatnonzero(measured & (kind == group) & (reason == ""))
        size = min(len(rest), max(math.ceil(drift_fraction * len(rest)), min_drift))
        if drift_fraction > 0 and size:
            reason[rng.choice(rest, size=size, replace=False)] = "drift"

    scores = stale.copy()
    emb = np.array(previous_embeddings, dtype=np.float32, copy=True)
    fresh = np.full(n, np.nan)
    tokens = {"rescored": 0}
    passes = 0

    def rescore(rows: np.ndarray) -> None:
        nonlocal passes
        if not len(rows):
            return
        passes += 1
        new, new_emb = score_rows(rows)
        new = new.reset_index(drop=True)
        for column in new.columns:
            if column in scores:
                scores[column] = scores[column].astype(object)
                scores.loc[rows, column] = pd.Series(list(new[column]), index=rows, dtype=object)
        fresh[rows] = new["difficulty"].to_numpy(dtype=float)
        emb[rows] = new_emb
        scores.loc[rows, "measured_round"] = round_index + 1
        tokens["rescored"] += int(new["n_tokens"].sum())

    rescore(np.flatnonzero(reason != ""))
    drift = {}
    for group in ("train_pass", "reused"):
        members = kind == group
        for source in ("drift", "margin"):  # the seeded sample; the band only when it is empty
            pair = members & (reason == source) & np.isfinite(fresh)
            if pair.any():
                drift[group] = float(np.median(fresh[pair] - d[pair]))
                break
        else:
            drift[group] = 0.0
    merged = d.copy()
    done = reason != ""
    merged[done] = fresh[done]
    for group, shift in drift.items():
        merged[(kind == group) & ~done] += shift

    finite = np.isfinite(merged)
    if finite.any() and margin > 0:  # second look: did the drift move τ_e out of the band?
        lo, hi = _band(merged[finite], percentile, margin / 2)
        late = np.flatnonzero(~done & finite & (merged >= lo) & (merged <= hi))
        reason[late] = "margin"
        rescore(late)
        merged[late] = fresh[late]
        done = reason != ""

    scores["difficulty"] = merged
    scores["measured"] = np.where(done, reason, kind)
    for column, dtype in (("n_actions", int), ("n_tokens", int), ("truncated", bool)):
        if column in scores:
            scores[column] = scores[column].astype(dtype)
    scores["difficulty"] = scores["difficulty"].astype(float)
    scores["measured_round"] = scores["measured_round"].astype(int)
    reused_tokens = int(scores.loc[~done, "n_tokens"].sum())
    counts = scores["measured"].value_counts().to_dict()
    info = {
        "refresh": INCREMENTAL,
        "score_rescored": int(done.sum()),
        **{f"score_rescored_{r}": int(counts.get(r, 0)) for r in REASONS},
        **{f"score_{k}": int(counts.get(k, 0)) for k in KEPT},
        "score_drift_train_pass": drift["train_pass"],
        "score_drift_reused": drift["reused"],
        "score_refresh_passes": passes,
        "score_tokens": tokens["rescored"],
        "score_reused_tokens": reused_tokens,
    }
    log.info(
        "round %d incremental refresh: rescored %d of %d (margin %d, drift %d, unscored %d); "
        "drift train pass %+.4f, reused %+.4f",
        round_index + 1,
        info["score_rescored"],
        n,
        info["score_rescored_margin"],
        info["score_rescored_drift"],
        info["score_rescored_unscored"],
        drift["train_pass"],
        drift["reused"],
    )
    return scores.drop(columns=["kind"]), emb, info


def score_until_admitted(
    n: int,
    first: np.ndarray,
    score_rows: ScoreRows,
    *,
    percentile: float,
    k: int,
    seed: int,
    round_index: int,
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, int]:
    """Score ``first`` (pool rows), then more rows in a seeded order while the P-th percentile of
    the scored difficulties admits fewer than ``k``; ``(rows, scores, embeddings, extensions)``
    with ``rows`` sorted (pool order) and ``scores`` / ``embeddings`` in that order."""
    first = np.sort(np.asarray(first, dtype=np.int64))
    rest = np.setdiff1d(np.arange(n), first)
    rest = np.random.default_rng([int(seed), int(round_index), 0xE87D]).permutation(rest)
    parts = [(first, *score_rows(first))]
    extensions = 0
    while True:
        d = np.concatenate([p[1]["difficulty"].to_numpy(dtype=float) for p in parts])
        finite = d[np.isfinite(d)]
        admitted = int((finite <= np.percentile(finite, percentile)).sum()) if len(finite) else 0
        if admitted >= k or not len(rest):
            break
        share = max(percentile, 1.0) / 100.0  # the admitted share of what is scored
        more = max(math.ceil(k / share) - len(finite), 1)
        rows, rest = np.sort(rest[:more]), rest[more:]
        parts.append((rows, *score_rows(rows)))
        extensions += 1
    rows = np.concatenate([p[0] for p in parts])
    order = np.argsort(rows, kind="stable")
    scores = pd.concat([p[1] for p in parts], ignore_index=True).iloc[order].reset_index(drop=True)
    embeddings = np.concatenate([p[2] for p in parts])[order]
    return rows[order], scores, embeddings, extensions


__all__ = [
    "FULL",
    "INCREMENTAL",
    "REFRESH",
    "incremental_scores",
    "score_until_admitted",
    "stale_values",
]
