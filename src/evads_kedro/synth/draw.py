"""Pillow drawing: backgrounds, seeded random images, product shapes, caption plates, frames."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evads_kedro.synth.spec import CAPTION_POSITIONS, AdScript, Caption, Color, Scene, Shape

DEFAULT_FONT_PATH = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc")
DEFAULT_FONT_INDEX = 2  # Simplified Chinese face of the Noto CJK collection (index 0 is Japanese)
MIN_FONT_SIZE = 18
CAPTION_MARGIN = 10  # px kept free at the left/right frame edge


@lru_cache(maxsize=64)
def load_font(size: int, font_path: str | Path = DEFAULT_FONT_PATH, index: int = DEFAULT_FONT_INDEX):
    """Load a TrueType collection face; clear error naming the Debian package if missing."""
    path = Path(font_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CJK font not found at {path}. Install the Debian package 'fonts-noto-cjk' "
            "(apt-get install fonts-noto-cjk) or pass font_path= to a font with Simplified Chinese glyphs."
        )
    return ImageFont.truetype(str(path), size=size, index=index)


def shade(c: Color, f: float) -> Color:
    """Darken (f < 1) or lighten (f > 1, towards white) a colour."""
    if f <= 1:
        return tuple(int(round(v * f)) for v in c)  # type: ignore[return-value]
    return tuple(int(round(v + (255 - v) * (f - 1))) for v in c)  # type: ignore[return-value]


# ---- backgrounds -----------------------------------------------------------------------------
def gradient(w: int, h: int, top: Color, bottom: Color | None) -> Image.Image:
    if bottom is None or tuple(bottom) == tuple(top):
        return Image.new("RGB", (w, h), tuple(top))
    a = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    arr = (1 - a) * np.asarray(top, np.float32) + a * np.asarray(bottom, np.float32)
    arr = np.broadcast_to(np.rint(arr).astype(np.uint8), (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(arr))


@lru_cache(maxsize=32)
def random_image(seed: int, w: int, h: int) -> Image.Image:
    """A seeded, text-free 'photo': smooth colour field plus random blobs and bars.

    Different seeds give unrelated images (own palette and layout); the same seed gives the
    same pixels. Wide images (for pans) keep a roughly constant feature density.
    """
    rng = np.random.default_rng(seed)
    gh = int(rng.integers(3, 7))
    gw = max(2, int(round(gh * w / h)) + int(rng.integers(0, 2)))
    base_hue = rng.uniform(0, 1)
    grid = np.empty((gh, gw, 3), np.float32)
    for y in range(gh):
        for x in range(gw):
            hue = (base_hue + rng.normal(0, 0.12)) % 1.0
            grid[y, x] = _hsv(hue, rng.uniform(0.3, 0.9), rng.uniform(0.35, 1.0))
    img = Image.fromarray(np.rint(grid * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(img)
    n_blobs = int(rng.integers(4, 8) * max(1.0, w / h * 1.6))
    for _ in range(n_blobs):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.05, 0.22) * min(w, h) * 1.6
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        box = (cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r * rng.uniform(0.5, 1.5))
        if kind == 0:
            d.ellipse(box, fill=col)
        elif kind == 1:
            d.rectangle(box, fill=col)
        else:
            pts = [(cx + r * math.cos(a), cy + r * math.sin(a))
                   for a in np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 7))))]
            d.polygon(pts, fill=col)
    return img


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def scene_background(scene: Scene, w: int, h: int) -> Image.Image:
    """Background canvas of a scene; wider than the frame when the scene pans."""
    extra = int(math.ceil(abs(scene.pan_px_per_s) * (scene.end - scene.start))) + 1 if scene.pan_px_per_s else 0
    if scene.image_seed is not None:
        return random_image(int(scene.image_seed), w + extra, h)
    return gradient(w + extra, h, scene.background, scene.background2)


# ---- product shapes --------------------------------------------------------------------------
def draw_shape(d: ImageDraw.ImageDraw, s: Shape, cx: float, cy: float) -> None:
    """Draw ``s`` centred at ``(cx, cy)``. Pure geometry, no glyphs."""
    w, h = s.w, s.h
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    col, acc, dark = tuple(s.color), tuple(s.accent), shade(s.color, 0.65)
    r = max(2, int(min(w, h) * 0.12))
    k = s.kind
    if k == "bottle":
        neck_w = w * 0.36
        d.rounded_rectangle((x0, y0 + h * 0.28, x1, y1), radius=r * 2, fill=col, outline=dark, width=2)
        d.rectangle((cx - neck_w / 2, y0 + h * 0.1, cx + neck_w / 2, y0 + h * 0.3), fill=col)
        d.rectangle((cx - neck_w / 2 - 2, y0, cx + neck_w / 2 + 2, y0 + h * 0.12), fill=acc)
        d.rectangle((x0 + 4, y0 + h * 0.5, x1 - 4, y0 + h * 0.75), fill=acc)
    elif k == "jar":
        d.rounded_rectangle((x0, y0 + h * 0.18, x1, y1), radius=r, fill=col, outline=dark, width=2)
        d.rounded_rectangle((x0 - 3, y0, x1 + 3, y0 + h * 0.2), radius=r // 2 + 1, fill=acc)
        d.ellipse((cx - w * 0.25, y0 + h * 0.45, cx + w * 0.25, y0 + h * 0.8), fill=shade(col, 1.4))
    elif k == "tube":
        d.polygon([(x0, y0), (x1, y0), (cx + w * 0.3, y1 - h * 0.12), (cx - w * 0.3, y1 - h * 0.12)], fill=col)
        d.rectangle((cx - w * 0.3, y1 - h * 0.12, cx + w * 0.3, y1), fill=acc)
        d.line([(x0, y0 + 3), (x1, y0 + 3)], fill=dark, width=5)
    elif k == "box":
        depth = min(w, h) * 0.18
        d.polygon([(x0, y0 + depth), (x0 + depth, y0), (x1, y0), (x1 - depth, y0 + depth)], fill=shade(col, 1.3))
        d.polygon([(x1 - depth, y0 + depth), (x1, y0), (x1, y1 - depth), (x1 - depth, y1)], fill=dark)
        d.rectangle((x0, y0 + depth, x1 - depth, y1), fill=col)
        d.rectangle((x0 + (w - depth) * 0.42, y0 + depth, x0 + (w - depth) * 0.58, y1), fill=acc)
    elif k == "garment":
        d.polygon([
            (cx - w * 0.18, y0), (cx + w * 0.18, y0), (x1, y0 + h * 0.18), (x1 - w * 0.12, y0 + h * 0.38),
            (cx + w * 0.3, y0 + h * 0.3), (cx + w * 0.3, y1), (cx - w * 0.3, y1), (cx - w * 0.3, y0 + h * 0.3),
            (x0 + w * 0.12, y0 + h * 0.38), (x0, y0 + h * 0.18)], fill=col, outline=dark)
        d.chord((cx - w * 0.18, y0 - h * 0.1, cx + w * 0.18, y0 + h * 0.12), 0, 180, fill=acc)
        d.rectangle((cx - w * 0.3, y1 - h * 0.1, cx + w * 0.3, y1), fill=dark)
    elif k == "bag":
        d.arc((cx - w * 0.3, y0, cx + w * 0.3, y0 + h * 0.6), 180, 360, fill=dark, width=max(3, int(w * 0.06)))
        d.rounded_rectangle((x0, y0 + h * 0.3, x1, y1), radius=r, fill=col, outline=dark, width=2)
        d.rectangle((x0, y0 + h * 0.45, x1, y0 + h * 0.52), fill=acc)
    elif k == "phone":
        d.rounded_rectangle((x0, y0, x1, y1), radius=r * 2, fill=(30, 30, 35))
        d.rounded_rectangle((x0 + w * 0.07, y0 + h * 0.06, x1 - w * 0.07, y1 - h * 0.06), radius=r, fill=col)
        d.ellipse((cx - w * 0.2, cy - w * 0.2, cx + w * 0.2, cy + w * 0.2), fill=acc)
    elif k == "can":
        eh = h * 0.12
        d.rectangle((x0, y0 + eh / 2, x1, y1 - eh / 2), fill=col)
        d.ellipse((x0, y1 - eh, x1, y1), fill=col)
        d.ellipse((x0, y0, x1, y0 + eh), fill=shade(col, 1.4), outline=dark)
        d.rectangle((x0, cy - h * 0.12, x1, cy + h * 0.12), fill=acc)
    elif k == "circle":
        d.ellipse((x0, y0, x1, y1), fill=col, outline=dark, width=2)
        d.ellipse((cx - w * 0.3, y0 + h * 0.12, cx - w * 0.05, y0 + h * 0.32), fill=shade(col, 1.5))
    elif k == "shoe":
        d.polygon([(x0, y1 - h * 0.2), (x0 + w * 0.1, y0 + h * 0.2), (cx - w * 0.05, y0),
                   (cx + w * 0.1, y0 + h * 0.35), (x1, y0 + h * 0.55), (x1, y1 - h * 0.2)], fill=col, outline=dark)
        d.rectangle((x0, y1 - h * 0.22, x1, y1), fill=acc)
    elif k == "bowl":
        d.chord((x0, y0 - h * 0.6, x1, y1), 0, 180, fill=col, outline=dark, width=2)
        d.ellipse((x0, y0 + h * 0.05, x1, y0 + h * 0.35), fill=acc)
    elif k == "star":
        pts = []
        for j in range(32):
            rad = (0.5 if j % 2 == 0 else 0.43) * min(w, h)
            a = math.pi * j / 16
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        d.polygon(pts, fill=col)
        d.ellipse((cx - w * 0.25, cy - h * 0.25, cx + w * 0.25, cy + h * 0.25), fill=acc)
    elif k == "pillow":
        d.rounded_rectangle((x0, y0, x1, y1), radius=int(min(w, h) * 0.35), fill=col, outline=dark, width=3)
        d.line([(x0 + w * 0.15, cy), (x1 - w * 0.15, cy)], fill=acc, width=4)
    elif k == "appliance":
        d.rounded_rectangle((x0, y0, x1, y1), radius=r, fill=col, outline=dark, width=3)
        d.rounded_rectangle((x0 + w * 0.12, y0 + h * 0.35, x1 - w * 0.12, y1 - h * 0.1), radius=r, fill=dark)
        d.rectangle((x0 + w * 0.3, y0 + h * 0.1, x1 - w * 0.3, y0 + h * 0.22), fill=acc)
        d.ellipse((x1 - w * 0.22, y0 + h * 0.1, x1 - w * 0.1, y0 + h * 0.22), fill=acc)
    else:  # pragma: no cover - validated in AdScript.validate
        raise ValueError(f"unknown shape kind {k!r}")


# ---- captions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionLayer:
    image: Image.Image  # RGBA plate
    x: int
    y: int
    font_size: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.x + self.image.width, self.y + self.image.height)


def render_caption(c: Caption, frame_w: int, frame_h: int, font_path=DEFAULT_FONT_PATH,
                   font_index: int = DEFAULT_FONT_INDEX) -> CaptionLayer:
    """Pre-render a caption plate, shrinking the font until the line fits the frame width."""
    size = int(c.size)
    stroke = 0 if c.box is not None else max(2, size // 14)
    pad_x, pad_y = (max(6, size // 4), max(4, size // 6)) if c.box is not None else (stroke, stroke)
    while True:
        font = load_font(size, str(font_path), font_index)
        left, top, right, bottom = font.getbbox(c.text, stroke_width=stroke)
        if right - left + 2 * pad_x <= frame_w - 2 * CAPTION_MARGIN or size <= MIN_FONT_SIZE:
            break
        size -= 2
    tw, th = right - left, bottom - top
    pw, ph = tw + 2 * pad_x, th + 2 * pad_y
    if pw > frame_w - 2 * CAPTION_MARGIN:
        raise ValueError(f"caption {c.text!r} does not fit in {frame_w}px even at {size}px: shorten it")
    img = Image.new("RGBA", (pw, ph), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    if c.box is not None:
        d.rounded_rectangle((0, 0, pw - 1, ph - 1), radius=max(3, ph // 6), fill=(*c.box, 255))
    d.text((pad_x - left, pad_y - top), c.text, font=font, fill=(*c.color, 255),
           stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
    if isinstance(c.position, str):
        fx, fy = 0.5, CAPTION_POSITIONS[c.position]
    else:
        fx, fy = c.position
    x = int(round(fx * frame_w - pw / 2))
    y = int(round(fy * frame_h - ph / 2))
    x = min(max(x, 0), frame_w - pw)
    y = min(max(y, 0), frame_h - ph)
    return CaptionLayer(img, x, y, size)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# ---- frames ----------------------------------------------------------------------------------
class FrameRenderer:
    """Renders the frames of a script in order, reusing work across frames of static scenes."""

    def __init__(self, script: AdScript, font_path=DEFAULT_FONT_PATH, font_index: int = DEFAULT_FONT_INDEX):
        self.s = script
        self.layers = [render_caption(c, script.width, script.height, font_path, font_index)
                       for c in script.captions]
        self.ranges = script.scene_frame_ranges()
        self.cap_ranges = [(script.frame_at(c.start), script.frame_at(c.end)) for c in script.captions]
        self._check_overlaps()

    def _check_overlaps(self) -> None:
        caps = self.s.captions
        for i in range(len(caps)):
            for j in range(i + 1, len(caps)):
                (a0, a1), (b0, b1) = self.cap_ranges[i], self.cap_ranges[j]
                if a0 < b1 and b0 < a1 and _overlap(self.layers[i].box, self.layers[j].box):
                    raise ValueError(f"{self.s.video_id}: captions {caps[i].text!r} and {caps[j].text!r} "
                                     "overlap on screen while both visible")

    def visible(self, i: int) -> tuple[int, ...]:
        """Indices of the captions visible in frame ``i``, in reading order (top-down, left-right)."""
        idx = [k for k, (a, b) in enumerate(self.cap_ranges) if a <= i < b]
        return tuple(sorted(idx, key=lambda k: (self.layers[k].y, self.layers[k].x)))

    def frames(self) -> Iterator[bytes]:
        """Raw RGB24 bytes of every frame."""
        s = self.s
        last_key, last = None, b""
        for si, (scene, (f0, f1)) in enumerate(zip(s.scenes, self.ranges, strict=True)):
            bg = scene_background(scene, s.width, s.height)
            static = scene.is_static
            if static:
                base = bg.crop((0, 0, s.width, s.height)).copy()
                d = ImageDraw.Draw(base)
                for sh in scene.shapes:
                    draw_shape(d, sh, sh.x, sh.y)
            for i in range(f0, f1):
                vis = self.visible(i)
                key = (si, vis)
                if static and key == last_key:
                    yield last
                    continue
                dt = i / s.fps - scene.start
                if static:
                    img = base.copy()
                else:
                    off = int(round(abs(scene.pan_px_per_s) * dt))
                    if scene.pan_px_per_s < 0:
                        off = bg.width - s.width - off
                    img = bg.crop((off, 0, off + s.width, s.height))
                    d = ImageDraw.Draw(img)
                    for sh in scene.shapes:
                        draw_shape(d, sh, sh.x + sh.vx * dt, sh.y + sh.vy * dt)
                for k in vis:
                    layer = self.layers[k]
                    img.paste(layer.image, (layer.x, layer.y), layer.image)
                last_key, last = key, img.tobytes()
                yield last
