"""LoRA training in 2 gloo processes under torchrun matches a single-process run with the same global batch."""

import sys

import numpy as np
import pytest

from p3_pruning.distributed.launch import launch_command, train_launched
from p3_pruning.distributed.ray_engine import load_policy
from p3_pruning.evaluation import response_nll
from p3_pruning.models import load_model
from p3_pruning.training import train_round
from test_scoring_reference import make_samples

MODEL = {"name_or_path": "tiny-random", "device": "cpu"}
# One epoch, no LoRA dropout: the two runs see the same batches and the same arithmetic.
OPTIONS = dict(learning_rate=1e-2, batch_size=4, lora={"dropout": 0.0}, progress=False)


def mean_nll(adapter, samples) -> float:
    model, tokenizer = load_policy(MODEL, adapter)
    nll, n = response_nll(model, tokenizer, samples, progress=False)
    return float(nll.sum() / n.sum())


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process():
    samples = make_samples(32)
    model, tokenizer = load_model(**MODEL)
    single, single_metrics = train_round(model, tokenizer, samples, seed=3, **OPTIONS)
    ddp, metrics = train_launched(
        MODEL, samples, launcher="torchrun", nproc_per_node=2, seed=3, **OPTIONS
    )

    assert metrics["world_size"] == 2 and metrics["launcher"] == "torchrun"
    assert metrics["steps"] == single_metrics["steps"] == 8  # 32 samples / global batch 4
    assert metrics["n_samples"] == 32 and metrics["n_tokens"] == single_metrics["n_tokens"]
    assert ddp.state_dict.keys() == single.state_dict.keys()
    assert ddp.config == single.config

    base, one, two = mean_nll(None, samples), mean_nll(single, samples), mean_nll(ddp, samples)
    assert one < base - 0.3  # training moved the loss, so the comparison below means something
    assert abs(two - one) <= 0.01 * one
    assert abs(two - one) <= 0.01 * (base - one)
    np.testing.assert_allclose(metrics["loss_curve"], single_metrics["loss_curve"], rtol=1e-3)


def test_launch_commands():
    torchrun = launch_command("torchrun", 2, "/tmp/in")
    assert torchrun[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    assert "--nproc_per_node=2" in torchrun
    assert torchrun[-4:] == ["-m", "p3_pruning.distributed.train_entry", "--inputs", "/tmp/in"]
    multi_node = launch_command("torchrun", 4, "/in", ["--nnodes=2", "--rdzv-endpoint=head:29400"])
    assert "--standalone" not in multi_node and "--nnodes=2" in multi_node
    accelerate = launch_command("accelerate", 2, "/in")
    assert accelerate[1:3] == ["-m", "accelerate.commands.launch"]
    assert accelerate[accelerate.index("--num_processes") + 1] == "2"


def test_launcher_errors_name_the_key():
    samples = make_samples(4)
    with pytest.raises(ValueError, match="training.launcher"):
        train_launched(MODEL, samples, launcher="mpirun")
    with pytest.raises(ValueError, match="batch_size=6 .*nproc_per_node=4"):
        train_launched(MODEL, samples, nproc_per_node=4, batch_size=6)
    with pytest.raises(TypeError, match=r"unknown training option\(s\) \['lr'\]"):
        train_launched(MODEL, samples, lr=1e-3)


@pytest.mark.slow
def test_divergence_in_launched_processes_is_the_local_error():
    from p3_pruning.training import TrainingDiverged

    diverging = dict(
        learning_rate=1e30, lr_scheduler="constant", warmup_ratio=0.0, batch_size=1, progress=False
    )
    with pytest.raises(TrainingDiverged, match=r"^p3 round 3: training diverged at step 2 of 4"):
        train_launched(
            MODEL,
            make_samples(4),
            launcher="torchrun",
            nproc_per_node=1,
            label="p3 round 3",
            **diverging,
        )
