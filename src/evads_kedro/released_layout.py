"""The released E-VAds parquet layouts (SPEC §5): their exact Arrow schemas, byte-compatible.

``SFT_SCHEMA`` / ``RL_SCHEMA`` are the columns and nested types of ``EVAds_SFT.parquet`` /
``EVAds_RL.parquet``; :func:`to_arrow` casts a frame of rows in that shape to the schema.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

_PROMPT = pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))
_EXTRA = pa.struct([("id", pa.string()), ("video_path", pa.string())])
DET_REWARD_RATIO = pa.struct([(k, pa.null()) for k in (
    "iou_completeness", "iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75")])
_REWARD = pa.struct([
    ("accuracy_ratio", pa.int64()), ("answer", pa.string()), ("format_ratio", pa.int64()),
    ("ground_truth", pa.string()),
    ("verifier", pa.list_(pa.struct([("clues", pa.string()), ("meta_info", pa.string())]))),
    ("verifier_parm", pa.struct([("det_reward_ratio", DET_REWARD_RATIO),
                                 ("det_verifier_normalized", pa.null())])),
])
SFT_SCHEMA = pa.schema([("data_source", pa.string()), ("videos", pa.string()),
                        ("prompt", _PROMPT), ("ability", pa.string()), ("answer", pa.string()),
                        ("extra_info", _EXTRA)])
RL_SCHEMA = pa.schema([("data_source", pa.string()), ("videos", pa.string()),
                       ("prompt", _PROMPT), ("ability", pa.string()), ("reward_model", _REWARD),
                       ("extra_info", _EXTRA)])


def to_arrow(frame: pd.DataFrame, layout: str) -> pa.Table:
    """The frame as an Arrow table with the release's exact schema."""
    schema = SFT_SCHEMA if layout == "sft" else RL_SCHEMA
    return pa.Table.from_pylist(frame.to_dict("records"), schema=schema)
