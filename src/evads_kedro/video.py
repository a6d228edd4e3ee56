"""Probe and decode video files with PyAV: validation, metadata, content hash, 1 fps frames.

* :func:`probe_video` checks a file is a playable video and describes it (:class:`VideoProbe`):
  duration, fps, coded size, rotation, codecs, audio streams, byte size and a streamed sha256.
  Anything that is not a usable video raises :class:`InvalidVideo` with a one-line reason a
  user can act on (zero bytes, truncated, corrupt, a still image, audio only, unreadable).
* :func:`sample_frames` returns the frames *shown* at ``t = 0, 1/fps, 2/fps, ...`` (relative to
  the first video frame, for every ``t`` before the end of the last frame) as a
  :class:`~evads_kedro.frames.FrameStack`, rotated for display (the container's display matrix,
  as players and the ffmpeg CLI do) and downscaled so the longer side is at most ``max_side``.

Two ways to get frames at 1 fps (``method``):

* ``sequential`` ("decode with skipping"): decode every frame once, convert to RGB / resize only
  the frames that are shown at a target time. Cost ~ decoding the whole stream.
* ``seek``: per target time, seek to the preceding keyframe and decode up to the target. Cost
  ~ (number of targets) x (half a GOP on average) decodes, plus a demuxer seek each.

Measured costs (seconds of decode per second of video, per GOP length): docs/benchmarks.md.

Neither wins everywhere: seek decodes, per target, the frames from the preceding keyframe to
the target, so it wins when keyframes are at most ~2 s apart (phone footage, many platform
re-encodes, our samples) and loses 3-5x on long GOPs. ``method="auto"`` (the default) therefore
decides per video from a demux-only keyframe scan (:func:`plan_decode`, ~1 % of a decode).
"""

from __future__ import annotations

import math
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from evads_kedro.frames import FrameStack
from evads_kedro.hashing import sha256_file

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".webm", ".avi")
DecodeMethod = Literal["sequential", "seek"]
DEFAULT_DECODE_METHOD = "auto"
#: Per-seek cost in frame decodes (demuxer seek + decoder flush + lost frame threading),
#: fitted on this machine: 12 aligned 1-s-GOP seeks cost as much as ~60 sequential decodes.
SEEK_OVERHEAD_FRAMES = 4

# Containers / codecs that hold still images: a .png renamed .mp4 opens as a 1-frame "video".
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "gif", "webp_pipe", "tiff_pipe",
                  "jpegls_pipe", "pgm_pipe", "ppm_pipe", "svg_pipe", "qoi_pipe", "dds_pipe")
_IMAGE_CODECS = ("png", "bmp", "tiff", "webp", "gif", "qoi", "jpegls", "pgm", "ppm", "svg")
# A video whose packets end this much before the declared duration is truncated.
_TRUNCATION_TOLERANCE_S = 0.5
_EPS = 1e-4  # timestamps within 0.1 ms of a target count as "at" it (pts rounding)


