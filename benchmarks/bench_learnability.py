"""Would a learnability score find the rows P3 should leave out better than difficulty does?

A candidate fix for P3 in a composed pool (issue: "a learnability score from how a sample's
difficulty changes across rounds, excluding samples whose difficulty does not fall"): a wrong answer
or an out-of-reach problem should stay hard while the model learns the rest. This script measures
that on a finished study workspace, without training: for every ``--arm`` chain (default ``p3``)
and every round e ≥ 2, it reads the round's scores and the previous round's (round 1's come from
the shared base-model scoring, ``base.seed_<s>``) and reports, per injected origin against clean,
the AUROC of three signals, each oriented so that higher means "leave it out":

- ``d_e``: the round's difficulty, what P3's threshold and quality already use;
- ``−Δd``: the difficulty's drop since the previous round, negated (a small drop: not learnt);
- ``−Δd / d_{e−1}``: the same drop relative to where the sample started;

and the share of each origin whose difficulty did not fall (Δd ≤ 0), which the rule "exclude the
samples whose difficulty does not fall" would remove. Means over seeds, with min and max.

    .venv/bin/python benchmarks/bench_learnability.py /work/study            # the noisy regime
    .venv/bin/python benchmarks/bench_learnability.py A B --arm p3_easy
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from p3_pruning import namespaces
from p3_pruning.audit import auroc
from p3_pruning.data.inject import CLEAN, ORIGIN
from p3_pruning.methods import P3
from p3_pruning.workspace import TRAIN_POOL, latest_version

FEATURES = Path("data/04_feature")
SIGNALS = ("d", "slow_drop", "slow_relative_drop")


def scores_path(workspace: Path, arm: str, seed: int, round_: int) -> Path:
    """The newest scores of ``arm``'s chain at ``seed`` and round; round 1 falls back to the shared
    base-model scoring (``base.seed_<s>``, then ``base``)."""
    chains = [namespaces.chain(arm, seed)]
    if round_ == 1:
        chains += [namespaces.chain(namespaces.BASE, seed), namespaces.BASE]
    for chain in chains:
        relpath = FEATURES / chain / f"round_{round_}" / "scores.parquet"
        if (workspace / relpath).exists():
            return latest_version(workspace, relpath)
    raise FileNotFoundError(
        f"{workspace}: no round-{round_} scores for {namespaces.chain(arm, seed)} under {FEATURES}"
    )


def signals(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Per sample id: ``d`` (current difficulty), ``slow_drop`` (−Δd), ``slow_relative_drop``
    (−Δd / d_prev) and ``did_not_fall`` (Δd ≤ 0), over the samples both rounds scored."""
    both = pd.merge(
        previous[["sample_id", "difficulty"]],
        current[["sample_id", "difficulty"]],
        on="sample_id",
        suffixes=("_prev", ""),
    )
    both = both.dropna().set_index("sample_id")
    drop = both["difficulty_prev"] - both["difficulty"]
    return pd.DataFrame(
        {
            "d": both["difficulty"],
            "slow_drop": -drop,
            "slow_relative_drop": -drop / both["difficulty_prev"],
            "did_not_fall": drop <= 0,
        }
    )


def chains(workspace: Path, arm: str) -> list[tuple[int, int]]:
    """``(seed, round)`` of every round ≥ 2 of ``arm``'s chains that has scores."""
    out = []
    for folder in sorted((workspace / FEATURES).glob(f"{arm}.seed_*/round_*/scores.parquet")):
        place = namespaces.parse(f"{folder.parent.parent.name}.{folder.parent.name}")
        if place.arm == arm and place.round and place.round >= 2:
            out.append((place.seed, place.round))
    return out


def learnability_table(workspaces: list[Path], arm: str = P3) -> pd.DataFrame:
    """One row per (seed, round, origin other than clean): the three signals' AUROC against clean
    and the share of the origin and of clean whose difficulty did not fall."""
    rows = []
    for workspace in workspaces:
        pool = pd.read_parquet(latest_version(workspace, TRAIN_POOL))
        if ORIGIN not in pool.columns:
            raise ValueError(f"{workspace}: the train pool has no {ORIGIN!r} column (a clean pool)")
        origin = pool.set_index("sample_id")[ORIGIN]
        for seed, round_ in chains(workspace, arm):
            table = signals(
                pd.read_parquet(scores_path(workspace, arm, seed, round_ - 1)),
                pd.read_parquet(scores_path(workspace, arm, seed, round_)),
            )
            kind = origin.reindex(table.index)
            clean = table[kind == CLEAN]
            for name in sorted(set(kind.dropna()) - {CLEAN}):
                part = table[kind == name]
                rows.append(
                    {
                        "seed": seed,
                        "round": round_,
                        "origin": name,
                        **{f"auroc_{s}": auroc(part[s], clean[s]) for s in SIGNALS},
                        "did_not_fall": part["did_not_fall"].mean(),
                        "clean_did_not_fall": clean["did_not_fall"].mean(),
                    }
                )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "no round ≥ 2 scores of that arm"

    def cell(values: pd.Series, percent: bool = False) -> str:
        scale, fmt = (100, ".0f") if percent else (1, ".2f")
        mean, low, high = (scale * values.mean(), scale * values.min(), scale * values.max())
        if math.isnan(mean):
            return "—"
        return f"{mean:{fmt}} ({low:{fmt}} – {high:{fmt}})"

    lines = [
        "| origin | round | seeds | AUROC d_e | AUROC −Δd | AUROC −Δd / d_{e−1} "
        "| difficulty did not fall: origin % | clean % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (name, round_), part in table.groupby(["origin", "round"]):
        lines.append(
            f"| {name} | {round_} | {part['seed'].nunique()} | "
            + " | ".join(cell(part[f"auroc_{s}"]) for s in SIGNALS)
            + f" | {cell(part['did_not_fall'], True)} | {cell(part['clean_did_not_fall'], True)} |"
        )
    return "\n".join(lines)


def main(workspaces: list[Path], arm: str = P3) -> pd.DataFrame:
    table = learnability_table(workspaces, arm)
    print(f"{arm}: signals against clean, means over seeds (min – max)\n")
    print(markdown(table))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspaces", type=Path, nargs="+", help="finished study workspaces")
    parser.add_argument("--arm", default=P3, help=f"the arm whose chains are read (default {P3})")
    args = parser.parse_args()
    main(args.workspaces, args.arm)
