"""Scoring and generation on a local 2-worker Ray cluster equal the local backend's results."""

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning.adapters import LoraAdapter
from p3_pruning.distributed.ray_engine import (
    evaluate_generation_on_ray,
    generate_on_ray,
    load_policy,
    ray_cluster,
    ray_options,
    score_on_ray,
)
from p3_pruning.evaluation import evaluate_generation, generate
from p3_pruning.models import load_model, tiny_model
from p3_pruning.scoring import score_samples
from test_scoring_reference import fit_head, make_samples

ray = pytest.importorskip("ray")
RAY = {"num_workers": 2, "batch_rows": 6}


@pytest.fixture(scope="module")
def cluster():
    """One local 2-CPU cluster for the module (start-up ~3 s, shutdown ~1 s)."""
    with ray_cluster({"num_cpus": 2, "object_store_memory": 200 * 1024**2}) as ray_mod:
        yield ray_mod


@pytest.fixture(scope="module")
def model_params(tmp_path_factory):
    """An HF folder with the tiny model and an output head fitted to the pool's tokens, so action
    probabilities spread over (0, 1) and greedy continuations depend on the prompt."""
    _, tokenizer = load_model("tiny-random")
    model = fit_head(tiny_model(tokenizer, seed=0), tokenizer, make_samples(25), beta=3.0)
    model.config.tie_word_embeddings = False
    folder = tmp_path_factory.mktemp("policy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"name_or_path": str(folder), "device": "cpu"}


@pytest.fixture(scope="module")
def generation_params(tmp_path_factory):
    """An HF folder with the tiny model and its own random output head: unlike the tied one (which
    repeats its input token), its greedy continuation depends on the whole prompt."""
    _, tokenizer = load_model("tiny-random")
    model = tiny_model(tokenizer, seed=0)
    gen = torch.Generator().manual_seed(1)
    model.lm_head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=False)
    model.lm_head.weight = torch.nn.Parameter(
        torch.randn(model.config.vocab_size, model.config.hidden_size, generator=gen)
    )
    model.config.tie_word_embeddings = False
    folder = tmp_path_factory.mktemp("generator")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"name_or_path": str(folder), "device": "cpu"}


@pytest.fixture(scope="module")
def adapter(model_params):
    """A LoRA adapter with small random, non-zero B matrices: merging it changes the scores."""
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(**model_params)
    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    config.init_lora_weights = False
    random = LoraAdapter.from_peft(get_peft_model(model, config))
    state = {k: v * 0.1 if "lora_B" in k else v for k, v in random.state_dict.items()}
    return LoraAdapter(random.config, state)


def pool(n=25):
    frame = make_samples(n)
    frame.loc[4, "response"] = ""  # empty_response
    frame.loc[9, "prompt"] = None  # missing_prompt
    return frame


@pytest.mark.slow
def test_score_on_ray_equals_the_local_backend(cluster, model_params, adapter):
    samples = pool()
    model, tokenizer = load_policy(model_params, adapter)
    local, local_emb = score_samples(model, tokenizer, samples, progress=False)
    scores, emb = score_on_ray(model_params, adapter, samples, ray=RAY, progress=False)

    assert list(scores.columns) == list(local.columns)
    assert scores["sample_id"].tolist() == samples["sample_id"].tolist()
    assert scores["status"].tolist() == local["status"].tolist()
    assert set(scores["status"]) == {"ok", "empty_response", "missing_prompt"}
    for col in ("n_actions", "n_tokens", "truncated", "reason"):
        assert scores[col].tolist() == local[col].tolist(), col
    assert scores.dtypes.to_dict() == local.dtypes.to_dict()
    d, d_local = scores["difficulty"].to_numpy(), local["difficulty"].to_numpy()
    assert np.array_equal(np.isinf(d), np.isinf(d_local))
    ok = np.isfinite(d_local)
    assert np.max(np.abs(d[ok] - d_local[ok])) <= 1e-6
    assert d_local[ok].std() > 0.01  # the check compares spread-out values, not a constant
    for mine, theirs in zip(scores["action_probs"], local["action_probs"], strict=True):
        assert isinstance(mine, list) and np.allclose(mine, theirs, rtol=1e-5, atol=1e-7)
    assert emb.dtype == np.float32 and emb.shape == local_emb.shape
    assert np.allclose(emb, local_emb, atol=1e-6)
    assert not emb[~ok].any()  # failed rows: zero embeddings, as locally

    # the adapter reached the workers: without it the scores differ
    plain, _ = score_samples(*load_policy(model_params, None), samples, progress=False)
    assert np.max(np.abs(plain["difficulty"].to_numpy()[ok] - d_local[ok])) > 1e-3


