"""The measurements of notebook 04 (paper Sec. 5): every planner's outputs on the synthetic test
set and on the released rows, scored with the label metrics, at tool level, by the judge, and
timed at batch 1, under a fixed request rate and with constrained decoding.

Students are the runs notebooks 02 and 03 trained (never retrained here); the Table 1 baselines
are trained here on the same training rows. Predictions go to runs/<scale>/predictions/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from . import baselines
from .config import load_scale, run_dirs
from .constrained import ConstrainedPlanner
from .data import GsisrRow, load_rows
from .generation import MODEL_CARD, StudentPlanner, batch1_latency, latency_summary
from .judge import OfflineJudge, Verdict
from .metrics import Scores, aggregate, score_sample, tool_level
from .paper import TABLE1, TABLE5
from .parsing import parse_output
from .paths import REPO, RUNS, released_csv
from .planners import Planner, predict, write_predictions
from .serving import open_loop, serve

#: Our students (run directory under checkpoints/<scale>/) and the row of paper Table 2 each stands for.
STUDENTS = {"Direct-SFT": "direct-cosine", "CoT-SFT": "cot-cosine", "PICD (cosine)": "picd-cosine",
            "PICD (CALR)": "picd-calr", "PICD + SC-DPO": "dpo-sc"}
PAPER_TABLE2 = {"Direct-SFT": "Direct-SFT", "CoT-SFT": "CoT-SFT", "PICD (CALR)": "PICD", "PICD + SC-DPO": "PICD + SC-DPO"}
#: Rows of paper Table 1 beside ours (our full method stands beside GPlan-4B, the paper's Table 2 model).
PAPER_TABLE1 = {**{b: b for b in baselines.BASELINES}, "PICD + SC-DPO": "GPlan-4B"}
#: Table 5 compares one backbone trained three ways.
LATENCY_RUNS = ("Direct-SFT", "CoT-SFT", "PICD (CALR)")


def score_records(records: Sequence[dict], rows: Sequence[GsisrRow], latent: bool = True, seed: int = 0) -> Scores:
    """Label metrics, tool-level metrics, validity and Latent-Valid of PRED.jsonl records."""
    return aggregate([score_sample(r["output"], row.plan, latent=latent, tools=True)
                      for r, row in zip(records, rows, strict=True)], seed=seed)


def score_tools(predictions: Sequence[Sequence[str]], rows: Sequence[GsisrRow], seed: int = 0) -> Scores:
    """Tool-level scores of id-only predictions (the Table 1 baselines)."""
    return aggregate([tool_level(baselines.as_plan(p), row.plan) for p, row in zip(predictions, rows, strict=True)],
                     seed=seed)


def judge_scores(verdicts: Sequence[Verdict], seed: int = 0) -> Scores:
    """Means and bootstrap intervals of the judge axes and Overall."""
    return aggregate([v.as_dict() for v in verdicts], seed=seed)


def merge(a: Scores, b: Scores, seed: int = 0) -> Scores:
    """The per-sample scores of ``a`` and ``b`` side by side (same samples, in order)."""
    return aggregate([{**x, **y} for x, y in zip(a.per_sample, b.per_sample, strict=True)], seed=seed)


def table1(scores: Mapping[str, Scores]) -> list[dict[str, Any]]:
    """Table 1 rows: tool-level Acc@1 and NDCG@3 for every planner (full-intent Acc@1 where the
    planner emits parameters), beside the paper's numbers where it reports that model."""
    rows = []
    for name, sc in scores.items():
        fmt = lambda k: sc.fmt(k) if k in sc.means else "-"
        ref = TABLE1.get(PAPER_TABLE1.get(name, ""), {})
        rows.append({"planner": name, "tool Acc@1": fmt("tool_acc1"), "tool NDCG@3": fmt("tool_ndcg3"),
                     "Acc@1 (full intent)": fmt("acc1"), "paper Acc@1": ref.get("acc1", np.nan),
                     "paper NDCG@3": ref.get("ndcg3", np.nan)})
    return rows


def plans_of(records: Sequence[dict]) -> list[list[dict]]:
    return [parse_output(r["output"]).plan for r in records]


