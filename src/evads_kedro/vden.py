"""Visual density V_den (SPEC §3) from per-frame embeddings. Pure numpy, no model.

    V_den = alpha * (1/T) * sum_i (1 - S_i),
    S_i   = sum_{j != i, |t_j - t_i| <= window} w(|t_j - t_i|) cos(f_i, f_j) / sum_j w(...)

``f_i`` are the embeddings of the T frames sampled at ``t_i`` seconds (1 fps in the project).
Weightings of a neighbour ``dt`` seconds away: ``inverse`` 1/dt, ``exp`` exp(-dt/tau), ``uniform`` 1.
A frame with no neighbour inside the window (a 1-frame video, a gap in the sampling) has no S_i
and is left out of the mean; a video without any such pair has V_den = NaN.

Project defaults (``conf/base/parameters_density.yml``, argued in ``docs/density.md``):
window = 2 s, inverse weighting, alpha = 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

WEIGHTINGS = ("inverse", "exp", "uniform")
_EPS = 1e-9


def neighbour_weights(timestamps: Sequence[float], *, window: float, weighting: str = "inverse",
                      tau: float = 1.0) -> np.ndarray:
    """(T, T) weights ``w[i, j]`` of neighbour j for frame i (0 outside the window, on the diagonal)."""
    t = np.asarray(timestamps, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError("timestamps must be one-dimensional")
    if t.size > 1 and not np.all(np.diff(t) > 0):
        raise ValueError("timestamps must be strictly increasing (one frame per instant)")
    if not window > 0:
        raise ValueError(f"window must be > 0 seconds, got {window}")
    dt = np.abs(t[:, None] - t[None, :])
    inside = (dt <= window + _EPS) & (dt > 0)
    if weighting == "inverse":
        w = np.divide(1.0, dt, out=np.zeros_like(dt), where=inside)
    elif weighting == "exp":
        if not tau > 0:
            raise ValueError(f"tau must be > 0 seconds, got {tau}")
        w = np.where(inside, np.exp(-dt / tau), 0.0)
    elif weighting == "uniform":
        w = inside.astype(np.float64)
    else:
        raise ValueError(f"unknown weighting {weighting!r}; use one of {WEIGHTINGS}")
    return w


def neighbour_similarity(embeddings: np.ndarray, timestamps: Sequence[float], *, window: float,
                         weighting: str = "inverse", tau: float = 1.0) -> np.ndarray:
    """``S_i`` per frame: weighted mean cosine similarity to neighbours (NaN without neighbours)."""
    f = np.asarray(embeddings, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] != len(timestamps):
        raise ValueError(f"embeddings must be (T, D) with T = {len(timestamps)} timestamps, "
                         f"got {f.shape}")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    if np.any(norms < _EPS):
        raise ValueError("an embedding has zero norm: cosine similarity is undefined")
    f = f / norms
    w = neighbour_weights(timestamps, window=window, weighting=weighting, tau=tau)
    total = w.sum(axis=1)
    sim = np.clip(f @ f.T, -1.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (w * sim).sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)


def visual_density(embeddings: np.ndarray, timestamps: Sequence[float], *, alpha: float = 100.0,
                   window: float = 2.0, weighting: str = "inverse", tau: float = 1.0) -> float:
    """V_den of one video (NaN when no frame has a neighbour within ``window`` seconds)."""
    s = neighbour_similarity(embeddings, timestamps, window=window, weighting=weighting, tau=tau)
    s = s[~np.isnan(s)]
    if s.size == 0:
        return math.nan
    return float(alpha * np.mean(1.0 - s))


def vden_params(params: dict) -> dict:
    """The V_den keyword arguments out of ``params:density.vden`` (fails on unknown keys)."""
    known = {"alpha", "window", "weighting", "tau"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown density.vden parameters {sorted(unknown)}; known: {sorted(known)}")
    return {k: params[k] for k in known if k in params}
