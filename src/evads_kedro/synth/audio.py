"""Audio track: espeak-ng voiceover (Mandarin through tone-number pinyin), seeded music tones."""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from evads_kedro.synth.spec import AdScript, Music, Voiceover

SAMPLE_RATE = 22050  # espeak-ng's native rate
DEFAULT_RATE = {"zh": 110, "en": 130}  # espeak-ng -s (words / pinyin syllables per minute)
VOICE = {"zh": "cmn-latn-pinyin", "en": "en-us"}
MIN_GAP_S = 0.15  # pause forced between a segment that overran its slot and the next one
_SILENCE_THRESHOLD = 0.01  # of full scale, to trim espeak-ng's leading/trailing silence


def require_tool(name: str, debian_package: str) -> str:
    """Path of an executable, or a clear error naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"'{name}' not found on PATH. Install the Debian package '{debian_package}' "
            f"(apt-get install {debian_package})."
        )
    return path


# ---- Mandarin text -> espeak-ng pinyin ---------------------------------------------------------
_DIGITS = "零一二三四五六七八九"
_PUNCT_PAUSE = {"，": ",", "、": ",", "；": ",", "：": ",", ",": ",", ";": ",", ":": ",",
                "。": ".", "！": ".", "？": ".", "!": ".", "?": ".", "…": "."}


def number_to_chinese(n: int) -> str:
    """Spoken Chinese reading of a non-negative integer < 10**12 (``199`` -> ``一百九十九``)."""
    if n == 0:
        return "零"
    if n >= 10**12:
        return "".join(_DIGITS[int(ch)] for ch in str(n))

    def below_10k(x: int) -> str:
        out, zero = "", False
        for unit, p in (("千", 1000), ("百", 100), ("十", 10), ("", 1)):
            q, x = divmod(x, p)
            if q:
                if zero and out:
                    out += "零"
                out += _DIGITS[q] + unit
                zero = False
            else:
                zero = True
        return out

    parts, out = [], ""
    for unit, p in (("亿", 10**8), ("万", 10**4), ("", 1)):
        q, n = divmod(n, p)
        parts.append((q, unit))
    started = False
    for q, unit in parts:
        if q:
            if started and q < 1000:
                out += "零"
            out += below_10k(q) + unit
            started = True
    if out.startswith("一十"):
        out = out[1:]
    return out


def _numbers_to_chinese(text: str) -> str:
    def repl(m: re.Match) -> str:
        whole, _, frac = m.group(0).partition(".")
        s = number_to_chinese(int(whole))
        if frac:
            s += "点" + "".join(_DIGITS[int(ch)] for ch in frac)
        return s

    text = re.sub(r"(\d+(?:\.\d+)?)[%％]", lambda m: "百分之" + m.group(1), text)
    return re.sub(r"\d+(?:\.\d+)?", repl, text)


def to_pinyin(text: str) -> str:
    """Tone-number pinyin that espeak-ng's ``cmn-latn-pinyin`` voice reads as Mandarin."""
    from pypinyin import Style, lazy_pinyin

    items = lazy_pinyin(_numbers_to_chinese(text), style=Style.TONE3, neutral_tone_with_five=True)
    out: list[str] = []
    for item in items:
        if re.fullmatch(r"[a-z]+[1-5]", item):
            out.append(item)
            continue
        # non-Chinese run: keep pauses, pass Latin words through (espeak-ng spells them)
        for tok in re.findall(r"[A-Za-z]+|[^\sA-Za-z0-9]", item):
            if tok[0].isalpha():
                out.append(tok.lower())
            elif tok in _PUNCT_PAUSE and out and out[-1] not in {",", "."}:
                out.append(_PUNCT_PAUSE[tok])
    return " ".join(out).replace(" ,", ",").replace(" .", ".").strip(" ,.")


def spoken_text(v: Voiceover) -> str:
    """The exact string given to espeak-ng for a segment."""
    return to_pinyin(v.text) if v.lang == "zh" else v.text


@lru_cache(maxsize=256)
def synthesize(text: str, lang: str, rate: int) -> np.ndarray:
    """espeak-ng speech as float32 mono at ``SAMPLE_RATE``, leading/trailing silence trimmed."""
    exe = require_tool("espeak-ng", "espeak-ng")
    proc = subprocess.run(
        [exe, "-v", VOICE[lang], "-s", str(rate), "--stdout", "--stdin"],
        input=text.encode("utf-8"), capture_output=True, check=False,
    )
    if proc.returncode != 0 or len(proc.stdout) < 44:
        raise RuntimeError(f"espeak-ng failed for {text!r}: {proc.stderr.decode(errors='replace')}")
    audio = _read_wav_bytes(proc.stdout)
    loud = np.flatnonzero(np.abs(audio) > _SILENCE_THRESHOLD)
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced silence for {text!r}")
    pad = int(0.02 * SAMPLE_RATE)
    return audio[max(0, loud[0] - pad): loud[-1] + pad + 1].copy()


