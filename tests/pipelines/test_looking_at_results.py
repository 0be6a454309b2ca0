"""What an ML engineer opens after a run, read back from a tiny-model default run (`kedro run`).

MLflow: the experiment opens on its runs (tagged as model development, also when it existed
untagged), the parent run is named after the pipeline and its settings, each child run carries
tokens and FLOPs per stage equal to what ``p3_pruning.compute`` (the study report's accounting)
gives for the round's own summary. Each round writes a readable selection page, versioned beside
the selection, logged on its child run. ``notebooks/explore_a_run.ipynb`` runs end to end on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import tiny_run
from p3_pruning.compute import round_compute, run_compute
from p3_pruning.pipelines.study.nodes import results_table
from p3_pruning.tracking import COMPUTE_STAGES, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from p3_pruning.workspace import PROJECT_ROOT, latest_version, make_workspace, run_pipeline

pytestmark = pytest.mark.slow

ROUNDS = 2
BUDGET = 6
POOL = 32
SEED = 5
TINY = tiny_run(
    seed=SEED,
    rounds=ROUNDS,
    budget=BUDGET,
    data={"default": {"n": POOL + 8, "seed": 1}, "split": {"eval_size": 8}},
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("looking"), TINY)
    # an experiment made before the kind tag existed: the run must tag it, not only new ones
    MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}").create_experiment("p3_pruning")
    run_pipeline(ws)  # the default pipeline: data, P3's rounds, P3's and the base model's finals
    return ws


@pytest.fixture(scope="module")
def client(workspace):
    return MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")


@pytest.fixture(scope="module")
def runs(workspace, client):
    experiment = client.get_experiment_by_name("p3_pruning")
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


def summary(ws: Path, e: int) -> dict:
    return json.loads(
        latest_version(ws, f"data/08_reporting/p3/round_{e}/summary.json").read_text()
    )


def final_metrics(ws: Path, method: str) -> dict:
    path = latest_version(ws, f"data/08_reporting/{method}/final/metrics.json")
    return json.loads(path.read_text())


def test_the_experiment_opens_on_its_runs_even_when_it_existed_untagged(client):
    experiment = client.get_experiment_by_name("p3_pruning")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"


def test_the_parent_run_is_named_after_the_pipeline_and_its_settings(workspace, runs):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    try:
        found = mlflow.search_runs(experiment_names=["p3_pruning"])
    finally:
        mlflow.set_tracking_uri(None)
    parents = found[found["tags.mlflow.parentRunId"].isna()]
    assert parents["tags.mlflow.runName"].tolist() == [f"p3 · budget {BUDGET} · seed {SEED}"]
    parent_id = parents["run_id"].item()
    children = found[found["tags.mlflow.parentRunId"] == parent_id]
    assert sorted(children["tags.mlflow.runName"]) == [
        "base.final",
        "p3.final",
        "p3.round_1",
        "p3.round_2",
    ]
    assert "__default__" not in set(found["tags.mlflow.runName"])


def test_round_runs_log_tokens_and_flops_per_stage_as_compute_counts_them(workspace, runs):
    for e in range(1, ROUNDS + 1):
        metrics = runs[f"p3.round_{e}"].data.metrics
        record = summary(workspace, e)
        expected = round_compute(record, record["train_params"], record["train_lora_params"])
        for stage in COMPUTE_STAGES:
            assert metrics[f"compute/{stage}_tokens"] == expected[f"{stage}_tokens"], (e, stage)
            assert metrics[f"compute/{stage}_flops"] == pytest.approx(expected[f"{stage}_flops"])
        for stage in ("score", "train", "eval"):  # a round scores, trains and evaluates
            assert metrics[f"compute/{stage}_flops"] > 0, (e, stage)
        assert metrics["compute/generation_flops"] == 0  # generation is the final evaluation's
        assert metrics["compute/total_flops"] == pytest.approx(expected["total_flops"])
        assert metrics["compute/total_tokens"] == sum(
            expected[f"{s}_tokens"] for s in COMPUTE_STAGES
        )
        # the token counts are the round's own: the scorer's and the trainer's records
        assert metrics["compute/score_tokens"] == record["score_tokens"]
        assert metrics["compute/train_tokens"] == record["train_n_input_tokens"]


def test_final_runs_carry_accuracy_and_the_study_reports_compute(workspace, runs):
    rounds = [summary(workspace, e) for e in range(1, ROUNDS + 1)]
    finals = {m: final_metrics(workspace, m) for m in ("p3", "base")}
    report = results_table(
        {(m, None): final for m, final in finals.items()}, {("p3", None): rounds}
    ).set_index("method")
    p3 = runs["p3.final"].data.metrics
    assert p3["accuracy"] == finals["p3"]["accuracy"]
    assert p3["run_compute/total_flops"] == pytest.approx(report.loc["p3", "total_flops"])
    for stage in COMPUTE_STAGES:
        assert p3[f"run_compute/{stage}_flops"] == pytest.approx(report.loc["p3", f"{stage}_flops"])
        assert p3[f"run_compute/{stage}_tokens"] == report.loc["p3", f"{stage}_tokens"]
    params, lora = rounds[0]["train_params"], rounds[0]["train_lora_params"]
    assert p3["run_compute/total_flops"] == pytest.approx(
        run_compute(rounds, params, lora, final=finals["p3"])["total_flops"]
    )
    # both rounds are in the run's compute, though the final ran before round 2's summary
    assert p3["run_compute/score_tokens"] == sum(r["score_tokens"] for r in rounds) > 0
    assert p3["compute/generation_flops"] == pytest.approx(
        2 * params * p3["compute/generation_tokens"]
    )
    base = runs["base.final"].data.metrics
    assert base["run_compute/total_flops"] == base["compute/generation_flops"] > 0
    assert base["run_compute/total_flops"] == pytest.approx(report.loc["base", "total_flops"])
    assert p3["run_compute/total_flops"] > base["run_compute/total_flops"]


def test_each_round_writes_a_readable_selection_view_logged_on_its_child_run(
    workspace, runs, client
):
    for e in range(1, ROUNDS + 1):
        folder = f"data/05_model_input/p3/round_{e}"
        view_path = latest_version(workspace, f"data/08_reporting/p3/round_{e}/selection.md")
        selection_path = latest_version(workspace, f"{folder}/selection.parquet")
        assert view_path.parent.name == selection_path.parent.name  # one save version per run
        text = view_path.read_text(encoding="utf-8")
        selection = pd.read_parquet(selection_path)
        eligible = pd.read_parquet(latest_version(workspace, f"{folder}/eligible.parquet"))
        n_eligible = int(eligible["eligible"].sum())
        assert text.startswith(f"# p3.round_{e}: selection")
        assert f"Threshold **{eligible['threshold'].iloc[0]:.3f}**" in text
        assert f"(percentile {eligible['percentile'].iloc[0]:.1f}" in text
        assert f"| pool | {POOL} |" in text and f"| selected | {BUDGET} |" in text
        assert f"| refused, eligible (under the threshold) | {n_eligible - BUDGET} |" in text
        assert f"| refused, over the threshold | {POOL - n_eligible} |" in text
        hardest = text.split("## Hardest selected")[1].split("##")[0]
        top = selection.sort_values(["difficulty", "sample_id"], ascending=False).iloc[0]
        assert f"| {top['sample_id']} |" in hardest.splitlines()[4]  # first row after the header
        assert "## Mix by level" in text and "## Mix by origin" not in text
        logged = client.download_artifacts(runs[f"p3.round_{e}"].info.run_id, "selection.md")
        assert Path(logged).read_text(encoding="utf-8") == text


def test_kedro_viz_previews_the_selection_view(workspace, monkeypatch):
    import yaml
    from kedro.io import DataCatalog
    from kedro_viz.models.flowchart.node_metadata import DataNodeMetadata
    from kedro_viz.models.flowchart.nodes import GraphNode

    monkeypatch.chdir(workspace)
    config = yaml.safe_load((workspace / "conf/base/catalog_rounds.yml").read_text())
    dataset = DataCatalog.from_config(config).get("p3.round_1.selection_view")
    text = latest_version(workspace, "data/08_reporting/p3/round_1/selection.md").read_text()
    node = GraphNode.create_data_node(
        "id", "p3.round_1.selection_view", None, set(), dataset, set()
    )
    previous = DataNodeMetadata.is_all_previews_enabled
    DataNodeMetadata.set_is_all_previews_enabled(True)
    try:
        shown = DataNodeMetadata(data_node=node)
    finally:
        DataNodeMetadata.set_is_all_previews_enabled(previous)
    assert shown.preview_type == "HTMLPreview"  # rendered by kedro-viz's Markdown renderer
    assert shown.preview == text  # the catalog's preview_args (20,000 characters) keep it whole
    assert dataset.preview(max_chars=20) == text[:20] + "\n\n…"


def test_the_notebook_runs_end_to_end_on_the_run(workspace, tmp_path, monkeypatch):
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from nbclient import NotebookClient

    # a kernel of this interpreter, whatever kernels the machine has installed
    write_kernel_spec(tmp_path / "kernels" / "p3-pruning-test")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("P3_PROJECT", str(workspace))
    monkeypatch.setenv("P3_METHOD", "p3")
    notebook = PROJECT_ROOT / "notebooks" / "explore_a_run.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb,
        kernel_name="p3-pruning-test",
        timeout=600,
        resources={"metadata": {"path": str(notebook.parent)}},
    ).execute()  # raises CellExecutionError on any failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = [o.get("data", {}).get("text/plain", "") for o in outputs]
    texts += [o.get("text", "") for o in outputs if o.output_type == "stream"]
    assert any(f"project {workspace.resolve()}, method p3" in t for t in texts)
    figures = sum("image/png" in o.get("data", {}) for o in outputs)
    assert figures == 3  # difficulty with the threshold, the mix by level, accuracy vs FLOPs
    side = next(t for t in texts if "FLOPs" in t and "accuracy" in t)
    assert "base" in side and "p3" in side
    assert any("refused_over" in t for t in texts) and any("refused_eligible" in t for t in texts)
    assert any("one origin only: 'clean' (nothing composed)" in t for t in texts)
