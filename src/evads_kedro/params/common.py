"""Blocks shared by several pipelines: who runs the per-video work (evads_kedro.executors)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from evads_kedro.params.base import Block


class Executor(Block):
    """``<pipeline>.executor``: inprocess | process_pool | dask (docs/scale.md)."""

    kind: Literal["inprocess", "process_pool", "dask"] | None = None
    workers: PositiveInt | None = None
    scheduler_address: str | None = None
    threads_per_worker: PositiveInt | None = None
