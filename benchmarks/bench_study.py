"""The study's table, as in the README, from one or more finished ``study`` workspaces.

Reads each workspace's newest study results (``data/08_reporting/study/results.csv``: one row per
method and seed), pools them (:func:`p3_pruning.stats.merge_results`: more seeds of the same setup,
each (method, seed) from one study only) after checking that every workspace trained and evaluated
on the same samples, and prints per method: mean accuracy with its 95 % t interval over seeds, the
binomial stderr within a seed, the paired difference against ``random``, ``full`` and ``p3`` seed
by seed with its minimum detectable difference at 80 % power (MDD), accuracy per level, samples
trained, estimated FLOPs (total and by stage) with their ratio to ``random``'s, and wall seconds;
then, for composed pools, the selection audit pooled over the workspaces (share of each origin in
the pool and in each arm's selection per round, AUROC of difficulty against clean) and, for pools
with near-duplicates, the distinct problems per selected row, read off the selection tables.
Markdown, ready for the README.

    kedro run --pipeline study --env study_cpu     # workspace A: five methods, seeds 0-2
    # workspace B: the same env with study: {methods: [p3, random], seeds: [3, 4, 5]}
    .venv/bin/python benchmarks/bench_study.py A B
    .venv/bin/python benchmarks/bench_study.py A --pair p3_b20:random_b20   # arms of a budget sweep
    .venv/bin/python benchmarks/bench_study.py A --record benchmarks/ledger.csv  # keep A's seeds
    .venv/bin/python benchmarks/bench_study.py C --ledger benchmarks/ledger.csv  # C + earlier seeds

The ledger (:mod:`p3_pruning.ledger`) keeps every recorded (arm, seed) with the fingerprint of the
samples it ran on, so a later workspace pools with seeds whose workspace is gone; ``--record``
refuses a seed the ledger holds with another accuracy (same seed, same result).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
from pathlib import Path

import pandas as pd

from p3_pruning import ledger as study_ledger
from p3_pruning import namespaces, stats
from p3_pruning.audit import POOL_SHARE, audit_summary, audit_table, distinct_share
from p3_pruning.compute import stage_flops
from p3_pruning.methods import P3, REFERENCES
from p3_pruning.workspace import EVAL_SET, TRAIN_POOL, latest_version

RESULTS = Path("data/08_reporting/study/results.csv")
REPORTING = Path("data/08_reporting")
SELECTIONS = Path("data/05_model_input")
SPLITS = (TRAIN_POOL, EVAL_SET)
_LEVEL = re.compile(r"^accuracy/(\d+)$")


def same_samples(workspaces: list[Path]) -> None:
    """ValueError unless every workspace has the same train pool and eval set (by sample id)."""
    for split in SPLITS:
        first = None
        for workspace in workspaces:
            ids = pd.read_parquet(latest_version(workspace, split), columns=["sample_id"])
            ids = sorted(ids["sample_id"])
            if first is None:
                first = (workspace, ids)
            elif ids != first[1]:
                raise ValueError(
                    f"{split.name} differs between {first[0]} and {workspace}: "
                    "their studies cannot be pooled"
                )


def fingerprint(workspace: Path) -> str:
    """:func:`p3_pruning.ledger.pool_fingerprint` of the workspace's train pool and eval set."""
    return study_ledger.pool_fingerprint(
        *(pd.read_parquet(latest_version(workspace, split)) for split in SPLITS)
    )


def load(workspaces: list[Path], ledger: Path | None = None) -> pd.DataFrame:
    """The workspaces' study results pooled into one long table, with the ``ledger``'s rows of the
    same samples that no workspace holds."""
    same_samples(workspaces)
    results = stats.merge_results([pd.read_csv(latest_version(w, RESULTS)) for w in workspaces])
    if ledger is None:
        return results
    earlier = study_ledger.pooled(study_ledger.read(ledger), fingerprint(workspaces[0]), results)
    return results if earlier.empty else stats.merge_results([results, earlier])


