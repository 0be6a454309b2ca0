"""The method registry: one row per selection method, read by every caller (Kedro-free).

A method is described by four traits; the strategies, the round template, the hooks, the
in-loop callback and the sweep read them here instead of keeping tuples of names:

- ``scoring``: where its difficulties come from — ``rescore`` (the current policy, every round),
  ``once`` (the base model in round 1, reused) or ``never`` (no scores: difficulty NaN).
- ``threshold``: its threshold step — ``pacing`` (the self-paced percentile P_e), ``window``
  (curriculum's static easy→hard window) or None (no threshold step).
- ``selector``: how it picks k among its candidates — ``dpp`` (greedy MAP of the DPP, needs
  embeddings), ``uniform`` (seeded uniform draw) or ``all`` (every sample, seeded order; the
  budget is ignored).
- ``candidates``: what it picks from — ``eligible`` (the threshold step's eligible set),
  ``finite`` (every sample with a finite difficulty) or ``pool`` (every row).

Adding a method is one row here plus, for a new selector, its branch in ``strategies.pick``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

P3 = "p3"  # the paper's method: the default of every entry point that takes a method


@dataclass(frozen=True)
class Method:
    name: str
    scoring: Literal["rescore", "once", "never"]
    threshold: Literal["pacing", "window"] | None
    selector: Literal["dpp", "uniform", "all"]
    candidates: Literal["eligible", "finite", "pool"]
    description: str

    @property
    def thresholded(self) -> bool:
        return self.threshold is not None

    @property
    def needs_embeddings(self) -> bool:
        return self.selector == "dpp"

    @property
    def scores(self) -> bool:
        """Whether it reads difficulties at all."""
        return self.scoring != "never"

    @property
    def step_name(self) -> str:
        """The round template's name for its select step: ``dpp_select`` or ``pick``."""
        return "dpp_select" if self.selector == "dpp" else "pick"


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method(P3, "rescore", "pacing", "dpp", "eligible", "threshold, then the DPP (the paper)"),
        Method("spl", "rescore", "pacing", "uniform", "eligible", "P3 without the DPP"),
        Method("dpp", "rescore", None, "dpp", "finite", "P3 without the threshold"),
        Method("random", "never", None, "uniform", "pool", "k at random from the pool"),
        Method("full", "never", None, "all", "pool", "the whole pool every round"),
        Method("static", "once", "pacing", "dpp", "eligible", "P3 on base-model scores"),
        Method("curriculum", "once", "window", "uniform", "eligible", "easy-to-hard windows"),
    )
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
REFERENCES = ("random", "full")  # the baselines every study compares against


def get(name: str) -> Method:
    """The registry row of ``name``; ValueError naming the known methods otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; expected one of {METHODS}") from None


def names(**traits) -> tuple[str, ...]:
    """Methods whose traits equal ``traits``, e.g. ``names(selector="dpp")``; a trait given as a
    tuple or set matches any of its values."""

    def matches(method: Method) -> bool:
        for key, want in traits.items():
            value = getattr(method, key)
            if isinstance(want, tuple | set | frozenset) and value not in want:
                return False
            if not isinstance(want, tuple | set | frozenset) and value != want:
                return False
        return True

    return tuple(m.name for m in REGISTRY.values() if matches(m))
