"""Deterministic synthetic e-commerce ads (fixtures for every pipeline's tests).

See ``evads_kedro.sample_videos`` for the sample set, ``render_video`` for one-off videos.
"""

from evads_kedro.synth.builders import (
    cuts_video_script,
    random_frames_script,
    slow_pan_script,
    static_video_script,
)
from evads_kedro.synth.draw import DEFAULT_FONT_INDEX, DEFAULT_FONT_PATH
from evads_kedro.synth.render import ground_truth, render_video, sha256_file
from evads_kedro.synth.spec import (
    GENERATOR_VERSION,
    AdScript,
    Caption,
    Music,
    Scene,
    Shape,
    Voiceover,
)

__all__ = [
    "AdScript", "Caption", "DEFAULT_FONT_INDEX", "DEFAULT_FONT_PATH", "GENERATOR_VERSION", "Music",
    "Scene", "Shape", "Voiceover", "cuts_video_script", "ground_truth", "random_frames_script",
    "render_video", "sha256_file", "slow_pan_script", "static_video_script",
]
