import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning import pacing, strategies
from p3_pruning.sweep import (
    SCHEDULE_COLUMNS,
    SWEEP_COLUMNS,
    schedule_sweep,
    sweep,
    sweep_heatmap,
)

torch.set_num_threads(2)
N, D = 300, 8
RUN = {"round_index": 0, "rounds": 3, "seed": 5}


@pytest.fixture(scope="module")
def cached():
    """One round's scores (with ties and failed samples) and embeddings, and the run's selection."""
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, N).round(3)
    difficulty[rng.choice(N, 9, replace=False)] = np.inf
    scores = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(N)], "difficulty": difficulty})
    embeddings = rng.standard_normal((N, D)).astype(np.float32)
    configured, info = strategies.run_strategy(
        "p3", scores, embeddings, budget=30, start=45, end=95, ridge=1e-3, **RUN
    )
    return scores, embeddings, configured, info


def grid(cached, **kw):
    scores, embeddings, configured, _ = cached
    args = dict(
        percentiles=[20, 45, 80],
        budgets=[30, 0.25],
        ridges=[1e-3, 1e-2],
        configured=configured,
        progress=False,
        **RUN,
    )
    args.update(kw)
    return sweep(scores, embeddings, **args)


def test_grid_shape_and_order(cached):
    table = grid(cached)
    assert list(table.columns) == SWEEP_COLUMNS
    assert len(table) == 3 * 2 * 2
    assert table["percentile"].tolist() == [20.0] * 4 + [45.0] * 4 + [80.0] * 4
    assert table["ridge"].tolist()[:4] == [1e-3, 1e-3, 1e-2, 1e-2]
    assert table["budget"].tolist()[:2] == [30, 0.25]
    assert (table["pool"] == N).all() and (table["finite"] == N - 9).all()
    assert table["k"].tolist()[:2] == [30, 75]


def test_the_configured_point_reproduces_the_run_bit_for_bit(cached):
    _, _, configured, info = cached
    table = grid(cached)
    row = table[(table["percentile"] == 45) & (table["budget"] == 30) & (table["ridge"] == 1e-3)]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["overlap_configured"] == 1.0 and row["jaccard_configured"] == 1.0
    assert row["dpp_log_det"] == info["dpp_log_det"]
    assert row["threshold"] == info["threshold"] and row["eligible"] == info["eligible"]
    assert row["selected_difficulty_mean"] == configured["difficulty"].mean()
    # at another threshold or budget the selection differs from the run's
    others = table[(table["percentile"] != 45) | (table["budget"] != 30)]
    assert (others["jaccard_configured"] < 1).all()


def test_eligible_counts_and_thresholds_follow_the_percentile(cached):
    scores = cached[0]
    table = grid(cached)
    finite = scores["difficulty"].to_numpy()[np.isfinite(scores["difficulty"].to_numpy())]
    for p, part in table.groupby("percentile"):
        tau = np.percentile(finite, p)
        assert (part["threshold"] == tau).all()
        assert (part["eligible"] == int((finite <= tau).sum())).all()
    by_p = table.groupby("percentile")["eligible"].first()
    assert by_p.is_monotonic_increasing
    assert (table["selected"] == np.minimum(table["k"], table["eligible"])).all()
    assert (table["shortfall"] == table["k"] - table["selected"]).all()
    # a harder threshold admits harder samples
    assert table.groupby("percentile")["selected_difficulty_mean"].mean().is_monotonic_increasing


def test_each_point_is_the_strategy_at_that_setting(cached):
    scores, embeddings, _, _ = cached
    table = grid(cached, percentiles=[80], budgets=[0.25], ridges=[1e-2], dpp_mode="exact")
    sel, info = strategies.run_strategy(
        "p3", scores, embeddings, budget=0.25, start=80, end=80, ridge=1e-2, **RUN
    )
    row = table.iloc[0]
    assert row["dpp_log_det"] == info["dpp_log_det"]
    assert row["selected_difficulty_mean"] == sel["difficulty"].mean()
    # the grid sets start/end/ridge/schedule itself; the run's pacing values are ignored
    again = grid(
        cached, percentiles=[80], budgets=[0.25], ridges=[1e-2], start=10, end=20, ridge=0.5
    )
    assert again.iloc[0]["dpp_log_det"] == row["dpp_log_det"]


