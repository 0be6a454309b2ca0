"""The parameter schema: the project's own config passes; each bad value is named with its key."""

from __future__ import annotations

import copy

import pytest
import yaml

from p3_pruning.config import ConfigError, check_rounds, validate_parameters
from p3_pruning.workspace import PROJECT_ROOT


@pytest.fixture(scope="module")
def base() -> dict:
    params: dict = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def with_(base: dict, **changes) -> dict:
    params = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return params


def problems(params: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        validate_parameters(params)
    return {key: expected for key, _, expected in info.value.problems}


def test_the_projects_config_is_valid(base):
    parsed = validate_parameters(base)
    assert parsed.rounds == base["rounds"] and parsed.budget == base["budget"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"budget": 0}, "budget"),
        ({"budget": -4}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": 10_000}, "budget"),  # larger than the default pool
        ({"rounds": 0}, "rounds"),
        ({"pacing__start": -1}, "pacing.start"),
        ({"pacing__end": 101}, "pacing.end"),
        ({"pacing__start": 80, "pacing__end": 60}, "pacing.end"),
        ({"pacing__schedule": "cubic"}, "pacing.schedule"),
        ({"scoring__segmenter": "words"}, "scoring.segmenter"),
        ({"scoring__embed": "cls"}, "scoring.embed"),
        ({"selection__dpp_mode": "fast"}, "selection.dpp_mode"),
        ({"training__loss_on": "prompt"}, "training.loss_on"),
        ({"training__learning_rate": "abc"}, "training.learning_rate"),
        ({"training__batch_size": "big"}, "training.batch_size"),
        ({"training__lora__r": 0}, "training.lora.r"),
        ({"model__name_or_path": "no such model"}, "model.name_or_path"),
        ({"data__source": "csvv"}, "data.source"),
        ({"data__source": "jsonl", "data__path": "data/01_raw/missing.jsonl"}, "data.path"),
        ({"training__learnig_rate": 0.1}, "training.learnig_rate"),
        ({"pacing__strat": 40}, "pacing.strat"),
    ],
)
def test_each_bad_value_is_reported_with_its_dotted_key(base, change, key):
    found = problems(with_(base, **change))
    assert key in found, found


def test_every_problem_is_reported_at_once(base):
    found = problems(
        with_(
            base,
            budget=0,
            training__learning_rate="abc",
            scoring__segmenter="words",
            cheap_eval__max_sample=3,
        )
    )
    assert {
        "budget",
        "training.learning_rate",
        "scoring.segmenter",
        "cheap_eval.max_sample",
    } <= set(found)
    assert found["cheap_eval.max_sample"] == "unknown key (a typo?)"


def test_the_message_names_key_value_and_expectation(base):
    with pytest.raises(ConfigError, match=r"training\.learning_rate: found 'abc'; .*number"):
        validate_parameters(with_(base, training__learning_rate="abc"))