class Suite:
    """One scale's evaluation: its data, its trained students and where predictions go."""

    def __init__(self, scale: str, seed: int = 0):
        self.scale, self.seed = scale, seed
        self.cfg = load_scale(scale)
        self.dirs = run_dirs(scale)
        self.work = REPO / "checkpoints" / scale
        picd = self.cfg["picd"]
        if not (self.dirs.data / "train.csv").is_file():
            raise FileNotFoundError(f"{self.dirs.data} has no dataset: run notebooks/01_synthesis.ipynb at scale {scale!r}")
        missing = [name for name, d in STUDENTS.items() if not (self.work / d / MODEL_CARD).is_file()]
        if missing:
            raise FileNotFoundError(f"no trained {missing} under {self.work}: run notebooks 02 and 03 at scale {scale!r}")
        self.train_rows = load_rows(self.dirs.data / "train.csv")[: picd["n_train"]]
        self.test_rows = load_rows(self.dirs.data / "test.csv")[: picd["n_eval"]]
        self.eval_cfg = picd["eval"]
        self.ev = self.cfg["evaluation"]
        self.pred_dir = RUNS / scale / "predictions"
        self._students: dict[str, StudentPlanner] = {}

    def student(self, name: str) -> StudentPlanner:
        """A saved student, loaded on first use; one is kept in memory at a time (at 4B each is ~16 GB)."""
        if name not in self._students:
            self._students.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._students[name] = StudentPlanner(self.work / STUDENTS[name])
        return self._students[name]

    def _save(self, records: Sequence[dict], split: str, name: str) -> None:
        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        write_predictions(records, self.pred_dir / split / f"{slug}.jsonl", overwrite=True)  # runs/ is regenerated

    def generate(self, name: str, rows: Sequence[GsisrRow], split: str) -> list[dict]:
        """A student's greedy outputs on ``rows`` (batched), saved as PRED.jsonl."""
        records = self.student(name).generate(rows, self.eval_cfg["batch_size"], self.eval_cfg["max_new_tokens"],
                                              desc=f"{name} on {split}")
        self._save(records, split, name)
        return records

    def plan_with(self, name: str, planner: Planner, rows: Sequence[GsisrRow], split: str) -> list[dict]:
        records = predict(planner, rows)
        self._save(records, split, name)
        return records

    def train_baselines(self, features: str = "raw") -> dict[str, Any]:
        """The five Table 1 baselines, trained on the students' training rows at the students' size,
        seeing the context as ``features`` (``baselines.FEATURES``)."""
        hp = self.ev["baselines"]
        arch = hp.get("arch") or self.cfg["picd"]["model"]["arch"]  # full scales name their own size
        return {name: baselines.train_baseline(name, self.train_rows, arch, hp, self.seed, features)
                for name in baselines.BASELINES}

    def constrained(self, name: str, rows: Sequence[GsisrRow], split: str) -> list[dict]:
        """Batch-1 outputs under the plan grammar (``constrained.py``), saved as PRED.jsonl."""
        planner = ConstrainedPlanner(self.student(name))
        planner.decode(rows[0])  # warm-up
        records = planner.generate(rows, desc=f"{name} constrained on {split}")
        self._save(records, split, f"{name} constrained")
        return records

    def batch1(self, name: str) -> dict[str, float]:
        return batch1_latency(self.student(name), self.test_rows[: self.eval_cfg["latency_requests"]],
                              self.eval_cfg["max_new_tokens"], desc=f"{name} batch 1")

    def under_load(self, name: str) -> dict[str, float]:
        """Mean response time at the scale's fixed request rate (open loop on loopback)."""
        load, student = self.ev["load"], self.student(name)

        def respond(row: GsisrRow) -> tuple[str, int]:
            rec = student.generate([row], 1, self.eval_cfg["max_new_tokens"], progress=False)[0]
            return rec["output"], rec["new_tokens"]

        student.generate(self.test_rows[:2], 1, self.eval_cfg["max_new_tokens"], progress=False)
        with serve(respond) as url:
            return open_loop(url, self.test_rows[: load["requests"]], load["qps"], load["max_seconds"])

    def judge(self, rows: Sequence[GsisrRow], records: Sequence[dict]) -> list[Verdict]:
        return OfflineJudge().judge(rows, plans_of(records))


def released_rows(limit: int | None = None) -> tuple[list[GsisrRow], Path] | None:
    """The released GSISR rows to evaluate on (see ``paths.released_csv``), or None when absent."""
    path = released_csv()
    return None if path is None else (load_rows(path)[:limit], path)


def mean_of(records: Sequence[dict], key: str) -> float:
    return float(np.mean([r[key] for r in records]))


def timing(records: Sequence[dict]) -> dict[str, Any]:
    """Batch-1 timing of constrained-decoding records, in ``batch1_latency``'s form plus forward passes."""
    return {**latency_summary(records), "forward_passes": mean_of(records, "forward_passes")}


def table5(batch1: Mapping[str, Mapping[str, Any]], loaded: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table 5 rows: batch-1 and under-load mean response time with 95% intervals, tokens and
    forward passes per request, the paper's 4B time beside Direct-SFT, CoT-SFT and PICD."""
    paper_rows = dict(zip(LATENCY_RUNS, ("Direct-SFT", "CoT-SFT", "PICD")))
    ci = lambda d: f"{d['mean_ms']:.1f} [{d['ci95_ms'][0]:.1f}, {d['ci95_ms'][1]:.1f}]"
    return [{"method": name, "batch 1 (ms)": ci(b), "tokens": round(b["mean_new_tokens"], 1),
             "forward passes": round(b.get("forward_passes", b["mean_new_tokens"]), 1),
             "under load (ms)": ci(loaded[name]) if name in loaded else "-",
             "paper 4B at QPS 10 (s)": TABLE5["4B"].get(paper_rows.get(name, ""), np.nan)} for name, b in batch1.items()]
