"""A versioned Markdown page (a round's selection view) that kedro-viz shows in its dataset preview."""

# no `from __future__ import annotations`: kedro-viz reads preview()'s return annotation
from typing import Any

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset


class MarkdownDataset(TextDataset):
    """kedro-datasets' ``text.TextDataset`` (UTF-8) with a kedro-viz preview.

    ``TextDataset`` has no ``preview``, so kedro-viz shows nothing for it. kedro-viz renders an
    ``HTMLPreview`` through its Markdown renderer (headings, tables, bold), so the page itself is
    the preview. Example catalog entry::

        "{method}.round_{e}.selection_view":
          type: p3_pruning.datasets.markdown_dataset.MarkdownDataset
          filepath: data/08_reporting/{method}/round_{e}/selection.md
          versioned: true
          metadata:
            kedro-viz:
              preview_args: {max_chars: 20000}
    """

    DEFAULT_FS_ARGS: dict[str, Any] = {
        "open_args_save": {"mode": "w", "encoding": "utf-8"},
        "open_args_load": {"mode": "r", "encoding": "utf-8"},
    }

    def preview(self, max_chars: int = 20000) -> HTMLPreview:
        """The page's Markdown, cut to ``max_chars`` characters."""
        text = self.load()
        if len(text) > max_chars:
            text = text[:max_chars] + "\n\n…"
        return HTMLPreview(text)
