"""Typed settings of SC-DPO (configs/scales.yaml ``sc_dpo``; paper Sec. 4.2, Eq. 13, Sec. 5.1.3)."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.config import ScaleSection
from ..training.config import TrainConfig


@dataclass(frozen=True)
class SCDPOLoss:
    """Weights of Eq. 13 (defaults: the paper's values, Sec. 5.1.3)."""

    beta: float = 0.20
    delta: float = 0.0        # anchor margin
    lambda_a: float = 5.0
    gamma_l: float = 0.10     # desired gap range [gamma_l, gamma_h]
    gamma_h: float = 0.20
    lambda_gl: float = 10.0
    lambda_gh: float = 2.0
    m: float = 0.0            # centre target
    lambda_c: float = 3.0

    @classmethod
    def vanilla(cls, beta: float = 0.20) -> "SCDPOLoss":
        """Standard sigmoid DPO: the anchor, gap and centre terms off."""
        return cls(beta=beta, lambda_a=0.0, lambda_gl=0.0, lambda_gh=0.0, lambda_c=0.0)


@dataclass(frozen=True, kw_only=True)
class SCDPOConfig(ScaleSection):
    """Table 4's runs: pairs, the loss weights, training and held-out decoding."""

    SECTION = "sc_dpo"

    n_pairs: int                         # training pair records read (both directions of a pair count)
    n_test_pairs: int                    # held-out pair records for the sensitivity measures
    loss: SCDPOLoss = SCDPOLoss()
    train: TrainConfig
    eval_batch_size: int
    max_new_tokens: int
