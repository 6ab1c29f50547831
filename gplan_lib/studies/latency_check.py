"""Does Table 5 (paper Sec. 5.5) hold from one measurement to the next? The seed-0 Direct-SFT, CoT-SFT and PICD-CALR
students timed at batch 1 in turn, request by request (``evaluation.latency.interleaved_batch1``), in ``--runs``
separate processes one after another, as notebooks 02 and 04 each time them; the ratios of each run and how far
apart they are. Results: results/<scale>/latency_check.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any, Sequence

from ..core.config import published_dirs
from ..core.files import write_result


def measure(scale: str, requests: int | None) -> dict[str, Any]:
    """One run: the three students' batch-1 timing and their ratios (``PICDExperiment.latency``)."""
    from ..core.paper import TABLE5_ROWS
    from ..picd.experiment import VARIANTS, PICDExperiment
    exp = PICDExperiment(scale, 0)
    timing, ratios = exp.latency([v for v in VARIANTS if v.name in TABLE5_ROWS], requests)
    return {"timing": timing, "ratios": ratios}


def spread(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per ratio, the largest over the smallest value across runs, minus one (0.1: the runs differ by 10%)."""
    return {k: max(r["ratios"][k]["ratio"] for r in runs) / min(r["ratios"][k]["ratio"] for r in runs) - 1
            for k in runs[0]["ratios"]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Table 5 measured in several processes (results/<scale>/latency_check.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--requests", type=int, default=None, help="rows timed per run (default: eval.latency_requests)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single run, printed as JSON
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.scale, args.requests)))
        return 0
    runs = []
    for _ in range(args.runs):  # each in a fresh process, as two notebooks measure
        cmd = [sys.executable, "-m", "gplan_lib.studies.latency_check", "--scale", args.scale, "--one",
               *(["--requests", str(args.requests)] if args.requests else [])]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    path = published_dirs(args.scale).results / "latency_check.json"
    write_result(path, {"scale": args.scale, "seed": 0, "runs": runs, "spread": spread(runs),
                        "method": "three students timed in turn, request by request; each run a fresh process"})
    print(f"wrote {path}; spread between runs: " + ", ".join(f"{k} {v:.1%}" for k, v in spread(runs).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
