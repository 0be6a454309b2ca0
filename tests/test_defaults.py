"""Every setting has one default: a library function's default equals conf/base's value.

A Kedro run passes conf/base's values; a library caller gets the function's defaults. Where both
exist they must be the same, so the two ways of running the same step cannot drift apart.
"""

from __future__ import annotations

import inspect

import pytest
import yaml

from p3_pruning import dpp, evaluation, pacing, refresh, scoring, strategies, training
from p3_pruning.workspace import PROJECT_ROOT


@pytest.fixture(scope="module")
def conf() -> dict:
    merged: dict = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def defaults(fn) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def shared(block: dict, fn) -> dict:
    """(yaml value, library default) for every key the block and the function both have."""
    lib = defaults(fn)
    skip = {"progress", "lora"}  # lora: a block of its own, compared below
    return {k: (v, lib[k]) for k, v in block.items() if k in lib and k not in skip}


@pytest.mark.parametrize(
    ("block", "fn", "at_least"),
    [
        ("scoring", scoring.score_samples, {"segmenter", "embed", "max_length", "token_budget"}),
        (
            "training",
            training.train_round,
            {"learning_rate", "batch_size", "grad_accum", "max_length", "loss_on"},
        ),
        ("generation", evaluation.generate, {"max_new_tokens", "batch_size"}),
        (
            "scoring.incremental",
            refresh.incremental_scores,
            {"margin", "drift_fraction", "min_drift"},
        ),
    ],
)
def test_library_defaults_equal_the_base_config(conf, block, fn, at_least):
    section = conf
    for key in block.split("."):
        section = section[key]
    pairs = shared(section, fn)
    assert at_least <= set(pairs), f"{block}: expected to share {at_least}, shares {set(pairs)}"
    differ = {k: v for k, v in pairs.items() if v[0] != v[1]}
    assert not differ, f"{block} (yaml, library) differ: {differ}"


def test_lora_pacing_and_selection_defaults_equal_the_base_config(conf):
    lora = conf["training"]["lora"]
    lib = training.LORA_DEFAULTS
    assert (lora["r"], lora["alpha"], lora["dropout"], lora["target_modules"]) == (
        lib["r"],
        lib["lora_alpha"],
        lib["lora_dropout"],
        lib["target_modules"],
    )
    for key in ("start", "end", "schedule", "alpha"):
        assert conf["pacing"][key] == strategies.OPTION_DEFAULTS[key], key
    assert (conf["pacing"]["start"], conf["pacing"]["end"]) == (
        pacing.PAPER_START,
        pacing.PAPER_END,
    )
    for key in ("ridge", "dpp_mode"):
        assert conf["selection"][key] == strategies.OPTION_DEFAULTS[key], key
    assert conf["selection"]["ridge"] == dpp.DEFAULT_RIDGE
    # the held-out NLL cuts where training cuts
    assert defaults(evaluation.cheap_eval)["max_length"] == conf["training"]["max_length"]


def test_offline_default_data_levels_equal_the_base_config(conf):
    from p3_pruning.data.reasoning import DEFAULT_LEVELS

    assert conf["data"]["default"]["levels"] == DEFAULT_LEVELS


def _schema_defaults(model, prefix=""):
    """``{dotted key: default}`` of every schema field that declares one, nested blocks walked."""
    from pydantic import BaseModel

    out = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = [
            a
            for a in getattr(annotation, "__args__", (annotation,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            out.update(_schema_defaults(nested[0], f"{prefix}{name}."))
        elif not field.is_required() and field.default is not None:
            out[f"{prefix}{name}"] = field.default
    return out


def test_schema_defaults_equal_the_yaml(conf):
    """A default the schema declares is the one conf/base holds (where conf/base sets the key)."""
    from p3_pruning.config import Parameters

    def at(key):
        node = conf
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return KeyError
            node = node[part]
        return node

    checked = 0
    for key, default in _schema_defaults(Parameters).items():
        value = at(key)
        if value is KeyError:
            continue
        checked += 1
        assert value == default, f"{key}: conf/base says {value!r}, the schema {default!r}"
    assert checked >= 10  # the walk reached the nested blocks
