"""Notebook 01's experiment (paper Sec. 3.2, 4.2.1): one scale's synthetic dataset - built once from the
simulated world, the offline teacher, the noisy teacher and the filter, the counterfactual pairs and the
seed set - and what it is compared with: the released rows, where present."""
from __future__ import annotations

import json
from functools import cached_property
from typing import Any

from ..core.config import output_dirs
from ..core.data import GsisrRow, load_released, load_rows
from ..core.paths import DATA, released_csv
from ..core.floors import MajorityPlan, ThreeRulePlan
from ..core.metrics import Scores
from ..core.planner import score_planner
from .calibration import fold_gaps, user_folds
from .config import SynthConfig
from .contexts import Labels, ensure_contexts
from .review import ReviewStore, load_seeds, read_seeds
from .synthesize import ensure_dataset
from .teacher import ExpertTeacher


class SynthesisExperiment:
    def __init__(self, scale: str, seed: int = 0):
        self.scale, self.seed = scale, seed
        self.cfg = SynthConfig.from_scale(scale, seed)
        self.dirs = output_dirs(scale)
        self.data = self.dirs.data

    def dataset(self, overwrite: bool = False) -> dict[str, Any]:
        """The dataset's manifest, building data/synth/<scale>/ first unless it already holds this config's
        files (a different dataset is replaced only with ``overwrite``)."""
        return ensure_dataset(self.cfg, self.data, overwrite=overwrite)

    def filter_report(self) -> dict[str, Any]:
        return json.loads((self.data / "filter_report.json").read_text())

    @cached_property
    def train_rows(self) -> list[GsisrRow]:
        """The synthetic training rows (read once; call ``dataset()`` first)."""
        return load_rows(self.data / "train.csv")

    def pairs(self, split: str = "train") -> list[dict[str, Any]]:
        """The counterfactual pair records of ``split`` (``train`` or ``test``), both directions."""
        return [json.loads(line) for line in (self.data / f"pairs_{split}.jsonl").read_text().splitlines()]

    def review_store(self) -> ReviewStore:
        return ReviewStore(self.data / "seed_review.json")

    def raw_seeds(self) -> list[dict[str, Any]]:
        return read_seeds(self.data / "seeds.jsonl")

    def seeds(self) -> list[dict[str, Any]]:
        """The seeds with the review's decisions applied (what the LLM teacher is prompted with)."""
        return load_seeds(self.data)

    @staticmethod
    def released() -> list[GsisrRow]:
        """The released rows (``paths.released_csv``), or none."""
        found = load_released()
        return found[0] if found else []

    def teacher_on_released(self, released: list[GsisrRow]) -> dict[str, Scores]:
        """The offline teacher and the two floors (the majority plan fitted on the synthetic training rows)
        scored on the released rows: what sim-to-real transfer can reach, and must beat."""
        planners = {"expert teacher": ExpertTeacher(), "three-rule": ThreeRulePlan(),
                    "majority plan (synthetic train)": MajorityPlan([r.plan for r in self.train_rows])}
        return {name: score_planner(p, released, seed=self.seed) for name, p in planners.items()}

    def input_gaps(self, released: list[GsisrRow], folds: int = 5, n_sim: int = 1000) -> dict[str, Any]:
        """Input-side distances to held-out released users, per feature, for the built-in world, the world fitted
        to the other users and those users themselves, over ``folds`` user-grouped folds (``calibration.fold_gaps``)."""
        return fold_gaps(released, user_folds(released, folds, self.seed), n_sim=n_sim, seed=self.seed)

    def contexts_dataset(self, labels: Labels = "gold", perturb: int = 4, overwrite: bool = False) -> tuple[dict[str, Any], Any]:
        """The released rows' contexts as a dataset in data/contexts/<scale>/<labels>/ (``gplan synth --contexts``),
        reused when already built from the same file and settings; returns its manifest and folder."""
        out = DATA / "contexts" / self.scale / labels
        out.mkdir(parents=True, exist_ok=True)
        return ensure_contexts(released_csv(), out, labels, perturb, 0.1, self.seed, overwrite=overwrite), out
