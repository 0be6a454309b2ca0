"""The method registry is the one place per-method traits live."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from p3_pruning import methods, strategies

SRC = Path(__file__).resolve().parents[1] / "src" / "p3_pruning"
# string constants equal to a method name that mean something else
OTHER_MEANINGS = {
    ("cli.py", "p3"),  # the `kedro p3` command group
    ("training.py", "random"),  # transformers' train_sampling_strategy value
    ("refresh.py", "full"),  # scoring.refresh: full (rescore the whole pool), named once there
}


def test_no_method_name_literal_outside_the_registry():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "methods.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and node.value in methods.METHODS
                and (path.name, node.value) not in OTHER_MEANINGS
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert not found, "method names as literals (read them from p3_pruning.methods):\n" + "\n".join(
        found
    )


def test_registry_traits_are_consistent():
    for m in methods.REGISTRY.values():
        assert (m.candidates == "eligible") == m.thresholded, m.name
        assert m.scores or m.candidates == "pool", m.name  # an unscored method picks from the pool
        assert not m.needs_embeddings or m.scores, m.name
    assert strategies.METHODS == methods.METHODS
    assert methods.names(selector="dpp") == ("p3", "dpp", "static")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        methods.get("nope")


def test_namespaces_round_trip():
    from p3_pruning import namespaces as ns

    assert ns.round_namespace("p3", 1) == "p3.round_2"
    assert ns.round_namespace("p3_easy", 0, 7) == "p3_easy.seed_7.round_1"
    assert ns.final_namespace("p3", 7) == "p3.seed_7.final"
    for text, place in (
        ("p3.round_2", ("p3", None, 2, False)),
        ("p3.seed_7.round_2.scores", ("p3", 7, 2, False)),
        ("random_matched.seed_0.final", ("random_matched", 0, None, True)),
        ("p3.seed_7", ("p3", 7, None, False)),
        ("base.final", ("base", None, None, True)),
    ):
        assert tuple(ns.parse(text)) == place, text
    assert ns.parse("p3.seed_7.round_2").chain == "p3.seed_7"
    key = ns.report_key("p3", 7, "scores", 2)
    assert key == "p3__7__scores__2" and ns.parse_report_key(key) == ("p3", 7, "scores", ["2"])
    assert ns.parse_report_key("train_pool") is None
    assert ns.parse_report_key(ns.report_key("base", None, ns.FINAL)) == ("base", None, "final", [])