def _commit(workspace: Path) -> str:
    """The workspace checkout's commit, or "" when it is not a git checkout."""
    done = subprocess.run(
        ["git", "-C", str(workspace), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def record(workspaces: list[Path], ledger: Path) -> pd.DataFrame:
    """Add every workspace's study results to the ``ledger`` (its samples' fingerprint, its train
    pool's regime, the checkout's commit, the workspace's folder name as source); the ledger as
    written."""
    same_samples(workspaces)
    new = []
    for w in workspaces:
        train_pool, eval_set = (pd.read_parquet(latest_version(w, split)) for split in SPLITS)
        new.append(
            study_ledger.rows(
                pd.read_csv(latest_version(w, RESULTS)),
                pool=study_ledger.pool_fingerprint(train_pool, eval_set),
                regime=study_ledger.regime_name(study_ledger.pool_shares(train_pool)),
                commit=_commit(w),
                source=Path(w).resolve().name,
            )
        )
    new = pd.concat(new, ignore_index=True)
    return study_ledger.record(ledger, new)


def _pct(value: float) -> str:
    return "—" if value != value else f"{100 * value:.1f}"


def _num(value: float, spec: str, unit: str = "") -> str:
    return "—" if value != value else f"{value:{spec}}{unit}"


def _diff(row: pd.Series, ref: str) -> str:
    mean = row.get(f"diff_vs_{ref}", math.nan)
    if mean != mean or row["method"] == ref:
        return "—"
    low, high = row[f"diff_vs_{ref}_ci_low"], row[f"diff_vs_{ref}_ci_high"]
    if low != low:
        return f"{100 * mean:+.1f}"
    text = f"{100 * mean:+.1f} ({100 * low:+.1f} … {100 * high:+.1f})"
    mdd = row.get(f"diff_vs_{ref}_mdd", math.nan)
    return text if mdd != mdd else f"{text}, MDD {100 * mdd:.1f}"


def markdown(table: pd.DataFrame) -> str:
    """The study table as a Markdown table (base model first, then the methods as they ran)."""
    levels = sorted(
        (c for c in table.columns if _LEVEL.match(c)), key=lambda c: int(_LEVEL.match(c)[1])
    )
    by = table.set_index("method")
    random_flops = by["total_flops"].get("random", math.nan)
    head = (
        "| method | seeds | accuracy | 95 % interval over seeds | ± within a seed "
        "| vs random, paired (95 %), MDD, points | vs full, paired (95 %), MDD, points "
        "| vs p3, paired (95 %), MDD, points "
        f"| {' / '.join('L' + _LEVEL.match(c)[1] for c in levels)} % | samples trained "
        "| FLOPs total (score / train / eval + generation) | FLOPs / random | wall s |"
    )
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    order = sorted(table.index, key=lambda i: table.loc[i, "method"] != "base")
    for i in order:
        row = table.loc[i]
        interval = (
            "—"
            if row["ci_low"] != row["ci_low"]
            else f"{_pct(row['ci_low'])} – {_pct(row['ci_high'])}"
        )
        evaluation = row.get("eval_flops", 0.0) + row.get("generation_flops", 0.0)
        flops = (
            "—"  # rows from the ledger's README figures carry accuracy only
            if row["total_flops"] != row["total_flops"]
            else f"{row['total_flops']:.2g} ({row.get('score_flops', 0.0):.2g} / "
            f"{row.get('train_flops', 0.0):.2g} / {evaluation:.2g})"
        )
        ratio = _num(row["total_flops"] / random_flops, ".2f", "×")
        lines.append(
            f"| {row['method']} | {int(row['n_seeds'])} | {_pct(row['mean'])} % | {interval} "
            f"| {_pct(row['stderr_within'])} | "
            + " | ".join(_diff(row, ref) for ref in (*REFERENCES, P3))
            + " "
            f"| {' / '.join(_pct(row[c]) for c in levels)} | {_num(row['samples_trained'], '.0f')} "
            f"| {flops} | {ratio} | {_num(row['total_seconds'], '.0f')} |"
        )
    return "\n".join(lines)


def round_summaries(workspaces: list[Path]):
    """``(workspace, chain folder, round folder, place, summary)`` for every round summary of every
    ``<arm>.seed_<s>`` chain (newest version each)."""
    for workspace in workspaces:
        for folder in sorted((workspace / REPORTING).glob("*.seed_*/round_*/summary.json")):
            chain, round_folder = folder.parent.parent.name, folder.parent.name
            place = namespaces.parse(f"{chain}.{round_folder}")
            summary = json.loads(
                latest_version(workspace, folder.relative_to(workspace)).read_text()
            )
            yield workspace, chain, round_folder, place, summary


def load_audit(workspaces: list[Path]) -> pd.DataFrame:
    """The workspaces' selection audits (one row per arm, seed, round, origin) as one table, read
    from the round summaries, so studies written by any version of the report pool alike; empty
    when no summary carries an audit."""
    return audit_table(
        [
            {**summary, "method": place.arm, "seed": place.seed}
            for *_, place, summary in round_summaries(workspaces)
        ]
    )


def audit_markdown(audit: pd.DataFrame) -> str:
    """Per origin other than clean: pool share, then per arm and round the selected share and the
    AUROC of difficulty against clean (means over seeds). Empty for a clean pool."""
    summary = audit_summary(audit) if not audit.empty else audit
    if summary.empty or set(summary["origin"]) <= {"clean"}:
        return ""
    lines = [
        "| origin | arm | round | seeds | % of pool | % of selection | AUROC vs clean |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for _, row in summary[summary["origin"] != "clean"].iterrows():
        auroc = "—" if row["auroc"] != row["auroc"] else f"{row['auroc']:.2f}"
        lines.append(
            f"| {row['origin']} | {row['method']} | {int(row['round'])} | {int(row['seeds'])} "
            f"| {_pct(row['pool_share'])} | {_pct(row['selected_share'])} | {auroc} |"
        )
    return "\n".join(lines)


def load_selections(workspaces: list[Path]) -> dict[tuple[str, int, int], tuple[set, dict]]:
    """``{(arm, seed, round): (selected sample ids, round summary)}`` of every study round."""
    out = {}
    for workspace, chain, round_folder, place, summary in round_summaries(workspaces):
        selection = latest_version(
            workspace, SELECTIONS / chain / round_folder / "selection.parquet"
        )
        ids = set(pd.read_parquet(selection, columns=["sample_id"])["sample_id"])
        out[(place.arm, place.seed, place.round)] = (ids, summary)
    return out


def distinct_table(selections: dict) -> pd.DataFrame:
    """Per arm and round, over the rounds whose pool held near-duplicates: distinct problems per
    selected row (``audit.distinct_share``; mean, min and max over seeds), computed from the
    selection tables, so workspaces written before the audit carried it pool alike."""
    rows = [
        {"arm": arm, "round": round_, "seed": seed, "distinct": distinct_share(ids)}
        for (arm, seed, round_), (ids, summary) in sorted(selections.items())
        if summary.get(f"{POOL_SHARE}/duplicate", 0) > 0 and ids
    ]
    return _by_arm_round(
        rows, distinct=("distinct", "mean"), min=("distinct", "min"), max=("distinct", "max")
    )


def _by_arm_round(rows: list[dict], **stats) -> pd.DataFrame:
    """Per arm and round of ``rows`` (``arm, round, seed, …``): the seed count and ``stats``
    (pandas named aggregations)."""
    if not rows:
        return pd.DataFrame(columns=["arm", "round", "seeds", *stats])
    grouped = pd.DataFrame(rows).groupby(["arm", "round"])
    return grouped.agg(seeds=("seed", "nunique"), **stats).reset_index()


def distinct_markdown(table: pd.DataFrame) -> str:
    return _arm_round_markdown(
        table,
        ["distinct problems per selected row (mean, min – max)"],
        lambda row: [f"{_pct(row['distinct'])} ({_pct(row['min'])} – {_pct(row['max'])})"],
    )


def _arm_round_markdown(table: pd.DataFrame, header: list[str], cells) -> str:
    """A table of ``_by_arm_round``'s rows: arm, round, seeds, then ``cells(row)``; empty when
    there are no rows."""
    if table.empty:
        return ""
    columns = ["arm", "round", "seeds", *header]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for _, row in table.iterrows():
        first = [str(row["arm"]), str(int(row["round"])), str(int(row["seeds"]))]
        lines.append("| " + " | ".join([*first, *cells(row)]) + " |")
    return "\n".join(lines)


def overlap_table(selections: dict, reference: str = P3) -> pd.DataFrame:
    """Per arm running ``reference``'s method (not ``reference`` itself) and round: how much of its
    selection ``reference``'s selection of the same seed and round also holds (|A ∩ B| / |A|,
    mean and min over the seeds both ran), and how many pool samples its scorer read."""
    rows = []
    for (arm, seed, round_), (ids, summary) in sorted(selections.items()):
        mine = selections.get((reference, seed, round_))
        if arm == reference or mine is None or summary.get("method") != reference or not ids:
            continue
        rows.append(
            {
                "arm": arm,
                "round": round_,
                "seed": seed,
                "overlap": len(ids & mine[0]) / len(ids),
                "scored": summary.get("score_candidates", float("nan")),
            }
        )
    return _by_arm_round(
        rows, overlap=("overlap", "mean"), min=("overlap", "min"), scored=("scored", "mean")
    )


def overlap_markdown(table: pd.DataFrame, reference: str = P3) -> str:
    return _arm_round_markdown(
        table,
        [f"selection overlap with {reference} (mean, min)", "pool samples scored (mean)"],
        lambda row: [f"{_pct(row['overlap'])} ({_pct(row['min'])})", f"{row['scored']:.0f}"],
    )


def pairs_markdown(results: pd.DataFrame, pairs: list[tuple[str, str]]) -> str:
    """Each ``(arm, reference)`` pair's paired difference (``arm`` − ``reference``, seed by seed),
    for comparisons the main table does not make (a budget sweep's arm against the random arm of
    the same budget)."""
    if not pairs:
        return ""
    references = tuple(dict.fromkeys(ref for _, ref in pairs))
    table = stats.study_table(results, references=references).set_index("method", drop=False)
    lines = [
        "| arm | against | arm accuracy | reference accuracy | paired difference (95 %), MDD, points |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm, ref in pairs:
        for name in (arm, ref):
            if name not in table.index:
                raise ValueError(f"--pair {arm}:{ref}: no arm {name!r} in the studies")
        lines.append(
            f"| {arm} | {ref} | {_pct(table.loc[arm, 'mean'])} % | {_pct(table.loc[ref, 'mean'])} % "
            f"| {_diff(table.loc[arm], ref)} |"
        )
    return "\n".join(lines)


def cost_model_markdown(
    selections: dict, reference: str = P3, pool: int = 1000, budgets=(0.2, 0.1)
) -> str:
    """Scoring against training FLOPs of one round at ``budgets`` of a ``pool``-sample pool, from
    the study's own token counts: ``reference``'s scoring tokens a sample (round 1: the whole pool)
    and training tokens a trained sample, and for each arm that refreshes incrementally (its
    summaries count ``score_rescored``) the share of a full rescoring's tokens it read (rounds 2 on,
    against ``reference`` at the same seed and round). Empty when no arm refreshes incrementally."""
    ref = {(seed, r): s for (arm, seed, r), (_, s) in selections.items() if arm == reference}
    shares: dict[str, list[float]] = {}
    for (arm, seed, round_), (_, summary) in sorted(selections.items()):
        full = ref.get((seed, round_))
        if round_ > 1 and "score_rescored" in summary and full and full.get("score_tokens"):
            shares.setdefault(arm, []).append(summary["score_tokens"] / full["score_tokens"])
    if not shares or not ref:
        return ""
    first = [s for (_, r), s in ref.items() if r == 1]
    per_scored = sum(s["score_tokens"] for s in first) / sum(s["score_candidates"] for s in first)
    trained = [s for s in ref.values() if s.get("selected")]
    per_trained = sum(s["train_n_input_tokens"] for s in trained) / sum(
        s["selected"] for s in trained
    )
    P, L = int(first[0]["train_params"]), int(first[0]["train_lora_params"])
    lines = [
        f"Cost model, a pool of {pool:,} ({per_scored:.0f} tokens a sample scored, "
        f"{per_trained:.0f} a sample trained, P = {P:,}, P_lora = {L:,}): scoring FLOPs of a "
        "round / training FLOPs of a round",
        "",
        "| scoring | share of a full rescoring read | "
        + " | ".join(f"budget {100 * b:.0f} %" for b in budgets)
        + " |",
        "| --- | --- |" + " --- |" * len(budgets),
    ]
    ratios = []
    for b in budgets:
        score = stage_flops("score", pool * per_scored, P)
        ratios.append(score / stage_flops("train", b * pool * per_trained, P, L))
    lines.append(
        f"| full ({reference}) | 100 % | " + " | ".join(f"{r:.2f}×" for r in ratios) + " |"
    )
    for arm, values in shares.items():
        share = sum(values) / len(values)
        lines.append(
            f"| {arm} (rounds 2+, {len(values)} rounds) | {100 * share:.0f} % | "
            + " | ".join(f"{share * r:.2f}×" for r in ratios)
            + " |"
        )
    return "\n".join(lines)


def main(
    workspaces: list[Path],
    pairs: list[tuple[str, str]] | None = None,
    ledger: Path | None = None,
) -> pd.DataFrame:
    results = load(workspaces, ledger)
    table = stats.study_table(results, references=(*REFERENCES, P3))
    print(markdown(table))
    paired = pairs_markdown(results, pairs or [])
    if paired:
        print("\nPaired comparisons asked for:\n")
        print(paired)
    audit = audit_markdown(load_audit(workspaces))
    if audit:
        print("\nSelection audit (means over seeds):\n")
        print(audit)
    selections = load_selections(workspaces)
    distinct = distinct_markdown(distinct_table(selections))
    if distinct:
        print("\nRedundancy of the selections (a near-duplicate and its source count once):\n")
        print(distinct)
    overlap = overlap_markdown(overlap_table(selections))
    if overlap:
        print(f"\nVariants of {P3} against it, seed by seed:\n")
        print(overlap)
    costs = cost_model_markdown(selections)
    if costs:
        print(f"\n{costs}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workspaces", type=Path, nargs="+", help="finished study workspaces")
    parser.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="ARM:REFERENCE",
        help="also print ARM - REFERENCE paired by seed (e.g. p3_b20:random_b20); repeatable",
    )
    parser.add_argument(
        "--ledger",
        type=Path,
        metavar="CSV",
        help="pool in the ledger's earlier seeds of the same samples (p3_pruning.ledger)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="CSV",
        help="add the workspaces' results to this ledger before printing (created if absent)",
    )
    args = parser.parse_args()
    if args.record:
        written = record(args.workspaces, args.record)
        print(f"{args.record}: {len(written)} rows\n")
    main(args.workspaces, [tuple(p.split(":", 1)) for p in args.pair], args.ledger)
