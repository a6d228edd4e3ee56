"""The human-edited QA review sheet (CSV, read as strings); absent until someone reviews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset

REVIEW_COLUMNS = [
    "question_id", "video_id", "category", "task", "persona", "question", "answer", "clues",
    "quotes", "accept", "edit_question", "edit_answer", "edit_clues", "edit_quotes",
    "reviewer_note",
]


class OptionalReviewCSVDataset(AbstractDataset[None, pd.DataFrame]):
    """The human-edited review sheet, read as strings; a missing file loads as an empty frame
    with ``attrs['missing_file']`` so the full pipeline runs before anyone has reviewed."""

    def __init__(self, filepath: str, metadata: dict | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _load(self) -> pd.DataFrame:
        if not self._filepath.is_file():
            frame = pd.DataFrame(columns=REVIEW_COLUMNS)
            frame.attrs["missing_file"] = str(self._filepath)
            return frame
        return pd.read_csv(self._filepath, dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")

    def _save(self, data: pd.DataFrame) -> None:
        raise NotImplementedError("the edited review sheet is written by a person, not a node")

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
