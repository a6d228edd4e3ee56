"""Per-video fan-out (``evads_kedro.executors``): the sample ads ingested through a real
``dask.distributed.LocalCluster`` (2 worker processes) and through a local process pool give
the same timelines, records and quarantine as the in-process run, and each worker process
builds its OCR / ASR backend once, not once per video. Density's embeddings too.

The backends are deterministic fakes plugged in by name (``test_scale_executors:InitLoggingOcr``)
so that the comparison is exact; the worker processes import them from this folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evads_kedro.backends.ocr import OcrBox
from evads_kedro.executors import (
    InProcessExecutor,
    executor_params,
    fan_out,
    get_executor,
    longest_first,
    shutdown_executors,
)
from project_copy import enter_project, make_project
from test_ingestion_helpers import FakeAsr, FakeOcr, lavfi_video, needs_ffmpeg, run_videos

TESTS = Path(__file__).resolve().parent
INIT_LOG_ENV = "EVADS_TEST_BACKEND_INIT_LOG"
# spawned workers (process pool, Dask nanny) import the fakes from here
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))


class InitLoggingOcr(FakeOcr):
    """:class:`FakeOcr` that appends ``ocr <pid>`` to ``$EVADS_TEST_BACKEND_INIT_LOG`` when
    built (counts backend builds per process) and crashes on frames under 40 px tall (the
    batch's bad video)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        _log_init("ocr")

    def read(self, frame: np.ndarray) -> list[OcrBox]:
        if frame.shape[0] < 40:
            raise RuntimeError("reader crashed on a tiny frame")
        return super().read(frame)


class InitLoggingAsr(FakeAsr):
    """:class:`FakeAsr` logging ``asr:<language> <pid>`` when built (the decoding language
    comes from each ad's sidecar, so there is one backend per language and process)."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        _log_init(f"asr:{kw.get('language')}")


def _log_init(kind: str) -> None:
    path = os.environ.get(INIT_LOG_ENV)
    if path:
        with open(path, "a") as f:
            f.write(f"{kind} {os.getpid()}\n")


PARAMS = {
    "asr": {"backend": "test_scale_executors:InitLoggingAsr"},
    "ocr": {"backend": "test_scale_executors:InitLoggingOcr", "reuse_hamming": -1},
    "progress": False,
    "frame_max_side": 320,  # small frames: the comparison does not need full-size ones
}
KINDS = {
    "inprocess": {"kind": "inprocess"},
    "process_pool": {"kind": "process_pool", "workers": 2, "threads_per_worker": 1},
    "dask": {"kind": "dask", "workers": 2, "scheduler_address": "local",
             "threads_per_worker": 1},
}


def _square(x: int) -> int:
    return x * x


def _explode(x: int) -> int:
    raise ValueError(f"configuration error at {x}")


# ------------------------------------------------------------------------------ unit level
def test_executor_params_validate_and_inprocess_keeps_order():
    assert executor_params(None)["kind"] == "inprocess"
    with pytest.raises(ValueError, match="executor.kind 'ray'"):
        executor_params({"kind": "ray"})
    with pytest.raises(ValueError, match="unknown keys"):
        executor_params({"kind": "dask", "nworkers": 2})
    with pytest.raises(ValueError, match="workers must be >= 1"):
        executor_params({"kind": "process_pool", "workers": 0})
    assert list(InProcessExecutor().imap(_square, [3, 1, 2])) == [(0, 9), (1, 1), (2, 4)]
    assert list(fan_out({"kind": "dask"}, _square, [])) == []  # nothing to do: no cluster


def test_longest_first_orders_by_decreasing_cost_and_keeps_ties_in_order():
    assert longest_first([3.0, 40.0, 12.0, 40.0, 0.0], float) == [1, 3, 2, 0, 4]
    assert longest_first([], float) == []


def _started_at(x: int) -> tuple[float, int]:
    return time.monotonic(), x


def test_fan_out_with_a_cost_submits_longest_first_and_keeps_indices():
    items = [1, 50, 7, 30]
    one_worker = {"kind": "process_pool", "workers": 1, "threads_per_worker": 1}
    try:
        pool = dict(fan_out(one_worker, _started_at, items, cost=float))
        assert {i: v for i, (_, v) in pool.items()} == dict(enumerate(items))
        # one worker runs them in submission order: longest first
        assert [v for _, v in sorted(pool.values())] == [50, 30, 7, 1]
        inproc = list(fan_out({"kind": "inprocess"}, _square, items, cost=float))
        assert inproc == [(i, x * x) for i, x in enumerate(items)]  # in-process: in order
    finally:
        shutdown_executors()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["process_pool", "dask"])
def test_pool_and_cluster_map_every_item_and_surface_errors(kind):
    items = list(range(23))  # more than the in-flight window of 2 * workers
    try:
        out = dict(fan_out(KINDS[kind], _square, items))
        assert out == {i: i * i for i in items}
        with pytest.raises(ValueError, match="configuration error"):
            list(fan_out(KINDS[kind], _explode, items))
        # the failed executor was dropped; the next call gets a working one
        assert dict(fan_out(KINDS[kind], _square, [4])) == {0: 16}
        assert get_executor(KINDS[kind]).kind == kind
    finally:
        shutdown_executors()


# ------------------------------------------------------------------------ pipeline level
@contextlib.contextmanager
def project_copy(where: Path):
    """A throw-away copy of the project (as the ``kedro_project`` fixture, usable from a
    module-scoped fixture): conf + pyproject, its own data/ and sqlite MLflow, cwd inside."""
    project = make_project(where)
    with pytest.MonkeyPatch.context() as mp:
        enter_project(mp, project, where / "no-release")
        yield project


@pytest.fixture(scope="module")
def ads_root(sample_videos_dir, tmp_path_factory) -> Path:
    """The 8 sample ads plus one the OCR reader crashes on (32 px tall frames)."""
    root = tmp_path_factory.mktemp("scale_ads")
    for mp4 in sorted(sample_videos_dir.glob("*.mp4")):
        shutil.copy(mp4, root / mp4.name)
        shutil.copy(mp4.with_suffix(".json"), root / mp4.with_suffix(".json").name)
    if shutil.which("ffmpeg"):
        lavfi_video(root / "zz_tiny.mp4", seconds=2.0, size="32x32")
    return root


def _outputs(project: Path) -> dict[str, object]:
    d = project / "data"
    tl = pd.read_parquet(d / "02_intermediate/ingested/timelines.parquet")
    tl = tl.sort_values(["video_id", "second"]).reset_index(drop=True)
    videos = pd.read_parquet(d / "02_intermediate/ingested/videos.parquet")
    videos = videos.sort_values("video_id").reset_index(drop=True)
    q = pd.read_csv(d / "08_reporting/ingestion_quarantine.csv")
    texts = {p.name: p.read_text(encoding="utf-8") for p in (d / "03_primary/timelines").glob("*.txt")}
    records = {}
    for stage in ("decode", "ocr", "asr"):
        for p in (d / "02_intermediate/ingested" / stage).glob("*.json"):
            rec = pd.read_json(p, typ="series")
            records[f"{stage}/{p.stem}"] = (rec["status"], rec["key"], rec.get("reason"))
    return {"timelines": tl, "videos": videos[["video_id", "timeline_full", "timeline_asr",
                                                "category", "n_frames_sampled"]],
            "quarantine": q[["video_id", "stage", "reason"]].sort_values("video_id")
            .reset_index(drop=True),
            "texts": texts, "records": records,
            "tmp_files": sorted(str(p) for p in d.rglob(".tmp-*"))}


@pytest.fixture(scope="module")
def runs(ads_root, tmp_path_factory):
    """The ingestion pipeline run once per executor kind, each in its own project copy;
    returns ``{kind: (outputs, backend builds per process)}``."""
    out = {}
    shutdown_executors()  # fresh workers: they must see the init log variable set below
    try:
        for kind, ex in KINDS.items():
            log = tmp_path_factory.mktemp(f"init_{kind}") / "init.log"
            with project_copy(tmp_path_factory.mktemp(f"proj_{kind}")) as project, \
                    pytest.MonkeyPatch.context() as mp:
                mp.setenv(INIT_LOG_ENV, str(log))
                if kind == "inprocess":  # the parent's per-process cache would hide the build
                    from evads_kedro.pipelines.ingestion import video_helpers as stages

                    mp.setattr(stages, "_CUSTOM", {})
                run_videos(project, video_root=str(ads_root), executor=ex, **PARAMS)
                builds = log.read_text().split() if log.exists() else []
                out[kind] = (_outputs(project), builds)
    finally:
        shutdown_executors()
    return out


def _builds(tokens: list[str]) -> dict[str, list[str]]:
    """``{"ocr": [pid, ...], "asr:en": [...], ...}`` from the init log's ``kind pid`` tokens."""
    res: dict[str, list[str]] = {}
    for kind, pid in zip(tokens[0::2], tokens[1::2], strict=True):
        res.setdefault(kind, []).append(pid)
    return res


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["process_pool", "dask"])
def test_ingestion_through_executor_equals_in_process(runs, kind, sample_manifest):
    base, _ = runs["inprocess"]
    got, _ = runs[kind]
    ids = sorted(r["video_id"] for r in sample_manifest)
    assert sorted(base["videos"]["video_id"]) == ids  # every good ad ingested
    assert len(base["timelines"]) > 8 * 5
    pd.testing.assert_frame_equal(got["timelines"], base["timelines"])
    pd.testing.assert_frame_equal(got["videos"], base["videos"])
    assert got["texts"] == base["texts"] and len(got["texts"]) == len(ids)
    assert got["records"] == base["records"]
    assert got["tmp_files"] == [] == base["tmp_files"]


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_bad_video_is_quarantined_the_same_way_under_every_executor(runs, kind):
    got, _ = runs[kind]
    q = got["quarantine"].set_index("video_id")
    assert list(q.index) == ["zz_tiny"]
    assert q.loc["zz_tiny", "stage"] == "ocr"
    assert q.loc["zz_tiny", "reason"] == "RuntimeError: reader crashed on a tiny frame"
    assert got["records"]["ocr/zz_tiny"][0] == "failed"
    assert "asr/zz_tiny" in got["records"]  # the other stages still processed it
    pd.testing.assert_frame_equal(got["quarantine"], runs["inprocess"][0]["quarantine"])


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["process_pool", "dask"])
def test_each_worker_builds_its_backends_once(runs, kind):
    builds = _builds(runs[kind][1])
    assert "ocr" in builds and any(k.startswith("asr:") for k in builds), builds
    for backend, pids in builds.items():
        # 9 videos went through OCR and ASR: one build per worker process and parameter set
        assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids), (backend, pids)
        assert str(os.getpid()) not in pids  # built in the workers, not in the kedro process
    assert sum(len(p) for p in builds.values()) < 2 * 9


