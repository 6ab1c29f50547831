"""Typed settings of the regime study (configs/scales.yaml ``regimes``; ``studies/regimes.py``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..core.config import ConfigError, ScaleSection
from ..training.config import TrainConfig


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(TrainConfig):
    """Language-model pretraining of the backbone on prompts only, from a separate simulated world."""

    world_seed: int                      # the world the prompts come from (not the dataset's)
    n_prompts: int


@dataclass(frozen=True)
class DPORun:
    """One DPO variant of the study: the loss variant, a tag for its folder, training settings changed."""

    variant: str                         # vanilla | sc | sc-no-anchor | sc-no-gap | sc-no-centre
    tag: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)   # TrainConfig fields, e.g. max_grad_norm: 0.0


@dataclass(frozen=True, kw_only=True)
class RegimesConfig(ScaleSection):
    SECTION = "regimes"

    pretrain: PretrainConfig
    picd_lrs: list[float]                # eta_struct values from the backbone (eta_polish keeps the scale's ratio)
    schedules: list[str]                 # PICD schedules tried at each LR (calr, cosine, constant)
    dpo_base: str                        # the PICD variant the DPO runs start from, e.g. "PICD (cosine)"
    dpo: list[dict[str, Any]]            # each {variant, tag?, <TrainConfig field>: value, ...}

    def dpo_runs(self, where: str = "regimes.dpo") -> list[DPORun]:
        """The ``dpo`` entries as runs; an override that is not a training setting is an error naming it."""
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        runs = []
        for i, spec in enumerate(self.dpo):
            spec = dict(spec)
            if "variant" not in spec:
                raise ConfigError(f"{where}[{i}]: missing key 'variant'")
            variant, tag = spec.pop("variant"), spec.pop("tag", "")
            unknown = sorted(set(spec) - known)
            if unknown:
                raise ConfigError(f"{where}[{i}]: unknown key {', '.join(map(repr, unknown))}; "
                                  f"a DPO run may set variant, tag and any of {', '.join(sorted(known))}")
            runs.append(DPORun(variant, tag, spec))
        return runs

    def __post_init__(self):
        self.dpo_runs()  # a misspelt DPO override fails when the config is built
