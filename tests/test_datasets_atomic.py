"""Atomic saves: a save aborted mid-write leaves no version, a resumed run recomputes it whole, and a
finished file that cannot be read is named with its path and how to recompute it."""

from __future__ import annotations

import io
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.io.core import DatasetError
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from p3_pruning.adapters import LoraAdapter
from p3_pruning.datasets import atomic
from p3_pruning.datasets.atomic import CSVDataset, JSONDataset, MatplotlibDataset, ParquetDataset
from p3_pruning.datasets.export_dataset import ExportDataset
from p3_pruning.datasets.lora_adapter import LoraAdapterDataset
from p3_pruning.datasets.numpy_dataset import NumpyDataset

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ABORT = "aborted mid-write (test)"


def _frame():
    return pd.DataFrame(
        {"sample_id": [f"s{i}" for i in range(50)], "difficulty": np.linspace(0, 1, 50)}
    )


def _adapter():
    g = torch.Generator().manual_seed(0)
    state = {
        "base_model.model.layer.lora_A.weight": torch.randn(4, 16, generator=g),
        "base_model.model.layer.lora_B.weight": torch.randn(16, 4, generator=g),
    }
    return LoraAdapter(
        config={"r": 4, "lora_alpha": 8, "target_modules": ["layer"]}, state_dict=state
    )


def _figure():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return fig


