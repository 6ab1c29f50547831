"""Typed settings of the regime grid (configs/scales.yaml ``regimes``; ``studies/regimes.py``)."""
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

    @property
    def label(self) -> str:
        return f"{self.variant}-{self.tag}" if self.tag else self.variant


@dataclass(frozen=True, kw_only=True)
class RegimesConfig(ScaleSection):
    SECTION = "regimes"

    pretrain: PretrainConfig
    starts: list[str]                    # scratch and/or pretrained (from a backbone pretrained on prompts only)
    picd_lrs: list[float]                # eta_struct values (eta_polish keeps the scale's ratio)
    schedules: list[str]                 # PICD schedules at each start and LR (cosine, constant, calr)
    seeds: list[int]                     # training seeds of every cell and DPO run
    dpo_bases: list[str]                 # the seed study's PICD variants the DPO runs start from, e.g. "PICD (CALR)"
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
        labels = [r.label for r in self.dpo_runs()]
        if len(set(labels)) < len(labels):
            raise ConfigError(f"regimes.dpo: two runs share a variant and tag ({labels}); give one a tag")
        for key, values, allowed in (("starts", self.starts, ("scratch", "pretrained")),
                                     ("schedules", self.schedules, ("cosine", "constant", "calr"))):
            bad = sorted(set(values) - set(allowed))
            if bad:
                raise ConfigError(f"regimes.{key}: unknown {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}")