@pytest.mark.parametrize("ridge", [1e-3, 0.0])  # 0: budgets past rank(F) = 8 need a second pass
def test_budgets_read_from_one_dpp_run_equal_their_own_runs(cached, ridge):
    scores, embeddings, _, _ = cached
    budgets = [3, 0.05, 40, 12, 0.2]
    table = grid(cached, percentiles=[30, 80], budgets=budgets, ridges=[ridge])
    # the budgets as given: the table's budget column is float
    for row, budget in zip(table.itertuples(), budgets * 2, strict=True):
        sel, info = strategies.run_strategy(
            "p3", scores, embeddings, budget=budget, start=row.percentile,
            end=row.percentile, ridge=ridge, **RUN,
        )  # fmt: skip
        assert row.dpp_log_det == info["dpp_log_det"]
        assert row.dpp_passes == info["dpp_passes"]
        assert (row.k, row.selected, row.shortfall) == (
            info["budget"], info["selected"], info["shortfall"],
        )  # fmt: skip
        assert row.selected_difficulty_mean == sel["difficulty"].mean()
        configured = set(cached[2]["sample_id"])
        assert row.overlap_configured == len(set(sel["sample_id"]) & configured) / len(sel)
    if ridge == 0.0:
        assert (table["dpp_passes"] > 1).any()


def test_larger_ridge_gives_larger_log_det_and_more_budget_more_samples(cached):
    table = grid(cached, percentiles=[80])
    wide = table.pivot(index="budget", columns="ridge", values="dpp_log_det")
    assert (wide[1e-2] > wide[1e-3]).all()
    assert table.groupby("budget")["selected"].first()[0.25] > 30


def test_spl_has_no_log_det_and_no_configured_gives_nan_overlap(cached):
    table = grid(cached, method="spl", configured=None, percentiles=[45], ridges=[1e-3])
    assert table["dpp_log_det"].isna().all() and table["dpp_passes"].eq(0).all()
    assert table["overlap_configured"].isna().all()
    assert (table["selected"] == table["k"]).all()


def test_shortfall_when_the_budget_exceeds_the_eligible_set(cached):
    table = grid(cached, percentiles=[5], budgets=[100], ridges=[1e-3])
    row = table.iloc[0]
    assert row["eligible"] < 100 and row["selected"] == row["eligible"]
    assert row["shortfall"] == 100 - row["eligible"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"percentiles": []}, "at least one value for percentiles"),
        ({"percentiles": [120]}, r"percentiles must be in \[0, 100\], got 120"),
        ({"method": "dpp"}, "thresholding method"),
        ({"budgets": [0]}, None),  # a budget of 0 selects nothing: allowed
    ],
)
def test_bad_grids(cached, kw, message):
    if message is None:
        table = grid(cached, **kw, percentiles=[45], ridges=[1e-3])
        assert (table["selected"] == 0).all() and table["overlap_configured"].isna().all()
        return
    with pytest.raises(ValueError, match=message):
        grid(cached, **kw)


def test_schedule_sweep_gives_each_schedules_percentile_per_round(cached):
    scores, embeddings, configured, info = cached
    schedules = {
        "linear": {"schedule": "linear", "start": 45, "end": 95},
        "root": {"schedule": "root", "power": 2, "start": 45, "end": 95},
        "geometric": {"schedule": "geometric", "start": 45, "end": 95},
    }
    table = schedule_sweep(
        scores,
        embeddings,
        schedules=schedules,
        rounds=3,
        budget=30,
        seed=5,
        scores_round=1,
        configured=configured,
        progress=False,
        ridge=1e-3,
        schedule="linear",
    )
    assert list(table.columns) == SCHEDULE_COLUMNS
    assert table["schedule"].tolist() == ["linear"] * 3 + ["root"] * 3 + ["geometric"] * 3
    assert table["round"].tolist() == [1, 2, 3] * 3 and (table["scores_round"] == 1).all()
    for row in table.itertuples():
        settings = {k: v for k, v in schedules[row.schedule].items()}
        expected = pacing.percentile(row.round - 1, 3, **settings)
        assert row.percentile == pytest.approx(expected)
    first = table[(table["schedule"] == "linear") & (table["round"] == 1)].iloc[0]
    assert first["overlap_configured"] == 1.0 and first["dpp_log_det"] == info["dpp_log_det"]
    # later rounds admit more: eligible grows with the percentile for every schedule
    for _, part in table.groupby("schedule"):
        assert part["eligible"].is_monotonic_increasing
    # root is ahead of linear, geometric behind, after round 1
    later = table[table["round"] == 2].set_index("schedule")["percentile"]
    assert later["geometric"] < later["linear"] < later["root"]
    with pytest.raises(ValueError, match=r"schedule 'x' has unknown key\(s\) \['stat'\]"):
        schedule_sweep(
            scores,
            embeddings,
            schedules={"x": {"stat": 3}},
            rounds=3,
            budget=30,
            seed=5,
            scores_round=1,
        )


