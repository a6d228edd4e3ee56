"""Near-duplicate removal (character n-gram MinHash) and per-video task balance.

Word tokenisers do not segment Chinese, so questions are compared as sets of character
n-grams of their normalised text (:func:`verify.normalize`). Items are visited in a fixed order
(video, persona order, item index) and an item whose estimated Jaccard similarity to an
earlier kept question of the same video (``scope: video``) or of any video (``scope: global``)
reaches ``threshold`` is dropped as ``duplicate_of:<row>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def find_duplicates(questions: Sequence[tuple[str, str]], params: Mapping[str, Any]
                    ) -> dict[int, int]:
    """``{i: j}`` for every question ``i`` that near-duplicates an earlier kept ``j``.
    ``questions`` are ``(group, text)`` pairs in priority order."""
    from datasketch import MinHashLSH

    n = int(params.get("ngram", 2))
    num_perm = int(params.get("num_perm", 128))
    threshold = float(params.get("threshold", 0.7))
    seed = int(params.get("seed", 1))
    scope = params.get("scope", "video")
    lshs: dict[str, Any] = {}
    kept: dict[int, Any] = {}
    dup: dict[int, int] = {}
    for i, (group, text) in enumerate(questions):
        g = group if scope == "video" else "*"
        lsh = lshs.setdefault(g, MinHashLSH(threshold=threshold, num_perm=num_perm))
        m = _minhash(text, n, num_perm, seed)
        # LSH proposes candidates; the MinHash Jaccard estimate confirms them
        hits = sorted(int(k) for k in lsh.query(m) if m.jaccard(kept[int(k)]) >= threshold)
        if hits:
            dup[i] = hits[0]
            continue
        lsh.insert(str(i), m)
        kept[i] = m
    return dup


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
