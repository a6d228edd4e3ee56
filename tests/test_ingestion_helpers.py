"""Shared helpers of the ingestion tests: deterministic fake ASR / OCR backends and tiny videos.

The fakes are real classes implementing the backend interfaces (``transcribe`` ->
``AsrResult``, ``read`` -> ``list[OcrBox]``), plugged in through the parameters exactly as a user
plugs in their own backend: ``backend: "test_ingestion_helpers:FakeAsr"``. They count their calls
(class attributes, and optionally one line per call appended to ``log``, for subprocess runs).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from evads_kedro.backends.asr_text import AsrResult, AsrWord
from evads_kedro.backends.ocr import OcrBox

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="needs the ffmpeg CLI")


class FakeAsr:
    """One word ``tone<s>`` for every second of audio whose RMS is above 0.07 (AAC priming
    leaks ~0.05 of a 0.3 tone into the next second)."""

    name = "fake_asr"
    calls: list[int] = []

    def __init__(self, log: str | None = None, **_: object) -> None:
        # the delay is not a parameter: parameters are part of the artefacts' keys
        self.log, self.delay_s = log, float(os.environ.get("FAKE_ASR_DELAY_S", "0"))

    def transcribe(self, audio: np.ndarray, duration_s: float) -> AsrResult:
        seconds = round(len(audio) / 16000)  # whole seconds (AAC pads ~0.1 s)
        FakeAsr.calls.append(seconds)
        if self.log:
            with open(self.log, "a") as f:
                f.write(json.dumps({"audio_s": seconds, "t": time.time()}) + "\n")
        if self.delay_s:
            time.sleep(self.delay_s)
        words = []
        for s in range(int(np.ceil(len(audio) / 16000))):
            chunk = audio[s * 16000:(s + 1) * 16000]
            if chunk.size and float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) > 0.07:
                words.append(AsrWord(s + 0.2, s + 0.8, f"tone{s}"))
        return AsrResult(words=words, language="en", text=" ".join(w.text for w in words))


class FakeOcr:
    """One box per frame: ``R<red // 32>`` (frames whose colour encodes the second read as the
    second's code); raises on frames brighter than ``fail_above`` (to test stage failures)."""

    name = "fake_ocr"
    calls = 0

    def __init__(self, fail_above: float | None = None, log: str | None = None,
                 **_: object) -> None:
        self.fail_above, self.log = fail_above, log

    def read(self, frame: np.ndarray) -> list[OcrBox]:
        FakeOcr.calls += 1
        if self.log:
            with open(self.log, "a") as f:
                f.write("1\n")
        if self.fail_above is not None and float(frame.mean()) > self.fail_above:
            raise RuntimeError("fake OCR refuses bright frames")
        red = int(round(float(frame[..., 0].mean())))
        h, w = frame.shape[:2]
        return [OcrBox(f"R{red // 32}", 0.99, ((0, 0), (w, 0), (w, h), (0, h)))]


def reset_fakes() -> None:
    FakeAsr.calls = []
    FakeOcr.calls = 0


FAKE_PARAMS = {
    "asr": {"backend": "test_ingestion_helpers:FakeAsr"},
    "ocr": {"backend": "test_ingestion_helpers:FakeOcr", "reuse_hamming": -1},
}


# --------------------------------------------------------------------------------- videos
def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args], check=True,
                   timeout=120)


def colour_video(path: Path, fps: float | Fraction = 25, seconds: float = 4.0,
                 size: tuple[int, int] = (64, 48), audio: bool = False, gop: int | None = None,
                 codec: str = "libx264") -> Path:
    """A video whose frame ``i`` (shown from ``i / fps``) has red = 40 * floor(i / fps) and
    green = 255 - that: the colour tells which second a frame belongs to. With ``audio``, a
    440 Hz tone plays during even seconds (silence during odd ones)."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    n = int(round(seconds * float(rate)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        vs = c.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        # no scene-cut keyframes: the GOP is exactly `gop` (the colour changes every second)
        vs.options = {"crf": "10", "x264-params": "scenecut=0"} if codec == "libx264" else {}
        if gop:
            vs.codec_context.gop_size = gop
        a = None
        if audio:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for i in range(n):
            sec = int(i / float(rate) + 1e-9)
            arr = np.zeros((size[1], size[0], 3), np.uint8)
            arr[..., 0] = (40 * sec) % 256
            arr[..., 1] = 255 - (40 * sec) % 256
            for p in vs.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            t = np.arange(int(seconds * 16000)) / 16000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t) * ((t.astype(int) % 2) == 0))
            samples = tone.astype(np.float32)
            for start in range(0, len(samples), 1024):
                fr = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt",
                                                layout="mono")
                fr.sample_rate = 16000
                for p in a.encode(fr):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def lavfi_video(path: Path, seconds: float = 2.0, size: str = "64x48", rate: str = "25",
                audio: bool = True, extra: tuple[str, ...] = (), vcodec: tuple[str, ...] = (
                    "-c:v", "libx264", "-pix_fmt", "yuv420p"),
                acodec: tuple[str, ...] = ("-c:a", "aac")) -> Path:
    """A test-pattern video made by the ffmpeg CLI (optionally with a sine audio track)."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *acodec,
                 "-shortest"]
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg(*args, *vcodec, *extra, str(path))
    return path


# ------------------------------------------------------------------------------ kedro runs
def run_videos(project: Path, **ingestion):
    """``kedro run --pipelines ingestion --tags videos`` in-process with nested runtime params
    (what the CLI makes of ``--params "ingestion.x=..."``)."""
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    configure_project("evads_kedro")
    params = copy.deepcopy(FAKE_PARAMS)
    for k, v in ingestion.items():
        if isinstance(v, dict):
            params.setdefault(k, {}).update(v)
        else:
            params[k] = v
    try:
        with KedroSession.create(project_path=project, runtime_params={"ingestion": params}) as s:
            return s.run(pipeline_names=["ingestion"], tags=["videos"])
    finally:
        import mlflow

        # kedro-mlflow re-opens the run in every node and closes it once: in-process, the run
        # would stay active and the next session would log into it
        while mlflow.active_run():
            mlflow.end_run()


def kill_group_when(proc: subprocess.Popen, ready, what: str, timeout: float = 300,
                    poll: float = 0.02) -> None:
    """SIGKILL ``proc``'s process group as soon as ``ready()`` is true (the process must still
    be running until then, and ``what`` must happen within ``timeout`` seconds)."""
    import signal

    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(poll)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
