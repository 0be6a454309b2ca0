"""Names that encode structure, built and parsed in one place (Kedro-free).

A run's datasets and nodes live under namespaces:

- ``<arm>.round_<e>`` — round e (1-based) of a method's pipeline (``p3.round_2``);
- ``<arm>.seed_<s>.round_<e>`` — the same inside a study, one chain per seed;
- ``<arm>[.seed_<s>].final`` — the final evaluation of that chain (``base.final``: the base model).

``<arm>`` is a method name or a study arm's name. Report nodes take their inputs under keys
``<arm>__<seed or none>__final`` / ``__round_<e>`` / ``__scores__<e>`` (``report_key`` /
``parse_report_key``), since Kedro's node arguments cannot contain dots.
"""

from __future__ import annotations

import re
from typing import NamedTuple

FINAL = "final"
BASE = "base"  # the untuned model: its shared round-1 scoring and its final evaluation
KEY_SEP = "__"
NO_SEED = "none"
_PLACE = re.compile(
    r"^(?P<arm>[^.]+)(?:\.seed_(?P<seed>\d+))?(?:\.(?:round_(?P<round>\d+)|(?P<final>final)))?"
    r"(?:\.|$)"
)


class Place(NamedTuple):
    """Where a namespace points: arm, seed (None outside a study), round (1-based; None for a
    final evaluation or a chain), final (True for ``.final``)."""

    arm: str
    seed: int | None
    round: int | None
    final: bool

    @property
    def chain(self) -> str:
        """The namespace of the arm-seed chain: ``p3`` or ``p3.seed_7``."""
        return chain(self.arm, self.seed)


def chain(arm: str, seed: int | None = None) -> str:
    """``p3`` or, in a study, ``p3.seed_7``."""
    return arm if seed is None else f"{arm}.seed_{seed}"


def round_namespace(arm: str, round_index: int, seed: int | None = None) -> str:
    """Namespace of a round; ``round_index`` is 0-based, names are 1-based."""
    return f"{chain(arm, seed)}.round_{round_index + 1}"


def final_namespace(arm: str, seed: int | None = None) -> str:
    """Namespace of a chain's final evaluation."""
    return f"{chain(arm, seed)}.{FINAL}"


def parse(namespace: str) -> Place:
    """The :class:`Place` of ``p3.round_2``, ``p3.seed_7.round_2``, ``p3.seed_7.final``,
    ``p3.seed_7`` or a dataset name under one of them (``p3.round_2.scores``)."""
    match = _PLACE.match(namespace or "")
    if not match or not match["arm"]:
        raise ValueError(f"not a run namespace: {namespace!r}")
    return Place(
        match["arm"],
        int(match["seed"]) if match["seed"] is not None else None,
        int(match["round"]) if match["round"] is not None else None,
        match["final"] is not None,
    )


def report_key(arm: str, seed: int | None, what: str, *more) -> str:
    """A report node's argument name: ``p3__7__final``, ``p3__none__round_2``, ``p3__7__scores__1``."""
    return KEY_SEP.join([arm, NO_SEED if seed is None else str(seed), what, *map(str, more)])


def parse_report_key(key: str) -> tuple[str, int | None, str, list[str]] | None:
    """``(arm, seed, what, rest)`` of a :func:`report_key`; None for other argument names."""
    parts = key.split(KEY_SEP)
    if len(parts) < 3:
        return None
    seed = None if parts[1] == NO_SEED else int(parts[1])
    return parts[0], seed, parts[2], parts[3:]
