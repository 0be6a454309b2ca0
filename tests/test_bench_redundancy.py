"""Whether P3 can see near-duplicates (benchmarks/bench_redundancy.py)."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

from p3_pruning.data import generate_default
from p3_pruning.data.inject import compose_pool
from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_redundancy", PROJECT_ROOT / "benchmarks" / "bench_redundancy.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_a_copy_next_to_its_source_is_its_nearest_neighbour():
    ids = ["a", "b", "c", "d", "a~dup0", "b~dup1"]
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 16))
    embeddings = np.vstack([base, base[:2] + 1e-3 * rng.normal(size=(2, 16))])
    pairs = bench.copy_pairs(ids)
    assert pairs == [(4, 0), (5, 1)]
    view = bench.partner_view(embeddings, pairs)
    assert view["nearest"] == 1.0 and view["median_rank"] == 0
    assert view["cos_pair"] > 0.99 > view["cos_any"]
    far = bench.partner_view(np.vstack([base, base[2:] + 1e-3]), pairs)  # copies next to others
    assert far["nearest"] == 0.0 and far["median_rank"] >= 1


def test_random_distinct_is_the_exact_expectation():
    copies = np.array([2, 1, 3, 1])  # rows per problem
    rows = np.repeat(np.arange(len(copies)), copies)
    for k in (1, 3, 5):
        draws = list(itertools.combinations(rows, k))
        brute = np.mean([len(set(d)) / k for d in draws])
        assert bench.random_distinct(copies, k) == pytest.approx(brute)


def test_runs_on_a_composed_pool(tmp_path, capsys):
    pool = compose_pool(generate_default(30, 0), seed=0, duplicate=0.4)
    folder = tmp_path / bench.TRAIN_POOL / "2026-01-02T00.00.00.000Z"
    folder.mkdir(parents=True)
    pool.to_parquet(folder / bench.TRAIN_POOL.name)
    table = bench.main(tmp_path, ["prompt"], model="tiny-random")
    shares = table.filter(like=" @ ").to_numpy()
    assert table.shape[0] == 1 and ((shares > 0) & (shares <= 1)).all()
    assert "| random (expected) | — |" in capsys.readouterr().out
    pool[pool["origin"] == "clean"].to_parquet(folder / bench.TRAIN_POOL.name)
    with pytest.raises(ValueError, match="no near-duplicates"):
        bench.main(tmp_path, ["prompt"], model="tiny-random")
