"""backends.factory.BuildOnce: one build per distinct parameter set, nothing cached on failure."""

from __future__ import annotations

import threading

import pytest

from evads_kedro.backends.factory import BuildOnce


def test_equal_parameters_share_one_build_different_ones_do_not() -> None:
    cache: BuildOnce[object] = BuildOnce("thing")
    builds = []

    def build():
        builds.append(1)
        return object()

    a = cache.get({"name": "x", "device": "cpu"}, build)
    b = cache.get({"device": "cpu", "name": "x"}, build)  # same content, other key order
    c = cache.get({"name": "y", "device": "cpu"}, build)
    assert a is b and a is not c and len(builds) == 2 and len(cache) == 2
    cache.clear()
    assert cache.get({"name": "x", "device": "cpu"}, build) is not a and len(builds) == 3


def test_a_failed_build_caches_nothing() -> None:
    cache: BuildOnce[str] = BuildOnce("thing")

    def fail():
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError):
        cache.get({"n": 1}, fail)
    assert len(cache) == 0 and cache.get({"n": 1}, lambda: "ok") == "ok"


def test_concurrent_callers_build_once() -> None:
    cache: BuildOnce[object] = BuildOnce("thing")
    started = threading.Barrier(8)
    builds = []

    def build():
        builds.append(1)
        return object()

    got = []

    def worker():
        started.wait()
        got.append(cache.get({"n": 1}, build))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len({id(g) for g in got}) == 1
