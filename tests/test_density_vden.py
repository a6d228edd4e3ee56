"""V_den: exact values on hand-made embeddings, sanity on synthetic videos, cache, pipeline slice."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from evads_kedro.frames import FrameStack
from evads_kedro.vden import neighbour_similarity, neighbour_weights, vden_params, visual_density

# ------------------------------------------------------------------ exact values, no model
E3 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # a cut between frame 0 and frame 1
T3 = [0.0, 1.0, 2.0]


def test_adjacent_uniform_window_exact():
    # S = [cos01, mean(cos10, cos12), cos21] = [0, 0.5, 1] -> mean(1 - S) = 0.5
    s = neighbour_similarity(E3, T3, window=1, weighting="uniform")
    assert s.tolist() == [0.0, 0.5, 1.0]
    assert visual_density(E3, T3, alpha=100, window=1, weighting="uniform") == pytest.approx(50.0)


def test_inverse_weights_two_second_window_exact():
    w = neighbour_weights(T3, window=2, weighting="inverse")
    assert w.tolist() == [[0, 1, 0.5], [1, 0, 1], [0.5, 1, 0]]
    # S0 = (1*0 + .5*0)/1.5 = 0, S1 = (0 + 1)/2 = .5, S2 = (1*1 + .5*0)/1.5 = 2/3
    s = neighbour_similarity(E3, T3, window=2, weighting="inverse")
    assert s == pytest.approx([0.0, 0.5, 2 / 3])
    assert visual_density(E3, T3, alpha=100, window=2) == pytest.approx(100 * (1 + 0.5 + 1 / 3) / 3)


def test_exp_weights_exact():
    s = neighbour_similarity(E3, T3, window=2, weighting="exp", tau=1.0)
    e1, e2 = math.exp(-1), math.exp(-2)
    assert s == pytest.approx([0.0, 0.5, e1 / (e1 + e2)])
    assert visual_density(E3, T3, alpha=10, window=2, weighting="exp", tau=1.0) == pytest.approx(
        10 * ((1 - 0) + (1 - 0.5) + (1 - e1 / (e1 + e2))) / 3)


def test_window_is_in_seconds_and_scale_invariant():
    # 2 fps: a 0.5 s window sees only the adjacent frames
    t = [0.0, 0.5, 1.0]
    assert neighbour_weights(t, window=0.5, weighting="uniform").sum() == 4
    scaled = E3 * np.array([[3.0], [0.2], [7.0]])  # cosine ignores norms
    assert visual_density(scaled, t, window=0.5, weighting="uniform") == pytest.approx(
        visual_density(E3, t, window=0.5, weighting="uniform"))


def test_frames_without_neighbours_are_left_out():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # frame at 10 s has no neighbour within 2 s: V_den over the first two (identical) frames
    assert visual_density(emb, [0.0, 1.0, 10.0], window=2) == 0.0
    assert math.isnan(visual_density(emb[:1], [0.0], window=2))


def test_static_is_zero_and_unrelated_is_alpha():
    static = np.tile([[0.6, 0.8]], (5, 1))
    assert visual_density(static, range(5)) == pytest.approx(0.0, abs=1e-12)
    ortho = np.eye(4)  # every frame unrelated to every other
    assert visual_density(ortho, range(4), alpha=100) == pytest.approx(100.0)


@pytest.mark.parametrize("bad, match", [
    ({"timestamps": [0, 0, 1]}, "strictly increasing"),
    ({"weighting": "gauss"}, "unknown weighting"),
    ({"window": 0}, "window must be > 0"),
])
def test_invalid_arguments(bad, match):
    kw = {"timestamps": T3, "window": 2, "weighting": "inverse"} | bad
    with pytest.raises(ValueError, match=match):
        visual_density(E3, kw.pop("timestamps"), **kw)


def test_zero_embedding_and_params_validation():
    with pytest.raises(ValueError, match="zero norm"):
        visual_density(np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="unknown density.vden"):
        vden_params({"alpha": 1, "windw": 2})


# ---------------------------------------------------------- fake encoder: cache and pipeline
class CountingEncoder:
    """Cheap deterministic encoder (colour histogram) that counts its calls."""

    encoder_id = "packaged-efficientnet_lite0"
    description = "test histogram encoder"

    def __init__(self):
        self.calls = 0
        self.frames_encoded = 0

    def encode(self, frames):
        self.calls += 1
        self.frames_encoded += len(frames)
        out = []
        for f in frames:
            h = np.concatenate([np.histogram(f[..., c], bins=8, range=(0, 256))[0] for c in range(3)])
            out.append(h / np.linalg.norm(h))
        return np.asarray(out, np.float32)


@pytest.fixture
def counting_encoder(monkeypatch):
    import evads_kedro.backends.encoders as enc

    fake = CountingEncoder()
    monkeypatch.setattr(enc, "build_encoder", lambda params=None: fake)
    return fake


def _stack(video_id: str, n: int, cut_at: int | None = None) -> FrameStack:
    a = np.full((24, 16, 3), (220, 40, 40), np.uint8)  # red shot, then a blue one
    b = np.full((24, 16, 3), (40, 40, 220), np.uint8)
    frames = [a if cut_at is None or i < cut_at else b for i in range(n)]
    return FrameStack(video_id, [float(i) for i in range(n)], frames, {"fps": 1.0})


PARAMS = {
    "samples_dataset": "samples", "datasets": {}, "released_vden": True, "fps": 1.0,
    "max_side": 448, "max_videos_per_dataset": None,
    "encoder": {"name": "packaged:efficientnet_lite0"},
    "vden": {"alpha": 100.0, "window": 2.0, "weighting": "inverse"},
    "paper_reference": {"E-VAds": {"v_den": 60.44, "a_den": 5.08, "o_den": 18.66}},
}


def test_cache_hit_on_rerun_skips_the_encoder(counting_encoder, tmp_path):
    from evads_kedro.datasets.embeddings import EmbeddingsDataset
    from evads_kedro.pipelines.density.nodes import visual_density_per_video

    stacks = {"a": _stack("a", 6), "b": _stack("b", 6, cut_at=3)}
    frames = {k: (lambda k=k: stacks[k]) for k in stacks}
    new, table = visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), {}, PARAMS)
    assert counting_encoder.calls == 2 and set(new) == {
        "packaged-efficientnet_lite0/samples/a", "packaged-efficientnet_lite0/samples/b"}
    assert not table["cached"].any()
    # round trip through the npz dataset, then rerun with it as the cache
    cache = {}
    for pid, data in new.items():
        ds = EmbeddingsDataset(str(tmp_path / f"{pid}.npz"))
        ds.save(data)
        cache[pid] = ds.load
    new2, table2 = visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), cache, PARAMS)
    assert counting_encoder.calls == 2 and new2 == {}
    assert table2["cached"].all()
    pd.testing.assert_series_equal(table["v_den"], table2["v_den"])
    v = table2.set_index("video_id")["v_den"]
    assert v["a"] == pytest.approx(0.0, abs=1e-6) and v["b"] > 10
    # changed content -> recomputed; changed V_den params -> no re-encoding, new values
    stacks["a"] = _stack("a", 6, cut_at=2)
    visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), cache, PARAMS)
    assert counting_encoder.calls == 3
    wide = PARAMS | {"vden": {"alpha": 50.0, "window": 1.0, "weighting": "uniform"}}
    _, t3 = visual_density_per_video({"b": frames["b"]}, pd.DataFrame(), pd.DataFrame(), cache, wide)
    assert counting_encoder.calls == 3 and t3["v_den"].iloc[0] != v["b"]


def _catalog(frames, ingested, timelines, params):
    from kedro.io import DataCatalog, MemoryDataset

    class Kept(MemoryDataset):  # the runner releases intermediate data; keep it to inspect
        def _release(self) -> None:
            pass

    released_videos = pd.DataFrame([
        {"video_id": "r1", "category": "食品生鲜 & 医药保健", "duration_s": 4.0,
         "video_path": "/nonexistent/r1.mp4", "video_exists": False}])
    released_timelines = pd.DataFrame([{"video_id": "r1", "second": 0, "ocr": ["特价99"], "asr": "买"}])
    released_qa = pd.DataFrame([{"split": "rl", "video_id": "r1"}])
    data = {
        "frames": frames, "ingested_videos": ingested, "video_timelines": timelines,
        "released_videos": released_videos, "released_timelines": released_timelines,
        "released_qa": released_qa, "density_embedding_cache": {}, "params:density": params,
        # the narrower blocks some nodes take (Kedro's catalog provides them from `density`)
        "params:density.samples_dataset": params["samples_dataset"],
        "params:density.samples_video_root": params.get("samples_video_root"),
        "params:density.paper_reference": params["paper_reference"],
    }
    datasets = {k: MemoryDataset(v, copy_mode="assign") for k, v in data.items()}
    for k in ("video_density", "density_table", "density_table_md", "density_metrics",
              "density_embeddings", "density_comparison_plot", "density_distribution_plot",
              "density_category_plot"):
        datasets[k] = Kept(copy_mode="assign")
    return DataCatalog(datasets)


def _run(catalog):
    from kedro.runner import SequentialRunner

    from evads_kedro.pipelines.density import create_pipeline

    SequentialRunner().run(create_pipeline(), catalog)
    return {k: catalog.load(k) for k in ("video_density", "density_table", "density_table_md",
                                         "density_metrics", "density_comparison_plot",
                                         "density_embeddings")}


def test_pipeline_slice_in_memory(counting_encoder):
    frames = {"ad1": lambda: _stack("ad1", 5, cut_at=2), "ad2": lambda: _stack("ad2", 5)}
    ingested = pd.DataFrame([{"video_id": "ad1", "category": "美容彩妆", "duration_s": 5.0},
                             {"video_id": "ad2", "category": "其他", "duration_s": 5.0}])
    timelines = pd.DataFrame([{"video_id": "ad1", "second": 0, "ocr": ["全网第一"], "asr": "只要99元"}])
    out = _run(_catalog(frames, ingested, timelines, PARAMS))
    pv = out["video_density"].set_index(["dataset", "video_id"])
    assert pv.loc[("samples", "ad1"), "a_den"] == pytest.approx(4 / 5)  # 只 要 99 元 = 4 units
    assert pv.loc[("samples", "ad1"), "o_den"] == pytest.approx(4 / 5)
    assert pv.loc[("samples", "ad1"), "category_en"] == "Beauty & Makeup"
    assert pv.loc[("evads_rl", "r1"), "category_en"] == "Food & Health"
    assert pd.isna(pv.loc[("evads_rl", "r1"), "v_den"])
    assert pv.loc[("samples", "ad1"), "v_den"] > pv.loc[("samples", "ad2"), "v_den"] == pytest.approx(0, abs=1e-6)
    table = out["density_table"].set_index("dataset")
    assert table.loc["samples", "n_videos"] == 2 and table.loc["samples", "source"] == "measured"
    assert table.loc["E-VAds (paper)", "source"] == "paper"
    assert "| samples | 2 |" in out["density_table_md"]
    assert "samples.v_den" in out["density_metrics"] and "evads_rl.v_den" not in out["density_metrics"]
    assert len(out["density_embeddings"]) == 2
    assert out["density_comparison_plot"].axes[0].get_title().startswith("V_den")


def test_pipeline_without_any_video_or_release(counting_encoder, caplog):
    from kedro.io import MemoryDataset

    cat = _catalog({}, pd.DataFrame(), pd.DataFrame(), PARAMS)
    for k in ("released_videos", "released_timelines", "released_qa"):
        cat[k] = MemoryDataset(pd.DataFrame(), copy_mode="assign")
    out = _run(cat)
    assert out["video_density"].empty and counting_encoder.calls == 0
    assert set(out["density_table"]["source"]) == {"paper"}
    assert "No frame stacks" in caplog.text


# ------------------------------------------------------------ real encoder, synthetic videos
def _frames_1fps(script) -> list[np.ndarray]:
    """The frames a 1 fps sampler sees (t = 0, 1, 2... s), rendered without encoding a video."""
    from evads_kedro.synth.draw import FrameRenderer

    out = []
    for i, raw in enumerate(FrameRenderer(script).frames()):
        if i % script.fps == 0:
            out.append(np.frombuffer(raw, np.uint8).reshape(script.height, script.width, 3).copy())
    return out


@pytest.fixture(scope="module")
def packaged_encoder():
    from evads_kedro.backends.encoders import build_encoder

    return build_encoder(PARAMS["encoder"])  # the instance the pipeline nodes get too


def _vden(encoder, script) -> float:
    frames = _frames_1fps(script)
    return visual_density(encoder.encode(frames), [float(i) for i in range(len(frames))],
                          alpha=100, window=2, weighting="inverse")


@pytest.mark.slow
def test_sanity_static_cuts_pan_random(packaged_encoder):
    from evads_kedro.sample_videos import (
        cuts_video_script,
        random_frames_script,
        slow_pan_script,
        static_video_script,
    )

    d = 12.0
    static = _vden(packaged_encoder, static_video_script(d, seed=7))
    assert static < 1.0
    cuts = [_vden(packaged_encoder, cuts_video_script(n, d, seed=1)) for n in (0, 2, 5, 10)]
    assert cuts == sorted(cuts) and len(set(cuts)) == 4, cuts
    assert cuts[0] < 1.0
    pan = _vden(packaged_encoder, slow_pan_script(d, seed=2))
    rand = _vden(packaged_encoder, random_frames_script(d, seed=3))
    assert rand > pan and rand > cuts[-1], (rand, pan)
    assert pan < cuts[1]  # a slow pan changes less than two hard cuts


@pytest.mark.slow
def test_extra_video_folder_through_real_files(tmp_path, packaged_encoder):
    """`density.datasets.<name>`: real mp4 files, probing, 1 fps sampling, sidecars, cache."""
    import json

    from evads_kedro.pipelines.density.nodes import visual_density_per_video
    from evads_kedro.sample_videos import cuts_video_script, render_video, static_video_script

    root = tmp_path / "mine"
    render_video(static_video_script(6.0, seed=4, width=180, height=320), root / "still.mp4")
    render_video(cuts_video_script(3, 6.0, seed=5, width=180, height=320), root / "sub" / "cuts.mp4")
    (root / "sub" / "cuts.json").write_text(json.dumps({"category": "家用电器"}))
    (root / "sub" / "cuts.timeline.txt").write_text(
        "Category: 家用电器\nDuration: 6s\n\n[Time-aligned Events]:\n"
        'Time 0-1s: OCR Text: [¥299] ; ASR Text: "以旧换新"\n')
    (root / "notes.txt").write_text("not a video")
    params = PARAMS | {"datasets": {"mine": str(root)}}
    new, table = visual_density_per_video({}, pd.DataFrame(), pd.DataFrame(), {}, params)
    t = table.set_index("video_id")
    assert set(t.index) == {"still", "sub/cuts"} and (t["dataset"] == "mine").all()
    assert t.loc["still", "v_den"] < 1.0 < t.loc["sub/cuts", "v_den"]
    assert t.loc["sub/cuts", "n_frames"] == 6 and t.loc["sub/cuts", "category"] == "家用电器"
    # ¥299 = 1 unit on 2 seconds, 以旧换新 = 4 units on 2 seconds, over 6 s
    assert (t.loc["sub/cuts", "o_den"], t.loc["sub/cuts", "a_den"]) == (pytest.approx(2 / 6), pytest.approx(8 / 6))
    assert math.isnan(t.loc["still", "a_den"])
    calls = packaged_encoder.calls
    cache = {pid: (lambda d=d: d) for pid, d in new.items()}
    new2, table2 = visual_density_per_video({}, pd.DataFrame(), pd.DataFrame(), cache, params)
    assert new2 == {} and packaged_encoder.calls == calls and table2["cached"].all()


@pytest.mark.slow
def test_released_video_files_get_vden_when_present(tmp_path, packaged_encoder):
    from evads_kedro.pipelines.density.nodes import merge_video_density, visual_density_per_video
    from evads_kedro.sample_videos import cuts_video_script, render_video

    mp4 = tmp_path / "r1.mp4"
    render_video(cuts_video_script(2, 5.0, seed=6, width=180, height=320), mp4)
    released = pd.DataFrame([
        {"video_id": "r1", "category": "其他", "duration_s": 5.0, "video_path": str(mp4), "video_exists": True},
        {"video_id": "r2", "category": "其他", "duration_s": 5.0, "video_path": str(tmp_path / "r2.mp4"),
         "video_exists": False}])
    _, visual = visual_density_per_video({}, pd.DataFrame(), released, {}, PARAMS)
    assert visual["video_id"].tolist() == ["r1"] and (visual["group"] == "released").all()
    text = pd.DataFrame([{"dataset": s, "video_id": v, "category": "其他", "duration_s": 5.0,
                          "asr_units": 0, "ocr_units": 0, "a_den": 0.0, "o_den": 0.0}
                         for s in ("evads_rl", "evads_sft") for v in ("r1", "r2")])
    pv = merge_video_density(text, pd.DataFrame(), visual).set_index(["dataset", "video_id"])
    assert pv.loc[("evads_rl", "r1"), "v_den"] == pv.loc[("evads_sft", "r1"), "v_den"] > 1
    assert pd.isna(pv.loc[("evads_rl", "r2"), "v_den"])
