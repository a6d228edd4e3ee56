"""CLI: ``python -m evads_kedro.assets prepare|verify|where [NAME ...]`` (tables on stdout)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from evads_kedro.assets.inventory import ASSET_NAMES, prepare, verify, where
from evads_kedro.assets.store import models_dir


def _print_table(rows: list[dict[str, Any]], show_seconds: bool = True) -> None:
    cols = ["name", "status"] + (["seconds"] if show_seconds else []) + ["path", "detail"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols[:-1]}
    print("  ".join(c.ljust(widths.get(c, 0)) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths.get(c, 0)) for c in cols))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evads_kedro.assets",
        description="Offline model weights: prepare (derive once + verify), verify (full "
        "re-hash), where (locations).",
    )
    parser.add_argument("command", choices=("prepare", "verify", "where"))
    parser.add_argument("names", nargs="*", help=f"subset of: {', '.join(ASSET_NAMES)}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    fn = {"prepare": prepare, "verify": verify, "where": where}[args.command]
    rows = fn(args.names or None)
    print(f"models dir: {models_dir()}")
    _print_table(rows, show_seconds=args.command != "where")
    print(f"{args.command}: {time.perf_counter() - t0:.2f} s")
    bad = [r for r in rows if r["status"] not in ("ok", "derived", "present")]
    if bad and args.command != "where":
        for r in bad:
            print(f"[{r['name']}] {r['status']}: {r['detail']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
