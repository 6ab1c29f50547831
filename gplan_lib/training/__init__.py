"""Shared training plumbing: models, the Trainer, launching, checkpoints and decoding.

Two optional GPU packages print to every process on a CPU when imported (through transformers and peft):
DeepSpeed that it found no GPU, bitsandbytes that a hub kernel is missing. Where torch sees no GPU, DeepSpeed
is told so (launched trainings inherit it), and that bitsandbytes warning is not shown.
"""
import logging
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
