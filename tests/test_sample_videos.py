"""Synthetic sample ads: specs, rendering, ground truth, idempotency, determinism, atomicity."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import av
import numpy as np
import pytest

from evads_kedro.sample_videos import (
    SAMPLE_SCRIPTS,
    generate_sample_videos,
    is_up_to_date,
    leftover_temp_files,
    load_ground_truth,
)
from evads_kedro.synth import (
    AdScript,
    Caption,
    Scene,
    Shape,
    Voiceover,
    cuts_video_script,
    ground_truth,
    random_frames_script,
    render_video,
    sha256_file,
    slow_pan_script,
    static_video_script,
)
from evads_kedro.synth import audio as synth_audio
from evads_kedro.synth import draw as synth_draw
from evads_kedro.taxonomy import CATEGORIES

SMALL = {"width": 128, "height": 224, "fps": 10}  # cheap renders for the fast tests


# ---- helpers ---------------------------------------------------------------------------------
def decode_frames(path: Path, indices: set[int] | None = None) -> dict[int, np.ndarray]:
    out = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if indices is None or i in indices:
                out[i] = f.to_ndarray(format="rgb24").astype(np.int16)
    return out


def decode_audio(path: Path) -> tuple[np.ndarray | None, int | None]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None, None
        st = c.streams.audio[0]
        sr = st.codec_context.sample_rate
        chunks = [f.to_ndarray().reshape(len(f.layout.channels), -1) for f in c.decode(st)]
    return np.concatenate(chunks, axis=1).mean(axis=0), sr


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b)))


def tiny_script(video_id: str = "tiny", speech: bool = True, **kw) -> AdScript:
    params = {**SMALL, **kw}
    return AdScript(
        video_id=video_id, category="美容彩妆", duration_s=3.0,
        scenes=(Scene(0.0, 1.5, (250, 200, 210), shapes=(Shape("bottle", 64, 120, 40, 90, (200, 30, 60), vy=-5),)),
                Scene(1.5, 3.0, (30, 60, 140), shapes=(Shape("box", 64, 120, 70, 60, (240, 200, 40)),))),
        captions=(Caption(0.0, 3.0, "￥99", "top", 24),),
        voiceover=(Voiceover(0.5, "hello", "en"),) if speech else (),
        **params,
    )


# ---- the sample set (no rendering) -----------------------------------------------------------
def test_sample_scripts_cover_the_brief():
    ids = [s.video_id for s in SAMPLE_SCRIPTS]
    assert len(ids) == len(set(ids)) >= 8
    assert sorted(s.category for s in SAMPLE_SCRIPTS) == sorted(CATEGORIES)
    for s in SAMPLE_SCRIPTS:
        s.validate()
        assert 8 <= s.duration_s <= 20 and len(s.scenes) >= 3
        assert (s.width, s.height, s.fps) == (360, 640, 25)
        assert any(re.search(r"[\u4e00-\u9fff]", c.text) for c in s.captions)
        seconds = [tuple(c.text for c in s.captions_at_frame(t * s.fps)) for t in range(int(s.duration_s))]
        assert len(set(seconds)) >= 3, f"{s.video_id}: captions should change over time"
    langs = [s.language for s in SAMPLE_SCRIPTS]
    assert langs.count("en") == 1 and langs.count("zh") > len(langs) / 2
    assert [s.has_audio for s in SAMPLE_SCRIPTS].count(False) == 1
    assert any(s.music and not s.voiceover for s in SAMPLE_SCRIPTS)
    texts = "".join(c.text for s in SAMPLE_SCRIPTS for c in s.captions)
    assert "全网第一" in texts and "￥" in texts and re.search(r"[A-Za-z]", texts)


def test_script_dict_roundtrip_and_hash():
    for s in SAMPLE_SCRIPTS:
        assert AdScript.from_dict(s.to_dict()) == s
        assert s.script_hash() == AdScript.from_dict(s.to_dict()).script_hash()
    s = SAMPLE_SCRIPTS[0]
    assert dataclasses.replace(s, title="x").script_hash() != s.script_hash()
    assert s.script_hash(font="a") != s.script_hash(font="b")


@pytest.mark.parametrize("change, match", [
    ({"category": "shoes"}, "category"),
    ({"scenes": (Scene(0.0, 1.0), Scene(1.2, 3.0))}, "contiguous"),
    ({"scenes": (Scene(0.0, 2.0),)}, "last scene"),
    ({"captions": (Caption(2.0, 4.0, "太长"),)}, "outside"),
    ({"captions": (Caption(0.0, 1.0, "两\n行"),)}, "one non-empty line"),
    ({"voiceover": (Voiceover(0.0, "hi", "fr"),)}, "language"),
    ({"video_id": "a/b"}, "video_id"),
    ({"width": 129}, "even"),
])
def test_validate_rejects_bad_scripts(change, match):
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(tiny_script(), **change).validate()


def test_category_aliases_are_canonicalised():
    s = dataclasses.replace(tiny_script(speech=False), category="母婴玩具/宠物").validate()
    gt = ground_truth(s)
    assert gt["category"] in CATEGORIES and gt["category_slug"] == "baby_pet"


def test_overlapping_captions_rejected():
    s = dataclasses.replace(tiny_script(), captions=(Caption(0, 2, "同一位置", "top", 24), Caption(1, 3, "重叠", "top", 24)))
    with pytest.raises(ValueError, match="overlap"):
        synth_draw.FrameRenderer(s)


def test_too_wide_caption_shrinks_or_fails():
    s = dataclasses.replace(tiny_script(), captions=(Caption(0, 3, "长的字幕", "top", 40),))
    layer = synth_draw.FrameRenderer(s).layers[0]
    assert layer.font_size < 40 and layer.image.width <= s.width
    s = dataclasses.replace(tiny_script(), captions=(Caption(0, 3, "很长的字幕" * 3, "top", 40),))
    with pytest.raises(ValueError, match="does not fit"):
        synth_draw.FrameRenderer(s)


def test_ground_truth_timing_without_rendering():
    s = AdScript(
        video_id="timing", category="其他", duration_s=4.0,
        scenes=(Scene(0.0, 1.5), Scene(1.5, 2.01), Scene(2.01, 4.0)),
        captions=(Caption(0.0, 1.0, "第一句", "bottom"), Caption(1.0, 2.5, "第二句", "bottom"),
                  Caption(0.96, 4.0, "标题", "top")),
    )
    gt = ground_truth(s)
    assert gt["cuts"] == [1.52, 2.04]  # first frame at or after the scripted start (25 fps)
    assert gt["n_cuts"] == 2 and gt["n_frames"] == 100
    per = {p["t"]: p["captions"] for p in gt["per_second_captions"]}
    assert per == {0: ["第一句"], 1: ["标题", "第二句"], 2: ["标题", "第二句"], 3: ["标题"]}
    assert gt["voiceover"] == [] and gt["has_audio"] is False and gt["language"] is None


def test_builders_make_the_density_special_cases():
    st = static_video_script(8.0, seed=3)
    assert len(st.scenes) == 1 and st.scenes[0].is_static and st.cut_times() == []
    for n in (0, 2, 5, 10):
        s = cuts_video_script(n, 10.0)
        assert len(s.cut_times()) == n and s.duration_s == 10.0
        assert all(abs(t * 25 - round(t * 25)) < 1e-9 for t in s.cut_times())  # frame-aligned
        assert len({sc.image_seed for sc in s.scenes}) == n + 1
    pan = slow_pan_script(10.0, pan_px_per_s=5.0)
    assert pan.scenes[0].pan_px_per_s == 5.0 and not pan.scenes[0].is_static
    rnd = random_frames_script(6.0, seed=1)
    assert rnd.cut_times() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert cuts_video_script(3, motion=True).scenes[0].shapes
    assert random_frames_script(2.5).scenes[-1].end == 2.5


def test_random_images_differ_by_seed_and_repeat_by_seed():
    a = np.asarray(synth_draw.random_image(1, 90, 160), np.int16)
    b = np.asarray(synth_draw.random_image(2, 90, 160), np.int16)
    assert mad(a, b) > 25
    synth_draw.random_image.cache_clear()
    assert np.array_equal(a, np.asarray(synth_draw.random_image(1, 90, 160), np.int16))


def test_mandarin_pinyin_conversion():
    assert synth_audio.number_to_chinese(199) == "一百九十九"
    assert synth_audio.number_to_chinese(10005) == "一万零五"
    assert synth_audio.number_to_chinese(15) == "十五"
    assert synth_audio.to_pinyin("只要99元，快下单！") == "zhi3 yao4 jiu3 shi2 jiu3 yuan2, kuai4 xia4 dan1"
    assert synth_audio.to_pinyin("鲜肉95%") == "xian1 rou4 bai3 fen1 zhi1 jiu3 shi2 wu3"
    assert synth_audio.to_pinyin("绿色的") == "lv4 se4 de5"


def test_missing_font_names_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="fonts-noto-cjk"):
        synth_draw.load_font(30, str(tmp_path / "nope.ttc"))


def test_missing_tools_name_debian_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="'ffmpeg'"):
        render_video(tiny_script(speech=False), tmp_path / "x.mp4")
    synth_audio.synthesize.cache_clear()
    with pytest.raises(RuntimeError, match="espeak-ng"):
        synth_audio.build_audio(tiny_script())
    assert not list(tmp_path.iterdir())


# ---- cheap renders ---------------------------------------------------------------------------
def test_render_small_video_roundtrip(tmp_path):
    s = tiny_script()
    gt = render_video(s, tmp_path / "tiny.mp4", write_json=True)
    assert load_ground_truth(tmp_path / "tiny.json") == gt
    assert gt["sha256"] == sha256_file(tmp_path / "tiny.mp4")
    frames = decode_frames(tmp_path / "tiny.mp4")
    assert len(frames) == s.n_frames == 30 and frames[0].shape == (224, 128, 3)
    assert mad(frames[14], frames[15]) > 5 * mad(frames[13], frames[14])  # the cut at 1.5 s
    a, sr = decode_audio(tmp_path / "tiny.mp4")
    seg = gt["voiceover"][0]
    assert seg["start"] == 0.5 and seg["end"] > seg["start"] + 0.2 and not seg["truncated"]
    assert rms(a[int(seg["start"] * sr): int(seg["end"] * sr)]) > 0.02
    assert rms(a[: int(0.4 * sr)]) < 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.mp4"]


def test_render_is_byte_identical(tmp_path):
    for name in ("a", "b"):
        render_video(tiny_script(), tmp_path / name / "v.mp4")
        render_video(cuts_video_script(2, 3.0, **SMALL), tmp_path / name / "c.mp4")
    for f in ("v.mp4", "c.mp4"):
        assert sha256_file(tmp_path / "a" / f) == sha256_file(tmp_path / "b" / f)


def test_overrunning_speech_is_pushed_and_truncated():
    s = dataclasses.replace(tiny_script(), voiceover=(
        Voiceover(0.0, "Good morning everyone.", "en"), Voiceover(0.5, "Bye.", "en")))
    first, second = synth_audio.build_audio(s)[1]
    assert first.end > 0.5 and not first.shifted and first.start == 0.0
    assert second.shifted and second.start >= first.end + synth_audio.MIN_GAP_S - 1e-3
    assert second.end <= s.duration_s and not second.truncated
    late = dataclasses.replace(s, voiceover=(Voiceover(2.6, "Good morning everyone.", "en"),))
    (only,) = synth_audio.build_audio(late)[1]
    assert only.truncated and only.end == s.duration_s
    crowded = dataclasses.replace(s, voiceover=(Voiceover(2.0, "Good morning everyone.", "en"),
                                                Voiceover(2.5, "Bye.", "en")))
    with pytest.raises(ValueError, match="past the end"):
        synth_audio.build_audio(crowded)


def test_failed_render_leaves_nothing_behind(tmp_path, monkeypatch):
    target = tmp_path / "v.mp4"
    render_video(tiny_script(speech=False), target)
    before = sha256_file(target)

    def boom(self):
        yield b"\0" * (self.s.width * self.s.height * 3)
        raise KeyboardInterrupt  # like a killed run, mid-encode

    monkeypatch.setattr(synth_draw.FrameRenderer, "frames", boom)
    with pytest.raises(KeyboardInterrupt):
        render_video(tiny_script(speech=False, title="changed"), target)
    assert sha256_file(target) == before  # old file intact, never half-written
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_synth_video_factory(synth_video):
    mp4, gt = synth_video(static_video_script(2.0, seed=5, **SMALL))
    frames = decode_frames(mp4)
    assert len(frames) == 20 and gt["n_cuts"] == 0 and gt["has_audio"] is False
    assert max(mad(frames[0], f) for f in frames.values()) < 2.0  # a still image
    assert synth_video(static_video_script(2.0, seed=5, **SMALL))[1]["sha256"] == gt["sha256"]


def test_pan_and_random_frames_render(synth_video):
    mp4, _ = synth_video(slow_pan_script(2.0, pan_px_per_s=10.0, **SMALL))
    f = decode_frames(mp4)
    assert 0.5 < mad(f[0], f[19]) and mad(f[0], f[1]) < mad(f[0], f[19])
    mp4, gt = synth_video(random_frames_script(3.0, seed=2, **SMALL))
    f = decode_frames(mp4)
    assert gt["cuts"] == [1.0, 2.0]
    assert mad(f[0], f[10]) > 20 and mad(f[10], f[20]) > 20 and mad(f[10], f[15]) < 2


# ---- the generated sample set ----------------------------------------------------------------
@pytest.mark.slow
def test_samples_decode_with_expected_duration_and_streams(sample_manifest, sample_ground_truth):
    assert [r["video_id"] for r in sample_manifest] == [s.video_id for s in SAMPLE_SCRIPTS]
    for s in SAMPLE_SCRIPTS:
        gt = sample_ground_truth[s.video_id]
        mp4 = Path(next(r["video_path"] for r in sample_manifest if r["video_id"] == s.video_id))
        with av.open(str(mp4)) as c:
            assert abs(c.duration / 1e6 - s.duration_s) <= 0.2
            v = c.streams.video[0]
            assert (v.codec_context.name, v.width, v.height) == ("h264", 360, 640)
            assert bool(c.streams.audio) == s.has_audio
            if s.has_audio:
                assert c.streams.audio[0].codec_context.name == "aac"
            assert not c.metadata.get("creation_time")
        assert gt["sha256"] == sha256_file(mp4)
        assert gt["n_frames"] == s.n_frames and len(gt["per_second_captions"]) == int(s.duration_s)
        assert gt["script"] == s.to_dict() and gt["category"] == s.category
    silent = [s for s in SAMPLE_SCRIPTS if not s.has_audio]
    assert len(silent) == 1 and sample_ground_truth[silent[0].video_id]["voiceover"] == []


@pytest.mark.slow
def test_samples_frame_count(sample_manifest):
    for r, s in zip(sample_manifest, SAMPLE_SCRIPTS, strict=True):
        with av.open(r["video_path"]) as c:
            assert sum(1 for _ in c.demux(c.streams.video[0]) if _.size) == s.n_frames


@pytest.mark.slow
def test_samples_speech_energy_matches_ground_truth(sample_manifest, sample_ground_truth):
    for r in sample_manifest:
        gt = sample_ground_truth[r["video_id"]]
        a, sr = decode_audio(Path(r["video_path"]))
        if not gt["has_audio"]:
            assert a is None
            continue
        if gt["has_music"]:
            assert rms(a) > 0.02, "music tones should be audible"
            continue
        quiet = np.ones(len(a), bool)
        for seg in gt["voiceover"]:
            assert not seg["truncated"] and not seg["shifted"], seg
            i0, i1 = int(seg["start"] * sr), int(seg["end"] * sr)
            assert rms(a[i0:i1]) > 0.02, (r["video_id"], seg["text"])
            quiet[max(0, i0 - int(0.15 * sr)): i1 + int(0.15 * sr)] = False
        assert rms(a[quiet]) < 2e-3, r["video_id"]
        assert quiet.sum() > 0.5 * sr  # some silence was actually checked


@pytest.mark.slow
def test_samples_cuts_are_real(sample_manifest, sample_ground_truth):
    for r in sample_manifest:
        gt = sample_ground_truth[r["video_id"]]
        cut_frames = [sc["first_frame"] for sc in gt["scenes"][1:]]
        scene_of_second = {p["t"]: next(sc["index"] for sc in gt["scenes"]
                                        if sc["first_frame"] <= p["frame"] <= sc["last_frame"])
                           for p in gt["per_second_captions"]}
        # one caption-second per scene, as a 1 fps sampler would see it
        firsts = {}
        for t, k in sorted(scene_of_second.items()):
            firsts.setdefault(k, t * gt["fps"])
        need = set(firsts.values()) | {c + d for c in cut_frames for d in (-2, -1, 0)}
        f = decode_frames(Path(r["video_path"]), need)
        for a, b in zip(sorted(firsts.values()), sorted(firsts.values())[1:], strict=False):
            assert mad(f[a], f[b]) > 15, (r["video_id"], a, b)
        for c in cut_frames:
            assert mad(f[c - 1], f[c]) > 15 and mad(f[c - 1], f[c]) > 4 * mad(f[c - 2], f[c - 1]), (r["video_id"], c)


@pytest.mark.slow
def test_generation_is_idempotent_and_leaves_no_temp_files(sample_manifest, sample_videos_dir):
    files = sorted(sample_videos_dir.iterdir())
    assert [p.name for p in files] == sorted(f"{s.video_id}.{ext}" for s in SAMPLE_SCRIPTS for ext in ("json", "mp4"))
    assert leftover_temp_files(sample_videos_dir) == []
    mtimes = {p.name: p.stat().st_mtime_ns for p in files}
    rows = generate_sample_videos(sample_videos_dir, progress=False)
    assert {r["status"] for r in rows} == {"skipped"}
    assert [r["sha256"] for r in rows] == [r["sha256"] for r in sample_manifest]
    assert {p.name: p.stat().st_mtime_ns for p in sample_videos_dir.iterdir()} == mtimes
    changed = dataclasses.replace(SAMPLE_SCRIPTS[0], title="a new title")
    assert all(is_up_to_date(s, sample_videos_dir) for s in SAMPLE_SCRIPTS)
    assert not is_up_to_date(changed, sample_videos_dir)


@pytest.mark.slow
def test_generation_is_deterministic(sample_manifest, tmp_path):
    rows = generate_sample_videos(tmp_path / "again", progress=False)
    assert {r["status"] for r in rows} == {"generated"}
    assert {r["video_id"]: r["sha256"] for r in rows} == {r["video_id"]: r["sha256"] for r in sample_manifest}
    for r in rows:  # ground truth identical too, except where the files live
        assert Path(r["json_path"]).read_bytes() == (Path(sample_manifest[0]["json_path"]).parent
                                                     / Path(r["json_path"]).name).read_bytes()
    assert leftover_temp_files(tmp_path / "again") == []


@pytest.mark.slow
def test_overwrite_regenerates_same_bytes(sample_manifest, tmp_path):
    s = next(s for s in SAMPLE_SCRIPTS if not s.has_audio)
    first = generate_sample_videos(tmp_path, [s], progress=False)[0]
    second = generate_sample_videos(tmp_path, [s], overwrite=True, progress=False)[0]
    assert (first["status"], second["status"]) == ("generated", "generated")
    assert first["sha256"] == second["sha256"] == next(r["sha256"] for r in sample_manifest if r["video_id"] == s.video_id)


@pytest.mark.slow
def test_sample_captions_are_ocr_readable(sample_manifest, sample_ground_truth):
    """A few sampled seconds read back exactly with the project's Chinese OCR backend."""
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    ocr = rapidocr.RapidOCR()

    def norm(s: str) -> str:
        return re.sub(r"\s+", "", s).replace("¥", "￥").replace("，", ",").replace("？", "?")

    picks = [("ad_beauty_lipstick", 5), ("ad_food_tea", 9), ("ad_other_phonecase", 8)]
    for vid, t in picks:
        gt = sample_ground_truth[vid]
        frame = gt["per_second_captions"][t]["frame"]
        img = decode_frames(Path(next(r["video_path"] for r in sample_manifest if r["video_id"] == vid)), {frame})[frame]
        result, _ = ocr(img.astype(np.uint8))
        got = [norm(x[1]) for x in result or []]
        assert got == [norm(x) for x in gt["per_second_captions"][t]["captions"]], (vid, t)