class InvalidVideo(Exception):
    """A file that is not a usable video; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VideoProbe:
    """What :func:`probe_video` learnt about one file.

    ``width``/``height`` are the coded frame size; ``rotation`` is the display rotation in
    degrees counter-clockwise (0, 90, 180, 270) from the display matrix, and
    ``display_width``/``display_height`` the size a player shows. ``duration_s`` is measured
    from the video packets (first to last frame end), not trusted from the header.
    """

    path: str
    size_bytes: int
    sha256: str
    container: str
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    rotation: int
    video_codec: str
    pix_fmt: str
    audio_codecs: tuple[str, ...] = ()
    declared_duration_s: float | None = None
    bit_rate: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_audio_streams(self) -> int:
        return len(self.audio_codecs)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio_codecs)

    @property
    def display_width(self) -> int:
        return self.height if self.rotation in (90, 270) else self.width

    @property
    def display_height(self) -> int:
        return self.width if self.rotation in (90, 270) else self.height

    def as_record(self) -> dict[str, Any]:
        """Flat dict for a table row (audio codecs joined by ``,``)."""
        d = asdict(self)
        d.pop("extra")
        d["audio_codecs"] = ",".join(self.audio_codecs)
        d["n_audio_streams"] = self.n_audio_streams
        d["has_audio"] = self.has_audio
        d["display_width"] = self.display_width
        d["display_height"] = self.display_height
        return d


def _open(path: str | Path):
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise InvalidVideo("corrupt, truncated or not a media file: FFmpeg cannot parse it "
                           f"({_ffmpeg_msg(exc)})") from exc
    except av.error.PermissionError as exc:
        raise InvalidVideo(f"unreadable: permission denied ({_ffmpeg_msg(exc)})") from exc
    except av.FFmpegError as exc:
        raise InvalidVideo(f"unreadable by FFmpeg: {_ffmpeg_msg(exc)}") from exc


def _ffmpeg_msg(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).split(":")[0] or type(exc).__name__


def _video_stream(container, path: str | Path):
    """The first real video stream (cover art / attached pictures do not count)."""
    import av

    fmt = container.format.name
    streams = [s for s in container.streams.video
               if not (s.disposition & av.stream.Disposition.attached_pic)]
    if not streams:
        audio = [s.codec_context.name for s in container.streams.audio]
        if audio:
            raise InvalidVideo(f"no video stream (audio only: {', '.join(audio)})")
        if any(True for _ in container.streams.video):
            raise InvalidVideo("no video stream (only an attached cover picture)")
        raise InvalidVideo(f"no video stream ({fmt} container)")
    vs = streams[0]
    codec = vs.codec_context.name
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe") or codec in _IMAGE_CODECS:
        raise InvalidVideo(f"a still image ({codec} in {fmt}), not a video")
    return vs


def _rotation(frame) -> int:
    """Display rotation in degrees counter-clockwise, normalised to 0/90/180/270."""
    try:
        rot = float(frame.rotation or 0)
    except (AttributeError, TypeError, ValueError):
        rot = 0.0
    return int(round(rot / 90.0)) * 90 % 360


def probe_video(path: str | Path, *, compute_hash: bool = True) -> VideoProbe:
    """Validate ``path`` as a video and describe it; raise :class:`InvalidVideo` otherwise.

    Reads the file twice at most (sha256, then a demux-only packet scan that measures the true
    duration and catches truncation) and decodes one frame (decodability, rotation).
    """
    import av

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise InvalidVideo("file disappeared before it could be read") from exc
    except OSError as exc:
        raise InvalidVideo(f"unreadable: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidVideo("not a regular file")
    if st.st_size == 0:
        raise InvalidVideo("empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InvalidVideo("unreadable: permission denied")
    try:
        digest = sha256_file(p) if compute_hash else ""
    except OSError as exc:
        raise InvalidVideo(f"unreadable: {exc.strerror or exc}") from exc

    container = _open(p)
    try:
        vs = _video_stream(container, p)
        tb = float(vs.time_base) if vs.time_base else None
        declared = None
        if vs.duration is not None and tb:
            declared = float(vs.duration) * tb
        elif container.duration is not None:
            declared = container.duration / 1e6
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        cc = vs.codec_context
        width, height, pix_fmt = int(cc.width or 0), int(cc.height or 0), str(cc.pix_fmt or "")
        # First frame: the stream really decodes, and its display matrix gives the rotation.
        try:
            first = next(container.decode(vs), None)
        except av.FFmpegError as exc:
            raise InvalidVideo(f"corrupt: the first video frame does not decode "
                               f"({_ffmpeg_msg(exc)})") from exc
        if first is None:
            raise InvalidVideo("corrupt or truncated: no decodable video frame")
        rotation = _rotation(first)
        width, height = width or first.width, height or first.height
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        fmt = container.format.name
        bit_rate = container.bit_rate
    finally:
        container.close()
    container = _open(p)  # fresh demuxer: seeking back is unreliable in some containers
    try:
        start, end, n_packets = _scan_packets(container, _video_stream(container, p), fps)
    finally:
        container.close()

    duration = max(0.0, end - start)
    if n_packets <= 1 and fps and duration <= 1.5 / fps and (declared or 0) <= 1.5 / fps:
        raise InvalidVideo(f"a single frame ({vs.codec_context.name}), not a video")
    if declared and duration < declared - max(_TRUNCATION_TOLERANCE_S, 0.1 * declared):
        raise InvalidVideo(f"truncated: video data ends at {duration:.2f} s but the header "
                           f"declares {declared:.2f} s")
    return VideoProbe(
        path=str(p), size_bytes=int(st.st_size), sha256=digest, container=fmt,
        duration_s=round(duration, 6), fps=round(fps, 6), n_frames=n_packets, width=width,
        height=height, rotation=rotation, video_codec=vs.codec_context.name, pix_fmt=pix_fmt,
        audio_codecs=audio, declared_duration_s=None if declared is None else round(declared, 6),
        bit_rate=int(bit_rate) if bit_rate else None,
    )


def _scan_packets(container, vs, fps: float) -> tuple[float, float, int]:
    """Demux (no decode) the video stream: (first pts, end of last frame, packet count)."""
    import av

    tb = float(vs.time_base)
    start, end, n = math.inf, -math.inf, 0
    default_dur = 1.0 / fps if fps else 0.0
    try:
        for pkt in container.demux(vs):
            if pkt.size == 0 and pkt.pts is None:
                continue  # flush packet
            n += 1
            ts = pkt.pts if pkt.pts is not None else pkt.dts
            if ts is None:
                continue
            t = float(ts) * tb
            dur = float(pkt.duration) * tb if pkt.duration else default_dur
            start = min(start, t)
            end = max(end, t + dur)
    except av.FFmpegError as exc:
        where = f"{end:.2f} s" if end > -math.inf else "the start"
        raise InvalidVideo(f"corrupt or truncated: demuxing fails after {where} "
                           f"({_ffmpeg_msg(exc)})") from exc
    if n == 0 or start is math.inf:
        raise InvalidVideo("corrupt or truncated: the video stream has no packets")
    return start, end, n


# ------------------------------------------------------------------------------ frame sampling
def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Coded size scaled so the longer side is <= max_side (even sizes; never upscaled)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _to_rgb(frame, size: tuple[int, int], rotation: int) -> np.ndarray:
    w, h = size
    if (w, h) != (frame.width, frame.height):
        arr = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()
    else:
        arr = frame.to_ndarray(format="rgb24")
    k = (rotation // 90) % 4
    if k:
        arr = np.ascontiguousarray(np.rot90(arr, k))
    return arr


def sample_frames(
    path: str | Path,
    fps: float = 1.0,
    max_side: int | None = None,
    *,
    method: DecodeMethod | Literal["auto"] = DEFAULT_DECODE_METHOD,
    video_id: str | None = None,
    duration_s: float | None = None,
    meta: dict[str, Any] | None = None,
    threads: bool = True,
) -> FrameStack:
    """Frames shown at ``t = k / fps`` (``k = 0, 1, ...`` while ``t`` < end of the last frame).

    ``t`` is relative to the first video frame; the frame shown at ``t`` is the last one whose
    timestamp is ``<= t`` (0.1 ms tolerance). Frames are display-rotated and downscaled to
    ``max_side``. ``method``: ``sequential`` (default via ``auto``), or ``seek`` (see the module
    docstring for the measurement). ``duration_s`` (from :func:`probe_video`) is needed only
    by ``seek``; it is probed when missing. Raises :class:`InvalidVideo` on undecodable data.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if method not in ("auto", "sequential", "seek"):
        raise ValueError(f"unknown decode method {method!r}; use auto, sequential or seek")
    vid = video_id or Path(path).stem
    t0 = time.perf_counter()
    plan: dict[str, Any] = {}
    if method == "auto":
        plan = plan_decode(path, fps)
        method = plan["method"]
    container = _open(path)
    try:
        vs = _video_stream(container, path)
        if threads:
            vs.thread_type = "AUTO"
        if method == "sequential":
            times, frames, src, rotation = _sample_sequential(container, vs, fps, max_side)
        else:
            if duration_s is None:
                duration_s = plan.get("duration_s") or probe_video(path, compute_hash=False).duration_s
            times, frames, src, rotation = _sample_seek(container, vs, fps, max_side, duration_s)
    finally:
        container.close()
    info = {"fps": float(fps), "max_side": max_side, "method": method, "rotation": rotation,
            "plan": {k: v for k, v in plan.items() if k != "method"},
            "source_times": [round(t, 6) for t in src],
            "decode_s": round(time.perf_counter() - t0, 4)}
    return FrameStack(vid, times, frames, {**info, **(meta or {})})


