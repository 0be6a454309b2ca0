"""P3 with ``scoring.candidates`` against P3 scoring the whole pool: accuracy and scoring compute.

Reads the per-seed results of two finished ``study`` runs on the same data and seeds (the
``results`` table, ``data/08_reporting/study/results.csv``) and puts the candidates run's ``p3`` beside
the full run's methods under the name ``p3_candidates``; then the same report as the study
(:func:`p3_pruning.stats.study_table`): mean accuracy with its 95 % interval over seeds, and the
paired difference against full-pool ``p3`` and against ``random``, seed by seed. Prints each
method's scoring tokens and FLOPs and the ratio of the candidates run's scoring FLOPs to p3's.

    kedro run --pipeline study --env study_cpu             # in workspace A
    kedro run --pipeline study --env study_cpu_candidates  # in workspace B (same data and seeds)
    .venv/bin/python benchmarks/bench_candidates.py A B
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from p3_pruning import stats
from p3_pruning.workspace import latest_version

RESULTS = Path("data/08_reporting/study/results.csv")
LABEL = "p3_candidates"


def latest_results(workspace: Path) -> pd.DataFrame:
    """The newest version of a workspace's study results table (Kedro versioned CSV)."""
    try:
        return pd.read_csv(latest_version(workspace, RESULTS))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"no study results in {workspace}: run the study there first"
        ) from err


def combine(full: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """The full run's rows, then the candidates run's ``p3`` rows renamed ``p3_candidates``."""
    cand = candidates[candidates["method"] == "p3"].assign(method=LABEL)
    if cand.empty:
        raise ValueError("the candidates study has no p3 rows")
    missing = set(cand["seed"]) - set(full.loc[full["method"] == "p3", "seed"])
    if missing:
        raise ValueError(f"seeds {sorted(missing)} of the candidates run are not in the full run")
    return pd.concat([full, cand], ignore_index=True)


def _diff(row, ref: str) -> str:
    mean = getattr(row, f"diff_vs_{ref}")
    if mean != mean:  # NaN: the reference did not run
        return "—"
    low, high = getattr(row, f"diff_vs_{ref}_ci_low"), getattr(row, f"diff_vs_{ref}_ci_high")
    return f"{100 * mean:+.1f} ({100 * low:+.1f} … {100 * high:+.1f})"


def main(full_ws: Path, cand_ws: Path) -> pd.DataFrame:
    results = combine(latest_results(full_ws), latest_results(cand_ws))
    table = stats.study_table(results, references=("p3", "random"))
    print(
        f"{'method':<14} {'seeds':>5} {'accuracy':>9} {'95 % interval':>15} "
        f"{'diff vs p3, points':>24} {'diff vs random, points':>24} {'score FLOPs':>11} "
        f"{'total FLOPs':>11}"
    )
    for row in table.itertuples():
        interval = f"{100 * row.ci_low:.1f} – {100 * row.ci_high:.1f} %"
        print(
            f"{row.method:<14} {row.n_seeds:>5} {100 * row.mean:>8.1f}% {interval:>15} "
            f"{_diff(row, 'p3'):>24} {_diff(row, 'random'):>24} {row.score_flops:>11.3g} "
            f"{row.total_flops:>11.3g}"
        )
    by = table.set_index("method")
    for column in ("score_flops", "total_flops"):
        ratio = by.loc[LABEL, column] / by.loc["p3", column]
        print(f"{column} of {LABEL} / p3: {ratio:.2f}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("full", type=Path, help="workspace of the study_cpu run")
    parser.add_argument("candidates", type=Path, help="workspace of the study_cpu_candidates run")
    args = parser.parse_args()
    main(args.full, args.candidates)