def test_heatmap_has_one_panel_per_ridge_with_the_table_values(cached):
    table = grid(cached)
    fig = sweep_heatmap(table, value="selected_difficulty_mean")
    panels = [ax for ax in fig.axes if ax.get_title().startswith("ridge")]
    assert [ax.get_title() for ax in panels] == ["ridge 0.001", "ridge 0.01"]
    shown = panels[1].images[0].get_array()
    part = table[table["ridge"] == 1e-2]
    expected = part.pivot(index="percentile", columns="budget", values="selected_difficulty_mean")
    np.testing.assert_array_equal(np.asarray(shown), expected.to_numpy())
    assert len(panels[0].texts) == 3 * 2  # every finite cell annotated
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks column"):
        sweep_heatmap(table, value="nope")


def test_heatmap_leaves_nan_cells_blank(cached):
    table = grid(cached, method="spl", percentiles=[45, 80], ridges=[1e-3])
    fig = sweep_heatmap(table)  # dpp_log_det: all NaN for spl
    assert len(fig.axes[0].texts) == 0
    assert all(math.isnan(v) for v in table["dpp_log_det"])
    plt.close(fig)


# ----------------------------------------------------------------------------- the Kedro shell
def test_sweep_pipeline_on_a_catalog(cached, tmp_path):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner
    from kedro_datasets.pandas import CSVDataset

    from p3_pruning.pipelines.sweep import create_pipeline

    scores, embeddings, configured, info = cached
    pipeline = create_pipeline(method="p3", round=1)
    assert pipeline.inputs() == {
        "p3.round_1.scores",
        "p3.round_1.embeddings",
        "p3.round_1.selection",
        "params:sweep",
        "params:pacing",
        "params:selection",
        "params:budget",
        "params:seed",
        "params:rounds",
    }
    params = {
        "sweep": {
            "method": "p3",
            "round": 1,
            "percentiles": [45, 70],
            "budgets": [30],
            "ridges": [1e-3],
            "schedules": {"paper": {}},
            "progress": False,
        },
        "pacing": {"start": 45, "end": 95, "schedule": "linear", "alpha": 0.0},
        "selection": {"ridge": 1e-3, "dpp_mode": "exact"},
        "budget": 30,
        "seed": 5,
        "rounds": 3,
    }
    datasets = {
        "p3.round_1.scores": scores,
        "p3.round_1.embeddings": embeddings,
        "p3.round_1.selection": configured,
        **{f"params:{k}": v for k, v in params.items()},
    }
    catalog = DataCatalog({k: MemoryDataset(v) for k, v in datasets.items()})
    for name in ("table", "schedules"):  # files: a memory dataset is released once consumed
        catalog[f"sweep.{name}"] = CSVDataset(filepath=str(tmp_path / f"{name}.csv"))
    outputs = SequentialRunner().run(pipeline, catalog)
    table = catalog.load("sweep.table")
    assert table["percentile"].tolist() == [45.0, 70.0]
    assert table["overlap_configured"].iloc[0] == 1.0
    schedules = catalog.load("sweep.schedules")
    assert schedules["percentile"].tolist() == pytest.approx([45, 45 + 50 / 3, 45 + 100 / 3])
    assert schedules["overlap_configured"].iloc[0] == 1.0
    assert {"sweep.log_det_heatmap", "sweep.difficulty_heatmap"} <= outputs.keys()
    assert outputs["sweep.log_det_heatmap"].load().axes


def test_sweep_pipeline_names_the_rounds_it_reads():
    from p3_pruning.pipelines.sweep import create_pipeline
    from p3_pruning.pipelines.sweep.nodes import run_sweep

    later = create_pipeline(method="p3", round=2, seed=7).inputs()
    assert {"p3.seed_7.round_2.scores", "p3.seed_7.round_1.scores"} <= later
    assert "params:seed" not in later
    static = create_pipeline(method="static", round=3).inputs()
    assert {"static.round_1.scores", "static.round_3.selection"} <= static
    with pytest.raises(ValueError, match="never scores the pool"):
        create_pipeline(method="random")
    with pytest.raises(ValueError, match="round must be an integer >= 1"):
        create_pipeline(method="p3", round=0)
    with pytest.raises(ValueError, match=r"sweep.round=2 but the sweep pipeline was built for"):
        run_sweep(
            None,
            None,
            None,
            {"method": "p3", "round": 2},
            {},
            {},
            10,
            0,
            3,
            method="p3",
            round_index=0,
        )
