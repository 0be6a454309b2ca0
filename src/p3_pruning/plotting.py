"""Figures without pyplot: the project's plots are written to files and logged to MLflow, never shown.

``subplots`` builds a :class:`matplotlib.figure.Figure` directly, so importing the project never
switches matplotlib's backend (a notebook keeps its inline plots) and no figure is registered with
pyplot's global state (nothing to close after a save).
"""

from __future__ import annotations

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` returns them, on a figure pyplot does not track."""
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(nrows, ncols, **kwargs)
