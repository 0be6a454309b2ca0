"""Shared test settings: the tiny-model run every pipeline test starts from.

``tiny_run(**overrides)`` is the parameter set of a `kedro run` on the random-weight tiny model
(``models.TINY``: seconds a round on a CPU), with ``overrides`` merged key by key, so a test states
only what it changes. Test modules import it (``from conftest import tiny_run``); pytest puts this
folder on ``sys.path`` before collecting them.
"""

from __future__ import annotations

import os

import pytest
import torch

from p3_pruning.config import merge_block
from p3_pruning.workspace import PROJECT_ROOT

TINY_RUN = {
    "model": {"name_or_path": "tiny-random", "cache_dir": str(PROJECT_ROOT / "data" / "06_models")},
    "scoring": {"progress": False, "max_length": 256, "token_budget": 2048},
    "training": {"batch_size": 4, "max_length": 256, "progress": False},
    "cheap_eval": {"max_samples": 4, "progress": False},
    "generation": {"max_new_tokens": 12, "batch_size": 8, "progress": False},
}

# Under pytest-xdist (``-n N``) each worker takes its share of the cores: N workers with a thread
# per core each oversubscribe the machine and slow every test down several-fold. Set after
# collection (test modules set their own count at import) and for the processes tests start.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
if WORKERS > 1:
    THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)


@pytest.fixture(autouse=True, scope="session")
def _share_the_cores():
    if WORKERS > 1:
        torch.set_num_threads(THREADS)
    yield


def tiny_run(**overrides) -> dict:
    """The tiny-model run's parameters with ``overrides`` merged in (nested blocks key by key)."""
    return merge_block(TINY_RUN, overrides)
