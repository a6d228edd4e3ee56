"""Speech recognition backends (faster-whisper, openai-whisper) behind one small interface.

API: ``build_asr(params) -> AsrBackend`` (built once per process per parameter set; the weights
once per backend/model/device); ``backend.transcribe(audio, duration_s) -> AsrResult`` with
``audio`` float32 mono 16 kHz (``asr_audio.load_audio`` decodes any media file with PyAV);
``AsrResult.words: list[AsrWord(start, end, text)]`` and ``AsrResult.per_second(duration_s)``.

Two backends load the same packaged multilingual Whisper *base* weights (``evads_kedro.assets``):

* ``faster_whisper`` (default): CTranslate2 int8 with Silero VAD (``assets.whisper_ct2_dir()``).
* ``openai_whisper``: the reference PyTorch implementation (``assets.whisper_pt_path()``).

The defaults (``faster_whisper``, ``language: auto`` with ``mandarin_prior``, ``fallback:
always``) were chosen by measurement on the sample ads: figures, data and sizes in
``docs/benchmarks.md`` ("Speech recognition"). A forced decode whose every segment a guard
drops is retried once in the detected language.

Parameters (keys of :data:`DEFAULT_PARAMS`; missing keys take these defaults)::

    backend: faster_whisper        # faster_whisper | openai_whisper
    model: packaged:base           # packaged:base | path to a .pt (openai) / CT2 folder (faster)
                                   #   | a model name the library can fetch (needs a hub)
    language: auto                 # auto (Whisper's detection on the speech kept by VAD) |
                                   #   a forced ISO code (zh, en, ...) | a list [zh, en]: the
                                   #   first unless Whisper gives another entry
    language_switch_prob: 0.5      #   a probability >= this (one extra encoder pass per clip;
                                   #   plain argmax fails: espeak Mandarin often scores en > zh)
    mandarin_prior: 0.5            # auto: a detected language below this probability -> zh
                                   #   (the corpus's majority language; 0 = always trust it)
    retry_dropped: true            # a decode whose every segment a guard dropped is retried
                                   #   once in the detected language (or zh) when it differs
    fallback: always               # temperature fallback: always (Whisper's own per-window
                                   #   rule) | on_drop (greedy first, the whole ladder only when
                                   #   a guard dropped a segment; docs/benchmarks.md) | never
    device: auto                   # auto | cpu | cuda | cuda:N  (evads_kedro.devices)
    compute_type: int8             # faster-whisper only: int8 | int8_float16 | float16 | float32
    cpu_threads: 0                 # faster-whisper only: 0 = library default
    beam_size: 1                   # 1 = greedy (beam 5 echoed the prompt more and was slower)
    temperatures: [0.0, 0.2]       # fallback ladder; short so run time cannot blow up
    no_speech_threshold: 0.6       # segment dropped if no_speech_prob > this ...
    logprob_threshold: -1.0        # ... and avg_logprob < this (Whisper's own silence rule)
    compression_ratio_threshold: 2.4  # a segment still above it after the fallbacks is dropped
    vad: true                      # faster-whisper Silero VAD (vad_filter)
    min_rms: 0.003                 # energy gate, both backends (below)
    max_repeats: 4                 # repetition-loop filter and openai-whisper loop stop (below)
    initial_prompt: 以下是普通话的句子。  # biases simplified-Chinese output; used for zh only
    simplify: auto                 # traditional -> simplified with `opencc` when importable
                                   #   (auto) | true (required) | false
    seed: 0                        # RNG seed of the sampled fallbacks (temperature > 0), so the
                                   #   same audio always gives the same text

Guards against Whisper's failure modes:

* silence / near-silence: energy gate before decoding. The clip is skipped when the RMS of its
  loudest 1 s window is below ``min_rms`` (the loudest window rather than the whole clip, so a
  long ad with a short quiet voiceover is not skipped because its average is diluted). Each
  decoded segment whose own time span has RMS below ``min_rms`` is dropped too (text invented
  over a silent stretch);
* music / noise: ``no_speech_threshold`` + ``logprob_threshold`` per segment, and
  faster-whisper's Silero VAD, which removes non-speech before decoding;
* repetition loops: ``condition_on_previous_text=False``; compression-ratio check (Whisper keeps
  the last fallback result even when it still fails the check: we drop it); a filter that drops
  a segment whose text is one n-gram repeated more than ``max_repeats`` times in a row;
* run time: the temperature ladder is the ``temperatures`` parameter (2 steps, not Whisper's 6),
  and openai-whisper's decoder is stopped as soon as its tokens loop (a loop otherwise runs to
  224 tokens at every temperature: 8 s of music took 73 CPU-s, 15 CPU-s with the stop);
* prompt echo: on unclear audio Whisper may copy the initial prompt into the transcript
  (``千万第一是普通话的句子``); runs of >= 4 characters shared with the prompt are removed.

Simplified Chinese: the initial prompt biases the decoder towards simplified characters (without
it Whisper base wrote mostly traditional characters on the sample ads; with it, a few remain,
e.g. ``淺``). A deterministic traditional -> simplified conversion (OpenCC ``t2s``) runs when the
``opencc`` package (a project dependency) is importable; ``simplify: false`` turns it off.

Per-second text (:meth:`AsrResult.per_second`): see its docstring. The rule mirrors the released
E-VAds timelines, whose ASR lines split words mid-word across seconds (``面|料``, ``Shi|ft``,
``3|0万``): their timing is per character.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from evads_kedro.backends.asr_audio import (
    SAMPLE_RATE,
    _span_rms,
    load_audio,
    loudest_window_rms,
    speech_only,
)
from evads_kedro.backends.asr_text import (
    AsrResult,
    AsrWord,
    _join,
    _simplifier,
    _strip_punct,
    is_repetition_loop,
    remove_prompt_echo,
    split_units,
)

__all__ = [
    "DEFAULT_PARAMS",
    "SAMPLE_RATE",
    "AsrBackend",
    "AsrResult",
    "AsrWord",
    "FasterWhisperASR",
    "WhisperASR",
    "build_asr",
    "clear_cache",
    "is_repetition_loop",
    "load_audio",
    "loudest_window_rms",
    "remove_prompt_echo",
    "split_units",
]

log = logging.getLogger(__name__)

PACKAGED_PREFIX = "packaged:"
ZH_PROMPT = "以下是普通话的句子。"
AUTO = "auto"

DEFAULT_PARAMS: dict[str, Any] = {
    "backend": "faster_whisper",
    "model": "packaged:base",
    "language": "auto",
    "language_switch_prob": 0.5,
    "mandarin_prior": 0.5,
    "retry_dropped": True,
    "fallback": "always",
    "device": "auto",
    "compute_type": "int8",
    "cpu_threads": 0,
    "beam_size": 1,
    "temperatures": [0.0, 0.2],
    "no_speech_threshold": 0.6,
    "logprob_threshold": -1.0,
    "compression_ratio_threshold": 2.4,
    "vad": True,
    "min_rms": 0.003,
    "max_repeats": 4,
    "initial_prompt": ZH_PROMPT,
    "simplify": "auto",
    "seed": 0,
}

@runtime_checkable
class AsrBackend(Protocol):
    name: str

    def transcribe(self, audio: np.ndarray, duration_s: float) -> AsrResult:
        """``audio``: float32 mono 16 kHz. Empty or silent audio gives an empty result."""
        ...


# ---------------------------------------------------------------------------------- filters
# ---------------------------------------------------------------------------- common pipeline
@dataclass
class _Segment:
    start: float
    end: float
    text: str
    words: list[AsrWord]
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    temperature: float


def _coerce(params: Mapping[str, Any] | None) -> dict[str, Any]:
    p = dict(DEFAULT_PARAMS)
    for k, v in (params or {}).items():
        if k not in DEFAULT_PARAMS:
            raise ValueError(f"unknown ASR parameter {k!r}; known: {', '.join(DEFAULT_PARAMS)}")
        p[k] = v
    temps = p["temperatures"]
    if isinstance(temps, int | float):
        temps = [temps]
    p["temperatures"] = tuple(float(t) for t in temps)
    if not p["temperatures"]:
        raise ValueError("temperatures must list at least one value (e.g. [0.0])")
    lang = p["language"]
    if isinstance(lang, list | tuple):
        langs = tuple(str(x) for x in lang)
        p["language"] = langs if len(langs) > 1 else (langs[0] if langs else None)
    else:
        p["language"] = AUTO if lang in (None, "", AUTO) else str(lang)
    for k in ("no_speech_threshold", "logprob_threshold", "compression_ratio_threshold"):
        p[k] = None if p[k] is None else float(p[k])
    p["min_rms"] = float(p["min_rms"] or 0.0)
    p["language_switch_prob"] = float(p["language_switch_prob"])
    p["mandarin_prior"] = float(p["mandarin_prior"] or 0.0)
    p["retry_dropped"] = bool(p["retry_dropped"])
    if p["fallback"] not in ("on_drop", "always", "never"):
        raise ValueError(f"fallback must be on_drop, always or never, got {p['fallback']!r}")
    p["beam_size"] = int(p["beam_size"])
    p["max_repeats"] = int(p["max_repeats"])
    p["cpu_threads"] = int(p["cpu_threads"] or 0)
    p["seed"] = int(p["seed"] or 0)
    p["vad"] = bool(p["vad"])
    if p["backend"] not in _BACKENDS:
        raise ValueError(f"unknown ASR backend {p['backend']!r}; use one of {sorted(_BACKENDS)}")
    return p


# guards whose drops a temperature fallback can fix (Whisper's own fallback triggers)
_FALLBACK_REASONS = ("compression_ratio", "repetition", "no_speech")


def _prompt_for(p: Mapping[str, Any], language: str | None) -> str | None:
    """The initial prompt is a Mandarin bias: used when decoding Mandarin only."""
    prompt = p.get("initial_prompt") or None
    return prompt if language == "zh" else None


class _WhisperBase:
    backend = "?"

    def __init__(self, params: Mapping[str, Any] | None = None):
        self.params = _coerce({**(params or {}), "backend": self.backend})
        self.name = f"{self.backend}:{self.params['model']}"
        self._simplify = _simplifier(self.params["simplify"])
        self._lock = threading.Lock()  # one decode at a time per model instance
        self._temps: tuple[float, ...] | None = None  # the ladder of the decode in progress
        lang = self.params["language"]
        self._nominal_language = lang[0] if isinstance(lang, tuple) else (
            None if lang == AUTO else lang)

    # subclasses: (segments, detected_language, extra_meta) decoded in ``language``
    def _decode(self, audio: np.ndarray, language: str
                ) -> tuple[list[_Segment], str | None, dict[str, Any]]:
        raise NotImplementedError

    # subclasses: {language: probability} over all of Whisper's languages (first 30 s of the
    # audio they are given)
    def _language_probs(self, audio: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _speech_language_probs(self, audio: np.ndarray, meta: dict[str, Any]
                               ) -> dict[str, float]:
        """Language probabilities of the speech that VAD keeps (all of the audio when ``vad`` is
        off or VAD keeps under 0.25 s); times in ``meta`` (``vad_s``, ``detect_s``)."""
        speech = audio
        if self.params["vad"]:
            t0 = time.perf_counter()
            speech = speech_only(audio)
            meta["vad_s"] = round(meta.get("vad_s", 0.0) + time.perf_counter() - t0, 3)
            if speech.size < SAMPLE_RATE // 4:
                speech = audio
        t0 = time.perf_counter()
        probs = self._language_probs(speech)
        meta["detect_s"] = round(meta.get("detect_s", 0.0) + time.perf_counter() - t0, 3)
        return probs

    def _detect(self, audio: np.ndarray, meta: dict[str, Any]) -> tuple[str, float]:
        """Whisper's most probable language of the speech (after VAD when ``vad`` is on) and its
        probability; both recorded in ``meta`` (``language_detected``, ``language_probability``)
        with the time taken (``vad_s``, ``detect_s``)."""
        probs = self._speech_language_probs(audio, meta)
        top = max(probs, key=probs.get) if probs else "zh"
        prob = float(probs.get(top, 0.0))
        meta["language_detected"] = top
        meta["language_probability"] = round(prob, 4)
        return top, prob

    def _choose_language(self, audio: np.ndarray, meta: dict[str, Any]) -> str:
        """The decoding language, with ``meta["language_source"]``:

        * ``forced``: a fixed ``language`` (a sidecar's, or the parameter);
        * ``detected``: ``auto``, Whisper's most probable language on the speech after VAD;
        * ``mandarin_prior``: ``auto`` but that probability is below ``mandarin_prior``: zh;
        * ``candidates``: a list: the first unless Whisper gives another candidate a probability
          >= ``language_switch_prob`` (plain argmax is unreliable: espeak Mandarin scores higher
          as English than as Chinese on some clips).
        """
        lang = self.params["language"]
        if lang == AUTO:
            top, prob = self._detect(audio, meta)
            if top != "zh" and prob < self.params["mandarin_prior"]:
                meta["language_source"] = "mandarin_prior"
                return "zh"
            meta["language_source"] = "detected"
            return top
        if not isinstance(lang, tuple):
            meta["language_source"] = "forced"
            return lang
        meta["language_source"] = "candidates"
        probs = self._speech_language_probs(audio, meta)
        meta["language_candidates"] = {c: round(probs.get(c, 0.0), 4) for c in lang}
        other = max(lang[1:], key=lambda c: probs.get(c, 0.0))
        if probs.get(other, 0.0) >= self.params["language_switch_prob"]:
            return other
        return lang[0]

    def _retry_language(self, audio: np.ndarray, used: str, meta: dict[str, Any]) -> str | None:
        """The language to retry in after every segment of a decode in ``used`` was dropped:
        the detected one when it differs (detected now if the language was forced), else zh
        when the detected language was decoded. None: nothing different to try."""
        if "language_detected" not in meta:
            self._detect(audio, meta)
        detected = meta["language_detected"]
        if detected != used:
            return detected
        return "zh" if used != "zh" else None

    def _decode_kept(self, audio: np.ndarray, language: str, duration_s: float,
                     meta: dict[str, Any]) -> tuple[list[_Segment], list[dict[str, Any]]]:
        """Decode in ``language`` and apply the guards: (kept segments, dropped segments with
        their reason). ``fallback: on_drop``: greedy first, and the whole temperature ladder
        only when a guard dropped a segment (its result kept when it keeps at least as much
        text). Timings add up in ``meta`` (``decode_s``, ``fallback_s``)."""
        temps = self.params["temperatures"]
        if self.params["fallback"] == "always" or len(temps) == 1:
            return self._decode_guarded(audio, language, temps, meta)
        kept, dropped = self._decode_guarded(audio, language, temps[:1], meta)
        if self.params["fallback"] == "never" or not any(
                d["reason"] in _FALLBACK_REASONS for d in dropped):
            return kept, dropped
        t0 = time.perf_counter()
        kept2, dropped2 = self._decode_guarded(audio, language, temps, meta)
        meta["fallback_s"] = round(meta.get("fallback_s", 0.0) + time.perf_counter() - t0, 3)
        meta["fallback_redecodes"] = meta.get("fallback_redecodes", 0) + 1
        size = sum(len(_strip_punct(x.text)) for x in kept)
        if sum(len(_strip_punct(x.text)) for x in kept2) >= size:
            return kept2, dropped2
        return kept, dropped

    def _decode_guarded(self, audio: np.ndarray, language: str, temps: tuple[float, ...],
                        meta: dict[str, Any]) -> tuple[list[_Segment], list[dict[str, Any]]]:
        t0 = time.perf_counter()
        self._temps = temps
        try:
            segments, _, extra = self._decode(audio, language)
        finally:
            self._temps = None
        meta["decode_s"] = round(meta.get("decode_s", 0.0) + time.perf_counter() - t0, 3)
        meta.update(extra)
        kept, dropped = [], []
        prompt = _prompt_for(self.params, language)
        echo = 0
        for seg in segments:
            if not seg.words:
                seg.words = _even_words(seg)
            if prompt:
                seg.words, n = remove_prompt_echo(seg.words, prompt)
                if n:
                    echo += n
                    seg.text = "".join(w.text for w in seg.words)
            if seg.temperature > 0:
                meta["fallback_segments"] = meta.get("fallback_segments", 0) + 1
            reason = self._reject(seg, audio)
            if reason:
                dropped.append({"start": round(seg.start, 2), "end": round(seg.end, 2),
                                "text": seg.text, "reason": reason, "language": language})
                continue
            kept.append(seg)
        if echo:  # of the decode whose result is used: the last one that kept its result
            meta["prompt_echo_chars"] = echo
        else:
            meta.pop("prompt_echo_chars", None)
        return kept, dropped

    def transcribe(self, audio: np.ndarray, duration_s: float | None = None) -> AsrResult:
        """Transcribe one clip. ``meta`` records the language (``language_source``,
        ``language_detected``, ``language_probability``), time per step (``vad_s``,
        ``detect_s``, ``decode_s``, ``retry_s``), every dropped segment with the guard that
        dropped it, ``guard_counts`` and, when every segment was dropped, ``all_dropped``."""
        p = self.params
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if duration_s is None:
            duration_s = audio.size / SAMPLE_RATE
        meta: dict[str, Any] = {
            "backend": self.name,
            "audio_s": round(audio.size / SAMPLE_RATE, 3),
            "duration_s": float(duration_s),
            "dropped": [],
        }
        if audio.size == 0:
            return AsrResult([], self._nominal_language, "", {**meta, "skipped": "no_audio"})
        peak = loudest_window_rms(audio)
        meta["loudest_rms"] = round(peak, 5)
        if peak < p["min_rms"]:
            return AsrResult([], self._nominal_language, "", {**meta, "skipped": "silent"})
        t0 = time.perf_counter()
        with self._lock:
            forced = self._choose_language(audio, meta)
            kept, dropped = self._decode_kept(audio, forced, duration_s, meta)
            if not kept and dropped and p["retry_dropped"]:
                t_retry = time.perf_counter()
                alt = self._retry_language(audio, forced, meta)
                if alt:
                    kept2, dropped2 = self._decode_kept(audio, alt, duration_s, meta)
                    meta["retried_in"] = alt
                    if kept2:
                        kept = kept2
                        meta["language_source"] = "retry"
                        forced = alt
                    dropped += dropped2
                meta["retry_s"] = round(time.perf_counter() - t_retry, 3)
        elapsed = time.perf_counter() - t0
        meta["dropped"] = dropped
        meta["asr_s"] = round(elapsed, 3)
        meta["rtf"] = round(elapsed / max(audio.size / SAMPLE_RATE, 1e-6), 4)
        counts: dict[str, int] = {}
        for d in dropped:
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
        meta["guard_counts"] = counts
        if dropped and not kept:
            meta["all_dropped"] = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        if dropped:
            log.debug("ASR dropped %d segment(s): %s", len(dropped), dropped)
        words: list[AsrWord] = []
        for seg in kept:
            for w in seg.words:
                text = self._simplify(w.text) if self._simplify else w.text
                text = text.strip()
                if not text:
                    continue
                s = min(max(0.0, w.start), duration_s)
                e = min(max(s, w.end), duration_s)
                words.append(AsrWord(round(s, 3), round(e, 3), text))
        text = _join(w.text for w in words)
        meta["n_segments"] = len(kept)
        meta["language"] = forced
        return AsrResult(words, forced, text, meta)

    def _reject(self, seg: _Segment, audio: np.ndarray) -> str | None:
        p = self.params
        if not _strip_punct(seg.text):
            return "empty"
        if (p["no_speech_threshold"] is not None and p["logprob_threshold"] is not None
                and seg.no_speech_prob > p["no_speech_threshold"]
                and seg.avg_logprob < p["logprob_threshold"]):
            return "no_speech"
        if (p["compression_ratio_threshold"] is not None
                and seg.compression_ratio > p["compression_ratio_threshold"]):
            return "compression_ratio"
        if is_repetition_loop(seg.text, p["max_repeats"]):
            return "repetition"
        if p["min_rms"] > 0 and _span_rms(audio, seg.start, seg.end) < p["min_rms"]:
            return "silent_span"
        return None


def _even_words(seg: _Segment) -> list[AsrWord]:
    """Fallback when a segment has no word timings: its units spread evenly over its span."""
    return split_units(AsrWord(seg.start, seg.end, seg.text))


def _split_device(device: str) -> tuple[str, int]:
    if device.startswith("cuda"):
        _, _, idx = device.partition(":")
        return "cuda", int(idx or 0)
    return device, 0


def _is_packaged(model: str) -> str | None:
    model = str(model)
    if not model.startswith(PACKAGED_PREFIX):
        return None
    size = model[len(PACKAGED_PREFIX):]
    if size != "base":
        raise ValueError(f"only packaged:base ships offline, got {model!r}")
    return size


# ----------------------------------------------------------------------------- openai-whisper
class WhisperASR(_WhisperBase):
    """openai-whisper (PyTorch). ``model``: ``packaged:base`` (the converted packaged checkpoint,
    with its alignment heads), a ``.pt`` path, or an openai-whisper model name."""

    backend = "openai_whisper"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        from evads_kedro.devices import resolve_device

        self.device = resolve_device(self.params["device"])
        self.model = _load_model(("openai_whisper", str(self.params["model"]), self.device))

    def _language_probs(self, audio):
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels)
        _, probs = self.model.detect_language(mel.to(self.model.device))
        return dict(probs)

    def _decode(self, audio, language):
        import torch

        p = self.params
        _install_openai_loop_stop()
        _LOOP_STOP.max_repeats = p["max_repeats"]
        with torch.random.fork_rng(devices=[]):  # seeded sampling; global RNG state kept
            torch.manual_seed(p["seed"])
            try:
                out = self._run(audio, language)
            finally:
                _LOOP_STOP.max_repeats = 0
        segments = [
            _Segment(
                float(s["start"]), float(s["end"]), s["text"].strip(),
                [AsrWord(float(w["start"]), float(w["end"]), w["word"])
                 for w in s.get("words", [])],
                float(s["avg_logprob"]), float(s["no_speech_prob"]),
                float(s["compression_ratio"]), float(s["temperature"]),
            )
            for s in out["segments"]
        ]
        return segments, out.get("language"), {}

    def _run(self, audio, language):
        import whisper

        p = self.params
        return whisper.transcribe(
            self.model,
            audio,
            verbose=None,
            temperature=self._temps or p["temperatures"],
            compression_ratio_threshold=p["compression_ratio_threshold"],
            logprob_threshold=p["logprob_threshold"],
            no_speech_threshold=p["no_speech_threshold"],
            condition_on_previous_text=False,
            initial_prompt=_prompt_for(p, language),
            word_timestamps=True,
            language=language,
            task="transcribe",
            beam_size=p["beam_size"] if p["beam_size"] > 1 else None,
            best_of=None,
            fp16=self.device.startswith("cuda"),
        )


_LOOP_STOP = threading.local()  # .max_repeats while one of our openai-whisper decodes runs


def _token_loop(seq: Sequence[int], max_repeats: int, max_n: int = 12) -> bool:
    """True if ``seq`` ends with some n-gram (n <= ``max_n``) repeated > ``max_repeats`` times."""
    for n in range(1, max_n + 1):
        need = n * (max_repeats + 1)
        if len(seq) < need:
            break
        block = list(seq[-need:])
        if all(block[k * n:(k + 1) * n] == block[:n] for k in range(1, max_repeats + 1)):
            return True
    return False


def _install_openai_loop_stop() -> None:
    """Make openai-whisper end a hypothesis (force end-of-text) as soon as its tail repeats one
    n-gram of tokens more than ``max_repeats`` times. Without it, a loop on music or unclear
    speech runs to the 224-token limit at every fallback temperature (measured: ~50 CPU-s per
    30 s window on 2 cores). The truncated loop is then dropped by the repetition filter.

    Installed once per process as a subclass of ``whisper.decoding.DecodingTask``; the filter is
    active only inside this module's decodes (thread-local), so other openai-whisper users in the
    process are unaffected.
    """
    import whisper.decoding as wd

    if getattr(wd.DecodingTask, "_evads_loop_stop", False):
        return

    class _LoopStop(wd.LogitFilter):
        def __init__(self, tokenizer, sample_begin: int, max_repeats: int):
            self.eot = tokenizer.eot
            self.timestamp_begin = tokenizer.timestamp_begin
            self.sample_begin = sample_begin
            self.max_repeats = max_repeats

        def apply(self, logits, tokens) -> None:
            for i in range(tokens.shape[0]):
                seq = [t for t in tokens[i, self.sample_begin:].tolist()
                       if t < self.timestamp_begin]
                if _token_loop(seq, self.max_repeats):
                    logits[i, :] = -np.inf
                    logits[i, self.eot] = 0.0

    base = wd.DecodingTask

    class _Task(base):  # type: ignore[misc, valid-type]
        _evads_loop_stop = True

        def __init__(self, model, options):
            super().__init__(model, options)
            max_repeats = getattr(_LOOP_STOP, "max_repeats", 0)
            if max_repeats > 0:
                self.logit_filters.append(
                    _LoopStop(self.tokenizer, self.sample_begin, max_repeats))

    wd.DecodingTask = _Task


def _load_openai(model: str, device: str):
    import torch
    import whisper

    if _is_packaged(model):
        from evads_kedro import assets

        return assets.load_openai_whisper(device)
    m = whisper.load_model(model, device=device)
    if Path(model).is_file():  # a converted checkpoint may carry its alignment heads
        heads = torch.load(model, map_location="cpu", weights_only=True, mmap=True).get(
            "alignment_heads")
        if heads is not None:
            m.set_alignment_heads(heads)
    return m


# ------------------------------------------------------------------------------ faster-whisper
class FasterWhisperASR(_WhisperBase):
    """faster-whisper (CTranslate2). ``model``: ``packaged:base`` (the joined packaged folder),
    a CTranslate2 model folder, or a faster-whisper model name."""

    backend = "faster_whisper"

    def __init__(self, params: Mapping[str, Any] | None = None):
        super().__init__(params)
        from evads_kedro.devices import resolve_device

        self.device = resolve_device(self.params["device"])
        p = self.params
        self.model = _load_model(("faster_whisper", str(p["model"]), self.device,
                                  str(p["compute_type"]), p["cpu_threads"]))

    def _language_probs(self, audio):
        _, _, probs = self.model.detect_language(audio=audio, vad_filter=False)
        return dict(probs)

    def _decode(self, audio, language):
        import ctranslate2

        p = self.params
        ctranslate2.set_random_seed(p["seed"])
        seg_iter, info = self.model.transcribe(
            audio,
            language=language,
            task="transcribe",
            beam_size=p["beam_size"],
            best_of=1,
            temperature=list(self._temps or p["temperatures"]),
            compression_ratio_threshold=p["compression_ratio_threshold"],
            log_prob_threshold=p["logprob_threshold"],
            no_speech_threshold=p["no_speech_threshold"],
            condition_on_previous_text=False,
            initial_prompt=_prompt_for(p, language),
            word_timestamps=True,
            vad_filter=p["vad"],
        )
        segments = [
            _Segment(
                float(s.start), float(s.end), s.text.strip(),
                [AsrWord(float(w.start), float(w.end), w.word) for w in (s.words or [])],
                float(s.avg_logprob), float(s.no_speech_prob),
                float(s.compression_ratio), float(s.temperature),
            )
            for s in seg_iter  # a generator: decoding happens here
        ]
        extra = {}
        if p["vad"] and getattr(info, "duration_after_vad", None) is not None:
            extra["speech_s_after_vad"] = round(float(info.duration_after_vad), 3)
        return segments, info.language, extra


def _load_faster(model: str, device: str, compute_type: str, cpu_threads: int):
    from faster_whisper import WhisperModel

    if _is_packaged(model):
        from evads_kedro import assets

        model = str(assets.whisper_ct2_dir())
    dev, index = _split_device(device)
    return WhisperModel(model, device=dev, device_index=index, compute_type=compute_type,
                        cpu_threads=cpu_threads)


# ------------------------------------------------------------------------------------- caches
_BACKENDS: dict[str, type[_WhisperBase]] = {
    "faster_whisper": FasterWhisperASR,
    "openai_whisper": WhisperASR,
}
_MODELS: dict[tuple, Any] = {}
_BACKEND_CACHE: dict[str, AsrBackend] = {}
_CACHE_LOCK = threading.RLock()


def _load_model(key: tuple):
    """Model weights loaded once per process per (backend, model, device, ...): backends that
    differ only in decoding options share them."""
    with _CACHE_LOCK:
        if key not in _MODELS:
            t0 = time.perf_counter()
            _MODELS[key] = _load_openai(*key[1:]) if key[0] == "openai_whisper" else \
                _load_faster(*key[1:])
            log.info("loaded ASR model %s in %.1f s", key, time.perf_counter() - t0)
        return _MODELS[key]


def build_asr(params: Mapping[str, Any] | None = None) -> AsrBackend:
    """The ASR backend for ``params`` (keys of :data:`DEFAULT_PARAMS`; missing keys take the
    defaults). Built once per process per distinct parameter set."""
    p = _coerce(params)
    key = json.dumps(p, sort_keys=True, default=str)
    with _CACHE_LOCK:
        if key not in _BACKEND_CACHE:
            _BACKEND_CACHE[key] = _BACKENDS[p["backend"]](p)
        return _BACKEND_CACHE[key]


def clear_cache() -> None:
    """Forget every built backend and loaded model (tests, memory)."""
    with _CACHE_LOCK:
        _BACKEND_CACHE.clear()
        _MODELS.clear()
