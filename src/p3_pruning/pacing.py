"""Pace-adaptive threshold (self-paced learning): which samples are easy enough for round e.

Kedro-free. Round e = 0 … E−1 admits the samples whose difficulty is at most the P_e-th percentile
of this round's (finite) difficulties; P_e grows from ``start`` toward ``end`` so harder data is
admitted as the model improves.

Schedules, with x = e / E ∈ [0, 1) (the paper's fraction; the last round is x = (E−1)/E):

- ``linear`` (paper):  P_e = start + (end − start) · x
- ``geometric``:       P_e = start · (end / start) ** x      (needs start > 0; slow first, fast late)
- ``root``:            P_e = start + (end − start) · x ** (1 / power)   (root-p, power ≥ 1; fast first)

All three give P_0 = start, increase monotonically with e and approach ``end`` as e/E → 1.
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

SCHEDULES = ("linear", "geometric", "root")
# The paper's pacing: P_e grows linearly from the 45th toward the 95th percentile.
PAPER_START = 45.0
PAPER_END = 95.0
DEFAULT_POWER = (
    2.0  # the geometric and root schedules' exponent (not in the paper, which is linear)
)


def _check_round(round_index: int, rounds: int) -> None:
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
    if (
        isinstance(round_index, bool)
        or not isinstance(round_index, (int, np.integer))
        or not 0 <= round_index < rounds
    ):
        raise ValueError(
            f"round_index must be an integer in [0, {rounds - 1}] (0-based), got {round_index!r}"
        )


def percentile(
    round_index: int,
    rounds: int,
    *,
    start: float = PAPER_START,
    end: float = PAPER_END,
    schedule: str = "linear",
    power: float = DEFAULT_POWER,
) -> float:
    """Percentile P_e (0–100) of round ``round_index`` (0-based) out of ``rounds`` (see module doc)."""
    _check_round(round_index, rounds)
    if not (0.0 <= start <= end <= 100.0):
        raise ValueError(f"need 0 <= start <= end <= 100, got start={start!r}, end={end!r}")
    x = round_index / rounds
    if schedule == "linear":
        return float(start + (end - start) * x)
    if schedule == "geometric":
        if start <= 0:
            raise ValueError(f"the geometric schedule needs start > 0, got start={start!r}")
        return float(start * (end / start) ** x)
    if schedule == "root":
        if not power >= 1:
            raise ValueError(f"the root schedule needs power >= 1, got power={power!r}")
        return float(start + (end - start) * x ** (1.0 / power))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


def as_difficulty(values, name: str = "difficulty") -> np.ndarray:
    """Difficulties as (n,) float64; NaN or -inf is an error (failed samples are +inf)."""
    d = np.asarray(values, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError(
            f"{name} has {int(np.isnan(d).sum())} NaN values; failed samples must be +inf"
        )
    if np.isneginf(d).any():
        raise ValueError(f"{name} has -inf values; difficulty must be finite or +inf")
    return d


def trend_adjusted(difficulty, previous=None, *, alpha: float = 0.0) -> np.ndarray:
    """The authors' trend term: d_e + α·(d_e − d_{e−1}), shape (n,).

    Applied only where both d_e and d_{e−1} are finite; elsewhere d_e is kept as it is (a sample
    that failed last round gets no trend, a sample that fails now stays +inf).
    """
    d = as_difficulty(difficulty, "difficulty")
    if previous is None or alpha == 0:
        return d
    prev = np.asarray(previous, dtype=np.float64)
    if prev.shape != d.shape:
        raise ValueError(f"previous must have the shape of difficulty {d.shape}, got {prev.shape}")
    both = np.isfinite(d) & np.isfinite(prev)
    out = d.copy()
    out[both] = d[both] + alpha * (d[both] - prev[both])
    return out


def eligible(
    difficulty,
    round_index: int,
    rounds: int,
    *,
    start: float = PAPER_START,
    end: float = PAPER_END,
    schedule: str = "linear",
    power: float = DEFAULT_POWER,
    previous=None,
    alpha: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Eligible mask (n,) bool and threshold τ_e for round ``round_index``.

    τ_e is the P_e-th percentile (linear interpolation) of the finite (trend-adjusted) difficulties;
    eligible = finite and ≤ τ_e, so ties at τ_e are all admitted. +inf (failed) samples are never
    eligible. With no finite value the mask is all False and τ_e is NaN (no threshold exists).
    """
    p = percentile(round_index, rounds, start=start, end=end, schedule=schedule, power=power)
    d = trend_adjusted(difficulty, previous, alpha=alpha)
    finite = np.isfinite(d)
    if not finite.any():
        if d.size:
            log.warning("all %d difficulties are +inf: nothing is eligible", d.size)
        return np.zeros(d.shape, dtype=bool), math.nan
    threshold = float(np.percentile(d[finite], p))
    return finite & (d <= threshold), threshold
