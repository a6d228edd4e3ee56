"""Datasets and keys behind the incremental ingestion: folder partitions, atomic writes, handles."""

from __future__ import annotations

import os
import time

import pytest
from kedro.io import DatasetError

from evads_kedro.datasets.atomic import AtomicJSONDataset, AtomicTextDataset
from evads_kedro.datasets.partitions import PartitionedFolderDataset
from evads_kedro.datasets.video_file import VideoFile, VideoFileDataset
from evads_kedro.pipelines.ingestion.video_helpers import check_name, stage_key, video_id_of


def _json_folder(path):
    return PartitionedFolderDataset(path=str(path), dataset=AtomicJSONDataset,
                                    filename_suffix=".json")


def test_missing_or_empty_folder_loads_as_no_partitions(tmp_path):
    assert _json_folder(tmp_path / "absent").load() == {}
    (tmp_path / "empty").mkdir()
    assert _json_folder(tmp_path / "empty").load() == {}


def test_hidden_and_temp_files_are_not_partitions_and_stale_temps_are_swept(tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    stale = folder / ".tmp-a.json.123.abcd"
    stale.write_text("{half")
    zip_tmp = folder / ".tmp-xyz.json"  # FramesDataset-style temp name that ends in the suffix
    zip_tmp.write_text("{half")
    old = time.time() - 60
    os.utime(stale, (old, old))
    os.utime(zip_tmp, (old, old))
    (folder / ".gitkeep").write_text("")
    ds = _json_folder(folder)
    ds.save({"v1": {"ok": True}})
    fresh = folder / ".tmp-concurrent.json"  # newer than this run's dataset: not touched
    fresh.write_text("{")
    ds.save({"v2": {"ok": True}})
    assert not stale.exists() and not zip_tmp.exists() and fresh.exists()
    loaded = _json_folder(folder).load()
    assert sorted(loaded) == ["v1", "v2"] and loaded["v1"]() == {"ok": True}


def test_atomic_datasets_round_trip_and_leave_no_temp_on_failure(tmp_path):
    js = AtomicJSONDataset(str(tmp_path / "a" / "广告 🎉.json"))
    js.save({"text": "限时¥199", "n": [1, 2]})
    assert js.load() == {"text": "限时¥199", "n": [1, 2]}
    with pytest.raises(DatasetError):
        js.save({"bad": object()})
    assert js.load() == {"text": "限时¥199", "n": [1, 2]}  # the old file survives
    txt = AtomicTextDataset(str(tmp_path / "t.txt"))
    txt.save("Category: 其他\nDuration: 3s\n")
    assert txt.load() == "Category: 其他\nDuration: 3s\n"
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_video_file_dataset_yields_a_handle_and_reads_the_sidecar(tmp_path):
    video = tmp_path / "ad 1.mp4"
    video.write_bytes(b"\x00" * 10)
    (tmp_path / "ad 1.json").write_text('{"category": "美容彩妆", "language": "zh"}', "utf-8")
    handle = VideoFileDataset(str(video)).load()
    assert isinstance(handle, VideoFile) and handle.path == video
    assert handle.read_sidecar_json() == {"category": "美容彩妆", "language": "zh"}
    (tmp_path / "ad 1.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        handle.read_sidecar_json()
    folder = PartitionedFolderDataset(path=str(tmp_path), dataset=VideoFileDataset).load()
    assert sorted(folder) == ["ad 1.json", "ad 1.mp4"]


@pytest.mark.parametrize("name, problem", [
    ("ok.mp4", None), ("新品 上市 🎉.MP4", None), ("sub/dir/a b.mov", None),
    ("bad\nname.mp4", "control character"), ("tab\there.mp4", "control character"),
    ("back\\slash.mp4", "backslash"), (".mp4", "empty name"), ("x" * 200 + ".mp4", "longer"),
    ("bad\udcff.mp4", "not valid UTF-8"),
])
def test_unsafe_names(name, problem):
    reason = check_name(name)
    assert (reason is None) if problem is None else (problem in reason)


def test_video_id_is_the_file_stem():
    assert video_id_of("a/b/798.mp4") == "798" and video_id_of("x.y.mkv") == "x.y"


def test_keys_change_with_content_and_semantic_parameters_only():
    base = {"backend": "rapidocr", "min_score": 0.5, "device": "auto"}
    k = stage_key("ocr", "abc", base)
    assert k.startswith("abc:")
    assert stage_key("ocr", "abc", {**base, "device": "cuda", "threads": 4}) == k
    assert stage_key("ocr", "abc", {**base, "min_score": 0.6}) != k
    assert stage_key("ocr", "abd", base) != k
    assert stage_key("asr", "abc", base) != k


def test_sidecar_language_forces_the_decode_and_turns_the_retry_off():
    from evads_kedro.pipelines.ingestion.video_nodes import video_asr_params

    params = {"asr": {"backend": "faster_whisper"}}
    assert video_asr_params(params, None) == {"backend": "faster_whisper"}  # auto, retry on
    assert video_asr_params(params, {"language": "en"}) == {
        "backend": "faster_whisper", "language": "en", "retry_dropped": False}
    assert video_asr_params(params, {"language": "mixed"})["language"] == ["zh", "en"]
    assert video_asr_params(params, {"language": "Klingon!"}) == {"backend": "faster_whisper"}
    assert video_asr_params({**params, "sidecar_language": False}, {"language": "en"}) == {
        "backend": "faster_whisper"}


def test_summary_counts_speech_languages_and_lists_videos_whose_speech_was_all_dropped():
    import pandas as pd

    from evads_kedro.pipelines.ingestion.report import ingestion_summary

    videos = pd.DataFrame({
        "video_id": ["a", "b", "c", "d"], "file": ["a.mp4", "b.mp4", "c.mp4", "d.mp4"],
        "duration_s": [10.0, 12.0, 30.0, 5.0],
        "asr_language": ["zh", "en", "zh", None],
        "asr_language_source": ["sidecar", "detected", "forced", None],
        "asr_all_dropped": [None, None, "compression_ratio x2", None]})
    md, metrics = ingestion_summary(pd.DataFrame({"file": list(videos["file"])}), videos, None,
                                    {}, {}, {}, {}, "ads")
    assert "Speech languages: zh: 2, en: 1 (chosen by detected: 1, forced: 1, sidecar: 1)." in md
    assert "## Speech dropped entirely" in md
    assert "| `c.mp4` | zh | compression_ratio x2 |" in md and "`a.mp4` |" not in md
    assert metrics["asr.language.zh"]["value"] == 2 and metrics["asr.all_dropped"]["value"] == 1