def sample_n_frames(path: str | Path, n_frames: int, max_side: int | None = None) -> list[np.ndarray]:
    """The project's frame sampler for models: ``n_frames`` RGB frames evenly spaced over the
    video (the frame shown at ``k · duration / n``), display-rotated, longer side <= ``max_side``.

    Built on :func:`sample_frames`: the demux-only :func:`plan_decode` scan gives the duration
    and picks seek (short GOPs: only the frames near each target are decoded) or one
    sequential pass; either way only the picked frames are converted to RGB, at the reduced
    size, never the whole video at full resolution. Raises :class:`InvalidVideo`.
    """
    n = int(n_frames)
    if n <= 0:
        return []
    duration = float(plan_decode(path, 1.0).get("duration_s") or 0.0)
    if duration <= 0:
        duration = probe_video(path, compute_hash=False).duration_s or 1.0
    fps = n / duration
    plan = plan_decode(path, fps)
    stack = sample_frames(path, fps, max_side, method=plan["method"], duration_s=duration)
    have = len(stack.frames)
    picks = sorted({min(have - 1, int(i * have / n)) for i in range(min(n, have))})
    return [stack.frames[i] for i in picks]


def plan_decode(path: str | Path, fps: float) -> dict[str, Any]:
    """Pick ``sequential`` or ``seek`` for sampling ``path`` at ``fps`` from its keyframes.

    A demux-only scan (no decoding, ~1 % of the decode time) gives every packet's timestamp and
    keyframe flag. Sequential costs one decode per frame; seek costs, per target time, the
    decodes from the preceding keyframe up to the target plus :data:`SEEK_OVERHEAD_FRAMES`
    (demuxer seek, decoder flush, lost frame threading). Seek is chosen when it is estimated
    cheaper by at least 20 %: short GOPs (phone footage, GOP <= 2 s at 1 fps) favour seek,
    long GOPs (x264's default keyint 250) favour sequential.
    """
    import av

    container = _open(path)
    try:
        vs = _video_stream(container, path)
        tb = float(vs.time_base)
        stamps: list[tuple[float, bool]] = []
        try:
            for pkt in container.demux(vs):
                ts = pkt.pts if pkt.pts is not None else pkt.dts
                if ts is None:
                    if pkt.size:
                        return {"method": "sequential", "reason": "packets without timestamps"}
                    continue
                stamps.append((float(ts) * tb, bool(pkt.is_keyframe)))
        except av.FFmpegError:
            return {"method": "sequential", "reason": "demux error"}
    finally:
        container.close()
    if not stamps:
        return {"method": "sequential", "reason": "no packets"}
    stamps.sort()
    t0 = stamps[0][0]
    times = np.array([t - t0 for t, _ in stamps])
    keys = np.array([k for _, k in stamps])
    key_times = times[keys] if keys.any() else times[:1]
    duration = float(times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0.0))
    targets = np.arange(max(1, math.ceil(duration * fps - _EPS))) / fps
    # decodes per target: frames from the preceding keyframe to the last frame <= target
    kf_idx = np.searchsorted(times, key_times[np.maximum(
        np.searchsorted(key_times, targets + _EPS, side="right") - 1, 0)])
    last_idx = np.maximum(np.searchsorted(times, targets + _EPS, side="right") - 1, 0)
    seek_cost = float(np.sum(last_idx - kf_idx + 1) + SEEK_OVERHEAD_FRAMES * len(targets))
    seq_cost = float(len(times))
    method: DecodeMethod = "seek" if seek_cost < 0.8 * seq_cost else "sequential"
    gop = float(np.mean(np.diff(key_times))) if len(key_times) > 1 else duration
    return {"method": method, "seek_cost": seek_cost, "sequential_cost": seq_cost,
            "keyframe_interval_s": round(gop, 3), "duration_s": duration}


