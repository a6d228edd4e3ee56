"""Video ingestion cost and accuracy on the synthetic sample ads: decode, OCR, ASR per video.

For every video: probe, decode 1 fps frames (``evads_kedro.video.sample_frames``), OCR the frame
stack (``ocr_frame_stack``, frame reuse on), decode the audio and transcribe it (the ASR
backend), exactly the per-video work of the ingestion nodes, with the backends and parameters
of ``conf/base/parameters_ingestion.yml`` (overridable below). Reports, per stage and overall,
compute seconds per second of video (RTF; < 1 = faster than real time) as wall time and as
process CPU time (all threads), model load times and model sizes, and the accuracy against the
samples' ground truth: OCR caption recall per second (``evads_kedro.ocr_metrics``), ASR word
error rate on English speech and pinyin-syllable overlap on Mandarin (``evads_kedro.asr_metrics``).

    .venv/bin/python benchmarks/ingestion.py [--videos DIR] [--limit N] [--asr-language zh]
                                             [--decode-methods] [--long [DIR]] [--other-asr]

``--videos`` defaults to ``data/01_raw/videos``; when it holds no sample ad, the samples are
rendered into a temp folder first (~40 s). ``--decode-methods`` also times sequential vs seek
decoding of every video. ``--long`` adds the two 40 s samples
(``sample_videos.LONG_SAMPLE_SCRIPTS``); ``--other-asr`` also times the other ASR backend on the
same audio (``asr_rtf_by_backend``). The ASR time is split into VAD, language detection, decode
and guard retry (``asr_split_rtf``), with the segments each guard dropped. Wall times depend on what else runs on the machine: the JSON line
records the load average. Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from evads_kedro.asr_metrics import pinyin_overlap, wer  # noqa: E402
from evads_kedro.backends.asr_audio import load_audio  # noqa: E402
from evads_kedro.backends.ocr_reuse import ocr_frame_stack, stack_options  # noqa: E402
from evads_kedro.executors import limit_threads  # noqa: E402
from evads_kedro.ocr_metrics import recall_report  # noqa: E402
from evads_kedro.pipelines.ingestion.video_helpers import build_backend  # noqa: E402
from evads_kedro.pipelines.ingestion.video_nodes import video_asr_params  # noqa: E402
from evads_kedro.video import probe_video, sample_frames  # noqa: E402


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def _params() -> dict[str, Any]:
    with open(ROOT / "conf/base/parameters_ingestion.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)["ingestion"]


def _videos(folder: Path | None, limit: int | None) -> list[Path]:
    folder = folder or ROOT / "data/01_raw/videos"
    vids = sorted(p for p in folder.glob("*.mp4") if p.with_suffix(".json").is_file())
    if not vids:
        from evads_kedro.sample_videos import generate_sample_videos

        tmp = Path(tempfile.mkdtemp(prefix="evads_bench_samples_"))
        print(f"no sample ads in {folder}: rendering them into {tmp} ...", file=sys.stderr)
        generate_sample_videos(tmp, progress=False)
        vids = sorted(tmp.glob("*.mp4"))
    return vids[:limit] if limit else vids


def _size_mb(paths) -> float:
    return sum(Path(p).stat().st_size for p in paths if Path(p).is_file()) / 1e6


def _model_sizes(asr_p: dict[str, Any], ocr_p: dict[str, Any]) -> dict[str, str]:
    out = {}
    if asr_p.get("model", "packaged:base") == "packaged:base":
        try:
            from evads_kedro.assets import whisper_ct2_dir

            mb = _size_mb(whisper_ct2_dir().glob("*"))
            out["asr"] = (f"Whisper base multilingual (74 M params), {asr_p.get('backend')} "
                          f"{asr_p.get('compute_type', 'int8')}, {mb:.0f} MB on disk")
        except Exception as exc:  # noqa: BLE001
            out["asr"] = f"Whisper base ({exc})"
    else:
        out["asr"] = str(asr_p.get("model"))
    if ocr_p.get("backend", "rapidocr") == "rapidocr":
        import rapidocr_onnxruntime

        mdir = Path(rapidocr_onnxruntime.__file__).parent / "models"
        out["ocr"] = (f"RapidOCR PP-OCRv4 mobile det+rec+cls ONNX, "
                      f"{_size_mb(mdir.glob('*.onnx')):.1f} MB")
    else:
        out["ocr"] = str(ocr_p.get("backend"))
    return out


def _asr_accuracy(gt: dict[str, Any], hyp: str) -> tuple[str, float | None]:
    segs = gt.get("voiceover") or []
    if not segs:
        return "-", None
    ref = " ".join(s["text"] for s in segs)
    if gt.get("language") == "en":
        return "wer", wer(ref, hyp)
    if gt.get("language") == "mixed":  # English words: WER on them; Mandarin: not scored
        en = " ".join(s["text"] for s in segs if s.get("language") == "en")
        words = " ".join(w for w in hyp.split() if w.isascii())
        return "en wer", wer(en, words)
    return "pinyin", pinyin_overlap(ref, hyp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--asr-language", default=None, help="override ingestion.asr.language")
    ap.add_argument("--asr-backend", default=None)
    ap.add_argument("--ocr-backend", default=None)
    ap.add_argument("--decode-methods", action="store_true",
                    help="also time sequential vs seek decoding")
    ap.add_argument("--long", type=Path, nargs="?", const=ROOT / "data/01_raw/long_videos",
                    default=None, metavar="DIR",
                    help="add the two 40 s long samples (rendered into DIR when missing)")
    ap.add_argument("--threads", type=int, default=None, metavar="N",
                    help="run OCR and ASR on N threads each (ocr.threads, asr.cpu_threads and the "
                         "BLAS/OpenMP pools), as one process_pool / dask worker with "
                         "threads_per_worker N; default: the conf (all cores in-process)")
    ap.add_argument("--other-asr", action="store_true",
                    help="also time the other ASR backend on the same audio (ASR only)")
    a = ap.parse_args(argv)

    params = _params()
    asr_p, ocr_p = dict(params["asr"]), dict(params["ocr"])
    if a.asr_language:  # one language for every video (else: sidecar language, as the nodes)
        asr_p["language"] = a.asr_language
        params["sidecar_language"] = False
    if a.asr_backend:
        asr_p["backend"] = a.asr_backend
    if a.ocr_backend:
        ocr_p["backend"] = a.ocr_backend
    if a.threads:
        limit_threads(a.threads)
        ocr_p["threads"], asr_p["cpu_threads"] = a.threads, a.threads
    fps, max_side = float(params["fps"]), params["frame_max_side"]
    videos = _videos(a.videos, a.limit)
    if a.long:
        from evads_kedro.sample_videos import LONG_SAMPLE_SCRIPTS, generate_sample_videos

        generate_sample_videos(a.long, LONG_SAMPLE_SCRIPTS, progress=False)
        videos += sorted(a.long / f"{sc.video_id}.mp4" for sc in LONG_SAMPLE_SCRIPTS)

    with Clock() as load_ocr:
        ocr = build_backend("ocr", ocr_p)
    with Clock() as load_asr:
        asr = build_backend("asr", asr_p)
    # warm-up on a blank frame / second so first-call costs are not charged to the first video
    ocr.read(np.full((64, 64, 3), 255, np.uint8))
    asr.transcribe((0.01 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 1.0)

    rows = []
    for path in videos:
        gt = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        with Clock() as t_probe:
            probe = probe_video(path)
        with Clock() as t_dec:
            stack = sample_frames(path, fps=fps, max_side=max_side,
                                  method=params.get("decode_method", "auto"),
                                  duration_s=probe.duration_s)
        with Clock() as t_ocr:
            texts, ostats = ocr_frame_stack(ocr, stack, **stack_options(ocr_p))
        with Clock() as t_asr:
            audio = load_audio(path)
            vasr = build_backend("asr", video_asr_params({**params, "asr": asr_p}, gt))
            result = vasr.transcribe(audio, probe.duration_s) if audio.size else None
        per_second = result.per_second(probe.duration_s) if result else {}
        meta = result.meta if result else {}
        split = {f"asr_{k}": float(meta.get(f"{k}_s", 0.0)) for k in
                 ("vad", "detect", "decode", "retry")}
        other_s = None
        if a.other_asr and audio.size:
            other_p = {**video_asr_params({**params, "asr": asr_p}, gt),
                       "backend": "openai_whisper" if asr_p.get("backend", "faster_whisper")
                       == "faster_whisper" else "faster_whisper"}
            other = build_backend("asr", other_p)
            if not rows:  # warm-up, as for the main backend
                other.transcribe((0.01 * np.random.default_rng(0).standard_normal(16000)
                                  ).astype(np.float32), 1.0)
            with Clock() as t_other:
                other.transcribe(audio, probe.duration_s)
            other_s = t_other.wall
        truth = {r["t"]: r["captions"] for r in gt["per_second_captions"]}
        predicted = {int(round(t)): list(tx) for t, tx in zip(stack.timestamps, texts,
                                                                strict=True)}
        rec = recall_report(truth, predicted)
        kind, acc = _asr_accuracy(gt, "".join(per_second[s] + " " for s in sorted(per_second)))
        row = {
            "video": path.stem, "video_s": probe.duration_s, "frames": len(stack),
            "method": stack.meta["method"],
            "probe_s": t_probe.wall, "decode_s": t_dec.wall, "ocr_s": t_ocr.wall,
            "asr_s": t_asr.wall, "decode_cpu": t_dec.cpu, "ocr_cpu": t_ocr.cpu,
            "asr_cpu": t_asr.cpu, "ocr_calls": ostats["ocr_calls"],
            "boxes_read": ostats.get("boxes_read", 0), "boxes_reused": ostats.get("boxes_reused", 0),
            "caption_recall": rec["string_recall"], "char_recall": rec["char_recall"],
            "asr_metric": kind, "asr_acc": acc, "lang": gt.get("language"),
            "asr_language": meta.get("language"), "asr_source": meta.get("language_source"),
            "guards": meta.get("guard_counts", {}), "fallbacks": meta.get("fallback_segments", 0),
            "other_asr_s": other_s, **split,
        }
        if a.decode_methods:
            for m in ("sequential", "seek"):
                with Clock() as t:
                    sample_frames(path, fps=fps, max_side=max_side, method=m,
                                  duration_s=probe.duration_s)
                row[f"{m}_s"] = t.wall
        rows.append(row)

    total_s = sum(r["video_s"] for r in rows)

    def rtf(key: str) -> float:
        return sum(r[key] for r in rows) / total_s if total_s else float("nan")

    hdr = (f"{'video':24} {'dur':>5} {'fr':>3} {'method':>10} {'dec s':>6} {'ocr s':>6} "
           f"{'asr s':>6} {'calls':>5} {'cap.rec':>7} {'asr acc':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        acc = "-" if r["asr_acc"] is None else f"{r['asr_metric']} {r['asr_acc']:.2f}"
        print(f"{r['video']:24} {r['video_s']:5.1f} {r['frames']:3d} {r['method']:>10} "
              f"{r['decode_s']:6.2f} {r['ocr_s']:6.2f} {r['asr_s']:6.2f} {r['ocr_calls']:5d} "
              f"{r['caption_recall']:7.3f} {acc:>12}")
    sizes = _model_sizes(asr_p, ocr_p)
    overall = rtf("decode_s") + rtf("ocr_s") + rtf("asr_s")
    overall_cpu = rtf("decode_cpu") + rtf("ocr_cpu") + rtf("asr_cpu")
    print()
    print(f"{'stage':8} {'wall s / video s':>17} {'cpu s / video s':>16}")
    for stage in ("decode", "ocr", "asr"):
        print(f"{stage:8} {rtf(stage + '_s'):17.3f} {rtf(stage + '_cpu'):16.3f}")
    print(f"{'overall':8} {overall:17.3f} {overall_cpu:16.3f}   "
          f"(+ model load: OCR {load_ocr.wall:.1f} s, ASR {load_asr.wall:.1f} s, once per run)")
    print(f"models: ASR = {sizes['asr']}; OCR = {sizes['ocr']}")
    en = [r["asr_acc"] for r in rows if r["asr_metric"] == "wer"]
    zh = [r["asr_acc"] for r in rows if r["asr_metric"] == "pinyin"]
    caps = np.mean([r["caption_recall"] for r in rows]) if rows else float("nan")
    lang = asr_p.get("language") + (" (sidecar language per video)"
                                    if params.get("sidecar_language", True) else "")
    print(f"accuracy: OCR caption recall {caps:.3f} (mean per video); ASR language "
          f"{lang}: English WER {np.mean(en) if en else float('nan'):.3f}, "
          f"Mandarin pinyin overlap {np.mean(zh) if zh else float('nan'):.3f}")
    if a.decode_methods:
        seq, seek = rtf("sequential_s"), rtf("seek_s")
        print(f"decode methods: sequential {seq:.4f}, seek {seek:.4f}, auto {rtf('decode_s'):.4f} "
              "s per video s")
    out = {
        "videos": len(rows), "video_seconds": round(total_s, 2),
        "decode_rtf": round(rtf("decode_s"), 4), "ocr_rtf": round(rtf("ocr_s"), 4),
        "asr_rtf": round(rtf("asr_s"), 4), "overall_rtf": round(overall, 4),
        "decode_cpu_rtf": round(rtf("decode_cpu"), 4), "ocr_cpu_rtf": round(rtf("ocr_cpu"), 4),
        "asr_cpu_rtf": round(rtf("asr_cpu"), 4), "overall_cpu_rtf": round(overall_cpu, 4),
        "ocr_load_s": round(load_ocr.wall, 2), "asr_load_s": round(load_asr.wall, 2),
        "asr_model": sizes["asr"], "ocr_model": sizes["ocr"],
        "asr_backend": asr_p.get("backend"), "asr_language": lang,
        "ocr_backend": ocr_p.get("backend"),
        "ocr_caption_recall": round(float(caps), 4),
        "asr_wer_en": round(float(np.mean(en)), 4) if en else None,
        "asr_pinyin_overlap_zh": round(float(np.mean(zh)), 4) if zh else None,
        "ocr_calls": int(sum(r["ocr_calls"] for r in rows)),
        "frames": int(sum(r["frames"] for r in rows)),
        "cpus": os.cpu_count(), "threads": a.threads or "conf",
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "ocr_boxes_read": int(sum(r["boxes_read"] for r in rows)),
        "ocr_boxes_reused": int(sum(r["boxes_reused"] for r in rows)),
    }
    guards: dict[str, int] = {}
    for r in rows:
        for k, v in r["guards"].items():
            guards[k] = guards.get(k, 0) + v
    out |= {
        "asr_split_rtf": {k: round(rtf(f"asr_{k}"), 4) for k in ("vad", "detect", "decode",
                                                                  "retry")},
        "asr_guard_drops": guards,
        "asr_fallback_segments": int(sum(r["fallbacks"] for r in rows)),
        "asr_languages": {r["video"]: f"{r['asr_language']} ({r['asr_source']})"
                          for r in rows if r["asr_language"]},
        "long_samples": bool(a.long),
    }
    print("ASR split (wall s / video s): " + ", ".join(
        f"{k} {v:.3f}" for k, v in out["asr_split_rtf"].items())
        + f"; guard drops {guards}; fallback segments {out['asr_fallback_segments']}")
    by_backend = {asr_p.get("backend", "faster_whisper"): round(rtf("asr_s"), 4)}
    if a.other_asr:
        spoken = [r for r in rows if r["other_asr_s"] is not None]
        other_name = "openai_whisper" if "faster_whisper" in by_backend else "faster_whisper"
        by_backend[other_name] = round(sum(r["other_asr_s"] for r in spoken) / total_s, 4)
    out["asr_rtf_by_backend"] = by_backend
    print(f"ASR wall s / video s by backend: {by_backend}")
    if a.decode_methods:
        out |= {"sequential_rtf": round(rtf("sequential_s"), 4),
                "seek_rtf": round(rtf("seek_s"), 4)}
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
