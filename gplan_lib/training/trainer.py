"""Trainer plumbing shared by PICD and SC-DPO: padding, response-only logits with chunked cross-entropy,
windowed logging of extra loss terms, the TrainingArguments every run shares, and step arithmetic."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from .config import TrainConfig

CE_CHUNK = 4096  # rows of logits upcast to fp32 at a time when the response-only path is on


def right_pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Sequences as one right-padded (batch, longest) tensor."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def logits_needed(supervised: torch.Tensor) -> int:
    """How many trailing positions need logits, given a (B, T) tensor that is nonzero on supervised
    tokens (PICD's section ids, DPO's response mask): from the one before the batch's first supervised
    token to the end (prompts are 85-93% of a full-scale sequence; their logits are never used)."""
    first = (supervised != 0).any(0).nonzero()  # (n, 1): columns with a supervised token
    return supervised.shape[1] - int(first[0]) + 1 if len(first) else supervised.shape[1]


def token_ce(logits: torch.Tensor, targets: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Per-token cross-entropy in fp32; with ``chunk``, that many rows at a time, so that no fp32 copy
    of a (tokens x vocabulary) matrix is ever made whole."""
    if chunk is None:
        return F.cross_entropy(logits.float(), targets, reduction="none")
    return torch.cat([F.cross_entropy(logits[i:i + chunk].float(), targets[i:i + chunk], reduction="none")
                      for i in range(0, logits.shape[0], chunk)])


class WindowedLogs(Trainer):
    """A Trainer that averages extra per-step quantities (``record``) over each logging window."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._window: dict[str, list[float]] = {}

    def record(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._window.setdefault(k, []).append(v)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        logs.update({k: float(np.mean(v)) for k, v in self._window.items()})
        self._window = {}
        super().log(logs, *args, **kwargs)


def training_arguments(hp: TrainConfig, out_dir: str, seed: int, deepspeed: str | None = None,
                       **specific) -> TrainingArguments:
    """The settings every run shares (seeded, CPU or GPU, bf16 and DeepSpeed from ``hp``), plus ``specific``
    (the stage's schedule and saving)."""
    return TrainingArguments(
        output_dir=out_dir, num_train_epochs=hp.epochs, per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum, learning_rate=hp.lr, max_grad_norm=hp.max_grad_norm,
        weight_decay=hp.weight_decay, logging_steps=hp.logging_steps, report_to=[], seed=seed, data_seed=seed,
        remove_unused_columns=False, dataloader_num_workers=0, bf16=hp.bf16, disable_tqdm=hp.disable_tqdm,
        use_cpu=not torch.cuda.is_available(), deepspeed=deepspeed or hp.deepspeed, **specific)


def warmup_steps(total_steps: int, ratio: float) -> int:
    """Warmup length: ceil(ratio * S), at least one step (as the released CALR computes W)."""
    return max(1, math.ceil(ratio * total_steps))


def steps_per_epoch(n_samples: int, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps per epoch as the HF Trainer plans them in one process (last partial batch kept;
    a partial accumulation window still steps). For plots: training reads the count from the Trainer."""
    return max(1, math.ceil(n_samples / batch_size / grad_accum))