def _frame_time(frame, index: int, rate: float) -> float | None:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return index / rate if rate else None


def _sample_sequential(container, vs, fps, max_side):
    import av

    rate = float(vs.average_rate or vs.guessed_rate or 0) or 0.0
    times: list[float] = []
    frames: list[np.ndarray] = []
    src: list[float] = []
    size: tuple[int, int] | None = None
    rotation = 0
    first_t: float | None = None
    prev = prev_t = None
    prev_rgb: np.ndarray | None = None  # conversion cache: a frame shown at several targets
    k = 0
    last_dur = 1.0 / rate if rate else 0.0

    def emit(frame, t_src):
        nonlocal prev_rgb, k
        if prev_rgb is None:
            prev_rgb = _to_rgb(frame, size, rotation)
        times.append(k / fps)
        frames.append(prev_rgb)
        src.append(t_src)
        k += 1

    try:
        for i, frame in enumerate(container.decode(vs)):
            t = _frame_time(frame, i, rate)
            if t is None:
                raise InvalidVideo("frames carry no timestamps and the stream no frame rate")
            if first_t is None:
                first_t = t
                size = _target_size(frame.width, frame.height, max_side)
                rotation = _rotation(frame)
            rel = t - first_t
            if prev is not None and rel < prev_t:  # out-of-order pts: keep the latest shown
                continue
            if frame.duration and frame.time_base is not None:
                last_dur = float(frame.duration * frame.time_base)
            # every target strictly before this frame shows the previous frame
            while prev is not None and k / fps + _EPS < rel:
                emit(prev, prev_t)
            if prev is None or rel > prev_t:
                prev, prev_t, prev_rgb = frame, rel, None
            else:  # same timestamp: the later frame replaces the earlier one
                prev, prev_rgb = frame, None
    except av.FFmpegError as exc:
        raise InvalidVideo(f"corrupt: decoding fails after {prev_t or 0:.2f} s "
                           f"({_ffmpeg_msg(exc)})") from exc
    if prev is None:
        raise InvalidVideo("corrupt or truncated: no decodable video frame")
    end = prev_t + (last_dur or 0.0)
    while k / fps + _EPS < end or k == 0:
        emit(prev, prev_t)
    return times, frames, src, rotation


