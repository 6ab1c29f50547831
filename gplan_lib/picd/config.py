"""Typed settings of PICD (configs/scales.yaml ``picd``; paper Sec. 4.1, 5.1.3)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.config import ScaleSection
from ..training.config import EvalConfig, ModelConfig, TrainConfig


@dataclass(frozen=True, kw_only=True)
class PICDTrainConfig(TrainConfig):
    """The training loop plus CALR's two rates and the curriculum's B* (Eq. 4)."""

    polish_lr: float                     # eta_polish, after the global stage passes B*
    b_star: int | None = None            # None: the p90 of B over the training set (the paper's rule)

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.polish_lr < self.lr:
            raise ValueError(f"need 0 < polish_lr < lr, got {self.polish_lr} and {self.lr}")


@dataclass(frozen=True, kw_only=True)
class PICDConfig(ScaleSection):
    """The five runs of Tables 2-3: data sizes, prompt, model, training and evaluation."""

    SECTION = "picd"

    n_train: int                         # training samples read from data/synth/<scale>/train.csv
    n_eval: int                          # held-out rows scored
    prompt: Literal["released", "compact", "minimal", "tiny"]  # core.prompt.PromptOptions preset
    max_len: int                         # tokens per sequence (prompts left-truncated to fit)
    model: ModelConfig
    train: PICDTrainConfig
    eval: EvalConfig
