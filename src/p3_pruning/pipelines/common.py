"""Helpers shared by the pipeline definitions."""

from __future__ import annotations

import functools


def bind(func, **kwargs):
    """``func`` with keyword arguments fixed, keeping its name and docstring for Kedro and kedro-viz."""
    return functools.update_wrapper(functools.partial(func, **kwargs), func)


# Node tags the hooks select on (never on node names, which a rename would silently break).
SUMMARY_TAG = "round_summary"  # a round's summarize node: one MLflow child run per round
FINAL_TAG = "final_eval"  # a final evaluation: a child run and the accuracy in the result table
REPORT_TAG = "report"  # a report node: its tables and plots go on the parent run
VIEW_TAG = "selection_view"  # a round's readable selection page: an artefact on its child run
