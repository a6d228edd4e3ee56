"""Near-duplicate removal (character n-gram MinHash and/or sentence embeddings) and per-video
task balance.

Word tokenisers do not segment Chinese, so questions are compared as sets of character
n-grams of their normalised text (:func:`verify.normalize`). Items are visited in a fixed order
(video, persona order, item index) and an item whose estimated Jaccard similarity to an
earlier kept question of the same video (``scope: video``) or of any video (``scope: global``)
reaches ``threshold`` is dropped as ``duplicate_of:<row>``.

``method: embedding`` compares sentence embeddings instead (cosine ``>= embedding_threshold``)
from a package-shipped encoder (``all-MiniLM-L6-v2``, :func:`evads_kedro.assets.minilm_dir`;
it is an *English* model: it catches English paraphrases that share few characters, but on
Chinese its scores carry little meaning, so MinHash stays the default). ``method: both``
drops an item when either test fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evads_kedro.backends import hf_load
from evads_kedro.pipelines.qa_generation.verify import normalize


def shingles(text: str, n: int) -> set[str]:
    t = normalize(text)
    if len(t) <= n:
        return {t} if t else set()
    return {t[i:i + n] for i in range(len(t) - n + 1)}


def _minhash(text: str, n: int, num_perm: int, seed: int):
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=seed)
    for sh in sorted(shingles(text, n)):
        m.update(sh.encode("utf-8"))
    return m


METHODS = ("minhash", "embedding", "both")


def find_duplicates(questions: Sequence[tuple[str, str]], params: Mapping[str, Any]
                    ) -> dict[int, int]:
    """``{i: j}`` for every question ``i`` that near-duplicates an earlier kept ``j``.
    ``questions`` are ``(group, text)`` pairs in priority order."""
    return {i: j for i, (j, _how) in find_duplicates_detailed(questions, params).items()}


def find_duplicates_detailed(questions: Sequence[tuple[str, str]], params: Mapping[str, Any]
                             ) -> dict[int, tuple[int, str]]:
    """``{i: (j, how)}``: question ``i`` duplicates the earlier kept ``j``; ``how`` is
    ``minhash:<jaccard>`` or ``embedding:<cosine>``."""
    from datasketch import MinHashLSH

    method = str(params.get("method", "minhash")).lower()
    if method not in METHODS:
        raise ValueError(f"dedup.method must be one of {METHODS}, got {method!r}")
    use_mh, use_emb = method in ("minhash", "both"), method in ("embedding", "both")
    emb = embed([t for _, t in questions], params) if use_emb and questions else None
    emb_threshold = float(params.get("embedding_threshold", 0.85))

    n = int(params.get("ngram", 2))
    num_perm = int(params.get("num_perm", 128))
    threshold = float(params.get("threshold", 0.7))
    seed = int(params.get("seed", 1))
    scope = params.get("scope", "video")
    lshs: dict[str, Any] = {}
    kept: dict[int, Any] = {}
    kept_in: dict[str, list[int]] = {}
    dup: dict[int, tuple[int, str]] = {}
    for i, (group, text) in enumerate(questions):
        g = group if scope == "video" else "*"
        hits: list[tuple[int, str]] = []
        m = None
        if use_mh:
            lsh = lshs.setdefault(g, MinHashLSH(threshold=threshold, num_perm=num_perm))
            m = _minhash(text, n, num_perm, seed)
            # LSH proposes candidates; the MinHash Jaccard estimate confirms them
            hits += [(int(k), f"minhash:{m.jaccard(kept[int(k)]):.2f}") for k in lsh.query(m)
                     if m.jaccard(kept[int(k)]) >= threshold]
        if use_emb:
            for j in kept_in.get(g, []):
                cos = float(emb[i] @ emb[j])
                if cos >= emb_threshold:
                    hits.append((j, f"embedding:{cos:.2f}"))
        if hits:
            dup[i] = min(hits)
            continue
        if use_mh:
            lsh.insert(str(i), m)
            kept[i] = m
        kept_in.setdefault(g, []).append(i)
    return dup


_ENCODERS: dict[str, Any] = {}


def embed(texts: Sequence[str], params: Mapping[str, Any]):
    """Unit-norm sentence embeddings (rows) of ``texts`` with the configured encoder folder
    (``embedding_model``: a sentence-transformers folder; default the packaged MiniLM)."""
    import numpy as np

    folder = params.get("embedding_model")
    if not folder:
        from evads_kedro.assets import minilm_dir

        folder = str(minilm_dir())
    model = _ENCODERS.get(folder)
    if model is None:
        from sentence_transformers import SentenceTransformer

        model = _ENCODERS[folder] = hf_load.build_locked(
            lambda: SentenceTransformer(folder, device="cpu"))
    vecs = model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False,
                        batch_size=32)
    return np.asarray(vecs, dtype=np.float32)


def balance(rows: Sequence[Mapping[str, Any]], tasks: Sequence[str], per_task: int = 1,
            video_ids: Sequence[str] = ()) -> tuple[list[int], dict[int, str], list[dict[str, Any]]]:
    """Pick up to ``per_task`` rows per (video, task) in the given order.

    Returns (kept row positions, {dropped position: reason}, gaps) where a gap is
    ``{video_id, task, wanted, found}`` for a task that got fewer than ``per_task`` items."""
    kept: list[int] = []
    dropped: dict[int, str] = {}
    count: dict[tuple[str, str], int] = {}
    videos: list[str] = list(video_ids)
    for pos, r in enumerate(rows):
        vid, task = r["video_id"], r["task"]
        if vid not in videos:
            videos.append(vid)
        k = count.get((vid, task), 0)
        if k >= per_task:
            dropped[pos] = f"surplus:{task} already has {per_task}"
            continue
        count[(vid, task)] = k + 1
        kept.append(pos)
    gaps = [{"video_id": v, "task": t, "wanted": per_task, "found": count.get((v, t), 0)}
            for v in videos for t in tasks if count.get((v, t), 0) < per_task]
    return kept, dropped, gaps
