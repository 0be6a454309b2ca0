"""Selection strategies: P3 and every baseline, as pure functions of one round's scores.

Kedro-free. ``select(method, scores, embeddings, *, round_index, rounds, budget, seed, **options)``
returns the selection table of the data contract (docs/method.md); ``run_strategy`` (same arguments)
also returns an info dict of plain numbers for logging.

Methods (k = the round budget; "eligible" = :func:`p3_pruning.pacing.eligible`):

- ``p3``: threshold, then greedy MAP of the DPP over the eligible set with quality q = difficulty
  (inside the easy set prefer the harder), q floored at ``quality_floor`` so a sample the model
  already finds trivial (d = 0) is picked last rather than never. The trend term (``alpha``,
  ``previous``) moves only the threshold; the quality is d_e as scored.
- ``static``: p3's rule on scores the pipeline computes once with the base model and passes every
  round (the strategy itself is the same; only its input differs).
- ``spl``: threshold, then k uniformly at random from the eligible set.
- ``dpp``: greedy MAP over every finite-difficulty sample (no threshold).
- ``random``: k uniformly at random from the whole pool (scores are not looked at; difficulty may
  be NaN for a pool that was never scored).
- ``full``: the whole pool in a seeded shuffled order; the budget is ignored (NaN difficulty ok).
- ``curriculum``: static easy→hard windows on base-model difficulty. Round e's window is the
  samples with difficulty ≤ the W_e-th percentile (finite values), W_e = start + (100 − start)·e/(E−1)
  (W = 100 when E = 1), so the first round sees the easiest ``start`` % and the last round the whole
  pool; k are drawn uniformly at random from the window.

Budget: an int (``select_num``) or a float in (0, 1] (that fraction of the pool, rounded to the
nearest integer, at least 1). If fewer candidates than k exist, all of them are taken, a warning is
logged and the shortfall is recorded in the info.

DPP features: z-score each embedding column over the candidate set, then L2-normalise the rows
(docs/method.md, step 3), float32. If greedy MAP stops before k (only with ``ridge=0``: plain greedy
MAP ends at rank(F) ≤ d) the DPP is rerun on the remaining candidates until k are picked, as the
authors do; ``dpp_passes`` counts the runs and ``dpp_log_det`` is the log det of the first run's picks.

Options (all optional; a method ignores those it does not use): ``start``, ``end``, ``schedule``,
``power`` (pacing; curriculum uses ``start`` only), ``alpha`` and ``previous`` (trend term;
``previous`` is d_{e−1} as an (n,) array in row order or a scores DataFrame matched on
``sample_id``), ``ridge``, ``dpp_mode`` ("exact" | "stochastic"), ``delta`` (stochastic sample
size), ``quality_floor`` (1e-6), ``quality`` ("difficulty", the paper's q = d; "flat"; "easiness",
q = 1 − d: ``QUALITY_RULES``). The DPP runs on CUDA when present.

Randomness comes from ``numpy.random.default_rng([seed, round_index])``: the same seed gives the
same selection, and different rounds of one run draw differently.

Selection table columns: ``sample_id``, ``round`` (1-based: round_index + 1), ``pick_order``
(0-based), ``difficulty`` (this round's d_e as given), ``threshold`` (τ_e; NaN for methods without
one).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from p3_pruning import dpp, methods, pacing
from p3_pruning.methods import METHODS  # noqa: F401  (strategies.METHODS, re-exported)

log = logging.getLogger(__name__)

# option name -> default; a config block may carry all of them, each method uses those it needs
OPTION_DEFAULTS = {
    "start": pacing.PAPER_START,
    "end": pacing.PAPER_END,
    "schedule": "linear",
    "power": pacing.DEFAULT_POWER,
    "alpha": 0.0,
    "previous": None,
    "ridge": dpp.DEFAULT_RIDGE,
    "dpp_mode": "exact",
    "delta": 0.01,
    "quality_floor": 1e-6,
    "quality": "difficulty",
}
# The DPP's quality q of a candidate with difficulty d (floored at quality_floor):
# "difficulty" q = d (the paper: inside the easy set prefer the harder), "flat" q = 1 (diversity
# only), "easiness" q = 1 − d (prefer the easier: in a pool with wrong answers the hardest admitted
# samples are the likeliest to be wrong; see docs/method.md, composed pools).
QUALITY_RULES = ("difficulty", "flat", "easiness")
SELECTION_COLUMNS = ["sample_id", "round", "pick_order", "difficulty", "threshold"]


def select(
    method: str,
    scores: pd.DataFrame,
    embeddings,
    *,
    round_index: int,
    rounds: int,
    budget: int | float,
    seed: int,
    **options,
) -> pd.DataFrame:
    """Selection table for one round (see module doc); ``embeddings``: (n, d) rows as ``scores``."""
    selection, _ = run_strategy(
        method,
        scores,
        embeddings,
        round_index=round_index,
        rounds=rounds,
        budget=budget,
        seed=seed,
        **options,
    )
    return selection


ELIGIBLE_COLUMNS = ["sample_id", "difficulty", "threshold", "percentile", "eligible"]


def run_strategy(
    method: str,
    scores: pd.DataFrame,
    embeddings,
    *,
    round_index: int,
    rounds: int,
    budget: int | float,
    seed: int,
    **options,
) -> tuple[pd.DataFrame, dict]:
    """Like :func:`select`, plus info: pool, finite, percentile, threshold, eligible, budget,
    selected, shortfall, dpp_log_det, dpp_stopped_early, dpp_passes (plain ints/floats).

    The two steps of a round, :func:`threshold` then :func:`pick`, in one call.
    """
    eligible = None
    info: dict = {}
    if methods.get(method).thresholded:
        eligible, info = threshold(
            method, scores, round_index=round_index, rounds=rounds, **options
        )
    chosen, pick_info = pick(
        method,
        scores,
        embeddings,
        eligible=eligible,
        round_index=round_index,
        rounds=rounds,
        budget=budget,
        seed=seed,
        **options,
    )
    return chosen, {**pick_info, **info, "eligible": pick_info["eligible"]}


def _options(options: dict) -> dict:
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown selection options {unknown}; known: {sorted(OPTION_DEFAULTS)}")
    return {**OPTION_DEFAULTS, **options}


def threshold(
    method: str, scores: pd.DataFrame, *, round_index: int, rounds: int, **options
) -> tuple[pd.DataFrame, dict]:
    """The threshold step of a thresholded method (p3, static, spl: pacing; curriculum: its window).

    Returns the eligible table (columns ``ELIGIBLE_COLUMNS``, rows in the order of ``scores``:
    difficulty d_e as scored, τ_e, P_e, the eligible flag) and info: pool, finite, percentile,
    threshold, eligible (plain numbers).
    """
    rule = methods.get(method).threshold
    if rule is None:
        thresholded = methods.names(threshold=("pacing", "window"))
        raise ValueError(f"method {method!r} has no threshold step; thresholded: {thresholded}")
    opts = _options(options)
    pacing.percentile(round_index, rounds)  # validates round_index / rounds
    ids, difficulty = _check_scores(scores)
    if rule == "window":
        percent = curriculum_percentile(round_index, rounds, start=opts["start"])
        finite = np.isfinite(difficulty)
        tau = math.nan
        mask = np.zeros(len(ids), dtype=bool)
        if finite.any():
            tau = float(np.percentile(difficulty[finite], percent))
            mask = finite & (difficulty <= tau)
    else:
        schedule = {key: opts[key] for key in ("start", "end", "schedule", "power", "alpha")}
        previous = _align_previous(opts["previous"], ids)
        mask, tau = pacing.eligible(difficulty, round_index, rounds, previous=previous, **schedule)
        percent = pacing.percentile(
            round_index,
            rounds,
            start=opts["start"],
            end=opts["end"],
            schedule=opts["schedule"],
            power=opts["power"],
        )
    table = pd.DataFrame(
        {
            "sample_id": ids,
            "difficulty": difficulty,
            "threshold": np.full(len(ids), tau, dtype=np.float64),
            "percentile": np.full(len(ids), percent, dtype=np.float64),
            "eligible": mask,
        }
    )
    info = {
        "pool": len(ids),
        "finite": int(np.isfinite(difficulty).sum()),
        "percentile": float(percent),
        "threshold": float(tau),
        "eligible": int(mask.sum()),
    }
    return table, info


def pick(
    method: str,
    scores: pd.DataFrame,
    embeddings,
    *,
    eligible: pd.DataFrame | None = None,
    round_index: int,
    rounds: int,
    budget: int | float,
    seed: int,
    **options,
) -> tuple[pd.DataFrame, dict]:
    """The select step: k samples out of the candidates, as the selection table, plus info.

    Candidates: the ``eligible`` rows of the threshold step's table (thresholded methods; its rows
    must be in the order of ``scores``), every finite sample (``dpp``) or the whole pool
    (``random``, ``full``). p3, static and dpp pick by greedy MAP of the DPP; spl, curriculum and
    random uniformly at random; full takes everything in a seeded shuffled order.
    """
    traits = methods.get(method)
    opts = _options(options)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    pacing.percentile(round_index, rounds)  # validates round_index / rounds
    ids, difficulty = _check_scores(scores, used=traits.scores)
    n = len(ids)
    k = resolve_budget(budget, n)
    X = _check_embeddings(embeddings, n) if traits.needs_embeddings else None
    rng = np.random.default_rng([int(seed), int(round_index)])

    candidates, tau = _candidates(traits, eligible, ids, difficulty)
    info = {
        "pool": n,
        "finite": int(np.isfinite(difficulty).sum()),
        "percentile": math.nan,
        "threshold": tau,
        "eligible": len(candidates),
        "budget": k,
        "selected": 0,
        "shortfall": 0,
        "dpp_log_det": math.nan,
        "dpp_stopped_early": 0,
        "dpp_passes": 0,
    }
    if traits.selector == "all":
        picks = rng.permutation(n)
        info["budget"] = n
    elif traits.needs_embeddings:  # the DPP
        picks = _dpp_pick(candidates, X, difficulty, k, opts, rng, info)
    else:  # uniform inside the candidates
        picks = rng.choice(candidates, size=min(k, len(candidates)), replace=False)

    info["selected"] = len(picks)
    info["shortfall"] = max(0, info["budget"] - len(picks))
    if traits.scores:
        _warn_if_flat(method, round_index, difficulty)
    if info["shortfall"]:
        log.warning(
            "%s round %d: %d candidates for a budget of %d; taking %d (shortfall %d)",
            method,
            round_index + 1,
            len(candidates),
            info["budget"],
            len(picks),
            info["shortfall"],
        )
    return _selection_table(ids, difficulty, picks, round_index, tau), info


def _warn_if_flat(method: str, round_index: int, difficulty: np.ndarray) -> None:
    """Warn when every finite difficulty is the same: the scores order nothing, so the pick is
    blind (a model collapsed to uniform predictions scores every sample alike)."""
    finite = difficulty[np.isfinite(difficulty)]
    if len(finite) > 1 and finite.min() == finite.max():
        log.warning(
            "%s round %d: all %d finite difficulties are equal (%.6g): the scores carry no order "
            "and the selection is blind; check the previous round's training (loss curve, learning "
            "rate)",
            method,
            round_index + 1,
            len(finite),
            float(finite[0]),
        )


def _candidates(traits: methods.Method, eligible, ids: np.ndarray, difficulty: np.ndarray):
    """``(candidates, tau)``: the row positions picked from (the method's ``candidates`` trait)
    and τ_e (NaN unless thresholded)."""
    tau = math.nan
    n = len(ids)
    if traits.candidates == "eligible":
        mask = _check_eligible(eligible, ids, traits.name)
        candidates = np.flatnonzero(mask)
        if n:
            tau = float(eligible["threshold"].iloc[0])
    elif traits.candidates == "finite":
        candidates = np.flatnonzero(np.isfinite(difficulty))
    else:  # the whole pool, scores unused
        candidates = np.arange(n)
    return candidates, tau


def _selection_table(ids, difficulty, picks, round_index: int, tau: float) -> pd.DataFrame:
    """The selection table of the data contract: the picks in pick order."""
    picks = np.asarray(picks, dtype=np.int64)
    return pd.DataFrame(
        {
            "sample_id": ids[picks],
            "round": np.full(len(picks), round_index + 1, dtype=np.int64),
            "pick_order": np.arange(len(picks), dtype=np.int64),
            "difficulty": difficulty[picks],
            "threshold": np.full(len(picks), tau, dtype=np.float64),
        }
    )


def _check_eligible(eligible, ids: np.ndarray, method: str) -> np.ndarray:
    """The eligible flags of the threshold step's table, checked against the rows of ``scores``."""
    if eligible is None:
        raise ValueError(f"method {method!r} picks among the eligible samples: pass `eligible`")
    missing = [c for c in ELIGIBLE_COLUMNS if c not in eligible.columns]
    if missing:
        raise ValueError(f"eligible table lacks column(s) {missing}; has {list(eligible.columns)}")
    if len(eligible) != len(ids) or not np.array_equal(eligible["sample_id"].to_numpy(), ids):
        raise ValueError(
            "eligible table rows must be the scores' rows in the same order "
            f"({len(eligible)} eligible rows vs {len(ids)} scores)"
        )
    return eligible["eligible"].to_numpy(dtype=bool)


def curriculum_percentile(
    round_index: int, rounds: int, *, start: float = pacing.PAPER_START
) -> float:
    """Window W_e (percent of the easiest samples) of the curriculum baseline: start → 100."""
    pacing.percentile(round_index, rounds, start=start, end=100.0)  # validates arguments
    if rounds == 1:
        return 100.0
    return float(start + (100.0 - start) * round_index / (rounds - 1))


def resolve_budget(budget: int | float, pool: int) -> int:
    """k from ``select_num`` (int ≥ 0) or a fraction of the pool (float in (0, 1])."""
    if isinstance(budget, bool):
        raise ValueError(f"budget must be an int or a float in (0, 1], got {budget!r}")
    if isinstance(budget, (int, np.integer)):
        if budget < 0:
            raise ValueError(f"budget (select_num) must be >= 0, got {budget}")
        return int(budget)
    if isinstance(budget, (float, np.floating)):
        if not 0 < budget <= 1:
            raise ValueError(
                f"a float budget is a fraction of the pool and must be in (0, 1], got {budget}; "
                "pass an int for a number of samples"
            )
        return max(1, int(math.floor(budget * pool + 0.5))) if pool else 0
    raise ValueError(f"budget must be an int or a float in (0, 1], got {budget!r}")


def dpp_features(embeddings) -> np.ndarray:
    """Z-score each column over the given rows, then L2-normalise rows: (m, d) → (m, d) float32.

    Constant columns become 0; a row that is all zero afterwards stays zero.
    """
    X = np.asarray(embeddings)
    m = X.shape[0]
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    out = np.empty(X.shape, dtype=np.float32)
    for s in range(0, m, 8192):  # float64 temporaries one chunk at a time
        z = (X[s : s + 8192] - mean) / std
        norm = np.linalg.norm(z, axis=1, keepdims=True)
        norm[norm == 0] = 1.0
        out[s : s + 8192] = z / norm
    return out


def dpp_kernel_inputs(
    rows, X, difficulty, quality_floor: float, quality: str = "difficulty"
) -> tuple[np.ndarray, np.ndarray]:
    """The DPP's features and quality over ``rows`` (indices into X and difficulty): the rows'
    :func:`dpp_features` and q = max(rule(difficulty), quality_floor), rule one of
    ``QUALITY_RULES`` (the paper's: q = d)."""
    if not quality_floor > 0:
        raise ValueError(f"quality_floor must be > 0, got {quality_floor!r}")
    d = difficulty[rows]
    if quality == "difficulty":
        q = d
    elif quality == "flat":
        q = np.ones_like(d)
    elif quality == "easiness":
        q = 1.0 - d
    else:
        raise ValueError(f"unknown DPP quality rule {quality!r}; expected one of {QUALITY_RULES}")
    return dpp_features(X[rows]), np.maximum(q, quality_floor)


def _dpp_pick(candidates, X, difficulty, k, opts, rng, info) -> np.ndarray:
    """Greedy MAP over ``candidates`` with q = max(difficulty, quality_floor); rerun on the rest
    while a run stops early (ridge = 0)."""
    want = min(k, len(candidates))
    if want == 0:
        return np.zeros(0, dtype=np.int64)
    picked: list[np.ndarray] = []
    rest = np.asarray(candidates, dtype=np.int64)
    while want > 0 and len(rest):
        features, quality = dpp_kernel_inputs(
            rest, X, difficulty, opts["quality_floor"], opts["quality"]
        )
        idx, log_det, run = dpp.greedy_map(
            features,
            quality,
            want,
            ridge=opts["ridge"],
            mode=opts["dpp_mode"],
            delta=opts["delta"],
            seed=int(rng.integers(2**63 - 1)),
            return_info=True,
        )
        if info["dpp_passes"] == 0:
            info["dpp_log_det"] = float(log_det)
        info["dpp_passes"] += 1
        if run["stopped_early"]:
            info["dpp_stopped_early"] = 1
        if len(idx) == 0:
            break
        picked.append(rest[idx])
        want -= len(idx)
        keep = np.ones(len(rest), dtype=bool)
        keep[idx] = False
        rest = rest[keep]
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def _check_scores(scores, *, used: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, difficulty)``; when the method ignores difficulty (random, full) NaN is accepted."""
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    missing = [c for c in ("sample_id", "difficulty") if c not in scores.columns]
    if missing:
        raise ValueError(f"scores lacks column(s) {missing}; has {list(scores.columns)}")
    ids = scores["sample_id"].to_numpy()
    dup = scores["sample_id"].duplicated()
    if dup.any():
        raise ValueError(
            f"scores has duplicate sample_id values, e.g. {scores['sample_id'][dup].iloc[0]!r}"
        )
    if not used:
        return ids, scores["difficulty"].to_numpy(dtype=np.float64)
    difficulty = pacing.as_difficulty(scores["difficulty"].to_numpy(), "scores['difficulty']")
    return ids, difficulty


def _check_embeddings(embeddings, n: int) -> np.ndarray:
    if embeddings is None:
        raise ValueError("this method needs embeddings (n, d) in the row order of scores")
    X = np.asarray(embeddings)
    if X.ndim != 2 or X.shape[0] != n:
        raise ValueError(f"embeddings must have shape ({n}, d) like scores' rows, got {X.shape}")
    if not np.isfinite(X).all():
        row = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise ValueError(f"embeddings row {row} is not finite")
    return X


def _align_previous(previous, ids: np.ndarray):
    """d_{e−1} as an array in the row order of ``ids``: from an (n,) array, or from a DataFrame
    with ``sample_id`` and ``difficulty`` (samples it lacks get NaN: no trend term)."""
    if previous is None:
        return None
    if isinstance(previous, pd.DataFrame):
        missing = [c for c in ("sample_id", "difficulty") if c not in previous.columns]
        if missing:
            raise ValueError(f"previous scores lack column(s) {missing}")
        lookup = previous.drop_duplicates("sample_id").set_index("sample_id")["difficulty"]
        return pd.Series(ids).map(lookup).to_numpy(dtype=np.float64)
    prev = np.asarray(previous, dtype=np.float64)
    if prev.shape != (len(ids),):
        raise ValueError(f"previous must have shape ({len(ids)},) like scores, got {prev.shape}")
    return prev