def _sample_seek(container, vs, fps, max_side, duration_s):
    import av

    tb = float(vs.time_base)
    try:
        first = next(container.decode(vs), None)
    except av.FFmpegError as exc:
        raise InvalidVideo(f"corrupt: the first video frame does not decode "
                           f"({_ffmpeg_msg(exc)})") from exc
    if first is None or first.time is None:
        raise InvalidVideo("corrupt or truncated: no decodable (timestamped) video frame")
    first_t = float(first.time)
    size = _target_size(first.width, first.height, max_side)
    rotation = _rotation(first)
    n_targets = max(1, math.ceil(duration_s * fps - _EPS))
    times: list[float] = []
    frames: list[np.ndarray] = []
    src: list[float] = []
    last: tuple[float, np.ndarray] | None = None  # (rel time, rgb) of the last frame returned
    for k in range(n_targets):
        target = k / fps
        container.seek(int((first_t + target) / tb), stream=vs, backward=True, any_frame=False)
        best = None
        try:
            for frame in container.decode(vs):
                if frame.time is None:
                    raise InvalidVideo("frames carry no timestamps; use method: sequential")
                rel = float(frame.time) - first_t
                if rel > target + _EPS and best is not None:
                    break
                best = (rel, frame)
        except av.FFmpegError as exc:
            raise InvalidVideo(f"corrupt: decoding fails near {target:.2f} s "
                               f"({_ffmpeg_msg(exc)})") from exc
        if best is None:  # seek landed past the data: the last frame is still shown
            if last is None:
                raise InvalidVideo("corrupt or truncated: no decodable video frame")
            rel, rgb = last
        elif last is not None and best[0] == last[0]:
            rel, rgb = last
        else:
            rel, rgb = best[0], _to_rgb(best[1], size, rotation)
            last = (rel, rgb)
        times.append(target)
        frames.append(rgb)
        src.append(rel)
    return times, frames, src, rotation
