"""One line per regime: does P3 beat random there, at what compute, and what does it select?

Each argument is one regime's finished study workspace; several workspaces of the same regime,
joined by commas, pool their seeds as in ``bench_study.py`` (same train pool and eval set, each
(arm, seed) from one study only). A regime is named by its train pool's composition, read off the
pool's ``origin`` column ("noise 30 %"; "clean" for a pool without injected rows), so the table
cannot mislabel a workspace. Per regime it prints ``--arm`` (default ``p3``) against
``--reference`` (default ``random``): the seeds both ran, their mean accuracies, the paired
difference seed by seed with its 95 % t interval and its minimum detectable difference at 80 %
power, on how many seeds the arm was ahead, the FLOPs ratio, and for each injected origin its share
of the pool against its share of each arm's selection (round by round, means over seeds) with the
AUROC of the arm's difficulty separating it from clean, and in a pool with near-duplicates the
distinct problems per selected row; with several regimes, one more line pools every regime's
paired seeds. Markdown, ready for the README's "When to use P3"; the full per-regime tables come
from ``bench_study.py``.

    .venv/bin/python benchmarks/bench_regimes.py /work/study /work/study_red /work/study_off
    .venv/bin/python benchmarks/bench_regimes.py A,A2 B --arm p3_easy    # A and A2: one regime
    .venv/bin/python benchmarks/bench_regimes.py C --arm random_matched --ledger benchmarks/ledger.csv

``--ledger`` pools each regime's workspaces with the study ledger's seeds of the same samples (a
new arm against the eight recorded seeds of random, whose workspace is gone); the audit comes from
the workspaces only.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pandas as pd

from p3_pruning import ledger as study_ledger
from p3_pruning import stats
from p3_pruning.audit import audit_summary
from p3_pruning.data.inject import CLEAN
from p3_pruning.methods import P3
from p3_pruning.workspace import TRAIN_POOL, latest_version

_spec = importlib.util.spec_from_file_location(
    "bench_study", Path(__file__).with_name("bench_study.py")
)
bench_study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_study)
_pct = bench_study._pct  # percent with one decimal, "—" for NaN: the study table's format

RANDOM = "random"


def composition(workspace: Path) -> dict[str, float]:
    """The workspace's train pool's share of each origin (:func:`p3_pruning.ledger.pool_shares`)."""
    return study_ledger.pool_shares(pd.read_parquet(latest_version(workspace, TRAIN_POOL)))


def regime_row(
    workspaces: list[Path], arm: str = P3, reference: str = RANDOM, ledger: Path | None = None
) -> dict:
    """One regime's comparison of ``arm`` with ``reference`` (fractions, not percent)."""
    results = bench_study.load(workspaces, ledger)
    for name in (arm, reference):
        if name not in set(results["method"]):
            raise ValueError(f"{', '.join(map(str, workspaces))}: no {name!r} results")
    table = stats.study_table(results, references=(reference,)).set_index("method")
    wide = results.pivot(index="seed", columns="method", values="accuracy")
    paired = wide[[arm, reference]].dropna()
    shares = composition(workspaces[0])
    row = {
        "regime": study_ledger.regime_name(shares),
        "seeds": len(paired),
        "arm": arm,
        "reference": reference,
        "arm_accuracy": paired[arm].mean(),
        "reference_accuracy": paired[reference].mean(),
        "diff": table.loc[arm, f"diff_vs_{reference}"],
        "diff_low": table.loc[arm, f"diff_vs_{reference}_ci_low"],
        "diff_high": table.loc[arm, f"diff_vs_{reference}_ci_high"],
        "mdd": table.loc[arm, f"diff_vs_{reference}_mdd"],
        "ahead": int((paired[arm] > paired[reference]).sum()),
        "differences": (paired[arm] - paired[reference]).tolist(),
        "flops_ratio": table.loc[arm, "total_flops"] / table.loc[reference, "total_flops"],
        "audit": {},
        "distinct": {},
    }
    if shares.get("duplicate", 0) > 0:
        distinct = bench_study.distinct_table(bench_study.load_selections(workspaces))
        row["distinct"] = {
            name: distinct[distinct["arm"] == name].sort_values("round")["distinct"].tolist()
            for name in (arm, reference)
        }
    audit = bench_study.load_audit(workspaces)
    if not audit.empty:
        summary = audit_summary(audit)
        for origin in (o for o in shares if o != CLEAN):
            part = summary[summary["origin"] == origin]
            row["audit"][origin] = {
                "pool": shares[origin],
                **{
                    name: part[part["method"] == name]
                    .sort_values("round")[["selected_share", "auroc"]]
                    .to_numpy()
                    .tolist()
                    for name in (arm, reference)
                },
            }
    return row