def test_a_hub_id_while_offline_is_said_plainly(base, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = problems(with_(base, model__name_or_path="someone/not-cached-model-xyz"))
    assert (
        "offline" in found["model.name_or_path"] or "HF_HUB_OFFLINE" in found["model.name_or_path"]
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    validate_parameters(with_(base, model__name_or_path="someone/not-cached-model-xyz"))


def test_rounds_must_match_the_unrolled_pipeline(base):
    check_rounds(base, base["rounds"])
    check_rounds(base, None)
    with pytest.raises(ConfigError, match="rounds: found 5"):
        check_rounds({**base, "rounds": 5}, 3)


# Every value a library function refuses, the schema refuses first, under the key a run sets it with:
# (dotted key, bad value, the library call that refuses it). So a bad value fails before any compute.
def _library_refusals():
    import numpy as np
    import pandas as pd

    from p3_pruning import dpp, pacing, strategies
    from p3_pruning.scoring import score_samples
    from p3_pruning.segment import get_segmenter
    from p3_pruning.training import build_features, lora_config, train_round

    rows = pd.DataFrame({"sample_id": ["a"], "prompt": ["q"], "response": ["r"]})

    def train(**bad):  # train_round checks its arguments before it touches model or data
        return lambda: train_round(object(), None, rows, **bad)

    def score(**bad):  # score_samples checks its options before it touches the model
        return lambda: score_samples(None, None, rows, **bad)

    def select(**bad):
        return lambda: dpp.greedy_map(np.eye(3), np.ones(3), 2, **bad)

    scores = pd.DataFrame({"sample_id": ["a", "b"], "difficulty": [0.2, 0.4]})
    return [
        ("training.warmup_ratio", 1.0, train(warmup_ratio=1.0)),
        ("training.warmup_ratio", -0.1, train(warmup_ratio=-0.1)),
        ("training.learning_rate", -1e-3, train(learning_rate=-1e-3)),  # 0 is a measuring pass
        ("training.epochs", 0, train(epochs=0)),
        ("training.batch_size", 0, train(batch_size=0)),
        ("training.grad_accum", 0, train(grad_accum=0)),
        ("training.divergence_factor", 1.0, train(divergence_factor=1.0)),
        ("training.lora.r", 0, lambda: lora_config(object(), {"r": 0, "target_modules": ["q"]})),
        ("training.loss_on", "prompt", lambda: build_features(None, rows, loss_on="prompt")),
        ("scoring.embed", "cls", score(embed="cls")),
        ("scoring.token_budget", 0, score(token_budget=0)),
        ("scoring.chunk_tokens", 0, score(chunk_tokens=0)),
        ("scoring.vocab_chunk", 0, score(vocab_chunk=0)),
        ("scoring.segmenter", "words", lambda: get_segmenter("words")),
        ("scoring.pattern", "([", lambda: get_segmenter("regex", pattern="([")),
        ("pacing.start", -1, lambda: pacing.percentile(0, 3, start=-1)),
        ("pacing.end", 101, lambda: pacing.percentile(0, 3, end=101)),
        ("pacing.schedule", "cubic", lambda: pacing.percentile(0, 3, schedule="cubic")),
        ("pacing.power", 0.5, lambda: pacing.percentile(1, 3, schedule="root", power=0.5)),
        ("rounds", 0, lambda: pacing.percentile(0, 0)),
        ("selection.ridge", -1.0, select(ridge=-1.0)),
        ("selection.ridge", float("inf"), select(ridge=float("inf"))),
        ("selection.dpp_mode", "fast", select(mode="fast")),
        ("selection.delta", 1.5, select(mode="stochastic", delta=1.5)),
        (
            "selection.quality_floor",
            0.0,
            lambda: strategies.dpp_kernel_inputs([0], np.eye(2), np.ones(2), 0.0),
        ),
        ("budget", 1.5, lambda: strategies.resolve_budget(1.5, 10)),
        ("budget", -3, lambda: strategies.resolve_budget(-3, 10)),
        (
            "seed",
            -1,
            lambda: strategies.pick(
                "random", scores, None, round_index=0, rounds=1, budget=1, seed=-1
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("key", "value", "refuse"), _library_refusals(), ids=lambda v: v if isinstance(v, str) else None
)
def test_every_library_refusal_is_a_schema_refusal_first(base, key, value, refuse):
    with pytest.raises(ValueError):
        refuse()  # the library refuses it (else this row of the table is stale)
    found = problems(with_(base, **{key.replace(".", "__"): value}))
    assert key in found, found


SHIPPED_ENVS = sorted(
    p.name
    for p in (PROJECT_ROOT / "conf").iterdir()
    if p.is_dir() and p.name not in ("base", "local")
)


@pytest.mark.parametrize("env", SHIPPED_ENVS)
def test_every_shipped_environment_is_valid_and_builds_its_study(env, monkeypatch):
    """Each ``conf/<env>`` merged over base as Kedro does passes the schema (apart from what needs
    the hub: ``gpu`` names a hub model and dataset), and its study, arms included, unrolls: a typo
    in an arm fails here, not an hour into a batch."""
    from kedro.config import OmegaConfigLoader

    from p3_pruning import settings
    from p3_pruning.pipelines.study.pipeline import create_pipeline as study_pipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network wait; what needs the hub says so
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS)
    params = loader["parameters"]
    try:
        validate_parameters(params)
    except ConfigError as exc:
        needs_hub = [p for p in exc.problems if "HF_HUB_OFFLINE is set" in p[2]]
        assert needs_hub == exc.problems, exc
    study = params["study"]
    plan = study_pipeline(
        study["methods"], study["seeds"], rounds=params["rounds"], arms=study.get("arms")
    )
    assert plan.nodes
