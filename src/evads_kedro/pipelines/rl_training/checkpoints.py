"""Training checkpoints of one stage and where a killed stage resumes from.

Each stage (``sft``, ``grpo_<variant>``) checkpoints under ``<root>/<stage>/checkpoints/``
(``root`` = ``rl_training.checkpoints.root``, by default ``data/06_models/rl_training``) every
``rl_training.checkpoints.every_steps`` optimizer steps (TRL/transformers ``save_steps``).

transformers writes a checkpoint folder piece by piece (weights, optimizer, scheduler, RNG) and
``trainer_state.json`` last, so a checkpoint is *complete* when that file parses and names the
folder's step. :func:`prepare` picks the last complete one and deletes the torn ones (a kill -9
during a save) so checkpoint rotation never counts them. A ``fingerprint.json`` (hash of what
shapes the run: parameters, base model, examples) guards against resuming a different run: on a
mismatch the old checkpoints are removed and the stage starts over, with a warning.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from evads_kedro.calls.cache import stable_hash

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "data/06_models/rl_training"
FINGERPRINT = "fingerprint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def stage_dir(root: str | Path, stage: str) -> Path:
    """``<root>/<stage>/checkpoints`` (the trainer's ``output_dir``)."""
    return Path(root) / stage / "checkpoints"


def checkpoint_step(folder: Path) -> int | None:
    """The step of a *complete* checkpoint folder, else ``None``."""
    m = _CHECKPOINT.match(folder.name)
    if not m or not folder.is_dir():
        return None
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = int(m.group(1))
    return step if int(state.get("global_step", -1)) == step else None


def last_complete(folder: Path) -> tuple[Path, int] | None:
    """(path, step) of the highest complete checkpoint under ``folder``."""
    if not folder.is_dir():
        return None
    done = [(p, s) for p in folder.iterdir() if (s := checkpoint_step(p)) is not None]
    return max(done, key=lambda ps: ps[1]) if done else None


def prepare(folder: Path, fingerprint: dict[str, Any]) -> tuple[str | None, int]:
    """Make ``folder`` ready for a (re)run; returns (``resume_from_checkpoint`` or ``None``, step).

    Torn checkpoints are removed; checkpoints of a run with another fingerprint are removed.
    """
    digest = stable_hash(fingerprint)
    marker = folder / FINGERPRINT
    if folder.is_dir():
        old = None
        try:
            old = json.loads(marker.read_text(encoding="utf-8")).get("digest")
        except (OSError, ValueError):
            pass
        if old != digest and any(_CHECKPOINT.match(p.name) for p in folder.iterdir()):
            logger.warning("%s holds checkpoints of a different run (parameters, base model or "
                           "examples changed): starting this stage over", folder)
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        if _CHECKPOINT.match(p.name) and checkpoint_step(p) is None:
            logger.warning("removing the incomplete checkpoint %s (killed while saving)", p)
            shutil.rmtree(p, ignore_errors=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": digest}), encoding="utf-8")
    tmp.replace(marker)
    found = last_complete(folder)
    if found is None:
        return None, 0
    logger.info("resuming from %s (step %d)", found[0], found[1])
    return str(found[0]), found[1]


def clear(folder: Path) -> None:
    """Remove a finished stage's checkpoints (its adapter is in the catalog by then)."""
    shutil.rmtree(folder, ignore_errors=True)
