"""Frame reuse for OCR: skip reading a frame that looks like the previously read one (hashes
and pixel guards), reusing that frame's texts.

Frame reuse (:func:`ocr_frame_stack`): captions persist for seconds, so a frame that looks like
the previously OCR'd one reuses that frame's result. Checks, all required:

1. a 2048-bit ternary dHash (:func:`frame_hash`: grey 33×32 box-downscale, one bit for "left
   cell brighter than right by > 8 levels", one for "darker by > 8") within ``reuse_hamming``
   bits. The dead zone keeps flat areas stable under noise and re-encoding (a plain dHash flips
   randomly there); the 32×32 grid sees a caption line appear, vanish or change length;
2. text-region guard: every text box of the previously OCR'd frame looks the same in both
   frames (:func:`text_regions_changed`: grey crops scaled to 24 px line height, largest
   3×3-mean absolute difference ≤ 12 grey levels). A gradient hash cannot see a one-glyph
   change such as ``¥99`` → ``¥89`` (0-3 of 2048 bits, less than noise); this guard sees
   60-200 levels (re-encoding/noise: ≤ 8 at JPEG q90, ≤ 16 at q75 on 20 px text);
3. ``reuse_strict`` (default): the cells where the hashes differ changed by noise level only
   (:func:`changed_cells_diff` ≤ 12 levels). Without it, new *unboxed* small text appearing
   on a static frame can hide in the noise floor of the hash (a 28 px word across a dark
   object: 6 bits; a lone 24 px digit: 4-5 bits; JPEG q75 / σ=2-4 noise: up to 8 bits); with
   it such text gives 100+ levels while noise and re-encoding stay ≤ 9.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evads_kedro.backends.ocr import (
    DEFAULT_PARAMS,
    STACK_KEYS,
    KnownText,
    OcrBackend,
    OcrBox,
    _check_frame,
    postprocess_boxes,
)

__all__ = ["changed_cells_diff", "changed_regions", "frame_hash", "hamming", "known_texts", "ocr_frame_stack",
           "region_diff", "stack_options", "text_regions_changed"]

#: frame hash: grid size (bits = 2 × HASH_SIZE²) and dead zone in grey levels
HASH_SIZE = 32
HASH_MARGIN = 8.0
#: text-region guard: crops scaled to this line height, max 3×3-mean abs diff in grey levels
REUSE_TEXT_HEIGHT = 24
REUSE_TEXT_DIFF = 12.0
#: region-limited detection: cell size (px), margin around changed cells (px: the unchanged
#: strokes of a changed line and the detector's context), and the changed fraction of the
#: frame above which the whole frame is detected
REGION_CELL = 8
REGION_MARGIN = 24
REGION_MAX_AREA = 0.5


def _grey(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def frame_hash(frame: np.ndarray, size: int = HASH_SIZE, margin: float = HASH_MARGIN
               ) -> np.ndarray:
    """Ternary difference hash: bool array of 2·size² bits.

    The grey frame is box-downscaled to (size+1)×size cells; for each horizontal neighbour
    pair one bit says "left brighter by > margin", one "left darker by > margin". Flat regions
    give zeros that noise and re-encoding do not flip; edges (text, objects) give stable bits.
    """
    from PIL import Image

    g = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("L")
    cells = np.asarray(g.resize((size + 1, size), Image.Resampling.BOX), dtype=np.float32)
    d = cells[:, :-1] - cells[:, 1:]
    return np.concatenate([(d > margin).ravel(), (d < -margin).ravel()])


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits of two hashes of the same size."""
    return int(np.count_nonzero(np.asarray(a) != np.asarray(b)))