def _audit_cell(row: dict) -> str:
    cells = []
    for origin, audit in row["audit"].items():
        arm = " / ".join(_pct(s) for s, _ in audit[row["arm"]]) or "—"
        ref = " / ".join(_pct(s) for s, _ in audit[row["reference"]]) or "—"
        aurocs = [a for _, a in audit[row["arm"]] if a == a]
        auroc = f"{sum(aurocs) / len(aurocs):.2f}" if aurocs else "—"
        cells.append(
            f"{origin}: {_pct(audit['pool'])} → {arm} ({row['reference']} {ref}), AUROC {auroc}"
        )
    if row["distinct"]:
        arm, ref = (
            " / ".join(map(_pct, row["distinct"][k])) or "—" for k in (row["arm"], row["reference"])
        )
        cells.append(f"distinct problems per row {arm} ({row['reference']} {ref})")
    return "; ".join(cells) or "—"


def markdown(rows: list[dict]) -> str:
    arm, reference = rows[0]["arm"], rows[0]["reference"]
    lines = [
        f"| pool | paired seeds | {arm} | {reference} | {arm} − {reference}, paired (95 %) "
        f"| MDD | {arm} ahead | FLOPs {arm} / {reference} "
        f"| injected: % of pool → % of {arm}'s selection by round, AUROC of difficulty (mean over rounds) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        diff = f"{100 * row['diff']:+.1f}"
        if row["diff_low"] == row["diff_low"]:
            diff += f" ({100 * row['diff_low']:+.1f} … {100 * row['diff_high']:+.1f})"
        mdd = "—" if math.isnan(row["mdd"]) else f"{100 * row['mdd']:.1f}"
        lines.append(
            f"| {row['regime']} | {row['seeds']} | {_pct(row['arm_accuracy'])} % "
            f"| {_pct(row['reference_accuracy'])} % | {diff} | {mdd} "
            f"| {row['ahead']} of {row['seeds']} | {bench_study._num(row['flops_ratio'], '.2f', '×')} "
            f"| {_audit_cell(row)} |"
        )
    return "\n".join(lines)


def pooled_line(rows: list[dict]) -> str:
    """Over every regime's paired seeds together (one difference per regime and seed): the mean
    difference with its 95 % t interval, MDD and the count ahead. Empty for a single regime. An
    answer to "does this hold across pools?", not an estimate for any one of them."""
    if len(rows) < 2:
        return ""
    differences = [d for row in rows for d in row["differences"]]
    ci = stats.mean_ci(differences)
    mdd = stats.minimum_detectable_difference(ci.sd, ci.n)
    arm, reference = rows[0]["arm"], rows[0]["reference"]
    return (
        f"All {len(rows)} pools together, {ci.n} paired (pool, seed) runs: {arm} − {reference} "
        f"{100 * ci.mean:+.1f} points ({100 * ci.low:+.1f} … {100 * ci.high:+.1f}), MDD "
        f"{100 * mdd:.1f}, {arm} ahead on {sum(d > 0 for d in differences)} of {ci.n}"
    )


def main(
    regimes: list[list[Path]],
    arm: str = P3,
    reference: str = RANDOM,
    ledger: Path | None = None,
) -> list[dict]:
    rows = [regime_row(workspaces, arm, reference, ledger) for workspaces in regimes]
    print(markdown(rows))
    pooled = pooled_line(rows)
    if pooled:
        print(f"\n{pooled}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "regimes", nargs="+", help="one regime's workspace(s) per argument, comma-separated"
    )
    parser.add_argument("--arm", default=P3, help=f"the arm compared (default {P3})")
    parser.add_argument("--reference", default=RANDOM, help=f"against (default {RANDOM})")
    parser.add_argument(
        "--ledger", type=Path, metavar="CSV", help="pool in the study ledger's seeds of each pool"
    )
    args = parser.parse_args()
    main(
        [[Path(p) for p in regime.split(",")] for regime in args.regimes],
        args.arm,
        args.reference,
        args.ledger,
    )