def _half_then_fail(write):
    """A writer that puts half of what ``write`` would write into the target, then fails."""

    def aborted(target, *args, **kwargs):
        buffer = io.BytesIO()
        write(buffer, *args, **kwargs)
        data = buffer.getvalue()[: len(buffer.getvalue()) // 2]
        if isinstance(target, (str, bytes)) or hasattr(target, "__fspath__"):
            with open(target, "wb") as out:
                out.write(data)
        else:
            target.write(
                data if "b" in getattr(target, "mode", "wb") else data.decode(errors="ignore")
            )
        raise OSError(ABORT)

    return aborted


def _abort_parquet(m):
    real = pd.DataFrame.to_parquet
    m.setattr(
        pd.DataFrame,
        "to_parquet",
        lambda self, f, **kw: _half_then_fail(lambda b: real(self, b, **kw))(f),
    )


def _abort_csv(m):
    real = pd.DataFrame.to_csv

    def aborted(self, path_or_buf=None, **kw):
        text = real(self, None, **kw)
        path_or_buf.write(text[: len(text) // 2])
        raise OSError(ABORT)

    m.setattr(pd.DataFrame, "to_csv", aborted)


def _abort_json(m):
    def aborted(obj, fp, **kw):
        text = json.dumps(obj, **kw)
        fp.write(text[: len(text) // 2])
        raise OSError(ABORT)

    m.setattr(json, "dump", aborted)


def _abort_numpy(m):
    real = np.save
    m.setattr(np, "save", lambda f, arr, **kw: _half_then_fail(lambda b: real(b, arr, **kw))(f))


def _abort_safetensors(m):
    import safetensors.torch

    real = safetensors.torch.save

    def aborted(tensors, filename, metadata=None):
        data = real(tensors, metadata=metadata)
        with open(filename, "wb") as out:
            out.write(data[: len(data) // 2])
        raise OSError(ABORT)

    m.setattr(safetensors.torch, "save_file", aborted)


def _abort_savefig(m):
    from matplotlib.figure import Figure

    real = Figure.savefig
    m.setattr(
        Figure, "savefig", lambda self, f, **kw: _half_then_fail(lambda b: real(self, b, **kw))(f)
    )


def _abort_hf_export(m):
    import datasets

    def aborted(self, path, **kw):  # records.jsonl is written by now; the hf/ folder fails
        raise OSError(ABORT)

    m.setattr(datasets.Dataset, "save_to_disk", aborted)


def _same_frame(a, b):
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


CASES = {
    "parquet": (
        lambda p: ParquetDataset(filepath=str(p / "scores.parquet"), version=Version(None, None)),
        _frame,
        _abort_parquet,
        _same_frame,
    ),
    "csv": (
        lambda p: CSVDataset(
            filepath=str(p / "table.csv"), version=Version(None, None), save_args={"index": False}
        ),
        _frame,
        _abort_csv,
        _same_frame,
    ),
    "json": (
        lambda p: JSONDataset(filepath=str(p / "info.json"), version=Version(None, None)),
        lambda: {"loss": [1.0, 0.5] * 200, "n": 3},
        _abort_json,
        lambda a, b: a == b or pytest.fail(f"{a} != {b}"),
    ),
    "numpy": (
        lambda p: NumpyDataset(filepath=str(p / "embeddings.npy"), version=Version(None, None)),
        lambda: np.arange(4000, dtype=np.float32).reshape(100, 40),
        _abort_numpy,
        np.testing.assert_array_equal,
    ),
    "adapter": (
        lambda p: LoraAdapterDataset(filepath=str(p / "adapter"), version=Version(None, None)),
        _adapter,
        _abort_safetensors,
        lambda a, b: (
            all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in b.state_dict)
            or pytest.fail("adapters differ")
        ),
    ),
    "export": (
        lambda p: ExportDataset(filepath=str(p / "export"), version=Version(None, None)),
        lambda: {
            "records": [{"prompt": f"q{i}", "response": "a"} for i in range(5)],
            "manifest": {"n": 5},
        },
        _abort_hf_export,
        lambda a, b: a == b or pytest.fail(f"{a} != {b}"),
    ),
    "plot": (
        lambda p: MatplotlibDataset(filepath=str(p / "hist.png"), version=Version(None, None)),
        _figure,
        _abort_savefig,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_save_aborted_mid_write_leaves_no_version_and_a_resave_is_whole(
    tmp_path, monkeypatch, case
):
    make, data, abort, same = CASES[case]
    dataset = make(tmp_path)
    with monkeypatch.context() as m:
        abort(m)
        with pytest.raises(Exception, match="test"):
            dataset.save(data())
    assert not make(tmp_path).exists()  # what --only-missing-outputs asks
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # the partial write is gone

    resumed = make(tmp_path)
    resumed.save(data())
    assert make(tmp_path).exists()
    if same is not None:
        same(make(tmp_path).load(), data())
    assert not [p for p in tmp_path.rglob("*") if atomic.PARTIAL in p.name]


@pytest.mark.parametrize("case", ["parquet", "adapter"])
def test_a_partial_left_by_a_killed_save_is_never_a_version(tmp_path, monkeypatch, case):
    """kill -9 runs no cleanup: the temporary stays, under a name no version lookup matches."""
    make, data, abort, same = CASES[case]
    with monkeypatch.context() as m:
        abort(m)
        m.setattr(
            atomic.AtomicSave, "_remove", lambda self, path: None
        )  # killed: nothing cleans up
        with pytest.raises(Exception, match="test"):
            make(tmp_path).save(data())
    left = [p for p in tmp_path.rglob("*") if atomic.PARTIAL in p.name]
    assert len(left) == 1
    assert not make(tmp_path).exists()
    make(tmp_path).save(data())
    same(make(tmp_path).load(), data())


def test_only_missing_outputs_reruns_a_node_whose_save_was_aborted(tmp_path, monkeypatch):
    """A two-node pipeline killed while saving the first node's output: the resumed run
    (--only-missing-outputs) recomputes it and ends with the uninterrupted result."""
    calls = []

    def score(pool):
        calls.append("score")
        return pool.assign(difficulty=pool["x"] * 2.0)

    def summarize(scores):
        return {"mean": float(scores["difficulty"].mean()), "n": len(scores)}

    pipeline = Pipeline(
        [
            Node(score, "pool", "scores", name="score"),
            Node(summarize, "scores", "summary", name="summarize"),
        ]
    )
    pool = pd.DataFrame({"x": np.arange(200, dtype=float)})

    def catalog():
        return DataCatalog(
            {
                "pool": MemoryDataset(pool),
                "scores": ParquetDataset(
                    filepath=str(tmp_path / "scores.parquet"), version=Version(None, None)
                ),
                "summary": JSONDataset(
                    filepath=str(tmp_path / "summary.json"), version=Version(None, None)
                ),
            }
        )

    with monkeypatch.context() as m:
        _abort_parquet(m)
        with pytest.raises(Exception, match="test"):
            SequentialRunner().run(pipeline, catalog())
    SequentialRunner().run(pipeline, catalog(), only_missing_outputs=True)
    assert calls == ["score", "score"]  # the aborted output was not taken as done
    assert catalog().load("summary") == summarize(score(pool))


@pytest.mark.parametrize("case", ["parquet", "json", "numpy", "adapter"])
def test_a_corrupt_finished_output_is_named_with_how_to_recompute_it(tmp_path, case):
    make, data, _, _ = CASES[case]
    make(tmp_path).save(data())
    target = max((p for p in tmp_path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    target.write_bytes(
        target.read_bytes()[: target.stat().st_size // 2]
    )  # truncated after the fact
    with pytest.raises(DatasetError) as caught:
        make(tmp_path).load()
    message = str(caught.value)
    assert f"at '{target.parent}" in message and "cannot be read" in message
    assert "--only-missing-outputs" in message and "delete '" in message