@pytest.mark.slow
def test_generation_on_ray_equals_the_local_backend(cluster, generation_params, adapter):
    model_params = generation_params
    samples = pool(10)
    samples["prompt"] = samples["prompt"].fillna("What is 2 + 2?")
    samples = samples.assign(source="chain_sum", answer="4", level=[1, 2, None, 3, 1] * 2)
    options = dict(max_new_tokens=8, batch_size=4, stop_at_answer=False)
    model, tokenizer = load_policy(model_params, adapter)

    local = generate(model, tokenizer, samples, progress=False, **options)
    responses = generate_on_ray(model_params, adapter, samples, ray=RAY, progress=False, **options)
    assert responses == local
    assert len(set(local)) > 5 and all(local)  # prompt-dependent, non-empty continuations

    per_sample, summary = evaluate_generation(model, tokenizer, samples, progress=False, **options)
    ray_per_sample, ray_summary = evaluate_generation_on_ray(
        model_params, adapter, samples, ray=RAY, progress=False, **options
    )
    pd.testing.assert_frame_equal(ray_per_sample, per_sample)
    pd.testing.assert_frame_equal(ray_summary, summary)


def test_ray_options_are_checked_before_anything_starts(model_params):
    assert ray_options(None)["address"] is None
    with pytest.raises(ValueError, match="unknown ray option"):
        ray_options({"workers": 2})
    with pytest.raises(ValueError, match="ray.num_workers must be"):
        ray_options({"num_workers": 0})
    with pytest.raises(TypeError, match=r"unknown scoring option\(s\) \['segmentr'\]"):
        score_on_ray(model_params, None, pool(3), ray=RAY, segmentr="newline")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['response'\]"):
        score_on_ray(model_params, None, pool(3).drop(columns="response"), ray=RAY)


@pytest.mark.slow
def test_sharded_scoring_on_ray_resumes_from_its_shards(cluster, model_params, adapter, tmp_path):
    from p3_pruning.distributed import ray_engine
    from p3_pruning.pipelines.rounds import nodes

    samples = pool()  # 25 rows: shards of 13 and 12
    rows = np.arange(len(samples))
    scoring = {
        "progress": False,
        "backend": "ray",
        "ray": RAY,
        "shards": {"rows": 13, "dir": str(tmp_path)},
    }
    real, calls = ray_engine.score_on_ray, []

    def crashing(*args, **kwargs):  # the first call's second shard fails
        calls.append(len(args[2]))
        if calls == [13, 12]:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    ray_engine.score_on_ray = crashing
    try:
        with pytest.raises(RuntimeError, match="worker lost"):
            nodes._Scorer(samples, model_params, scoring, adapter)(rows)
        calls.clear()
        scorer = nodes._Scorer(samples, model_params, scoring, adapter)
        scores, emb = scorer(rows)
        assert calls == [12]  # the first shard was on disk
        assert scorer.finish() == {"score_shards_resumed": 1}
    finally:
        ray_engine.score_on_ray = real
    assert not any(tmp_path.iterdir())  # finish() removed the call's shards
    local, local_emb = score_samples(*load_policy(model_params, adapter), samples, progress=False)
    assert scores["sample_id"].tolist() == samples["sample_id"].tolist()
    assert scores["status"].tolist() == local["status"].tolist()
    d, d_local = scores["difficulty"].to_numpy(), local["difficulty"].to_numpy()
    ok = np.isfinite(d_local)
    assert np.array_equal(np.isinf(d), ~ok) and np.max(np.abs(d[ok] - d_local[ok])) <= 1e-6
    assert np.allclose(emb, local_emb, atol=1e-6)
