"""What did each arm's model learn to write, and what did it train on?

Accuracy says that an arm lost; this script says how. It reads a finished study workspace, without
training, and reports per arm (means over seeds, min – max):

- from the final evaluation's replies: accuracy, the share of replies with an ``Answer:`` line,
  the share that **overrun** (more ``=`` lines than the reference solution: the model kept going past
  the problem, e.g. "6 + 8 = 14 / 14 + 8 = 22 / Answer: 22"), the mean number of lines, and the
  accuracy and the overrun share on level 1 (the shortest problems, where a model that learnt to
  continue every chain shows it first);
- from the last round's selection: how many rows it trained on, the share of each injected origin,
  the mean number of lines of the selected reference solutions, and how many level-1 problems.

Then, over every (arm, seed) run, how many ended below the base model (its replies in the same
workspace) and how many of those overran on most level-1 problems, and the correlation of accuracy with each feature, so that a mechanism
("it loses because it overruns") is a number, not a reading of three replies. Correlation across
arms is not cause: it names what to test next.

    .venv/bin/python benchmarks/bench_replies.py /work/study_hard2
    .venv/bin/python benchmarks/bench_replies.py /work/study_hard2 --arm p3 --arm dpp --arm spl
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from p3_pruning import namespaces
from p3_pruning.answers import answer_line
from p3_pruning.data.inject import CLEAN, ORIGIN
from p3_pruning.workspace import EVAL_SET, TRAIN_POOL, latest_version

RESPONSES = Path("data/07_model_output")
SELECTIONS = Path("data/05_model_input")
REPLY = ("accuracy", "answered", "overrun", "lines", "level_1_accuracy", "level_1_overrun")
PERCENT = set(REPLY) - {"lines"}


def steps(text: str) -> int:
    """Lines of ``text`` that state a computation (hold an ``=``)."""
    return sum("=" in line for line in str(text).splitlines())


def final_responses(chain: str) -> Path:
    """The final evaluation's replies of ``chain`` (``p3.seed_0``, ``base``), a versioned dataset."""
    return RESPONSES / chain / namespaces.FINAL / "responses.parquet"


def reply_features(responses: pd.DataFrame, eval_set: pd.DataFrame) -> dict[str, float]:
    """Accuracy, answered, overrun, mean lines, level-1 accuracy and overrun of one run's replies."""
    reference = eval_set.set_index("sample_id")["response"]
    missing = set(responses["sample_id"]) - set(reference.index)
    if missing:
        raise ValueError(
            f"replies for {len(missing)} sample ids not in the eval set, e.g. {min(missing)}"
        )
    needed = responses["sample_id"].map(reference).map(steps)
    written = responses["response"].map(steps)
    level_1 = responses["level"].astype(str) == "1"
    overrun = written > needed
    if level_1.any():
        level_1_accuracy = responses.loc[level_1, "correct"].mean()
        level_1_overrun = overrun[level_1].mean()
    else:
        level_1_accuracy = level_1_overrun = math.nan
    return {
        "accuracy": float(responses["correct"].mean()),
        "answered": float(
            responses["response"].map(lambda r: answer_line(str(r)) is not None).mean()
        ),
        "overrun": float(overrun.mean()),
        "lines": float(responses["response"].map(lambda r: len(str(r).splitlines())).mean()),
        "level_1_accuracy": float(level_1_accuracy),
        "level_1_overrun": float(level_1_overrun),
    }


def training_features(selection: pd.DataFrame, pool: pd.DataFrame) -> dict[str, float]:
    """Rows, share of each origin, mean reference lines and level-1 count of one round's selection."""
    rows = pool.set_index("sample_id").reindex(selection["sample_id"])
    unknown = rows["response"].isna()
    if unknown.any():
        raise ValueError(
            f"selection names {int(unknown.sum())} sample ids not in the train pool, "
            f"e.g. {selection['sample_id'][unknown.to_numpy()].iloc[0]}"
        )
    out = {
        "rows": float(len(rows)),
        "train_lines": float(rows["response"].map(lambda r: len(str(r).splitlines())).mean()),
        "train_level_1": float((rows["level"].astype(str) == "1").sum()),
    }
    if ORIGIN in rows.columns:
        for name, share in rows[ORIGIN].value_counts(normalize=True).items():
            if name != CLEAN:
                out[f"share_{name}"] = float(share)
    return out


def runs(workspace: Path) -> list[tuple[str, int]]:
    """``(arm, seed)`` of every run in ``workspace`` with a final evaluation (not the base model)."""
    out = []
    for path in sorted((workspace / RESPONSES).glob("*/final/responses.parquet")):
        place = namespaces.parse(path.parent.parent.name)
        if place.arm != namespaces.BASE and place.seed is not None:
            out.append((place.arm, place.seed))
    return out


