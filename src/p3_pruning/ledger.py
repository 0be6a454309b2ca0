"""A study ledger: every finished (arm, seed) of every study, kept in one CSV that outlives the
workspaces it came from, so later sessions pool more seeds into a comparison without the earlier
workspace on disk.

A row is one study result (``results.csv``: ``method``, ``seed``, ``accuracy``, ``n_eval``, levels,
FLOPs…) plus where it came from: ``pool``, the fingerprint of the train pool and eval set it ran on
(:func:`pool_fingerprint`; results pool only within one fingerprint), ``regime``, the train pool's
composition in words (:func:`regime_name`: "clean", "noise 30 %"), ``commit`` and ``source``.
Same seed, same result: recording a (pool, method, seed) that the ledger holds with another
accuracy is refused, so a rerun that does not reproduce is caught at the door.

    bench_study.py WS --record benchmarks/ledger.csv    # add a finished workspace's rows
    bench_study.py WS --ledger benchmarks/ledger.csv    # pool WS with every earlier seed of its pool
    python -m p3_pruning.ledger benchmarks/ledger.csv   # what has run: arms and seeds per pool
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from p3_pruning.data.inject import CLEAN, ORIGIN

#: the sample columns a fingerprint reads, where present (content, not only ids: a noisy pool's
#: rows keep their ids and change their responses)
CONTENT = ("sample_id", "prompt", "response", "answer", "origin")
#: provenance columns a ledger row adds to a results row
PROVENANCE = ("pool", "regime", "commit", "source")
KEY = ("pool", "method", "seed")


def pool_fingerprint(train_pool: pd.DataFrame, eval_set: pd.DataFrame) -> str:
    """12 hex digits of a SHA-256 over both splits' rows (the :data:`CONTENT` columns present,
    rows in ``sample_id`` order): equal exactly when two workspaces trained and evaluated on the
    same samples."""
    digest = hashlib.sha256()
    for name, split in (("train_pool", train_pool), ("eval_set", eval_set)):
        if "sample_id" not in split.columns:
            raise ValueError(f"{name} has no sample_id column: it cannot be fingerprinted")
        columns = [c for c in CONTENT if c in split.columns]
        rows = split[columns].astype(str).sort_values("sample_id")
        digest.update(name.encode())
        for row in rows.itertuples(index=False):
            digest.update(json.dumps(list(row), ensure_ascii=False).encode())
    return digest.hexdigest()[:12]


def pool_shares(train_pool: pd.DataFrame) -> dict[str, float]:
    """The train pool's share of each origin (``{"clean": 1.0}`` without an origin column)."""
    if ORIGIN not in train_pool.columns:
        return {CLEAN: 1.0}
    return train_pool[ORIGIN].value_counts(normalize=True).to_dict()


def regime_name(shares: dict[str, float]) -> str:
    """A pool's composition in words: "clean", or each injected origin with its share of the pool
    ("noise 30 %"; several joined by commas, in name order)."""
    injected = {k: v for k, v in shares.items() if k != CLEAN and v > 0}
    if not injected:
        return "clean"
    return ", ".join(f"{k} {100 * v:.0f} %" for k, v in sorted(injected.items()))


