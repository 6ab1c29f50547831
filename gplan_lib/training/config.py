"""Typed settings shared by every training stage (configs/scales.yaml ``picd.model``, ``picd.train``,
``picd.eval``, ``sc_dpo.train``, ``regimes.pretrain``): the model, the training loop and evaluation decoding.
Defaults live here and nowhere else; ``core.config.build`` makes them from the YAML and names any key it
does not know."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The backbone a stage trains: a tiny Qwen3 from scratch (CPU scales) or a pretrained Qwen3."""

    kind: Literal["tiny", "pretrained"]
    name: str | None = None              # pretrained: hub id or local path (Qwen/Qwen3-1.7B, Qwen/Qwen3-4B)
    dtype: str = "bfloat16"              # pretrained: saved students' dtype, and the frozen base's under LoRA / QLoRA
                                         # (full fine-tuning trains fp32 master weights)
    tokenizer: Literal["bpe", "qwen3"] = "bpe"  # tiny: a BPE trained on the training rows, or Qwen3's own (offline)
    vocab_size: int | None = None        # tiny: the BPE's vocabulary; with the Qwen3 tokenizer the embedding rows
                                         # (Qwen3's matrix has 151,936 for 151,669 tokens)
    arch: dict[str, int] | None = None   # tiny: Qwen3Config fields (hidden_size, num_hidden_layers, ...)
    lora: dict[str, Any] | None = None   # LoRA adapters (peft LoraConfig fields over r=16, alpha=32, all-linear)
    qlora: bool = False                  # the frozen base in 4 bit (bitsandbytes), adapters as ``lora``

    def __post_init__(self):
        if self.kind == "tiny" and (self.vocab_size is None or self.arch is None):
            raise ValueError("a tiny model needs vocab_size and arch")
        if self.kind == "pretrained" and not self.name:
            raise ValueError("a pretrained model needs a name (hub id or path)")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training loop (HF Trainer settings; the schedule itself belongs to the stage)."""

    epochs: int = 1
    batch_size: int                      # per device, per micro-batch
    lr: float                            # peak LR (PICD: eta_struct)
    warmup_ratio: float                  # share of the planned optimizer steps
    weight_decay: float = 0.0
    grad_accum: int = 1                  # micro-batches per optimizer step
    max_grad_norm: float = 1.0           # 0: no clipping
    logging_steps: int = 10
    disable_tqdm: bool = False           # no progress bars: one printed line per epoch instead
    bf16: bool = False                   # bf16 autocast over fp32 master weights
    gradient_checkpointing: bool = False
    response_logits: bool = False        # the output head only over response positions, chunked fp32 CE
    save_steps: int | None = None        # periodic checkpoints (an interrupted run resumes from the last)
    save_total_limit: int | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accum", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1 or self.max_grad_norm < 0:
            raise ValueError(f"need lr > 0, 0 <= warmup_ratio < 1, max_grad_norm >= 0; got {self.lr}, "
                             f"{self.warmup_ratio}, {self.max_grad_norm}")


@dataclass(frozen=True, kw_only=True)
class LaunchConfig:
    """How ``gplan train`` is launched at a scale (configs/scales.yaml ``launch``; ``training.launch``):
    on a GPU machine one process per GPU, ``gpus`` of them; on a CPU one process ($GPLAN_PROCS overrides
    both: 2 on a CPU emulates a two-GPU node with gloo). An execution setting: never part of a run's key."""

    gpus: int | Literal["all"] = 1       # processes on a GPU machine: that many GPUs, or every visible one
    deepspeed: str | None = None         # a DeepSpeed config (repository-relative), e.g. configs/ds_zero3.json

    def __post_init__(self):
        if self.gpus != "all" and (not isinstance(self.gpus, int) or self.gpus < 1):
            raise ValueError(f"gpus must be 'all' or >= 1, got {self.gpus!r}")


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Greedy decoding of a trained student on held-out rows."""

    batch_size: int
    max_new_tokens: int
    latency_requests: int                # requests timed at batch 1 (Table 5)