def last_round(workspace: Path, chain: str) -> int | None:
    rounds = [
        int(p.parent.name.removeprefix("round_"))
        for p in (workspace / SELECTIONS / chain).glob("round_*/selection.parquet")
    ]
    return max(rounds) if rounds else None


def replies_table(workspaces: list[Path], arms: list[str] | None = None) -> pd.DataFrame:
    """One row per (workspace, arm, seed): the reply features and the last round's training mix."""
    rows = []
    for workspace in workspaces:
        pool = pd.read_parquet(latest_version(workspace, TRAIN_POOL))
        eval_set = pd.read_parquet(latest_version(workspace, EVAL_SET))
        base = base_accuracy(workspace)
        for arm, seed in runs(workspace):
            if arms and arm not in arms:
                continue
            chain = namespaces.chain(arm, seed)
            row = {"workspace": str(workspace), "arm": arm, "seed": seed, "base_accuracy": base}
            responses = latest_version(workspace, final_responses(chain))
            row.update(reply_features(pd.read_parquet(responses), eval_set))
            round_ = last_round(workspace, chain)
            if round_ is not None:
                relpath = SELECTIONS / chain / f"round_{round_}" / "selection.parquet"
                selection = pd.read_parquet(latest_version(workspace, relpath))
                row.update({"round": round_, **training_features(selection, pool)})
            rows.append(row)
    return pd.DataFrame(rows)


def base_accuracy(workspace: Path) -> float:
    """The untuned model's accuracy on the workspace's eval set; NaN when it was not evaluated."""
    try:
        replies = pd.read_parquet(latest_version(workspace, final_responses(namespaces.BASE)))
        return float(replies["correct"].mean())
    except FileNotFoundError:
        return math.nan


def collapses(table: pd.DataFrame, overrun: float = 0.5) -> dict[str, int]:
    """How many runs ended below the base model, how many overran on more than ``overrun`` of the
    level-1 problems, and how many did both."""
    below = table["accuracy"] < table["base_accuracy"]
    overran = table["level_1_overrun"] > overrun
    return {
        "runs": len(table),
        "below_base": int(below.sum()),
        "overran": int(overran.sum()),
        "overran_and_below_base": int((below & overran).sum()),
    }


def feature_columns(table: pd.DataFrame) -> list[str]:
    fixed = [*REPLY, "rows", "train_lines", "train_level_1"]
    shares = sorted(c for c in table.columns if c.startswith("share_"))
    return [c for c in [*fixed, *shares] if c in table.columns]


def _cell(values: pd.Series, column: str) -> str:
    values = values.dropna()
    if values.empty:
        return "—"
    percent = column in PERCENT or column.startswith("share_")
    scale, fmt = (100, ".1f") if percent else (1, ".2f")
    mean, low, high = scale * values.mean(), scale * values.min(), scale * values.max()
    return f"{mean:{fmt}} ({low:{fmt}} – {high:{fmt}})"


def markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "no finished runs"
    columns = feature_columns(table)
    lines = [
        "| arm | seeds | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for arm, part in table.groupby("arm", sort=False):
        cells = [_cell(part[c], c) for c in columns]
        lines.append(f"| {arm} | {part['seed'].nunique()} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation of accuracy with every other feature, over all runs."""
    out = []
    for column in feature_columns(table):
        if column == "accuracy":
            continue
        both = table[["accuracy", column]].dropna()
        if len(both) < 3 or both[column].nunique() < 2:
            continue
        out.append(
            {
                "feature": column,
                "runs": len(both),
                "pearson": both["accuracy"].corr(both[column]),
                "spearman": both["accuracy"].corr(both[column], method="spearman"),
            }
        )
    return pd.DataFrame(out)


def main(workspaces: list[Path], arms: list[str] | None = None) -> pd.DataFrame:
    table = replies_table(workspaces, arms)
    print("Replies (final evaluation) and the last round's training rows, % where a share;")
    print("means over seeds (min – max)\n")
    print(markdown(table))
    if not table.empty:
        print(
            "\nCorrelation with accuracy over all runs (arms pooled: what to test, not a cause)\n"
        )
        print(correlations(table).to_markdown(index=False, floatfmt=".2f"))
        counts = collapses(table)
        print(
            f"\n{counts['below_base']} of {counts['runs']} runs ended below the base model; "
            f"{counts['overran']} overran on more than half the level-1 problems, "
            f"{counts['overran_and_below_base']} of them below the base model"
        )
        print("\nPer run\n")
        print(
            table.drop(columns=["workspace", "base_accuracy"]).to_markdown(
                index=False, floatfmt=".3f"
            )
        )
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspaces", type=Path, nargs="+", help="finished study workspaces")
    parser.add_argument("--arm", action="append", help="only these arms (repeatable; default all)")
    args = parser.parse_args()
    main(args.workspaces, args.arm)
