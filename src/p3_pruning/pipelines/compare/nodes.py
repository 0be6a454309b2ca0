"""Report nodes: one table and three plots comparing the methods."""

from __future__ import annotations

import math

import pandas as pd

from p3_pruning.methods import P3
from p3_pruning.namespaces import FINAL, parse_report_key
from p3_pruning.plotting import subplots


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return out


def rounds_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """One row per method-round from the rounds' summary records."""
    rows = [dict(s) for s in summaries.values()]
    frame = pd.DataFrame(rows)
    return frame.sort_values(["method", "round"]).reset_index(drop=True)


def report_table(rounds: pd.DataFrame, finals: dict[str, dict]) -> pd.DataFrame:
    """Method × (accuracy, samples used, seconds spent scoring / selecting / training / evaluating)."""
    rows = []
    for method, final in finals.items():
        per_round = rounds[rounds["method"] == method]
        row = {
            "method": method,
            "accuracy": _num(final.get("accuracy")),
            "n_eval": final.get("n_eval"),
        }
        row["samples_used"] = int(per_round["selected"].sum()) if "selected" in per_round else 0
        for column in ("score_seconds", "select_seconds", "train_seconds", "eval_seconds"):
            row[column] = float(per_round[column].fillna(0).sum()) if column in per_round else 0.0
        row["generation_seconds"] = _num(final.get("generation_seconds"))
        row["pipeline_seconds"] = sum(
            row[c] for c in ("score_seconds", "select_seconds", "train_seconds", "eval_seconds")
        )
        if len(per_round) and "eval_nll" in per_round:
            row["final_eval_nll"] = _num(per_round.sort_values("round")["eval_nll"].iloc[-1])
        row.update({k: _num(v) for k, v in final.items() if k.startswith("accuracy/")})
        rows.append(row)
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False).reset_index(drop=True)


def accuracy_plot(table: pd.DataFrame):
    fig, ax = subplots(figsize=(6, 3.5))
    colors = ["#d62" if m == P3 else "#9ab" for m in table["method"]]
    ax.bar(table["method"], table["accuracy"], color=colors)
    for x, (acc, n) in enumerate(zip(table["accuracy"], table["n_eval"], strict=True)):
        if not math.isnan(acc) and n:
            se = math.sqrt(max(acc * (1 - acc), 1e-12) / n)
            ax.errorbar(x, acc, yerr=se, color="k", capsize=3)
    ax.set_ylabel("eval accuracy (± 1 s.e.)")
    ax.set_title("Final accuracy per method")
    fig.tight_layout()
    return fig


def threshold_plot(rounds: pd.DataFrame):
    fig, ax = subplots(figsize=(6, 3.5))
    for method, group in rounds.groupby("method"):
        if "difficulty_q50" not in group or group["difficulty_q50"].isna().all():
            continue
        g = group.sort_values("round")
        line = ax.plot(g["round"], g["difficulty_q50"], marker="o", label=f"{method} median")[0]
        if "difficulty_q25" in g and "difficulty_q75" in g:
            ax.fill_between(
                g["round"],
                g["difficulty_q25"],
                g["difficulty_q75"],
                color=line.get_color(),
                alpha=0.15,
            )
        if "threshold" in g and g["threshold"].notna().any():
            ax.plot(
                g["round"],
                g["threshold"],
                linestyle="--",
                color=line.get_color(),
                label=f"{method} threshold",
            )
    ax.set_xlabel("round")
    ax.set_ylabel("difficulty")
    ax.set_title("Pool difficulty (median, IQR) and threshold per round")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def overlap_plot(rounds: pd.DataFrame):
    fig, ax = subplots(figsize=(6, 3.5))
    for method, group in rounds.groupby("method"):
        g = group.sort_values("round")
        g = g[g["round"] > 1]
        if len(g):
            ax.plot(g["round"], g["overlap_prev"], marker="o", label=method)
    ax.set_xlabel("round")
    ax.set_ylabel("overlap with previous selection")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Selection overlap across rounds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def build_report(**inputs):
    """Gather the rounds' summaries and the final metrics (``namespaces.report_key`` arguments)
    into the report."""
    keys = {k: parse_report_key(k) for k in inputs}
    summaries = {k: v for k, v in inputs.items() if keys[k] and keys[k][2].startswith("round_")}
    finals = {keys[k][0]: v for k, v in inputs.items() if keys[k] and keys[k][2] == FINAL}
    rounds = rounds_table(summaries)
    table = report_table(rounds, finals)
    return table, rounds, accuracy_plot(table), threshold_plot(rounds), overlap_plot(rounds)
