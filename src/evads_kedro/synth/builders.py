"""Convenience scripts for special cases (density / cut-detection tests).

Every builder returns a validated ``AdScript`` made of seeded random images (no text, no audio
unless passed), category ``其他`` by default. Extra keyword arguments (``captions``,
``voiceover``, ``music``, ``fps``, ``width``, ``height``, ``category``, ``title``...) go to
``AdScript``. Render with ``render_video(script, path)``.
"""

from __future__ import annotations

from typing import Any

from evads_kedro.synth.spec import AdScript, Scene, Shape

OTHER = "其他"


def _num(x: float) -> str:
    return f"{x:g}".replace(".", "p")


def _script(video_id: str, duration_s: float, scenes: list[Scene], kw: dict[str, Any]) -> AdScript:
    kw.setdefault("category", OTHER)
    return AdScript(video_id=video_id, duration_s=duration_s, scenes=tuple(scenes), **kw).validate()


def _bounds(duration_s: float, n: int, fps: int) -> list[float]:
    """``n + 1`` boundaries splitting ``[0, duration]`` into ``n`` near-equal, frame-aligned parts."""
    total = round(duration_s * fps)
    if n > total:
        raise ValueError(f"cannot fit {n} scenes into {total} frames")
    return [round(total * k / n) / fps for k in range(n)] + [duration_s]


def static_video_script(duration_s: float = 10.0, seed: int = 0, video_id: str | None = None,
                        **kw: Any) -> AdScript:
    """One still image for the whole video: every frame identical, no cut."""
    vid = video_id or f"static_s{seed}_{_num(duration_s)}s"
    return _script(vid, duration_s, [Scene(0.0, duration_s, image_seed=seed)], kw)


def cuts_video_script(n_cuts: int, duration_s: float = 10.0, seed: int = 0,
                      video_id: str | None = None, motion: bool = False, **kw: Any) -> AdScript:
    """``n_cuts`` hard cuts between ``n_cuts + 1`` equal shots of unrelated still images.

    ``motion=True`` adds a slowly drifting product shape inside every shot.
    """
    if n_cuts < 0:
        raise ValueError("n_cuts must be >= 0")
    fps = int(kw.get("fps", 25))
    b = _bounds(duration_s, n_cuts + 1, fps)
    scenes = []
    for k in range(n_cuts + 1):
        shapes = ()
        if motion:
            w = kw.get("width", 360)
            shapes = (Shape("box", w * 0.5, kw.get("height", 640) * 0.5, w * 0.35, w * 0.35,
                            (200, 60 + 20 * (k % 8), 40), vx=6.0, vy=-4.0),)
        scenes.append(Scene(b[k], b[k + 1], image_seed=seed * 1000 + k, shapes=shapes))
    vid = video_id or f"cuts{n_cuts}_s{seed}_{_num(duration_s)}s"
    return _script(vid, duration_s, scenes, kw)


def slow_pan_script(duration_s: float = 10.0, pan_px_per_s: float = 6.0, seed: int = 0,
                    video_id: str | None = None, **kw: Any) -> AdScript:
    """A slow horizontal pan over one wide image: high frame-to-frame similarity, no cut."""
    vid = video_id or f"pan_s{seed}_{_num(pan_px_per_s)}pxs_{_num(duration_s)}s"
    return _script(vid, duration_s, [Scene(0.0, duration_s, image_seed=seed, pan_px_per_s=pan_px_per_s)], kw)


def random_frames_script(duration_s: float = 10.0, seed: int = 0, video_id: str | None = None,
                         **kw: Any) -> AdScript:
    """A new unrelated random image every second (a cut at every whole second)."""
    n = int(duration_s) + (0 if float(duration_s).is_integer() else 1)
    b = [float(k) for k in range(n)] + [duration_s]
    scenes = [Scene(b[k], b[k + 1], image_seed=seed * 100_003 + k) for k in range(n)]
    vid = video_id or f"random_s{seed}_{_num(duration_s)}s"
    return _script(vid, duration_s, scenes, kw)