def _box_mean3(a: np.ndarray) -> np.ndarray:
    """3×3 mean (valid part) via cumulative sums."""
    c = np.pad(a, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    s = c[3:, 3:] - c[:-3, 3:] - c[3:, :-3] + c[:-3, :-3]
    return s / 9.0


def region_diff(prev: np.ndarray, cur: np.ndarray, x0: float, y0: float, x1: float, y1: float,
                line_height: int = REUSE_TEXT_HEIGHT) -> float:
    """Largest 3×3-mean absolute grey difference of one text region in two frames of the same
    shape: the region (padded by 15 % of its height) scaled to ``line_height`` px tall. A
    changed glyph gives tens of levels, noise and re-encoding a few; 0.0 for a degenerate
    region."""
    from PIL import Image

    h, w = prev.shape[:2]
    pad = 0.15 * (y1 - y0)
    x0, x1 = max(0, int(x0 - pad)), min(w, int(np.ceil(x1 + pad)))
    y0, y1 = max(0, int(y0 - pad)), min(h, int(np.ceil(y1 + pad)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    scale = line_height / (y1 - y0)
    size = (max(4, int(round((x1 - x0) * scale))), max(4, int(round((y1 - y0) * scale))))
    crops = []
    for f in (prev, cur):
        g = Image.fromarray(np.ascontiguousarray(f[y0:y1, x0:x1])).convert("L")
        crops.append(np.asarray(g.resize(size, Image.Resampling.BOX), dtype=np.float32))
    return float(_box_mean3(np.abs(crops[0] - crops[1])).max())


def text_regions_changed(prev: np.ndarray, cur: np.ndarray, boxes: Sequence[OcrBox],
                         max_diff: float = REUSE_TEXT_DIFF, line_height: int = REUSE_TEXT_HEIGHT
                         ) -> float:
    """Largest local change (grey levels) inside the text boxes of ``prev`` between the two
    frames (:func:`region_diff` per box); ``> max_diff`` means "a caption changed". 0.0
    without boxes, inf for frames of different shapes; stops early once one box exceeds
    ``max_diff``."""
    if prev.shape != cur.shape:
        return float("inf")
    worst = 0.0
    for b in boxes:
        worst = max(worst, region_diff(prev, cur, b.x0, b.y0, b.x1, b.y1, line_height))
        if worst > max_diff:
            break
    return worst


def known_texts(prev: np.ndarray, prev_raw: Sequence[tuple[Any, str, float]], cur: np.ndarray,
                max_diff: float = REUSE_TEXT_DIFF) -> KnownText:
    """Box-level reuse: ``known(quad)`` is the text and score of the box of ``prev`` (one of
    ``prev_raw``, its raw ``(quad, text, score)`` reads) in the same place (every corner within
    max(2 px, 20 % of the box height)) whose region looks the same in ``cur``
    (:func:`region_diff` ≤ ``max_diff``); None otherwise, and always for frames of different
    shapes. A title that stays on screen while the subtitle under it changes is read once."""
    if prev.shape != cur.shape:
        return lambda _quad: None
    quads = [np.asarray(q, np.float32) for q, _, _ in prev_raw]

    def known(quad: np.ndarray) -> tuple[str, float] | None:
        quad = np.asarray(quad, np.float32)
        height = float(quad[:, 1].max() - quad[:, 1].min())
        tol = max(2.0, 0.2 * height)
        for q, (_, text, score) in zip(quads, prev_raw, strict=True):
            if q.shape == quad.shape and float(np.abs(q - quad).max()) <= tol:
                (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _bounds(q), _bounds(quad)
                if region_diff(prev, cur, min(ax0, bx0), min(ay0, by0), max(ax1, bx1),
                               max(ay1, by1)) <= max_diff:
                    return text, float(score)
                return None
        return None

    return known


def changed_cells_diff(prev: np.ndarray, cur: np.ndarray, prev_hash: np.ndarray,
                       cur_hash: np.ndarray, size: int = HASH_SIZE, cell_px: int = 8) -> float:
    """Largest local change (grey levels) in the hash cells whose bits differ.

    The hash says *where* the two frames differ (each differing bit names two neighbouring
    cells); this measures *how much*: both frames are box-scaled to ``cell_px`` pixels per cell,
    and the 3×3-mean absolute difference is maximised over the differing cells and their
    8 neighbours. Noise and re-encoding stay at a few levels; new text (even one small glyph)
    or moving objects give tens. 0.0 when the hashes are equal.
    """
    from PIL import Image

    pairs = (np.asarray(prev_hash) != np.asarray(cur_hash)).reshape(2, size, size).any(0)
    if not pairs.any():
        return 0.0
    cells = np.zeros((size, size + 1), bool)
    cells[:, :-1] |= pairs
    cells[:, 1:] |= pairs
    padded = np.pad(cells, 1)
    grown = np.zeros_like(cells)
    for dy in range(3):
        for dx in range(3):
            grown |= padded[dy:dy + size, dx:dx + size + 1]
    wh = ((size + 1) * cell_px, size * cell_px)
    g = [np.asarray(Image.fromarray(np.asarray(f, dtype=np.uint8)).convert("L")
                    .resize(wh, Image.Resampling.BOX), dtype=np.float32) for f in (prev, cur)]
    local = np.pad(_box_mean3(np.abs(g[0] - g[1])), 1)
    mask = np.repeat(np.repeat(grown, cell_px, 0), cell_px, 1)
    return float(local[mask].max())


def changed_regions(prev: np.ndarray, cur: np.ndarray,
                    prev_raw: Sequence[tuple[Any, str, float]], max_diff: float = REUSE_TEXT_DIFF,
                    cell: int = REGION_CELL, margin: int = REGION_MARGIN,
                    max_area: float = REGION_MAX_AREA) -> list[tuple[int, int, int, int]] | None:
    """Rectangles ``(x0, y0, x1, y1)`` (frame pixels) holding every change from ``prev`` to
    ``cur``: the ``cell``×``cell`` cells whose mean absolute grey difference exceeds
    ``max_diff``, grown by ``margin`` pixels, boxed per connected group, each grown until it
    holds whole every box of ``prev_raw`` it touches (overlapping rectangles merged). Text
    outside them is the same as in ``prev``. ``[]`` when nothing changed; None (detect on
    the whole frame) when the rectangles cover more than ``max_area`` of it or the shapes
    differ."""
    from scipy import ndimage

    if prev.shape != cur.shape:
        return None
    h, w = prev.shape[:2]
    d = np.abs(_grey(prev) - _grey(cur))
    d = np.pad(d, ((0, -h % cell), (0, -w % cell)))
    cells = d.reshape(d.shape[0] // cell, cell, d.shape[1] // cell, cell).mean((1, 3))
    changed = cells > max_diff
    if not changed.any():
        return []
    grown = ndimage.binary_dilation(changed, np.ones((3, 3), bool),
                                    iterations=max(1, -(-margin // cell)))
    labels, _ = ndimage.label(grown)
    rects = [[sl[1].start * cell, sl[0].start * cell, min(w, sl[1].stop * cell),
              min(h, sl[0].stop * cell)] for sl in ndimage.find_objects(labels)]
    boxes = [_bounds(q) for q, _, _ in prev_raw]
    rects = _grow_to_boxes(rects, boxes, w, h)
    if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) > max_area * w * h:
        return None
    return [tuple(r) for r in rects]


def _overlaps(a: Sequence[float], b: Sequence[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grow_to_boxes(rects: list[list[int]], boxes: Sequence[Sequence[float]], w: int, h: int
                   ) -> list[list[int]]:
    """Grow each rectangle over every box it overlaps and merge overlapping rectangles,
    until nothing changes."""
    while True:
        grew = False
        for r in rects:
            for b in boxes:
                if _overlaps(r, b) and not (r[0] <= b[0] and r[1] <= b[1]
                                            and b[2] <= r[2] and b[3] <= r[3]):
                    r[:] = [max(0, min(r[0], int(b[0]))), max(0, min(r[1], int(b[1]))),
                            min(w, max(r[2], int(np.ceil(b[2])))),
                            min(h, max(r[3], int(np.ceil(b[3]))))]
                    grew = True
        merged: list[list[int]] = []
        for r in rects:
            for m in merged:
                if _overlaps(r, m):
                    m[:] = [min(m[0], r[0]), min(m[1], r[1]), max(m[2], r[2]), max(m[3], r[3])]
                    grew = True
                    break
            else:
                merged.append(list(r))
        rects = merged
        if not grew:
            return rects


def _bounds(quad: Any) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of a polygon of (x, y) points."""
    q = np.asarray(quad, np.float32)
    (x0, y0), (x1, y1) = q.min(0), q.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def _outside(quad: Any, rects: Sequence[Sequence[int]]) -> bool:
    box = _bounds(quad)
    return not any(_overlaps(box, r) for r in rects)


def stack_options(ocr_params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keyword arguments of :func:`ocr_frame_stack` from an ``ocr`` parameter block (its
    ``STACK_KEYS``; absent keys take the backend defaults)."""
    p = {**DEFAULT_PARAMS, **{k: v for k, v in (ocr_params or {}).items() if k in STACK_KEYS}}
    return {"reuse_hamming": p["reuse_hamming"], "strict": bool(p["reuse_strict"]),
            "reuse_boxes": bool(p["reuse_boxes"]), "reuse_regions": bool(p["reuse_regions"])}


def ocr_frame_stack(backend: OcrBackend, frames: Any, reuse_hamming: int | None = 8, *,
                    strict: bool = True, text_diff: float = REUSE_TEXT_DIFF,
                    reuse_boxes: bool = True, reuse_regions: bool = False
                    ) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """OCR every frame of ``frames`` (a list of RGB arrays or a ``FrameStack``); per frame the
    box texts in reading order.

    A frame reuses the result of the previously OCR'd frame (the last one actually read, so
    small changes cannot accumulate) when

    1. its :func:`frame_hash` is within ``reuse_hamming`` bits of that frame's hash, and
    2. no text box of that frame changed (:func:`text_regions_changed` ≤ ``text_diff``), and
    3. with ``strict`` (default), every region where the hashes differ changed by noise level
       only (:func:`changed_cells_diff` ≤ ``text_diff``).

    A frame that is read anyway still reuses, with ``reuse_boxes`` and a backend that has
    ``read_reusing`` (RapidOCR), the text of every detected box that :func:`known_texts` finds
    unchanged since the previously read frame: recognition runs only on new boxes. With
    ``reuse_regions`` too (and a backend whose ``supports_regions``), detection runs only inside :func:`changed_regions` of that frame
    (the whole frame when too much changed), and its boxes outside them are kept as they were.

    ``reuse_hamming`` None or < 0 disables both reuses. Stats: ``frames``, ``ocr_calls``,
    ``reused``, ``seconds`` (wall time of the whole call, OCR included), ``guard_rejects``
    (hash within the threshold, but check 2 or 3 said the content changed), ``boxes_read``
    and ``boxes_reused`` (recognised vs taken from the previous frame, in frames read),
    ``det_area`` (frame areas detected: 1.0 per whole-frame detection).
    """
    frames = list(getattr(frames, "frames", frames))
    t0 = time.perf_counter()
    reuse = reuse_hamming is not None and reuse_hamming >= 0
    by_box = reuse and reuse_boxes and hasattr(backend, "read_reusing")
    by_region = by_box and reuse_regions and getattr(backend, "supports_regions", False)
    out: list[tuple[str, ...]] = []
    calls = reused = guard_rejects = boxes_read = boxes_reused = 0
    det_area = 0.0
    # the previously OCR'd frame: (frame, hash, boxes, texts, raw reads or None)
    anchor: tuple[np.ndarray, np.ndarray, list[OcrBox], tuple[str, ...], Any] | None = None
    for frame in frames:
        frame = _check_frame(frame)
        h = frame_hash(frame) if reuse else None
        if reuse and anchor is not None and hamming(h, anchor[1]) <= reuse_hamming:
            if (text_regions_changed(anchor[0], frame, anchor[2], text_diff) <= text_diff
                    and (not strict
                         or changed_cells_diff(anchor[0], frame, anchor[1], h) <= text_diff)):
                out.append(anchor[3])
                reused += 1
                continue
            guard_rejects += 1
        raw = None
        if by_box:
            known = (known_texts(anchor[0], anchor[4], frame, text_diff) if anchor is not None
                     else (lambda _quad: None))
            regions = (changed_regions(anchor[0], frame, anchor[4], text_diff)
                       if by_region and anchor is not None else None)
            raw, n_read = backend.read_reusing(frame, known, regions)
            if regions is None:
                det_area += 1.0
            else:
                det_area += sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in regions
                                ) / (frame.shape[0] * frame.shape[1])
                raw = [r for r in anchor[4] if _outside(r[0], regions)] + raw
            boxes = postprocess_boxes(raw, backend.min_score)
            boxes_read += n_read
            boxes_reused += len(raw) - n_read
        else:
            boxes = backend.read(frame)
            det_area += 1.0
        calls += 1
        texts = tuple(b.text for b in boxes)
        out.append(texts)
        if reuse:
            anchor = (frame, h, boxes, texts, raw)
    stats = {"frames": len(frames), "ocr_calls": calls, "reused": reused,
             "seconds": round(time.perf_counter() - t0, 3), "guard_rejects": guard_rejects,
             "boxes_read": boxes_read, "boxes_reused": boxes_reused,
             "det_area": round(det_area, 3)}
    return out, stats
