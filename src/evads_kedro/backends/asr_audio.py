"""Audio for speech recognition: a media file decoded to 16 kHz mono float32, energy measures
(the silence gates) and Silero VAD speech extraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SAMPLE_RATE", "load_audio", "loudest_window_rms", "speech_only"]

SAMPLE_RATE = 16000


def loudest_window_rms(audio: np.ndarray, sr: int = SAMPLE_RATE, window_s: float = 1.0) -> float:
    """RMS of the loudest ``window_s`` window (hop = half a window); whole-clip RMS if shorter."""
    if audio.size == 0:
        return 0.0
    x = audio.astype(np.float64, copy=False)
    win = max(1, int(sr * window_s))
    if x.size <= win:
        return float(np.sqrt(np.mean(x * x)))
    c = np.concatenate(([0.0], np.cumsum(x * x)))
    hop = max(1, win // 2)
    starts = np.arange(0, x.size - win + 1, hop)
    return float(np.sqrt(np.max(c[starts + win] - c[starts]) / win))


def _span_rms(audio: np.ndarray, start: float, end: float, sr: int = SAMPLE_RATE) -> float:
    i0, i1 = max(0, int(start * sr)), min(audio.size, int(np.ceil(end * sr)))
    if i1 <= i0:
        return 0.0
    x = audio[i0:i1].astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


def speech_only(audio: np.ndarray) -> np.ndarray:
    """The audio with non-speech cut out by Silero VAD (faster-whisper's default options), the
    speech chunks concatenated; the audio unchanged when faster-whisper is not installed."""
    try:
        from faster_whisper.vad import collect_chunks, get_speech_timestamps
    except ImportError:  # pragma: no cover - openai-whisper-only installs
        return audio
    chunks = get_speech_timestamps(audio)
    if not chunks:
        return np.zeros(0, np.float32)
    pieces, _ = collect_chunks(audio, chunks)
    return np.concatenate(pieces).astype(np.float32, copy=False)


def load_audio(path: str | Path, sr: int = SAMPLE_RATE, stream_index: int = 0) -> np.ndarray:
    """Decode the ``stream_index``-th audio stream of a media file with PyAV, resampled to ``sr``
    Hz, channels averaged to mono, float32 in [-1, 1]. A file without an audio stream (or with
    no decodable audio frame) gives an empty array; an unreadable file raises PyAV's error."""
    import av

    with av.open(str(path)) as container:
        streams = container.streams.audio
        if len(streams) <= stream_index:
            return np.zeros(0, dtype=np.float32)
        stream = streams[stream_index]
        # Resample in the source channel layout, then average the channels ourselves: FFmpeg's
        # own stereo->mono downmix sums the channels at -3 dB, which makes correlated stereo
        # louder than either channel and can clip.
        resampler = av.AudioResampler(format="fltp", rate=sr)
        chunks: list[np.ndarray] = []

        def take(frames: Sequence[Any]) -> None:
            for f in frames:
                x = f.to_ndarray()
                chunks.append(x.mean(axis=0) if x.ndim == 2 and x.shape[0] > 1 else x.reshape(-1))

        for frame in container.decode(stream):
            take(resampler.resample(frame))
        take(resampler.resample(None))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.clip(np.concatenate(chunks).astype(np.float32, copy=False), -1.0, 1.0)
