"""Trainer plumbing shared by PICD and SC-DPO: padding, the response-only cross-entropy, windowed logging
of extra loss terms (averaged over ranks), the TrainingArguments every run shares, and step arithmetic."""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from transformers import Trainer, TrainingArguments

from .config import TrainConfig
from .launch import PROCESS_GROUP_TIMEOUT_S, refuse_data_parallel

#: Elements of one chunk of logits in the response-only loss (rows per chunk = this // vocabulary): at
#: Qwen3's 151,936 rows, 220 tokens, whose fp32 logits take 128 MB.
CE_CHUNK_ELEMENTS = 2 ** 25


def right_pad(seqs: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """Sequences as one right-padded (batch, longest) tensor."""
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy in fp32 of (N, V) logits."""
    return F.cross_entropy(logits.float(), targets, reduction="none")


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP or a DeepSpeed engine (both keep it as ``.module``)."""
    return getattr(model, "module", model)


def final_hidden(model: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
    """(B, T, d) hidden states after the backbone's final norm, from a call of the model itself (so that DDP,
    a DeepSpeed engine and accelerate's autocast all see it) with the output head run on one position only."""
    captured: list[torch.Tensor] = []

    def keep(module, args, out):
        captured.append(out[0] if isinstance(out, tuple) else out.last_hidden_state)

    hook = _unwrapped(model).get_decoder().register_forward_hook(keep)
    try:
        model(input_ids=ids, attention_mask=att, logits_to_keep=1)
    finally:
        hook.remove()
    return captured[-1]


def _head_ce(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


def supervised_ce(model: torch.nn.Module, ids: torch.Tensor, att: torch.Tensor, scored: torch.Tensor,
                  autocast: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """Cross-entropy (fp32) of every token where ``scored`` (B, T) is True, in row-major order, with the output
    head run only at the positions that predict them. The head and the loss go chunk by chunk under activation
    checkpointing, so that no (tokens x vocabulary) matrix exists whole, nor an fp32 copy of one, in the forward
    pass or the backward (each chunk's logits are recomputed there). ``autocast``: the context the model's
    own forward computes in (the Trainer's ``accelerator.autocast()``), for the head. Written here because
    the fused linear cross-entropies of maintained libraries (Liger, Cut Cross-Entropy) need Triton GPUs."""
    at = scored[:, 1:]                                        # (B, T-1): position t predicts token t+1
    hidden = final_hidden(model, ids, att)[:, :-1][at]        # (N, d)
    targets = ids[:, 1:][at]                                  # (N,)
    inner = _unwrapped(model)
    head = inner.get_output_embeddings()
    rows = max(1, CE_CHUNK_ELEMENTS // inner.config.vocab_size)
    with autocast or contextlib.nullcontext():
        parts = [checkpoint(_head_ce, head, hidden[i:i + rows], targets[i:i + rows], use_reentrant=False)
                 for i in range(0, hidden.shape[0], rows)]
    return torch.cat(parts) if parts else hidden.new_zeros(0)


class WindowedLogs(Trainer):
    """A Trainer that averages extra per-step quantities (``record``) over each logging window, and over the
    ranks of a process group (the Trainer averages its own ``loss`` over ranks the same way)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._window: dict[str, list[float]] = {}

    def record(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self._window.setdefault(k, []).append(v)

    def _window_means(self) -> dict[str, float]:
        if self.accelerator.num_processes == 1:
            return {k: float(np.mean(v)) for k, v in self._window.items()}
        from accelerate.utils import gather_object
        keys = sorted({k for ks in gather_object([sorted(self._window)]) for k in ks})  # every rank's keys
        sums = torch.tensor([[sum(self._window.get(k, [])), len(self._window.get(k, []))] for k in keys],
                            dtype=torch.float64, device=self.accelerator.device).reshape(len(keys), 2)
        sums = self.accelerator.reduce(sums, "sum")           # (keys, [sum, count]) over ranks
        return {k: float(s / n) for k, (s, n) in zip(keys, sums.tolist()) if n}

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        logs.update(self._window_means())
        self._window = {}
        super().log(logs, *args, **kwargs)


def training_arguments(hp: TrainConfig, out_dir: str, seed: int, deepspeed: str | None = None,
                       **specific) -> TrainingArguments:
    """The settings every run shares (seeded, CPU or GPU, bf16 from ``hp``, DeepSpeed when launched with it),
    plus ``specific`` (the stage's schedule and saving). Built before the model under ZeRO-3, whose config
    must be live when the weights load (transformers then partitions them as they load)."""
    refuse_data_parallel()
    args = TrainingArguments(
        output_dir=out_dir, num_train_epochs=hp.epochs, per_device_train_batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.grad_accum, learning_rate=hp.lr, max_grad_norm=hp.max_grad_norm,
        weight_decay=hp.weight_decay, logging_steps=hp.logging_steps, report_to=[], seed=seed, data_seed=seed,
        remove_unused_columns=False, dataloader_num_workers=0, bf16=hp.bf16, disable_tqdm=hp.disable_tqdm,
        use_cpu=not torch.cuda.is_available(), deepspeed=deepspeed, ddp_timeout=PROCESS_GROUP_TIMEOUT_S,
        ddp_find_unused_parameters=False, **specific)  # every parameter takes part in every loss
    if deepspeed:  # DeepSpeed's own comm layer over the process group accelerate made (zero.Init sizes its partitions
        import datetime  # by it; left uninitialised it counted one process and refused the batch settings)

        import deepspeed as ds
        ds.init_distributed(timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    return args


def warmup_steps(total_steps: int, ratio: float) -> int:
    """Warmup length: ceil(ratio * S), at least one step (as the released CALR computes W)."""
    return max(1, math.ceil(ratio * total_steps))


def steps_per_epoch(n_samples: int, batch_size: int, grad_accum: int = 1) -> int:
    """Optimizer steps per epoch as the HF Trainer plans them in one process (last partial batch kept;
    a partial accumulation window still steps). For plots: training reads the count from the Trainer."""
    return max(1, math.ceil(n_samples / batch_size / grad_accum))
