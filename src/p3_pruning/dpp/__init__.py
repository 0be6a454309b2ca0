"""The diversity step: greedy MAP of a low-rank DPP, never building the n×n kernel (Kedro-free).

- :mod:`~p3_pruning.dpp.greedy`: ``greedy_map`` (exact, blocked; or stochastic), ``log_det_path``;
- :mod:`~p3_pruning.dpp.kernel`: the feature-space kernel state (F, q, the projector P);
- :mod:`~p3_pruning.dpp.stochastic`: stochastic greedy (Mirzasoleiman et al. 2015);
- :mod:`~p3_pruning.dpp.reference`: ``greedy_map_reference``, Chen et al.'s dense loop, the spec.
"""

from p3_pruning.dpp.greedy import DEFAULT_RIDGE, MODES, exact_greedy, greedy_map, log_det_path
from p3_pruning.dpp.reference import greedy_map_reference

__all__ = [
    "DEFAULT_RIDGE",
    "MODES",
    "exact_greedy",
    "greedy_map",
    "greedy_map_reference",
    "log_det_path",
]
