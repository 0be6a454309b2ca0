"""Evidence over seeds: intervals, paired differences, the study table, difficulty vs level, plots.

Kedro-free. A study runs every method with several seeds; its long table of final results has one
row per (method, seed). The questions it answers:

- **Is a method's accuracy real?** :func:`mean_ci`: mean over seeds with a Student t interval,
  mean ± t_{(1+c)/2, n−1} · sd / √n (sd with n − 1 degrees of freedom). Seeds are the replicates:
  each one redraws the LoRA init, the data order and the selection. With one seed the half-width
  is NaN (no spread to measure), never 0.
- **How noisy is one evaluation?** :func:`binomial_stderr`: √(p(1 − p)/n) for an accuracy p on n
  problems, the noise of a single seed's figure (it says nothing about seed-to-seed spread).
- **Does it beat the baseline?** :func:`paired_difference`: method − reference per seed, over the
  seeds both ran, with its t interval. Seeds pair the runs (same seed: same pool split and eval set),
  so the pair's difference is tighter than comparing two independent intervals.
- **Does difficulty mean something?** :func:`difficulty_level_spearman`: Spearman correlation
  between the policy's difficulty and the source's own level label.

NaN values (a seed that has no figure) are dropped before any interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from p3_pruning.methods import P3, REFERENCES
from p3_pruning.plotting import subplots

# long-table columns averaged over seeds into the study table: per-level accuracies and compute
_LEVEL_PREFIX = "accuracy/"
_COMPUTE_SUFFIXES = ("_flops", "_tokens", "_seconds")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


class Interval(NamedTuple):
    """A mean with its t interval: ``low = mean − half_width``, ``high = mean + half_width``."""

    n: int
    mean: float
    sd: float
    half_width: float
    low: float
    high: float


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` (NaN dropped) with a two-sided Student t interval at ``confidence``.

    n = 0: everything NaN. n = 1: the mean is the value; sd, half-width and bounds are NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.asarray(list(values), dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    nan = math.nan
    if n == 0:
        return Interval(0, nan, nan, nan, nan, nan)
    mean = float(x.mean())
    if n == 1:
        return Interval(1, mean, nan, nan, nan, nan)
    sd = float(x.std(ddof=1))
    half = float(_scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n))
    return Interval(n, mean, sd, half, mean - half, mean + half)


def binomial_stderr(accuracy: float, n: int) -> float:
    """Standard error √(p(1 − p)/n) of an accuracy p measured on n problems (NaN when n ≤ 0)."""
    if n is None or not n > 0 or accuracy is None or math.isnan(accuracy):
        return math.nan
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy!r}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def _check_results(results: pd.DataFrame, metric: str) -> None:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in ("method", "seed", metric) if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; has {list(results.columns)}")
    dup = results.duplicated(["method", "seed"])
    if dup.any():
        row = results[dup].iloc[0]
        method, seed = _plain(row["method"]), _plain(row["seed"])
        raise ValueError(f"results has more than one row for method {method!r}, seed {seed!r}")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def paired_difference(
    results: pd.DataFrame,
    method: str,
    reference: str,
    *,
    metric: str = "accuracy",
    confidence: float = 0.95,
) -> Interval:
    """``method − reference`` in ``metric`` per seed (seeds both have), with its t interval.

    results: long table with ``method``, ``seed`` and ``metric``. All NaN when either method is
    absent or they share no seed.
    """
    _check_results(results, metric)
    wide = results.pivot(index="seed", columns="method", values=metric)
    if method not in wide.columns or reference not in wide.columns:
        return mean_ci([], confidence)
    diff = (wide[method] - wide[reference]).to_numpy(dtype=np.float64)
    return mean_ci(diff, confidence)


def minimum_detectable_difference(
    sd: float, n: int, *, confidence: float = 0.95, power: float = 0.8
) -> float:
    """The smallest true mean difference a two-sided paired t test at ``confidence`` detects with
    probability ``power`` over ``n`` pairs whose differences have standard deviation ``sd``:
    (t_{(1+c)/2, n−1} + t_{power, n−1}) · sd / √n. NaN below two pairs or without an sd."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    t_alpha = _scipy_stats.t.ppf((1 + confidence) / 2, df)
    t_beta = _scipy_stats.t.ppf(power, df)
    return float((t_alpha + t_beta) * sd / math.sqrt(n))