@pytest.mark.slow
def test_density_embeddings_through_dask_equal_in_process(tmp_path):
    """Density's per-video embedding on a LocalCluster: same V_den, same new cache partitions."""
    from evads_kedro.datasets.embeddings import EmbeddingsDataset
    from evads_kedro.frames import FrameStack
    from evads_kedro.pipelines.density.nodes import visual_density_per_video
    from test_density_vden import PARAMS as DENSITY_PARAMS
    from test_density_vden import _stack

    stacks = {"a": _stack("a", 6), "b": _stack("b", 6, cut_at=3), "c": _stack("c", 5, cut_at=1)}
    paths = {}
    for vid, st in stacks.items():  # through the catalog's frames dataset, as in a real run
        from evads_kedro.datasets import FramesDataset

        ds = FramesDataset(str(tmp_path / f"{vid}.zip"))
        ds.save(st)
        paths[vid] = ds
    frames = {vid: ds.load for vid, ds in paths.items()}
    assert isinstance(frames["a"](), FrameStack)
    new_in, t_in = visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), {},
                                            DENSITY_PARAMS)
    try:
        params = DENSITY_PARAMS | {"executor": KINDS["dask"]}
        new_dk, t_dk = visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), {}, params)
        assert set(new_dk) == set(new_in) and len(new_in) == 3
        for pid in new_in:
            np.testing.assert_allclose(new_dk[pid]["embeddings"], new_in[pid]["embeddings"],
                                       rtol=1e-5, atol=1e-5)
        pd.testing.assert_series_equal(t_dk["v_den"], t_in["v_den"], atol=1e-4)
        assert list(t_dk["video_id"]) == list(t_in["video_id"]) == ["a", "b", "c"]
        # cached rerun on the cluster: nothing re-encoded
        cache = {}
        for pid, data in new_dk.items():
            ds = EmbeddingsDataset(str(tmp_path / "emb" / f"{pid}.npz"))
            ds.save(data)
            cache[pid] = ds.load
        new2, t2 = visual_density_per_video(frames, pd.DataFrame(), pd.DataFrame(), cache, params)
        assert new2 == {} and t2["cached"].all()
    finally:
        shutdown_executors()
