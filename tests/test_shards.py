"""Resumable scoring: a round's scoring killed part-way scores only its missing shards when rerun,
and gives what an uninterrupted run gives."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from p3_pruning.config import ConfigError, validate_parameters
from p3_pruning.data import generate_default
from p3_pruning.shards import PARTIAL, ShardedScoring, call_key
from p3_pruning.workspace import PROJECT_ROOT

MODEL = {"name_or_path": "tiny-random", "cache_dir": str(PROJECT_ROOT / "data" / "06_models")}
POOL, ROWS = 240, 64  # four shards, the last one short


def scoring(folder) -> dict:
    return {
        "progress": False,
        "max_length": 256,
        "backend": "local",
        "shards": {"rows": ROWS, "dir": str(folder)},
    }


# One scoring call in a child process; SIGKILL (no cleanup, no Python exit) once ``KILL_AT``
# shards are on disk, in the middle of the next shard's scoring. Prints the shards it scored.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, json
    import pandas as pd
    from p3_pruning.data import generate_default
    from p3_pruning.pipelines.rounds import nodes

    model, scoring, kill_at, out = json.loads(sys.argv[1])
    real, calls = nodes.score_samples, []

    def counted(model_, tokenizer, frame, **options):
        calls.append(len(frame))
        if kill_at is not None and len(calls) > kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(model_, tokenizer, frame, **options)

    nodes.score_samples = counted
    pool = generate_default(int(sys.argv[2]), 4)
    scores, embeddings, info = nodes.score(pool, model, scoring, 3, round_index=0)
    scores.to_parquet(out + ".parquet")
    with open(out + ".npy", "wb") as f:
        import numpy as np
        np.save(f, embeddings)
    print(json.dumps({"calls": calls, "resumed": info["score_shards_resumed"]}))
    """
)


def child(model, scoring_block, kill_at, out):
    import json

    return subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            json.dumps([model, scoring_block, kill_at, str(out)]),
            str(POOL),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
def test_a_killed_scoring_resumes_from_its_shards_and_equals_an_uninterrupted_run(tmp_path):
    import json

    killed = child(MODEL, scoring(tmp_path / "a"), 2, tmp_path / "killed")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (call,) = list((tmp_path / "a").iterdir())
    assert sorted(p.name for p in call.iterdir()) == ["shard_000000", "shard_000001"]

    resumed = child(MODEL, scoring(tmp_path / "a"), None, tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report == {"calls": [ROWS, POOL - 3 * ROWS], "resumed": 2}  # shards 3 and 4 only
    assert not (tmp_path / "a" / call.name).exists()  # removed once the round's scores exist

    whole = child(MODEL, scoring(tmp_path / "b"), None, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert json.loads(whole.stdout.strip().splitlines()[-1])["calls"] == [ROWS] * 3 + [48]
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "resumed.parquet"), pd.read_parquet(tmp_path / "whole.parquet")
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "whole.npy")
    )


def fake_scorer(calls):
    """A deterministic stand-in for the model: difficulty from the prompt's length."""

    def scorer(frame):
        calls.append(list(frame["sample_id"]))
        scores = pd.DataFrame(
            {
                "sample_id": frame["sample_id"].tolist(),
                "difficulty": [len(p) / 100 for p in frame["prompt"]],
                "action_probs": [[0.5, len(p) / 1000] for p in frame["prompt"]],
                "reason": [None] * len(frame),
            }
        )
        return scores, np.arange(len(frame) * 3, dtype=np.float32).reshape(-1, 3) + len(calls)

    return scorer


def test_torn_and_foreign_shards_are_scored_again(tmp_path):
    pool = generate_default(10, 4)
    key = call_key(pool, model_params=MODEL, adapter=None, options={}, rows=4)
    calls = []
    first = ShardedScoring(tmp_path, key, 4).run(pool, fake_scorer(calls))
    folder = tmp_path / key
    assert sorted(p.name for p in folder.iterdir()) == [f"shard_00000{i}" for i in range(3)]
    # a write killed before its rename, a truncated shard and a shard of other rows
    (folder / f"shard_000001{PARTIAL}123").mkdir()
    (folder / "shard_000001" / "scores.parquet").write_bytes(b"PAR1 torn")
    other = ShardedScoring(tmp_path / "other", key, 4)
    other.run(pool.iloc[::-1], fake_scorer([]))
    os.replace(tmp_path / "other" / key / "shard_000002", folder / "shard_000002.new")
    import shutil

    shutil.rmtree(folder / "shard_000002")
    os.replace(folder / "shard_000002.new", folder / "shard_000002")

    calls.clear()
    again = ShardedScoring(tmp_path, key, 4)
    scores, _ = again.run(pool, fake_scorer(calls))
    assert calls == [list(pool["sample_id"][4:8]), list(pool["sample_id"][8:])]
    assert (again.loaded, again.scored) == (1, 2)
    assert not list(folder.glob(f"*{PARTIAL}*"))
    pd.testing.assert_frame_equal(scores, first[0])


def test_the_key_changes_with_what_the_scores_depend_on():
    pool = generate_default(6, 4)
    base = call_key(pool, model_params=MODEL, adapter=None, options={"max_length": 256}, rows=4)
    changed = pool.assign(response=pool["response"].str.replace("Answer", "answer"))
    for other in (
        call_key(changed, model_params=MODEL, adapter=None, options={"max_length": 256}, rows=4),
        call_key(pool, model_params=MODEL, adapter=None, options={"max_length": 128}, rows=4),
        call_key(pool, model_params=MODEL, adapter=None, options={"max_length": 256}, rows=3),
        call_key(pool, model_params={**MODEL, "dtype": "bf16"}, adapter=None, options={}, rows=4),
    ):
        assert other != base
    assert base == call_key(
        pool.copy(), model_params=dict(MODEL), adapter=None, options={"max_length": 256}, rows=4
    )


def test_shards_are_checked_with_the_other_parameters():
    with pytest.raises(ConfigError) as err:
        validate_parameters({"scoring": {"shards": {"rows": 0, "every": 3}}})
    keys = {k for k, _, _ in err.value.problems}
    assert {"scoring.shards.rows", "scoring.shards.every"} <= keys


def test_the_key_follows_the_adapters_weights():
    import torch

    from p3_pruning.adapters import LoraAdapter

    pool = generate_default(4, 4)

    def key(value):
        adapter = LoraAdapter(config={"r": 2}, state_dict={"w.lora_A": torch.full((2, 3), value)})
        return call_key(pool, model_params=MODEL, adapter=adapter, options={}, rows=4)

    assert key(0.5) == key(0.5) != key(0.25)
    assert key(0.5) != call_key(pool, model_params=MODEL, adapter=None, options={}, rows=4)
