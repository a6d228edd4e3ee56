"""Session fixtures with synthetic ads (``evads_kedro.sample_videos`` / ``evads_kedro.synth``).

Register once in ``tests/conftest.py``::

    pytest_plugins = ["fixtures_videos"]

Fixtures:
- ``sample_manifest``: manifest rows of the 8 sample ads (generated once per session).
- ``sample_videos_dir``: folder with ``<video_id>.mp4`` + ``<video_id>.json``.
- ``sample_ground_truth``: ``{video_id: ground-truth dict}`` (see ``render.ground_truth``).
- ``synth_video``: factory ``synth_video(script) -> (mp4_path, ground_truth)`` for special
  cases (``static_video_script()``, ``cuts_video_script(5)``, ...), cached per script.

``EVADS_SAMPLE_VIDEOS_DIR=/some/dir`` reuses a persistent folder across sessions (generation is
idempotent, so an up-to-date folder costs a few sha256 checks).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evads_kedro.sample_videos import generate_sample_videos, is_up_to_date, load_ground_truth
from evads_kedro.synth import AdScript, render_video


@pytest.fixture(scope="session")
def sample_manifest(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    env = os.environ.get("EVADS_SAMPLE_VIDEOS_DIR")
    out = Path(env) if env else tmp_path_factory.getbasetemp() / "sample_videos"
    return generate_sample_videos(out, progress=False)


@pytest.fixture(scope="session")
def sample_videos_dir(sample_manifest: list[dict[str, Any]]) -> Path:
    return Path(sample_manifest[0]["video_path"]).parent


@pytest.fixture(scope="session")
def sample_ground_truth(sample_manifest: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["video_id"]: load_ground_truth(r["json_path"]) for r in sample_manifest}


@pytest.fixture(scope="session")
def synth_video(tmp_path_factory: pytest.TempPathFactory) -> Callable[[AdScript], tuple[Path, dict]]:
    cache = tmp_path_factory.mktemp("synth_videos")

    def make(script: AdScript) -> tuple[Path, dict[str, Any]]:
        mp4 = cache / f"{script.video_id}.mp4"
        if is_up_to_date(script, cache):
            return mp4, load_ground_truth(mp4.with_suffix(".json"))
        return mp4, render_video(script, mp4, write_json=True)

    return make