def study_table(
    results: pd.DataFrame,
    *,
    references: Sequence[str] = REFERENCES,
    metric: str = "accuracy",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per method (in order of first appearance) from a long table of final results.

    results: one row per (method, seed) with ``method``, ``seed``, ``metric`` and optionally
    ``n_eval``, per-level accuracies ``accuracy/<source>/<level>``, ``samples_trained`` and compute
    columns (``*_flops``, ``*_tokens``, ``*_seconds``).

    Columns: ``method``, ``n_seeds``, ``mean``, ``sd``, ``ci_low``, ``ci_high`` (t interval over
    seeds), ``stderr_within`` (binomial stderr of one seed's accuracy, root mean square over seeds;
    needs ``n_eval``), per reference r: ``diff_vs_<r>``, ``diff_vs_<r>_ci_low``,
    ``diff_vs_<r>_ci_high`` (paired over seeds; NaN when r did not run), ``diff_vs_<r>_mdd``
    (the minimum detectable difference at 80 % power of that paired comparison), then the seed means of
    ``n_eval``, the per-level accuracies, ``samples_trained`` and the compute columns.
    """
    _check_results(results, metric)
    level_cols = [c for c in results.columns if c.startswith(_LEVEL_PREFIX)]
    compute_cols = [c for c in results.columns if c.endswith(_COMPUTE_SUFFIXES)]
    mean_cols = [
        c for c in ("n_eval", *level_cols, "samples_trained", *compute_cols) if c in results.columns
    ]
    rows = []
    for method in pd.unique(results["method"]):
        part = results[results["method"] == method]
        ci = mean_ci(part[metric], confidence)
        row = {
            "method": method,
            "n_seeds": ci.n,
            "mean": ci.mean,
            "sd": ci.sd,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "stderr_within": _stderr_within(part, metric),
        }
        for ref in references:
            diff = paired_difference(results, method, ref, metric=metric, confidence=confidence)
            row[f"diff_vs_{ref}"] = diff.mean
            row[f"diff_vs_{ref}_ci_low"] = diff.low
            row[f"diff_vs_{ref}_ci_high"] = diff.high
            row[f"diff_vs_{ref}_mdd"] = minimum_detectable_difference(
                diff.sd, diff.n, confidence=confidence
            )
        for col in mean_cols:
            values = pd.to_numeric(part[col], errors="coerce")
            row[col] = float(values.mean()) if values.notna().any() else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def merge_results(tables: Sequence[pd.DataFrame], *, metric: str = "accuracy") -> pd.DataFrame:
    """Several studies' long tables as one, to pool more seeds (or methods) of the same setup.

    Each (method, seed) may come from one table only. Rows without a seed (the base model,
    evaluated once per study) are kept once, and must agree on ``metric``: two studies whose base
    accuracy differs did not evaluate on the same set and cannot be pooled.
    """
    if not tables:
        raise ValueError("merge_results needs at least one results table")
    for table in tables:
        _check_results(table, metric)
    merged = pd.concat(list(tables), ignore_index=True)
    unseeded = merged["seed"].isna()
    for method, part in merged[unseeded].groupby("method", sort=False):
        if part[metric].nunique(dropna=False) > 1:
            values = sorted(part[metric].tolist())
            raise ValueError(
                f"the studies' {method!r} rows disagree on {metric} ({values}): "
                "not the same evaluation set, so they cannot be pooled"
            )
    merged = pd.concat(
        [merged[~unseeded], merged[unseeded].drop_duplicates("method")], ignore_index=True
    )
    _check_results(merged, metric)  # a (method, seed) that two studies both ran
    return merged


def _stderr_within(part: pd.DataFrame, metric: str) -> float:
    if "n_eval" not in part.columns:
        return math.nan
    variances = [
        binomial_stderr(float(acc), int(n)) ** 2
        for acc, n in zip(part[metric], part["n_eval"], strict=True)
        if pd.notna(acc) and pd.notna(n)
    ]
    variances = [v for v in variances if not math.isnan(v)]
    return math.sqrt(sum(variances) / len(variances)) if variances else math.nan


# ----------------------------------------------------------------------------------------------
# Difficulty against the source's level
# ----------------------------------------------------------------------------------------------
def parse_level(value) -> float:
    """A level label as a number: 3, "3", "Level 3", "L3" → 3.0; None, NaN or no number → NaN."""
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    match = _NUMBER.search(str(value))
    return float(match.group()) if match else math.nan


def difficulty_levels(scores: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Scores joined with the samples' level on ``sample_id``: the scores' columns ``sample_id``,
    ``difficulty`` (and ``round``, ``method`` when present) plus ``level`` as a number (NaN where
    the sample has none or it has no number). Rows keep the scores' order."""
    for name, frame, cols in (
        ("scores", scores, ("sample_id", "difficulty")),
        ("samples", samples, ("sample_id", "level")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}; has {list(frame.columns)}")
    keep = [c for c in ("sample_id", "method", "round", "difficulty") if c in scores.columns]
    levels = samples.drop_duplicates("sample_id").set_index("sample_id")["level"]
    out = scores[keep].reset_index(drop=True)
    out["level"] = out["sample_id"].map(levels).map(parse_level).astype(np.float64)
    return out


def difficulty_level_spearman(scores: pd.DataFrame, samples: pd.DataFrame) -> float:
    """Spearman correlation between difficulty and the samples' ``level``, joined on ``sample_id``.

    Only samples with a finite difficulty (failed samples are +inf) and a level with a number take
    part; ties get average ranks. NaN when fewer than 2 distinct levels or difficulties remain.
    """
    table = difficulty_levels(scores, samples)
    d = table["difficulty"].to_numpy(dtype=np.float64)
    table = table[np.isfinite(d) & table["level"].notna().to_numpy()]
    if table["level"].nunique() < 2 or table["difficulty"].nunique() < 2:
        return math.nan
    rank_d = table["difficulty"].rank(method="average").to_numpy()
    rank_l = table["level"].rank(method="average").to_numpy()
    return float(np.corrcoef(rank_d, rank_l)[0, 1])


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib figures; the caller saves or closes them)
# ----------------------------------------------------------------------------------------------
def _yerr(table: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars (2, n) from ``ci_low``/``ci_high``; 0 where the interval is NaN."""
    low = (table["mean"] - table["ci_low"]).to_numpy(dtype=np.float64)
    high = (table["ci_high"] - table["mean"]).to_numpy(dtype=np.float64)
    return np.nan_to_num(np.vstack([low, high]), nan=0.0)


def accuracy_plot(table: pd.DataFrame, results: pd.DataFrame | None = None, *, metric="accuracy"):
    """Mean accuracy per method with its interval over seeds; each seed as a dot if ``results``."""
    fig, ax = subplots(figsize=(6.5, 3.8))
    x = np.arange(len(table))
    colors = ["#d62" if m == P3 else "#579" for m in table["method"]]
    ax.bar(x, table["mean"], color=colors, alpha=0.35)
    ax.errorbar(x, table["mean"], yerr=_yerr(table), fmt="o", color="k", capsize=4)
    if results is not None:
        for i, method in enumerate(table["method"]):
            seeds = results.loc[results["method"] == method, metric].to_numpy(dtype=float)
            jitter = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else np.zeros(1)
            ax.scatter(i + jitter[: len(seeds)], seeds, s=12, color=colors[i], zorder=3)
    labels = [f"{m}\n(n={n})" for m, n in zip(table["method"], table["n_seeds"], strict=True)]
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel(f"{metric} (mean, 95 % CI over seeds)")
    ax.set_title("Final accuracy per method")
    fig.tight_layout()
    return fig


def accuracy_compute_plot(table: pd.DataFrame, *, flops: str = "total_flops"):
    """Mean accuracy (with its interval) against the mean estimated FLOPs of a run, log x."""
    if flops not in table.columns:
        raise ValueError(f"study table lacks the compute column {flops!r}")
    fig, ax = subplots(figsize=(6.5, 3.8))
    for i, row in enumerate(table.itertuples(index=False)):
        color = "#d62" if row.method == P3 else f"C{i % 10}"
        err = _yerr(table.iloc[[i]])
        x = getattr(row, flops)
        ax.errorbar([x], [row.mean], yerr=err, fmt="o", color=color, capsize=4)
        ax.annotate(row.method, (x, row.mean), textcoords="offset points", xytext=(5, 5))
    positive = table[flops].to_numpy(dtype=float)
    if (positive > 0).any():
        ax.set_xscale("log")
    ax.set_xlabel(f"estimated FLOPs per run ({flops})")
    ax.set_ylabel("accuracy (mean, 95 % CI)")
    ax.set_title("Accuracy against compute")
    fig.tight_layout()
    return fig


def _note_figure(text: str):
    """The by-level plot's figure when there is nothing to draw: ``text`` in place of the axes."""
    fig, ax = subplots(figsize=(7, 3.8))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return fig


def difficulty_by_level_plot(difficulties: pd.DataFrame):
    """Box plot of difficulty per level, grouped by round.

    difficulties: long table with ``round``, ``level`` and ``difficulty`` (e.g.
    :func:`difficulty_levels` of every round's scores); non-finite difficulties and rows without a
    numeric level are left out. An empty table (a study whose arms never score the pool, e.g.
    ``random`` alone) gives a figure that says so.
    """
    if difficulties.empty:
        return _note_figure("no arm scored the pool")
    missing = [c for c in ("round", "level", "difficulty") if c not in difficulties.columns]
    if missing:
        raise ValueError(f"difficulties lacks column(s) {missing}")
    frame = difficulties.assign(level=difficulties["level"].map(parse_level))
    d = frame["difficulty"].to_numpy(dtype=np.float64)
    frame = frame[np.isfinite(d) & frame["level"].notna().to_numpy()]
    if frame.empty:
        return _note_figure("no sample has a level")
    fig, ax = subplots(figsize=(7, 3.8))
    rounds = sorted(frame["round"].unique())
    levels = sorted(frame["level"].unique())
    width = 0.8 / len(levels)
    for j, level in enumerate(levels):
        data, positions = [], []
        for i, r in enumerate(rounds):
            values = frame.loc[(frame["round"] == r) & (frame["level"] == level), "difficulty"]
            if len(values):
                data.append(values.to_numpy())
                positions.append(i - 0.4 + width * (j + 0.5))
        parts = ax.boxplot(
            data,
            positions=positions,
            widths=width * 0.9,
            patch_artist=True,
            medianprops={"color": "k"},
        )
        for box in parts["boxes"]:
            box.set_facecolor(f"C{j % 10}")
            box.set_alpha(0.6)
        ax.plot([], [], color=f"C{j % 10}", linewidth=6, alpha=0.6, label=f"level {level:g}")
    ax.set_xticks(range(len(rounds)), [f"round {r}" for r in rounds])
    ax.set_ylabel("difficulty")
    ax.set_title("Difficulty by source level per round")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
