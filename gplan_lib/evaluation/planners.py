"""Every planner by name (``gplan predict --model``): the offline teacher, the two floors, or a saved
student's folder; all implement ``core.planner.Planner`` and write the same PRED.jsonl."""
from __future__ import annotations

from pathlib import Path

from ..core.data import load_rows
from ..core.floors import MajorityPlan, ThreeRulePlan
from ..core.planner import Planner
from ..synthesis.teacher import ExpertTeacher


def planner(name: str, train_csv: str | Path | None = None, batch_size: int = 16, max_new_tokens: int = 512) -> Planner:
    """``teacher`` | ``three-rule`` | ``majority`` (fitted on ``train_csv``) | a saved student's folder
    (decoded greedily in batches of ``batch_size``)."""
    if name == "teacher":
        return ExpertTeacher()
    if name == "three-rule":
        return ThreeRulePlan()
    if name == "majority":
        if train_csv is None:
            raise ValueError("the majority plan is fitted on training rows: pass --train CSV")
        return MajorityPlan([r.plan for r in load_rows(train_csv)])
    if Path(name).is_dir():
        from ..training.generation import StudentPlanner  # torch/transformers only when a model is used
        return StudentPlanner(name, batch_size=batch_size, max_new_tokens=max_new_tokens)
    if Path(name).exists() or "/" in name:
        raise ValueError(f"--model {name}: no such folder (a saved student's directory, or one of teacher, three-rule, majority)")
    raise ValueError(f"unknown planner {name!r}; choose teacher, three-rule, majority or a saved student's folder")
