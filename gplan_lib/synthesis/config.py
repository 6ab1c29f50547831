"""Typed settings of the synthesis (configs/scales.yaml ``synth``; paper Sec. 3.2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import build, section
from ..core.paper import FILTER_REJECTION_RATE
from .world import DEFAULT_WORLD, WorldParams

EXECUTION_ONLY = ("workers", "chunk")  # settings that do not change a single byte of the data


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a synthetic dataset."""

    n: int = 2000                # accepted samples (train + test)
    seed: int = 0
    test_size: int = 200
    noise_rate: float = FILTER_REJECTION_RATE  # share of candidates with an LLM-like mistake (paper: 28.9% removed)
    temperature: float = 1.0     # teacher variation
    pair_anchors: int = 500      # train anchors tried for counterfactual pairs (test: test_size // 2)
    n_seeds: int = 100
    workers: int = 2             # processes; the files do not depend on it
    chunk: int = 2000            # candidates per job; the files do not depend on it
    world: dict[str, Any] | None = None  # WorldParams fitted to real rows (calibration.fit_world); None: built-in

    @property
    def world_params(self) -> WorldParams:
        return WorldParams(**self.world) if self.world else DEFAULT_WORLD

    def __post_init__(self):
        if self.n <= self.test_size or self.test_size < 0:
            raise ValueError(f"need n > test_size >= 0, got n={self.n}, test_size={self.test_size}")
        if not 0 <= self.noise_rate < 1:
            raise ValueError(f"noise_rate must be in [0, 1), got {self.noise_rate}")
        for name in ("seed", "pair_anchors", "n_seeds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.workers < 1 or self.chunk < 1:
            raise ValueError(f"workers and chunk must be >= 1, got {self.workers} and {self.chunk}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    @classmethod
    def from_scale(cls, scale: str, seed: int = 0) -> "SynthConfig":
        """The scale's dataset settings (``synth`` section) with the given seed."""
        return build(cls, {**section(scale, "synth"), "seed": seed}, f"{scale}.synth")
