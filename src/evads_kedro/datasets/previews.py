"""Text datasets that kedro-viz can preview (kedro-datasets' ``text.TextDataset`` has no
``preview``).

kedro-viz 12.5 renders a dataset's preview by the return annotation of its ``preview()``:
``HTMLPreview`` content is sanitised and shown inline (Markdown is converted first), so both
the HTML evaluation report and the Markdown tables preview in the metadata panel.
``kedro_mlflow``'s ``MlflowArtifactDataset`` subclasses the wrapped class, so wrapping these
in it keeps the preview.
"""

from __future__ import annotations

from kedro_datasets._typing import HTMLPreview
from kedro_datasets.text import TextDataset


class PreviewableTextDataset(TextDataset):
    """``text.TextDataset`` plus a kedro-viz preview of the file's content (HTML or Markdown).

    ``preview(max_chars)`` returns at most ``max_chars`` characters (default 200 000)."""

    def preview(self, max_chars: int = 200_000) -> HTMLPreview:
        return HTMLPreview(self.load()[:max_chars])
