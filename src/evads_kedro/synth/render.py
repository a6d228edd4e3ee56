"""Render an ``AdScript`` to a byte-reproducible H.264/AAC mp4 and describe it (ground truth)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from evads_kedro.hashing import sha256_file
from evads_kedro.synth.audio import SAMPLE_RATE, PlacedSegment, build_audio, require_tool, write_wav
from evads_kedro.synth.draw import DEFAULT_FONT_INDEX, DEFAULT_FONT_PATH, FrameRenderer
from evads_kedro.synth.spec import GENERATOR_VERSION, AdScript
from evads_kedro.taxonomy import canonical_category, category_slug

GROUND_TRUTH_SCHEMA = 1
#: Encoder settings; part of the script hash, so changing them invalidates cached videos.
X264_ARGS = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
             "-bf", "0", "-threads", "2")
AAC_ARGS = ("-c:a", "aac", "-b:a", "64k", "-ac", "1")
TMP_PREFIX = ".tmp-"  # temp files live beside their target and start with this


def render_params(font_path: str | Path = DEFAULT_FONT_PATH, font_index: int = DEFAULT_FONT_INDEX) -> dict:
    """Everything besides the script that decides the output bytes (on a given machine)."""
    return {"font": Path(font_path).name, "font_index": font_index, "x264": list(X264_ARGS),
            "aac": list(AAC_ARGS), "sample_rate": SAMPLE_RATE}


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _ffmpeg() -> str:
    return require_tool("ffmpeg", "ffmpeg")


def render_video(spec: AdScript, path: str | Path, *, font_path: str | Path = DEFAULT_FONT_PATH,
                 font_index: int = DEFAULT_FONT_INDEX, write_json: bool = False) -> dict[str, Any]:
    """Render ``spec`` to ``path`` (mp4, written atomically) and return its ground truth.

    With ``write_json`` the ground truth is also saved beside the video as ``<stem>.json``.
    The same spec gives byte-identical files on the same machine (fixed encoder threads,
    bit-exact flags, no metadata or timestamps).
    """
    spec.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = _ffmpeg()
    renderer = FrameRenderer(spec, font_path, font_index)  # font / caption layout errors first
    audio, placed = build_audio(spec)
    tmp = _tmp_sibling(path)
    try:
        with tempfile.TemporaryDirectory(prefix="evads_synth_") as td:
            cmd = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{spec.width}x{spec.height}",
                   "-r", str(spec.fps), "-i", "pipe:0"]
            if audio is not None:
                wav = Path(td) / "audio.wav"
                write_wav(wav, audio)
                cmd += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", *AAC_ARGS]
            else:
                cmd += ["-map", "0:v:0", "-an"]
            cmd += [*X264_ARGS, "-g", str(spec.fps),
                    "-map_metadata", "-1", "-map_chapters", "-1",
                    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                    "-movflags", "+faststart", "-f", "mp4", str(tmp)]
            with open(Path(td) / "ffmpeg.log", "w+b") as log:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
                try:
                    for frame in renderer.frames():
                        proc.stdin.write(frame)
                    proc.stdin.close()
                except BrokenPipeError:  # ffmpeg died: its log says why
                    pass
                except BaseException:  # our side failed or was interrupted: stop ffmpeg too
                    proc.kill()
                    proc.wait()
                    raise
                rc = proc.wait()
                if rc != 0:
                    log.seek(0)
                    raise RuntimeError(f"ffmpeg failed ({rc}) for {spec.video_id}: "
                                       f"{log.read().decode(errors='replace')[-2000:]}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    gt = ground_truth(spec, renderer, placed, font_path=font_path, font_index=font_index)
    gt["mp4"] = path.name
    gt["sha256"] = sha256_file(path)
    gt["size_bytes"] = path.stat().st_size
    if write_json:
        write_json_atomic(path.with_suffix(".json"), gt)
    return gt


# ---- ground truth ----------------------------------------------------------------------------
def ground_truth(spec: AdScript, renderer: FrameRenderer | None = None,
                 placed: list[PlacedSegment] | None = None, *, font_path=DEFAULT_FONT_PATH,
                 font_index: int = DEFAULT_FONT_INDEX) -> dict[str, Any]:
    """What is really in the rendered video: cuts, per-second captions, placed speech."""
    renderer = renderer or FrameRenderer(spec, font_path, font_index)
    if placed is None:
        placed = build_audio(spec)[1]
    n = spec.n_frames
    scenes = [{"index": k, "start": f0 / spec.fps, "end": f1 / spec.fps,
               "first_frame": f0, "last_frame": f1 - 1}
              for k, (f0, f1) in enumerate(renderer.ranges)]
    per_second = []
    for t in range(math.ceil(n / spec.fps)):
        i = t * spec.fps
        if i >= n:
            break
        per_second.append({"t": t, "frame": i,
                           "captions": [spec.captions[k].text for k in renderer.visible(i)]})
    layout = [{"text": c.text, "start": c.start, "end": c.end,
               "first_frame": renderer.cap_ranges[k][0], "last_frame": renderer.cap_ranges[k][1] - 1,
               "box": list(renderer.layers[k].box), "font_size": renderer.layers[k].font_size}
              for k, c in enumerate(spec.captions)]
    voiceover = [{"index": p.index, "language": p.lang, "text": p.text, "spoken": p.spoken,
                  "espeak_rate": p.rate, "script_start": p.script_start, "start": p.start,
                  "end": p.end, "truncated": p.truncated, "shifted": p.shifted} for p in placed]
    return {
        "schema": GROUND_TRUTH_SCHEMA,
        "generator_version": GENERATOR_VERSION,
        "video_id": spec.video_id,
        "title": spec.title,
        "category": canonical_category(spec.category),
        "category_slug": category_slug(spec.category),
        "duration_s": spec.duration_s,
        "n_frames": n,
        "fps": spec.fps,
        "width": spec.width,
        "height": spec.height,
        "language": spec.language,
        "has_audio": spec.has_audio,
        "has_speech": spec.has_speech,
        "has_music": bool(spec.music),
        "script_hash": spec.script_hash(**render_params(font_path, font_index)),
        "cuts": spec.cut_times(),
        "n_cuts": len(spec.scenes) - 1,
        "scenes": scenes,
        "per_second_captions": per_second,
        "caption_layout": layout,
        "voiceover": voiceover,
        "asr_per_second_estimate": asr_per_second_estimate(voiceover),
        "script": spec.to_dict(),
    }


_UNIT_RE = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+(?:['.][A-Za-z0-9]+)*")


def asr_per_second_estimate(voiceover: list[dict]) -> list[dict]:
    """Approximate per-second transcript: units (CJK chars / Latin words) spread evenly over each
    segment's actual span. Good for timeline-shaped fixtures, not for exact alignment tests."""
    by_sec: dict[int, list[tuple[str, str]]] = {}
    for seg in voiceover:
        units = _UNIT_RE.findall(seg["text"])
        if not units:
            continue
        span = seg["end"] - seg["start"]
        sep = "" if seg["language"] == "zh" else " "
        for k, u in enumerate(units):
            t = int(seg["start"] + (k + 0.5) / len(units) * span)
            by_sec.setdefault(t, []).append((sep, u))
    out = []
    for t in sorted(by_sec):
        text = ""
        for sep, u in by_sec[t]:
            text += (sep if text and (sep or u.isascii() and text[-1].isascii()) else "") + u
        out.append({"t": t, "text": text})
    return out
