"""The measurements of notebook 04 (paper Sec. 5): every planner's outputs on the synthetic test
set and on the released rows, scored with the label metrics, at tool level, by the judge, and
timed at batch 1, under a fixed request rate and with constrained decoding.

Students are the runs notebooks 02 and 03 trained (never retrained here); the Table 1 baselines
are trained here on the same training rows. Predictions go to runs/<scale>/predictions/.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.config import output_dirs
from ..core.files import sha256_file
from ..core.data import GsisrRow, load_released, load_rows
from ..core.floors import MajorityPlan, ThreeRulePlan
from ..core.metrics import Scores, aggregate, score_sample, tool_level
from ..core.paper import TABLE5_ROWS
from ..core.parsing import parse_output
from ..core.paths import OUTPUTS
from ..core.planner import Planner, write_predictions
from ..picd.config import PICDConfig
from ..synthesis.teacher import ExpertTeacher
from ..training.checkpoints import checkpoint, config_key
from ..training.generation import MODEL_CARD, StudentPlanner
from ..training.parallel import Job, run_jobs
from . import baselines
from .baseline_inputs import FEATURES
from .config import EvaluationConfig
from .constrained import ConstrainedPlanner
from .judge import OfflineJudge, Verdict
from .latency import interleaved_batch1, open_loop, serve

#: Our students (run folder under checkpoints/<scale>/) and the row of paper Table 2 each stands for.
STUDENTS = {"Direct-SFT": "direct-cosine", "CoT-SFT": "cot-cosine", "PICD (cosine)": "picd-cosine",
            "PICD (CALR)": "picd-calr", "PICD + SC-DPO": "dpo-sc"}
PAPER_TABLE2 = {"Direct-SFT": "Direct-SFT", "CoT-SFT": "CoT-SFT", "PICD (CALR)": "PICD", "PICD + SC-DPO": "PICD + SC-DPO"}
#: Rows of paper Table 1 beside ours (our full method stands beside GPlan-4B, the paper's Table 2 model).
PAPER_TABLE1 = {**{b: b for b in baselines.BASELINES}, "PICD + SC-DPO": "GPlan-4B"}
#: Table 5 compares one backbone trained three ways.
LATENCY_RUNS = tuple(TABLE5_ROWS)


def score_records(records: Sequence[dict], rows: Sequence[GsisrRow], latent: bool = True, seed: int = 0) -> Scores:
    """Label metrics, tool-level metrics, validity and Latent-Valid of PRED.jsonl records."""
    return aggregate([score_sample(r["output"], row.plan, latent=latent, tools=True)
                      for r, row in zip(records, rows, strict=True)], seed=seed)


def score_tools(records: Sequence[dict], rows: Sequence[GsisrRow], seed: int = 0) -> Scores:
    """Tool-level scores of tool-only predictions (the Table 1 baselines' PRED.jsonl records)."""
    return aggregate([tool_level(parse_output(r["output"]).plan, row.plan) for r, row in zip(records, rows, strict=True)],
                     seed=seed)


def judge_scores(verdicts: Sequence[Verdict], seed: int = 0) -> Scores:
    """Means and bootstrap intervals of the judge axes and Overall."""
    return aggregate([v.as_dict() for v in verdicts], seed=seed)


def merge(a: Scores, b: Scores, seed: int = 0) -> Scores:
    """The per-sample scores of ``a`` and ``b`` side by side (same samples, in order)."""
    return aggregate([{**x, **y} for x, y in zip(a.per_sample, b.per_sample, strict=True)], seed=seed)


def plans_of(records: Sequence[dict]) -> list[list[dict]]:
    return [parse_output(r["output"]).plan for r in records]


class EvaluationExperiment:
    """One scale's evaluation: its data, its trained students, the floors and where predictions go."""

    def __init__(self, scale: str, seed: int = 0):
        self.scale, self.seed = scale, seed
        picd = PICDConfig.from_scale(scale)
        self.cfg = EvaluationConfig.from_scale(scale)
        self.eval_cfg, self.model_cfg = picd.eval, picd.model
        self.dirs = output_dirs(scale)
        self.work = checkpoint(scale, seed=seed)
        if not (self.dirs.data / "train.csv").is_file():
            raise FileNotFoundError(f"{self.dirs.data} has no dataset: run notebooks/01_synthesis.ipynb at scale {scale!r}")
        missing = [name for name, d in STUDENTS.items() if not (self.work / d / MODEL_CARD).is_file()]
        if missing:
            raise FileNotFoundError(f"no trained {missing} under {self.work}: run notebooks 02 and 03 at scale {scale!r}")
        self.train_rows = load_rows(self.dirs.data / "train.csv")[: picd.n_train]
        self.test_rows = load_rows(self.dirs.data / "test.csv")[: picd.n_eval]
        self.pred_dir = OUTPUTS / scale / "predictions"
        self.floors: dict[str, Planner] = {"Majority plan": MajorityPlan([r.plan for r in self.train_rows]),
                                           "Three-rule plan": ThreeRulePlan(), "Teacher (offline)": ExpertTeacher()}
        self._students: dict[str, StudentPlanner] = {}

    def student(self, name: str) -> StudentPlanner:
        """A saved student, loaded on first use; one is kept in memory at a time (at 4B each is ~16 GB)."""
        if name not in self._students:
            self._students.clear()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._students[name] = StudentPlanner(self.work / STUDENTS[name], batch_size=self.eval_cfg.batch_size,
                                                  max_new_tokens=self.eval_cfg.max_new_tokens)
        return self._students[name]

    def constrained(self, name: str) -> ConstrainedPlanner:
        """A student under the plan grammar (``constrained.py``), batch 1, after one warm-up request."""
        planner = ConstrainedPlanner(self.student(name))
        planner.decode(self.test_rows[0])
        return planner

    def predict(self, name: str, planner: Planner, rows: Sequence[GsisrRow], split: str) -> list[dict]:
        """Any planner's outputs on ``rows``, saved as runs/<scale>/predictions/<split>/<name>.jsonl."""
        records = planner.predict(rows, desc=f"{name} on {split}")
        slug = name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        write_predictions(records, self.pred_dir / split / f"{slug}.jsonl", overwrite=True)  # runs/ is regenerated
        return records

    def train_baselines(self, features: Sequence[str] = FEATURES, retrain: bool = False) -> dict[str, Any]:
        """The five Table 1 baselines per feature set (``baseline_inputs.FEATURES``: ``raw`` named as the paper
        names them, the others as ``"SASRec + facts"``), trained on the students' training rows at the students'
        size; on a CPU all in one pool of one-thread workers (``training.parallel``; one thread, so that their
        weights do not depend on the core count). A baseline saved under checkpoints/<scale>/ with the same
        configuration and training rows is reused (as notebooks 02-03 reuse their runs) unless ``retrain``."""
        hp = self.cfg.baselines
        arch = hp.arch or self.model_cfg.arch  # full scales name their own size
        rows_digest = sha256_file(self.dirs.data / "train.csv")
        todo, trained = [], {}
        runs = [(name if f == "raw" else f"{name} + {f}", name, f) for f in features for name in baselines.BASELINES]
        for shown, name, f in runs:
            key = config_key({"name": name, "features": f, "arch": arch, "hp": hp, "seed": self.seed,
                              "n_train": len(self.train_rows), "train.csv": rows_digest})
            path = self.work / "baselines" / f"{shown.replace(' ', '_').replace('+', 'plus')}.pt"
            saved = None if retrain else baselines.load_trained(path, key)
            if saved is not None:
                trained[shown] = saved
            else:
                todo.append((shown, path, key, Job(shown, baselines.train_baseline,
                                                   (name, self.train_rows, arch, hp, self.seed, f))))
        if trained:
            print(f"reusing {len(trained)} trained baselines from {self.work / 'baselines'} (same configuration and rows)")
        fresh = run_jobs([job for *_, job in todo], desc="baselines") if todo else {}
        for shown, path, key, _ in todo:
            baselines.save_trained(path, key, fresh[shown])
        done = {**trained, **fresh}
        return {shown: done[shown] for shown, _, _ in runs}

    def batch1(self, names: Sequence[str]) -> dict[str, list[dict]]:
        """Batch-1 records of the named students timed in turn, request by request (``interleaved_batch1``); all
        of them are in memory together for it (three 4B students in bf16: 24 GB)."""
        planners = {n: StudentPlanner(self.work / STUDENTS[n], batch_size=1, max_new_tokens=self.eval_cfg.max_new_tokens)
                    for n in names}
        return interleaved_batch1(planners, self.test_rows[: self.eval_cfg.latency_requests],
                                  self.eval_cfg.max_new_tokens, desc="Table 5 batch 1")

    def under_load(self, name: str) -> dict[str, float]:
        """Mean response time at the scale's fixed request rate (open loop on loopback)."""
        load, student = self.cfg.load, self.student(name)

        def respond(row: GsisrRow) -> tuple[str, int]:
            rec = student.generate([row], 1, self.eval_cfg.max_new_tokens, progress=False)[0]
            return rec["output"], rec["new_tokens"]

        student.generate(self.test_rows[:2], 1, self.eval_cfg.max_new_tokens, progress=False)
        with serve(respond) as url:
            return open_loop(url, self.test_rows[: load.requests], load.qps, load.max_seconds)

    def judge(self, rows: Sequence[GsisrRow], records: Sequence[dict]) -> list[Verdict]:
        return OfflineJudge().judge(rows, plans_of(records))

    def released(self) -> tuple[list[GsisrRow], Path] | None:
        """The released GSISR rows to evaluate on (``paths.released_csv``; the scale's first
        ``released_rows``), or None when absent."""
        return load_released(self.cfg.released_rows)
