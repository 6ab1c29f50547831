"""Trained runs as directories: weights, tokenizer, a model card with the config key, the log
history. ``checkpoint`` is the one place their folders are named. A run is reused when its key matches;
a run trained with another config is never replaced unless asked (the trained weights are the user's
product)."""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..core.files import atomic_write, write_json
from ..core.paths import REPO
from .launch import write_record
from .modeling import MODEL_CARD, file_digests, save
from .parallel import process_state


def checkpoints_root() -> Path:
    """Where trained runs live: checkpoints/ in the repository, or $GPLAN_CHECKPOINTS (scratch storage on a
    cluster; the tests' separate runs)."""
    return Path(os.environ.get("GPLAN_CHECKPOINTS") or REPO / "checkpoints").resolve()


def checkpoint(scale: str, name: str | None = None, seed: int = 0) -> Path:
    """checkpoints/<scale>/ for training seed 0 (the notebooks' runs), checkpoints/<scale>/seed-<s>/ for the
    seed study's other seeds, and with ``name`` a run's folder in it: ``init``, ``direct-cosine``,
    ``cot-cosine``, ``picd-{cosine,constant,calr}``, ``dpo-{vanilla,sc}``, ``regimes/...``."""
    root = checkpoints_root() / scale if seed == 0 else checkpoints_root() / scale / f"seed-{seed}"
    return root / name if name else root


def data_checkpoint(scale: str, data: str | Path, seed: int = 0) -> Path:
    """Where the runs on a dataset folder other than the scale's go by default: ``checkpoint(scale, seed=seed) /
    data-<first 12 hex digits of its manifest's sha256>`` (never over the scale's own runs)."""
    from ..core.files import sha256_file
    return checkpoint(scale, seed=seed) / f"data-{sha256_file(Path(data) / 'manifest.json')[:12]}"


def config_key(obj: Any) -> str:
    """A short, stable hash of a JSON-able config."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class EpochLog(TrainerCallback):
    """One printed line per epoch naming the run (progress bars are widgets in a notebook, which a
    papermill log does not show; these lines are)."""

    def __init__(self, name: str):
        self.name, self.start = name, time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        if state.is_world_process_zero:
            print(f"[{self.name}] training {state.max_steps} steps over {args.num_train_epochs:g} epochs", flush=True)

    def on_epoch_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), math.nan)
            print(f"[{self.name}] epoch {state.epoch:.0f}/{args.num_train_epochs:g}, step {state.global_step}/"
                  f"{state.max_steps}, loss {float(loss):.4f}, {time.perf_counter() - self.start:.0f} s", flush=True)


class RunProgress(TrainerCallback):
    """One progress bar per run, named after it, with the last logged loss (replaces the Trainer's
    unnamed bar and, where bars are off, its raw log dictionaries; EpochLog still prints each epoch)."""

    def __init__(self, name: str, bar: bool):
        self.name, self.bar, self.pbar = name, bar, None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.bar and state.is_world_process_zero:
            self.pbar = tqdm(total=state.max_steps, desc=f"training {self.name}", unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.pbar is not None:
            self.pbar.update(state.global_step - self.pbar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.pbar is not None and logs and "loss" in logs:
            self.pbar.set_postfix(loss=f"{float(logs['loss']):.3f}", epoch=f"{state.epoch:.1f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.pbar is not None:
            self.pbar.close()
            self.pbar = None


def label_progress(trainer: Trainer, name: str) -> None:
    """Name the run in the progress a trainer shows (a bar per run, or per-epoch lines when bars are off)."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(RunProgress(name, bar=not trainer.args.disable_tqdm))
    trainer.add_callback(EpochLog(name))


def is_trained(out: Path, key: str) -> bool:
    """Whether ``out`` holds a finished run of ``key``; a finished run of another key is an error (the
    trained weights are the user's product: replacing them takes ``retrain=True``)."""
    card_path = out / MODEL_CARD
    if not card_path.is_file():
        return False
    if json.loads(card_path.read_text()).get("key") != key:
        raise FileExistsError(f"{out} holds a run trained with another config; pass retrain=True to replace it")
    return True


def train_or_reuse(out: Path, key: str, retrain: bool, build: Callable[[str], Trainer], tokenizer,
                   card: Callable[[Trainer], dict[str, Any]], save_dtype: torch.dtype | None = None) -> list[dict[str, Any]]:
    """Reuse ``out`` if its card has ``key``; otherwise train ``build(trainer_dir)`` and save the run (weights in
    ``save_dtype``, a LoRA / QLoRA student as its adapter; ``launch.json`` says how the run was launched). An
    interrupted run of the same key resumes from its last periodic checkpoint (written when the scale sets
    ``save_steps``). The trainer, model and optimizer are released before returning (the next run loads into
    the memory they held). Returns the trainer's log history."""
    from transformers.trainer_utils import get_last_checkpoint
    card_path, started = out / MODEL_CARD, out / "training_key.txt"
    if not retrain and is_trained(out, key):
        return json.loads((out / "log_history.json").read_text())
    resume = None
    if not retrain and started.is_file() and started.read_text() == key and (out / "trainer").is_dir():
        resume = get_last_checkpoint(str(out / "trainer"))
    state = process_state()  # under torchrun / accelerate: only rank 0 touches the filesystem
    if resume is None and state.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        atomic_write(started, key)
    state.wait_for_everyone()
    trainer = build(str(out / "trainer"))
    label_progress(trainer, out.name)
    if state.is_main_process:
        write_record(out, trainer.args.deepspeed)
        if resume:
            print(f"[{out.name}] resuming from {resume}", flush=True)
    trainer.train(resume_from_checkpoint=resume)
    history = trainer.state.log_history
    if trainer.is_deepspeed_enabled:  # ZeRO-3 shards the weights: every rank takes part in gathering their
        trainer.save_model(str(out))  # 16-bit copy (stage3_gather_16bit_weights_on_model_save)
        if trainer.is_world_process_zero():
            (out / "training_args.bin").unlink(missing_ok=True)
    elif trainer.is_world_process_zero():
        save(trainer.accelerator.unwrap_model(trainer.model), tokenizer, out, save_dtype)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        shutil.rmtree(out / "trainer", ignore_errors=True)
        started.unlink(missing_ok=True)
        write_json(out / "log_history.json", history)
        write_json(card_path, {**card(trainer), "key": key, "sha256": file_digests(out)}, indent=1)  # last: a folder
        # without a card is no run; its digests are checked whenever the run is loaded (modeling.check_saved)
    trainer.accelerator.free_memory()  # the accelerator's references (a DeepSpeed engine among them)
    del trainer  # model, optimizer and DDP / autocast wrappers form reference cycles: collect them now, so that
    gc.collect()  # the next run in this process loads into the memory they held
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return history