def _read_wav_bytes(data: bytes) -> np.ndarray:
    """Parse espeak-ng's (possibly streaming, size-less) 16-bit mono WAV."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise RuntimeError("espeak-ng returned an unexpected WAV format")
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        rate, raw = SAMPLE_RATE, data[data.find(b"data") + 8:]
    raw = raw[: len(raw) // 2 * 2]
    audio = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        n = int(round(len(audio) * SAMPLE_RATE / rate))
        audio = np.interp(np.linspace(0, len(audio) - 1, n), np.arange(len(audio)), audio).astype(np.float32)
    return audio


# ---- music -----------------------------------------------------------------------------------
def music_tones(m: Music, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A seeded pentatonic melody with a bass note per bar: sine notes with short envelopes."""
    rng = np.random.default_rng(m.seed)
    n = int(round((m.end - m.start) * sr))
    out = np.zeros(n, np.float32)
    beat = 60.0 / m.bpm
    scale = [0, 2, 4, 7, 9, 12, 14, 16]
    root = 57 + int(rng.integers(0, 5))  # MIDI note around A3
    t0, k = 0.0, 0
    while t0 < (m.end - m.start):
        dur = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        note = root + 12 + scale[int(rng.integers(0, len(scale)))]
        _add_note(out, sr, t0, dur * 0.95, note, 0.6)
        if k % 4 == 0:
            _add_note(out, sr, t0, beat * 3.8, root - 12 + scale[int(rng.integers(0, 3))], 0.4)
        t0 += dur
        k += 1
    peak = float(np.max(np.abs(out))) or 1.0
    return out * (m.volume / peak)


def _add_note(buf: np.ndarray, sr: int, start: float, dur: float, midi: int, amp: float) -> None:
    i0 = int(round(start * sr))
    i1 = min(len(buf), i0 + int(round(dur * sr)))
    if i1 <= i0:
        return
    t = np.arange(i1 - i0, dtype=np.float32) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    wave_ = np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t) + 0.1 * np.sin(6 * np.pi * f * t)
    attack = np.minimum(1.0, t / 0.01)
    env = attack * np.exp(-3.0 * t / max(dur, 1e-3))
    fade = np.minimum(1.0, (t[-1] - t) / 0.01 + 1e-3)
    buf[i0:i1] += (amp * wave_ * env * fade).astype(np.float32)


# ---- the whole track -------------------------------------------------------------------------
@dataclass(frozen=True)
class PlacedSegment:
    index: int
    lang: str
    text: str
    spoken: str
    rate: int
    script_start: float
    start: float  # actual, seconds
    end: float  # actual, seconds
    truncated: bool  # cut at the end of the video
    shifted: bool  # started later than scripted because the previous segment overran


def build_audio(script: AdScript, sr: int = SAMPLE_RATE) -> tuple[np.ndarray | None, list[PlacedSegment]]:
    """Mix voiceover and music into one float32 track of exactly ``duration_s``.

    Returns ``(None, [])`` for a script without audio. Segments are placed at their scripted
    start unless the previous one is still speaking (then right after it plus ``MIN_GAP_S``);
    speech running past the end of the video is cut with a 30 ms fade.
    """
    if not script.has_audio:
        return None, []
    n = int(round(script.duration_s * sr))
    track = np.zeros(n, np.float32)
    for m in script.music:
        tones = music_tones(m, sr)
        i0 = int(round(m.start * sr))
        tones = tones[: max(0, n - i0)]
        track[i0: i0 + len(tones)] += tones
    placed: list[PlacedSegment] = []
    prev_end = -math.inf
    for idx, v in enumerate(sorted(script.voiceover, key=lambda v: v.start)):
        rate = v.rate or DEFAULT_RATE[v.lang]
        spoken = spoken_text(v)
        speech = synthesize(spoken, v.lang, rate) * 0.9
        i0 = int(round(v.start * sr))
        shifted = False
        if i0 < prev_end + int(MIN_GAP_S * sr):
            i0, shifted = int(prev_end + int(MIN_GAP_S * sr)), True
        if i0 >= n:
            raise ValueError(f"{script.video_id}: voiceover {v.text!r} pushed past the end of the video")
        i1 = i0 + len(speech)
        truncated = i1 > n
        if truncated:
            speech = speech[: n - i0].copy()
            fade = min(len(speech), int(0.03 * sr))
            speech[len(speech) - fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
            i1 = n
        track[i0:i1] += speech
        prev_end = i1
        placed.append(PlacedSegment(idx, v.lang, v.text, spoken, rate, v.start,
                                    round(i0 / sr, 3), round(i1 / sr, 3), truncated, shifted))
    np.clip(track, -1.0, 1.0, out=track)
    return track, placed


def write_wav(path, audio: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    pcm = np.rint(np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
