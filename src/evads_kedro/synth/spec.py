"""Declarative spec of a synthetic ad: scenes, captions, voiceover, music.

Times are seconds from the start of the video. A scene or caption covers the half-open
interval ``[start, end)``; frame ``i`` is shown at ``i / fps`` and belongs to whatever covers
that instant, so a 1 fps sampler taking the frame at timestamp ``t`` sees frame ``t * fps``.
Geometry is in pixels of the output frame (default portrait 360x640).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from evads_kedro.taxonomy import CATEGORIES, find_category

Color = tuple[int, int, int]

#: Bump when rendering changes in a way that changes output bytes (invalidates cached videos).
GENERATOR_VERSION = "1"

SHAPE_KINDS: tuple[str, ...] = (
    "bottle", "jar", "tube", "box", "garment", "bag", "phone", "can", "circle", "shoe",
    "bowl", "star", "pillow", "appliance",
)
CAPTION_POSITIONS: dict[str, float] = {  # named position -> vertical centre, fraction of height
    "top": 0.09,
    "upper": 0.22,
    "center": 0.50,
    "lower": 0.70,
    "bottom": 0.86,
}
LANGUAGES: tuple[str, ...] = ("zh", "en")
_EPS = 1e-6
_VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Shape:
    """A product-like figure drawn with Pillow primitives (no text on it: OCR truth stays exact).

    ``x, y`` is the centre at the scene start; it moves by ``(vx, vy)`` px/s within the scene.
    """

    kind: str
    x: float
    y: float
    w: float
    h: float
    color: Color
    accent: Color = (255, 255, 255)
    vx: float = 0.0
    vy: float = 0.0


@dataclass(frozen=True)
class Scene:
    """One shot. Consecutive scenes are joined by hard cuts.

    Background: a vertical gradient ``background`` -> ``background2`` (solid if ``None``), or,
    if ``image_seed`` is set, a random image drawn from that seed. ``pan_px_per_s`` slides the
    frame window horizontally over a wider copy of that image (positive: content moves left).
    """

    start: float
    end: float
    background: Color = (235, 235, 235)
    background2: Color | None = None
    shapes: tuple[Shape, ...] = ()
    image_seed: int | None = None
    pan_px_per_s: float = 0.0

    @property
    def is_static(self) -> bool:
        return self.pan_px_per_s == 0 and all(s.vx == 0 and s.vy == 0 for s in self.shapes)


@dataclass(frozen=True)
class Caption:
    """One line of on-screen text (no line breaks: one caption = one OCR box).

    ``position`` is a name from ``CAPTION_POSITIONS`` or an ``(x, y)`` centre as fractions of
    the frame. ``size`` is the font size in px (shrunk automatically if the line is too wide).
    ``box`` is the opaque plate behind the text; ``None`` draws outlined text instead.
    """

    start: float
    end: float
    text: str
    position: str | tuple[float, float] = "bottom"
    size: int = 40
    color: Color = (255, 255, 255)
    box: Color | None = (25, 25, 25)


@dataclass(frozen=True)
class Voiceover:
    """A spoken segment placed at ``start`` (pushed later only if the previous one overruns).

    ``rate`` is espeak-ng words per minute (``None``: 110 for zh, per pinyin syllable; 130 for en).
    """

    start: float
    text: str
    lang: str = "zh"
    rate: int | None = None


@dataclass(frozen=True)
class Music:
    """Music-like tones (a seeded pentatonic melody of sine notes), no speech."""

    start: float
    end: float
    seed: int = 0
    bpm: int = 120
    volume: float = 0.25


@dataclass(frozen=True)
class AdScript:
    """Everything needed to render one synthetic ad deterministically."""

    video_id: str
    category: str
    duration_s: float
    scenes: tuple[Scene, ...]
    captions: tuple[Caption, ...] = ()
    voiceover: tuple[Voiceover, ...] = ()
    music: tuple[Music, ...] = ()
    title: str = ""
    fps: int = 25
    width: int = 360
    height: int = 640
    force_audio_track: bool = False  # add a (silent) audio stream even without speech/music
    tags: tuple[str, ...] = field(default=())

    # ---- derived facts -------------------------------------------------------------------
    @property
    def has_speech(self) -> bool:
        return bool(self.voiceover)

    @property
    def has_audio(self) -> bool:
        return bool(self.voiceover or self.music or self.force_audio_track)

    @property
    def language(self) -> str | None:
        """``zh``/``en`` (or ``mixed``) from the voiceover; ``None`` without speech."""
        langs = sorted({v.lang for v in self.voiceover})
        if not langs:
            return None
        return langs[0] if len(langs) == 1 else "mixed"

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)

    def frame_at(self, t: float) -> int:
        """Index of the first frame shown at or after time ``t``."""
        return max(0, math.ceil(t * self.fps - _EPS))

    def scene_frame_ranges(self) -> list[tuple[int, int]]:
        """``[first, last_exclusive)`` frame range of every scene."""
        n = self.n_frames
        return [(min(self.frame_at(s.start), n), min(self.frame_at(s.end), n)) for s in self.scenes]

    def cut_times(self) -> list[float]:
        """Real cut instants: timestamp of the first frame of every scene after the first."""
        return [first / self.fps for first, _ in self.scene_frame_ranges()[1:]]

    def captions_at_frame(self, i: int) -> list[Caption]:
        """Captions visible in frame ``i``, unordered (see ``render`` for the reading order)."""
        return [c for c in self.captions if self.frame_at(c.start) <= i < self.frame_at(c.end)]

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), ensure_ascii=False))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdScript:
        def tup(v):
            return tuple(v) if isinstance(v, list) else v

        d = dict(d)
        d["scenes"] = tuple(
            Scene(**{**s, "background": tup(s["background"]), "background2": tup(s.get("background2")),
                     "shapes": tuple(Shape(**{**sh, "color": tup(sh["color"]), "accent": tup(sh["accent"])})
                                     for sh in s.get("shapes", ()))})
            for s in d["scenes"]
        )
        d["captions"] = tuple(
            Caption(**{**c, "position": tup(c["position"]), "color": tup(c["color"]), "box": tup(c.get("box"))})
            for c in d.get("captions", ())
        )
        d["voiceover"] = tuple(Voiceover(**v) for v in d.get("voiceover", ()))
        d["music"] = tuple(Music(**m) for m in d.get("music", ()))
        d["tags"] = tuple(d.get("tags", ()))
        return cls(**d)

    def script_hash(self, **render_params: Any) -> str:
        """sha256 over the script, the generator version and any render parameters."""
        payload = {"generator": GENERATOR_VERSION, "script": self.to_dict(), "render": render_params}
        blob = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    # ---- validation ----------------------------------------------------------------------
    def validate(self) -> AdScript:
        """Raise ``ValueError`` on an inconsistent script; return ``self`` for chaining."""
        where = f"AdScript {self.video_id!r}"
        if not _VIDEO_ID_RE.match(self.video_id):
            raise ValueError(f"{where}: video_id must match {_VIDEO_ID_RE.pattern} (used as file name)")
        if find_category(self.category) is None:  # official label, alias or slug
            raise ValueError(f"{where}: category {self.category!r} not one of {list(CATEGORIES)}")
        if not (self.duration_s > 0 and self.fps > 0):
            raise ValueError(f"{where}: duration_s and fps must be positive")
        if self.width % 2 or self.height % 2 or self.width < 16 or self.height < 16:
            raise ValueError(f"{where}: width/height must be even and >= 16 (yuv420p)")
        if not self.scenes:
            raise ValueError(f"{where}: needs at least one scene")
        if abs(self.scenes[0].start) > _EPS:
            raise ValueError(f"{where}: first scene must start at 0")
        for a, b in zip(self.scenes, self.scenes[1:], strict=False):
            if abs(a.end - b.start) > _EPS:
                raise ValueError(f"{where}: scenes must be contiguous ({a.end} != {b.start})")
        if abs(self.scenes[-1].end - self.duration_s) > _EPS:
            raise ValueError(f"{where}: last scene must end at duration_s={self.duration_s}")
        ranges = self.scene_frame_ranges()
        for s, (f0, f1) in zip(self.scenes, ranges, strict=True):
            if f1 <= f0:
                raise ValueError(f"{where}: scene {s.start}-{s.end} has no frame at {self.fps} fps")
            for sh in s.shapes:
                if sh.kind not in SHAPE_KINDS:
                    raise ValueError(f"{where}: shape kind {sh.kind!r} not in {SHAPE_KINDS}")
        for c in self.captions:
            if not (0 <= c.start < c.end <= self.duration_s + _EPS):
                raise ValueError(f"{where}: caption {c.text!r} span {c.start}-{c.end} outside video")
            if not c.text.strip() or "\n" in c.text:
                raise ValueError(f"{where}: caption text must be one non-empty line: {c.text!r}")
            if isinstance(c.position, str) and c.position not in CAPTION_POSITIONS:
                raise ValueError(f"{where}: caption position {c.position!r} not in {list(CAPTION_POSITIONS)}")
        for v in self.voiceover:
            if v.lang not in LANGUAGES:
                raise ValueError(f"{where}: voiceover language {v.lang!r} not in {LANGUAGES}")
            if not (0 <= v.start < self.duration_s) or not v.text.strip():
                raise ValueError(f"{where}: voiceover {v.text!r} at {v.start}s is empty or outside video")
        for m in self.music:
            if not (0 <= m.start < m.end <= self.duration_s + _EPS):
                raise ValueError(f"{where}: music span {m.start}-{m.end} outside video")
        return self
