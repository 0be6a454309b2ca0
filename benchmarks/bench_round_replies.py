"""In which round did the model learn to write what it wrote? Regenerate with every round's adapter.

``bench_replies.py`` reads the final evaluation only: the model after the last round. When an arm's
final replies go wrong in a recognisable way (P3 in the out-of-reach regime continues short chains:
"6 + 8 = 14 / 14 + 8 = 22 / Answer: 22"), this script says in which round that began. For every
``--arm`` chain of a finished study workspace and every round that saved an adapter, it loads the
base model with that round's adapter exactly as the final evaluation does (the workspace's
``model``, ``generation`` and ``scoring`` parameters for ``--env``), generates on the eval problems
of ``--level`` (default 1, the shortest) and reports per (arm, round), over seeds, the accuracy, the
share of replies that overrun the reference's steps and the share with an ``Answer:`` line. The last
round's row is a check: its replies should be the final evaluation's on those problems (greedy
decoding; batches of other lengths can change a few), and the agreement is printed.

    .venv/bin/python benchmarks/bench_round_replies.py /work/study_hard2 --env regime_too_hard \
        --arm p3 --arm dpp --arm spl

Costs one generation pass over the level's problems per (chain, round): about half a minute each
for the 163 level-1 problems of the default task on two CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd

from p3_pruning import namespaces
from p3_pruning.adapters import LoraAdapter
from p3_pruning.workspace import EVAL_SET, inside, latest_version

MODELS = Path("data/06_models")
_spec = importlib.util.spec_from_file_location(
    "bench_replies", Path(__file__).resolve().parent / "bench_replies.py"
)
bench_replies = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_replies)


def parameters(workspace: Path, env: str) -> dict:
    """The workspace's parameters for ``env``, merged as ``kedro run --env`` merges them."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project

    with inside(workspace):
        bootstrap_project(workspace)
        loader = OmegaConfigLoader(
            conf_source=str(workspace / settings.CONF_SOURCE),
            env=env,
            **settings.CONFIG_LOADER_ARGS,
        )
        return loader["parameters"]


def adapters(workspace: Path, arm: str) -> list[tuple[int, int, Path]]:
    """``(seed, round, adapter folder)`` of every saved round adapter of ``arm``'s chains."""
    out = []
    for folder in sorted((workspace / MODELS).glob(f"{arm}.seed_*/round_*/adapter")):
        place = namespaces.parse(f"{folder.parent.parent.name}.{folder.parent.name}")
        if place.arm == arm:
            relpath = folder.relative_to(workspace)
            out.append((place.seed, place.round, latest_version(workspace, relpath)))
    return sorted(out)


def final_replies(workspace: Path, arm: str, seed: int) -> pd.DataFrame | None:
    try:
        relpath = bench_replies.final_responses(namespaces.chain(arm, seed))
        return pd.read_parquet(latest_version(workspace, relpath))
    except FileNotFoundError:
        return None


def round_replies(
    workspace: Path, env: str, arms: list[str], level: str = "1", evaluate=None
) -> pd.DataFrame:
    """One row per (arm, seed, round): reply features on the eval problems of ``level`` with that
    round's adapter, and the share equal to the final evaluation's replies (last round only).
    ``evaluate(eval_set, params, adapter) -> per_sample`` defaults to the final evaluation node."""
    workspace = Path(workspace).resolve()
    params = parameters(workspace, env)
    eval_set = pd.read_parquet(latest_version(workspace, EVAL_SET))
    problems = eval_set[eval_set["level"].astype(str) == str(level)].reset_index(drop=True)
    if problems.empty:
        raise ValueError(f"{workspace}: no eval problems of level {level!r}")
    if evaluate is None:
        evaluate = _final_evaluate
    rows = []
    for arm in arms:
        found = adapters(workspace, arm)
        if not found:
            raise FileNotFoundError(f"{workspace}: no round adapters of {arm!r} under {MODELS}")
        last = {seed: max(r for s, r, _ in found if s == seed) for seed, _, _ in found}
        for seed, round_, path in found:
            with inside(workspace):
                per_sample = evaluate(problems, params, LoraAdapter.load(path))
            row = {"arm": arm, "seed": seed, "round": round_}
            row.update(bench_replies.reply_features(per_sample, eval_set))
            final = final_replies(workspace, arm, seed) if round_ == last[seed] else None
            if final is not None:
                same = per_sample.merge(final, on="sample_id", suffixes=("", "_final"))
                row["same_as_final"] = float((same["response"] == same["response_final"]).mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _final_evaluate(problems: pd.DataFrame, params: dict, adapter: LoraAdapter) -> pd.DataFrame:
    from p3_pruning.pipelines.evaluate.nodes import final_evaluate

    per_sample, _, _ = final_evaluate(
        problems, params["model"], params["generation"], params["scoring"], adapter, method="check"
    )
    return per_sample


def markdown(table: pd.DataFrame) -> str:
    columns = ["accuracy", "overrun", "answered"]
    lines = [
        "| arm | round | seeds | " + " | ".join(columns) + " | same as the final replies |",
        "| --- | --- | --- | " + " | ".join("---" for _ in columns) + " | --- |",
    ]
    for (arm, round_), part in table.groupby(["arm", "round"], sort=False):
        same = part["same_as_final"] if "same_as_final" in part else pd.Series(dtype=float)
        cells = [bench_replies._cell(part[c], c) for c in columns]
        lines.append(
            f"| {arm} | {round_} | {part['seed'].nunique()} | "
            + " | ".join(cells)
            + f" | {bench_replies._cell(same, 'accuracy')} |"
        )
    return "\n".join(lines)


def main(workspace: Path, env: str, arms: list[str], level: str = "1") -> pd.DataFrame:
    table = round_replies(workspace, env, arms, level)
    print(
        f"Level-{level} eval problems regenerated with each round's adapter, % (min – max over seeds)\n"
    )
    print(markdown(table))
    print("\nPer run\n")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspace", type=Path, help="a finished study workspace")
    parser.add_argument("--env", required=True, help="the Kedro environment it ran with")
    parser.add_argument(
        "--arm", action="append", help="arms to regenerate (repeatable; default p3)"
    )
    parser.add_argument("--level", default="1", help="eval problems of this level (default 1)")
    args = parser.parse_args()
    main(args.workspace, args.env, args.arm or ["p3"], args.level)
