"""Nodes of the ``export`` pipeline: thin adapters from catalog entries to ``p3_pruning.data.export``."""

from __future__ import annotations

import logging

import pandas as pd

from p3_pruning.data.export import export_selection

log = logging.getLogger(__name__)


def export_round(
    pool: pd.DataFrame,
    selection: pd.DataFrame,
    data: dict,
    seed: int,
    budget: int | float,
    export: dict,
    *,
    method: str,
) -> dict:
    """One round's selection as the original records plus a manifest, for ``ExportDataset``."""
    options = {k: v for k, v in export.items() if k != "methods"}  # methods shape the DAG
    records, manifest = export_selection(
        pool, selection, data=data, method=method, seed=seed, budget=budget, **options
    )
    log.info(
        "export %s round %s: %d records (%s format)",
        method,
        manifest["round"],
        len(records),
        manifest["format"],
    )
    return {"records": records, "manifest": manifest}
