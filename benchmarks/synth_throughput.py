"""Throughput of the synthesis pipeline (world + teacher + noisy candidates + filter + pairs).

    .venv/bin/python benchmarks/synth_throughput.py --n 100000

Prints samples/s; the target is the paper's 100,000-sample dataset in under 60 s on 2 cores.
Writes into a temporary folder that is removed afterwards.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from gplan_lib.synth import SynthConfig, synthesize


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = SynthConfig(n=args.n, test_size=max(1, args.n // 100), pair_anchors=args.n // 10, workers=args.workers)
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        manifest = synthesize(cfg, out)
        dt = time.perf_counter() - t
    c = manifest["counts"]
    print(f"{args.n} accepted samples ({c['train']} train, {c['test']} test, "
          f"{c['pairs_train.jsonl']['records']} pair records) in {dt:.1f} s: {args.n / dt:,.0f} samples/s")


if __name__ == "__main__":
    main()
