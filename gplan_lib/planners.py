"""Planners without a model, reachable through ``gplan predict``: the offline teacher and the two
floors. Trained students go through ``generation.StudentPlanner`` and write the same PRED.jsonl."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Protocol, Sequence

from tqdm.auto import tqdm

from .data import GsisrRow, load_rows
from .floors import MajorityPlan, ThreeRulePlan
from .intents import Plan, dumps_plan
from .metrics import Scores, score_outputs
from .teacher import ExpertTeacher


class Planner(Protocol):
    def plan(self, row: GsisrRow) -> Plan: ...


def planner(name: str, train_csv: str | Path | None = None) -> Planner:
    """``teacher`` | ``three-rule`` | ``majority`` (majority needs the training CSV it is fitted on)."""
    if name == "teacher":
        return ExpertTeacher()
    if name == "three-rule":
        return ThreeRulePlan()
    if name == "majority":
        if train_csv is None:
            raise ValueError("the majority plan is fitted on training rows: pass --train CSV")
        return MajorityPlan([r.plan for r in load_rows(train_csv)])
    raise ValueError(f"unknown planner {name!r}; choose teacher, three-rule or majority")


def predict(p: Planner, rows: Sequence[GsisrRow]) -> list[dict]:
    """PRED.jsonl records (id, output, latency_ms) for ``rows`` in order."""
    records = []
    for row in tqdm(rows, desc="predict"):
        t = time.perf_counter()
        output = dumps_plan(p.plan(row))
        records.append({"id": row.id, "output": output, "latency_ms": (time.perf_counter() - t) * 1000})
    return records


def write_predictions(records: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def score_planner(p: Planner, rows: Sequence[GsisrRow], seed: int = 0) -> Scores:
    """Acc@1, NDCG@3, NES and validity of a planner's plans on labelled rows."""
    return score_outputs([dumps_plan(p.plan(r)) for r in rows], [r.plan for r in rows], seed=seed)
