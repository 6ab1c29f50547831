"""Typed settings of notebook 04 (configs/scales.yaml ``evaluation``; paper Sec. 5)."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.config import ScaleSection


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """Training of the five Table 1 baselines (same rows as the students)."""

    epochs: int
    batch_size: int
    lr: float
    reasoning_steps: int = 2             # ReaRec's latent reasoning steps
    arch: dict[str, int] | None = None   # hidden size etc.; None: the students' tiny architecture


@dataclass(frozen=True, kw_only=True)
class LoadConfig:
    """The open-loop client of Table 5 (requests at a fixed rate to one serving worker)."""

    qps: float
    requests: int
    max_seconds: float                   # requests unanswered by then are counted, not waited for


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig(ScaleSection):
    SECTION = "evaluation"

    baselines: BaselineConfig
    load: LoadConfig
    released_rows: int | None = None     # first N released rows for sim-to-real; None: all
