"""Throughput of the evaluation call path against a loopback OpenAI-compatible server.

Starts ``tests/llm_server.py`` in a subprocess with a fixed per-request latency (default 200 ms),
then answers N synthetic questions through the real path (cache lookup → chat backend →
fsync'd JSONL append) at concurrency 1, 8 and 32, and reruns the last batch from the cache.
Ideal throughput at concurrency c is c / latency; ``efficiency_at_c`` = measured ÷ ideal.

Two transports under the same balancing / retry / cache layers (``--transports``):
``handwritten`` (OpenAICompatibleChat: one aiohttp session per endpoint and loop) and ``sdk``
(backends.openai_sdk.OpenAISdkChat: ``AsyncOpenAI`` on the SDK's aiohttp client when installed,
``aiolimiter``). The SDK is chosen when its efficiency at the highest concurrency is no worse
than the hand-written one's minus ``--tolerance`` (run-to-run noise on a shared machine).
Results: docs/benchmarks.md.

    .venv/bin/python benchmarks/evaluation.py [--latency 0.2] [--concurrency 1 8 32]
        [--transports handwritten sdk] [--tolerance 0.02]

Prints a table per transport; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import evads_kedro.pipelines.evaluation.nodes as evaluation_nodes  # noqa: E402
from evads_kedro.backends.llm import build_chat, clear_chat_cache  # noqa: E402
from evads_kedro.calls.cache import JsonlCache  # noqa: E402
from evads_kedro.pipelines.evaluation.nodes import generate_answers  # noqa: E402

TRANSPORTS = ("handwritten", "sdk")


def sdk_build_chat(spec: dict, where: str = "backend"):
    """build_chat for the ``sdk`` runs: the same keys (checked as build_chat checks them), the
    SDK transport (built per batch)."""
    from evads_kedro.backends.openai_sdk import OpenAISdkChat
    from evads_kedro.params import check_chat_backend

    check_chat_backend(spec, where)
    spec = dict(spec)
    assert spec.pop("backend") == "openai"
    return OpenAISdkChat(spec.pop("base_url"), spec.pop("model"), **spec)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"loopback server did not start on port {port}")


def questions(n: int, tag: str) -> pd.DataFrame:
    tl = 'Voiceover: Duration: 6s\n\n[Time-aligned Events]:\nTime 0s: Audio Speech: "看这件"'
    return pd.DataFrame({
        "question_id": [f"ques_{tag}{i:08d}" for i in range(n)],
        "video_id": [f"v{i // 5}" for i in range(n)],
        "question": [f"视频中产品的价格是多少？#{tag}-{i}" for i in range(n)],
        "timeline_asr_only": tl, "timeline_full": tl, "video_path": None,
    })


def params(base_url: str, concurrency: int) -> dict:
    return {
        "progress": False, "frames_dir": None,
        "generation": {"prompt_path": "conf/base/prompts/evaluation/answer.txt",
                       "video_token": "", "temperature": 1.0, "seed": 0, "n_samples": 1,
                       "max_tokens": 64},
        "models_under_test": {"bench": {
            "timeline": "asr_only", "video": "none", "concurrency": concurrency,
            "backend": {"backend": "openai", "base_url": base_url, "model": "bench",
                        "api_key_env": None, "concurrency": concurrency, "timeout": 30}}},
    }


def measure(base_url: str, args, tmp: Path, transport: str) -> list[dict]:
    """One row per concurrency: items/s, efficiency and the cached rerun, for ``transport``."""
    evaluation_nodes.build_chat = sdk_build_chat if transport == "sdk" else build_chat
    rows = []
    # warm-up (imports, first connections): not measured
    generate_answers(questions(max(args.concurrency), f"warm{transport}"),
                     JsonlCache(tmp / f"warm-{transport}.jsonl"),
                     params(base_url, max(args.concurrency)))
    for c in args.concurrency:
        clear_chat_cache()
        n = max(10, int(round(args.seconds * c / args.latency)))
        qs = questions(n, f"{transport}c{c}")
        cache_path = tmp / f"{transport}-c{c}.jsonl"
        t0 = time.perf_counter()
        out = generate_answers(qs, JsonlCache(cache_path), params(base_url, c))
        dt = time.perf_counter() - t0
        assert (out["status"] == "ok").all(), out["error"].dropna().head()
        t1 = time.perf_counter()
        again = generate_answers(qs, JsonlCache(cache_path), params(base_url, c))
        dt_cached = time.perf_counter() - t1
        assert again["cached"].all()
        ideal = c / args.latency
        rows.append({"transport": transport, "concurrency": c, "items": n, "seconds": dt,
                     "items_per_s": n / dt, "ideal_items_per_s": ideal,
                     "efficiency": (n / dt) / ideal, "cached_rerun_s": dt_cached,
                     "cached_items_per_s": n / dt_cached})
    evaluation_nodes.build_chat = build_chat
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=4.0,
                    help="approximate ideal duration of each batch")
    ap.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    ap.add_argument("--tolerance", type=float, default=0.02,
                    help="the SDK is chosen unless its top efficiency is lower by more")
    args = ap.parse_args(argv)
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llm_server.py"),
                               "--port", str(port), "--latency", str(args.latency)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    by_transport: dict[str, list[dict]] = {}
    try:
        wait_port(port)
        base_url = f"http://127.0.0.1:{port}/v1"
        with tempfile.TemporaryDirectory() as tmp:
            for transport in args.transports:
                by_transport[transport] = measure(base_url, args, Path(tmp), transport)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"loopback OpenAI-compatible server, fixed latency {args.latency * 1000:.0f} ms, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    result: dict = {"benchmark": "evaluation_client", "latency_s": args.latency}
    top = max(args.concurrency)
    for transport, rows in by_transport.items():
        label = transport
        if transport == "sdk":
            from evads_kedro.backends.openai_sdk import sdk_transport

            label = f"sdk (openai AsyncOpenAI over {sdk_transport()}, aiolimiter)"
        print(f"\n{label}")
        print_table(rows)
        by_c = {r["concurrency"]: r for r in rows}
        prefix = "" if transport == "handwritten" else f"{transport}_"
        result.update({f"{prefix}items_per_s_at_{c}": round(r["items_per_s"], 2)
                       for c, r in by_c.items()})
        result.update({f"{prefix}efficiency_at_{c}": round(r["efficiency"], 3)
                       for c, r in by_c.items()})
        if transport == "handwritten":
            if 1 in by_c and 8 in by_c:
                result["speedup_8_vs_1"] = round(by_c[8]["items_per_s"] / by_c[1]["items_per_s"], 2)
            if 1 in by_c and 32 in by_c:
                result["speedup_32_vs_1"] = round(by_c[32]["items_per_s"] /
                                                  by_c[1]["items_per_s"], 2)
            last = rows[-1]
            result.update({"cache_rerun_items": last["items"],
                           "cache_rerun_s": round(last["cached_rerun_s"], 4),
                           "target_efficiency": 0.8,
                           "meets_target_at_32": bool(by_c.get(32, last)["efficiency"] >= 0.8)})
    if len(by_transport) == 2:
        ours = {r["concurrency"]: r for r in by_transport["handwritten"]}[top]["efficiency"]
        sdk = {r["concurrency"]: r for r in by_transport["sdk"]}[top]["efficiency"]
        chosen = "sdk" if sdk >= ours - args.tolerance else "handwritten"
        print(f"\nefficiency at {top}: handwritten {ours:.3f}, sdk {sdk:.3f} -> chosen: {chosen} "
              f"(sdk unless lower by more than {args.tolerance})")
        result.update({"compared_at": top, "tolerance": args.tolerance, "chosen": chosen})
    print(json.dumps(result))
    return result


def print_table(rows: list[dict]) -> None:
    print(f"{'conc':>5} {'items':>6} {'seconds':>8} {'items/s':>8} {'ideal/s':>8} "
          f"{'effic.':>7} {'cache rerun s':>14} {'cached items/s':>15}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['items']:>6} {r['seconds']:>8.2f} "
              f"{r['items_per_s']:>8.1f} {r['ideal_items_per_s']:>8.1f} {r['efficiency']:>7.2f} "
              f"{r['cached_rerun_s']:>14.3f} {r['cached_items_per_s']:>15.0f}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