def read(path: str | Path) -> pd.DataFrame:
    """The ledger at ``path`` (an empty one, with its key columns, when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=[*PROVENANCE, "method", "seed", "accuracy"])
    ledger = pd.read_csv(path, dtype={"pool": str, "commit": str, "source": str})
    missing = [c for c in (*KEY, "accuracy") if c not in ledger.columns]
    if missing:
        raise ValueError(f"{path} is not a study ledger: it lacks column(s) {missing}")
    return ledger


def rows(
    results: pd.DataFrame, *, pool: str, regime: str = "", commit: str = "", source: str = ""
) -> pd.DataFrame:
    """``results`` (a study's long table) as ledger rows: provenance columns first."""
    out = results.copy()
    values = (pool, regime, commit, source)
    for i, (name, value) in enumerate(zip(PROVENANCE, values, strict=True)):
        out.insert(i, name, value)
    return out


def _key(frame: pd.DataFrame) -> pd.Series:
    """``pool|method|seed`` per row (seed empty for the base model)."""
    keys = [
        f"{pool}|{method}|{'' if seed != seed else int(seed)}"
        for pool, method, seed in zip(frame["pool"], frame["method"], frame["seed"], strict=True)
    ]
    return pd.Series(keys, index=frame.index, dtype=object)


def conflicts(a: pd.DataFrame, b: pd.DataFrame, metric: str = "accuracy") -> list[str]:
    """One line per row of ``b`` whose (pool, method, seed) ``a`` holds with another ``metric``
    (either may hold a key more than once: every row of ``b`` is checked against ``a``'s first)."""
    held = dict(zip(reversed(_key(a).tolist()), reversed(a[metric].tolist()), strict=True))
    lines = []
    for key, value in zip(_key(b), b[metric], strict=True):
        if key in held and not math.isclose(float(held[key]), float(value), abs_tol=1e-12):
            pool, method, seed = key.split("|")
            lines.append(
                f"pool {pool}, method {method!r}, seed {seed or '—'}: "
                f"{metric} {float(held[key])!r} against {float(value)!r}"
            )
    return lines


def record(path: str | Path, new: pd.DataFrame) -> pd.DataFrame:
    """Add ``new`` ledger rows to the ledger at ``path`` and write it; rows it already holds (same
    pool, method and seed, same accuracy) are kept once. ValueError naming the rows when one
    disagrees: the same seed on the same pool must give the same result."""
    path = Path(path)
    ledger = read(path)
    first = ~_key(new).duplicated()
    clash = conflicts(ledger, new) + conflicts(new[first], new[~first])
    if clash:
        raise ValueError(
            f"{path}: a recorded result and a new one disagree (same pool, method and seed): "
            + "; ".join(clash)
        )
    known = set(_key(ledger))
    fresh = new[first & ~_key(new).isin(known)]
    merged = fresh if ledger.empty else pd.concat([ledger, fresh], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged.to_csv(path, index=False)
    return merged


def pooled(ledger: pd.DataFrame, pool: str, results: pd.DataFrame) -> pd.DataFrame:
    """The ledger's rows of ``pool`` that ``results`` (a workspace's table, same pool) does not
    hold, without provenance columns, ready for :func:`p3_pruning.stats.merge_results`.
    ValueError when a row both hold disagrees."""
    mine = ledger[ledger["pool"].astype(str) == pool]
    if mine.empty:
        return mine.drop(columns=list(PROVENANCE), errors="ignore")
    theirs = rows(results, pool=pool)
    clash = conflicts(mine, theirs)
    if clash:
        raise ValueError(
            "the ledger and the workspaces disagree (same pool, method and seed): "
            + "; ".join(clash)
        )
    held = set(_key(theirs))
    earlier = mine[~_key(mine).isin(held)].drop(columns=list(PROVENANCE), errors="ignore")
    return earlier.dropna(axis=1, how="all")


def summary(ledger: pd.DataFrame) -> pd.DataFrame:
    """What the ledger holds, one row per (pool, method): the pool's regime, how many seeds and which,
    the mean accuracy over them and the workspaces (or other sources) they came from; pools in
    regime order, methods with the most seeds first."""
    frame = ledger.copy()
    if "regime" not in frame.columns:
        frame["regime"] = ""
    frame["regime"] = frame["regime"].fillna("")
    out = []
    for (pool, method), part in frame.groupby(["pool", "method"], sort=False):
        seeds = sorted(int(s) for s in part["seed"].dropna())
        out.append(
            {
                "pool": pool,
                "regime": "; ".join(sorted(set(part["regime"]) - {""})) or "—",
                "method": method,
                "seeds": len(seeds),
                "seed_list": " ".join(map(str, seeds)) or "—",
                "accuracy": part["accuracy"].mean(),
                "sources": ", ".join(sorted(set(part["source"].dropna().astype(str)))),
            }
        )
    table = pd.DataFrame(
        out, columns=["pool", "regime", "method", "seeds", "seed_list", "accuracy", "sources"]
    )
    return table.sort_values(
        ["regime", "pool", "seeds", "method"], ascending=[True, True, False, True]
    ).reset_index(drop=True)


def summary_markdown(table: pd.DataFrame) -> str:
    """:func:`summary` as a Markdown table (accuracy in percent)."""
    lines = [
        "| regime | pool | method | seeds | which | mean accuracy | sources |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.regime} | {row.pool} | {row.method} | {row.seeds} | {row.seed_list} | "
            f"{100 * row.accuracy:.1f} % | {row.sources} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m p3_pruning.ledger",
        description="What a study ledger holds: per pool and method, the seeds run and their mean.",
    )
    parser.add_argument("ledger", type=Path, help="the ledger CSV (benchmarks/ledger.csv)")
    args = parser.parse_args(argv)
    if not args.ledger.exists():
        parser.error(f"{args.ledger}: no such ledger")
    print(summary_markdown(summary(read(args.ledger))))


if __name__ == "__main__":
    main()
