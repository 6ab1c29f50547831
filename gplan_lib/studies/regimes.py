"""A regime closer to the paper's, at CPU cost (paper Sec. 5.1.3, 5.4; Tables 3-4).

The paper fine-tunes a *pretrained* Qwen3 at a small LR (eta_struct 5e-6); the default CPU run trains
a 0.36M-parameter Qwen3 from scratch at 2e-3. This study asks whether CALR's advantage and SC-DPO's
context sensitivity appear when the backbone already reads the row format:

1. **Backbone**: the scale's initial model pretrained with a language-model objective on prompts
   only (rows of a separate simulated world, never a plan or reasoning, never a test row).
2. **PICD from the backbone**: CALR and cosine at each eta_struct of a sweep (eta_polish keeps the
   scale's ratio), against the from-scratch runs of the seed study.
3. **SC-DPO from a context-sensitive base** (PICD with cosine, seed 0, whose double difference is
   positive on most held-out pairs): vanilla DPO, SC-DPO, SC-DPO without the anchor or the centre
   term, without gradient clipping, and for more epochs.

Every run is one training seed: the results are observations of a regime, not claims; the seed
study (``seed_study``) is where claims are tested. All training runs first, side by side in one-thread
worker processes (``training.parallel``), then every run is scored here. Results: results/<scale>/regimes.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.config import as_written, published_dirs
from ..core.files import atomic_write, write_json
from ..core.prompt import build_messages
from ..core.reporting import plot_regimes
from ..picd.experiment import VARIANTS, PICDExperiment, Variant, variant
from ..sc_dpo.config import SCDPOConfig
from ..sc_dpo.experiment import SCDPOExperiment, dpo_launch, likelihood_sensitivity, saved_pair_logps
from ..sc_dpo.trainer import encode_pairs, read_pairs
from ..synthesis.world import simulate_row
from ..training.checkpoints import checkpoint, config_key, train_or_reuse
from ..training.launch import Launch, train_argv
from ..training.modeling import chat_prompt, load_for_training
from ..training.parallel import process_state, run_jobs
from ..training.trainer import right_pad, training_arguments, warmup_steps
from .config import PretrainConfig, RegimesConfig

METRICS = ("acc1", "ndcg3", "nes", "validity", "latent_valid")
PARTS = {"pretrained": "pretrained_runs", "scratch": "scratch_runs", "dpo": "dpo"}


def prompt_corpus(tokenizer, options, world_seed: int, n: int, max_len: int) -> list[list[int]]:
    """Token ids of ``n`` prompts (system + user turns, no answer) of rows of world ``world_seed``."""
    return [tokenizer(chat_prompt(tokenizer, build_messages(simulate_row(world_seed, i), options)),
                      add_special_tokens=False).input_ids[-max_len:]
            for i in tqdm(range(n), desc="prompt corpus")]


def _lm_collate(pad_id: int):
    def fn(batch: list[list[int]]) -> dict[str, torch.Tensor]:
        ids = right_pad(batch, pad_id)
        att = right_pad([[1] * len(s) for s in batch], 0)
        return {"input_ids": ids, "attention_mask": att, "labels": ids.masked_fill(att == 0, -100)}
    return fn


def pretrain_backbone(exp: PICDExperiment, hp: PretrainConfig, out: Path, seed: int = 0,
                      deepspeed: str | None = None) -> Path:
    """LM pretraining of ``exp``'s initial model on prompts only; reused when its key matches (replaced when
    it does not). Writes weights, tokenizer, ``init_key.txt`` (so PICD runs key on it) and the log history."""
    from transformers import Trainer
    key = config_key({"init": (exp.init_dir / "init_key.txt").read_text(), "pretrain": as_written(hp), "seed": seed})
    stamp = out / "init_key.txt"
    if stamp.is_file() and stamp.read_text() == key:
        return out
    corpus = prompt_corpus(exp.tokenizer, exp.options, hp.world_seed, hp.n_prompts, exp.cfg.max_len)

    def build(trainer_dir: str) -> Trainer:
        steps = -(-len(corpus) // hp.batch_size) * hp.epochs
        args = training_arguments(hp, trainer_dir, seed, deepspeed, lr_scheduler_type="cosine",
                                  warmup_steps=warmup_steps(steps, hp.warmup_ratio), save_strategy="no")
        torch.manual_seed(seed)
        model = load_for_training(exp.init_dir, exp.tokenizer, exp.cfg.model)
        return Trainer(model=model, args=args, train_dataset=corpus, data_collator=_lm_collate(exp.tokenizer.pad_token_id))

    train_or_reuse(out, key, True, build, exp.tokenizer, lambda tr: {"backbone": "language model on prompts only"})
    if process_state().is_main_process:
        atomic_write(stamp, key)
    return out


def pretrain_job(scale: str, seed: int, deepspeed: str | None = None) -> Path:
    """`gplan train --method backbone`: the regime study's backbone (``pretrain_backbone``) at ``scale``."""
    return pretrain_backbone(PICDExperiment(scale, seed), RegimesConfig.from_scale(scale).pretrain,
                             checkpoint(scale, "regimes", seed) / "backbone", seed, deepspeed)


def _scores(scores) -> dict[str, float]:
    return {m: scores.means[m] for m in METRICS if m in scores.means} | {"ci95_acc1": list(scores.ci["acc1"])}


class RegimeStudy:
    """The three parts of the study at one scale (see the module docstring)."""

    def __init__(self, scale: str, seed: int = 0):
        self.scale, self.seed = scale, seed
        self.rcfg = RegimesConfig.from_scale(scale)
        self.dpo_cfg = SCDPOConfig.from_scale(scale)
        self.dirs = published_dirs(scale)
        self.work = checkpoint(scale, "regimes", seed)
        self.scratch = PICDExperiment(scale, seed)
        self.out_path = self.dirs.results / "regimes.json"
        self.results: dict[str, Any] = {"scale": scale, "seed": seed, "config": as_written(self.rcfg), "picd": {},
                                        "dpo": {}}
        self.test_records = read_pairs(self.dirs.data / "pairs_test.jsonl")[: self.dpo_cfg.n_test_pairs]
        self.test_pairs = encode_pairs(self.test_records, self.scratch.tokenizer, self.scratch.options)

    def _save(self) -> None:
        write_json(self.out_path, self.results, indent=1)

    def _dd(self, directory: Path) -> dict[str, Any]:
        c, r = saved_pair_logps(directory, self.test_pairs, self.scratch.tokenizer.pad_token_id,
                                self.dpo_cfg.eval_batch_size)
        return likelihood_sensitivity(c, r, self.test_records)

    def _picd_entry(self, exp: PICDExperiment, v: Variant, start: str, lr: float) -> dict[str, Any]:
        hist = exp.train(v)
        scores, _ = exp.evaluate(v)
        json_loss = [h["loss_json"] for h in hist if "loss_json" in h]
        return {"start": start, "schedule": v.schedule, "eta_struct": lr, **_scores(scores),
                "final_train_loss_json": json_loss[-1] if json_loss else None, **self._dd(exp.run_dir(v))}

    def _variants(self) -> list[Variant]:
        return [v for v in VARIANTS if v.mode == "picd" and v.schedule in self.rcfg.schedules]

    def _pretrained_kwargs(self, lr: float) -> dict[str, Any]:
        """``PICDExperiment`` arguments of PICD from the backbone at eta_struct ``lr`` (eta_polish keeps the
        scale's ratio to eta_struct)."""
        train = self.scratch.cfg.train
        return {"train_overrides": {"lr": lr, "polish_lr": lr * train.polish_lr / train.lr},
                "work": self.work / f"pretrained-lr{lr:g}", "init_from": self.work / "backbone"}

    def _dpo_kwargs(self) -> dict[str, Any]:
        base = variant(self.rcfg.dpo_base)
        return {"base": self.scratch.run_dir(base), "work": self.work / f"dpo-from-{base.slug}"}

    def jobs(self, parts: Sequence[str]) -> list[Launch]:
        """Every training of ``parts`` as a ``gplan train`` launch (trained runs are reused inside their launch)."""
        scale, seed = self.scale, self.seed
        wanted = [*(self._variants() if "scratch" in parts else []), *([variant(self.rcfg.dpo_base)] if "dpo" in parts else [])]
        scratch = {v.name: self.scratch.launch(v, name=f"scratch {v.name}") for v in wanted}
        out = [Launch("backbone", scale, train_argv(scale, seed, "backbone"))] if "pretrained" in parts else []
        out += scratch.values()  # the longest job (the backbone) first
        for lr in self.rcfg.picd_lrs if "pretrained" in parts else []:
            kw = self._pretrained_kwargs(lr)
            out += [Launch(f"pretrained {v.name}, lr {lr:g}", scale, train_argv(
                scale, seed, v.slug, work=kw["work"], init_from=kw["init_from"], overrides=kw["train_overrides"]),
                ("backbone",)) for v in self._variants()]
        if "dpo" in parts:
            ref = dpo_launch(scale, seed, "reference", "DPO reference log-probs",
                             after=(scratch[variant(self.rcfg.dpo_base).name].name,), **self._dpo_kwargs())
            out += [ref] + [dpo_launch(scale, seed, run.variant, f"DPO {run.variant}{' ' + run.tag if run.tag else ''}",
                                       tag=run.tag, overrides=run.overrides, after=(ref.name,), **self._dpo_kwargs())
                            for run in self.rcfg.dpo_runs()]
        return out

    def scratch_runs(self) -> None:
        """The from-scratch PICD runs at the scale's own LR (seed 0 of the seed study) for reference."""
        lr = self.scratch.cfg.train.lr
        for v in self._variants():
            self.results["picd"][f"scratch, {v.schedule}, {lr:g}"] = self._picd_entry(self.scratch, v, "scratch", lr)
            self._save()

    def pretrained_runs(self) -> None:
        """Parts 1 and 2: the backbone, then PICD from it at each eta_struct (eta_polish keeps the
        scale's ratio to eta_struct)."""
        backbone = pretrain_backbone(self.scratch, self.rcfg.pretrain, self.work / "backbone", self.seed)
        hist = json.loads((backbone / "log_history.json").read_text())
        self.results["pretrain"] = {"final_loss": [h["loss"] for h in hist if "loss" in h][-1],
                                    "n_prompts": self.rcfg.pretrain.n_prompts}
        for lr in self.rcfg.picd_lrs:
            exp = PICDExperiment(self.scale, self.seed, **self._pretrained_kwargs(lr))
            for v in self._variants():
                self.results["picd"][f"pretrained, {v.schedule}, {lr:g}"] = self._picd_entry(exp, v, "pretrained", lr)
                self._save()

    def dpo(self) -> None:
        """Part 3: the DPO variants from the context-sensitive base."""
        exp = SCDPOExperiment(self.scale, self.seed, **self._dpo_kwargs())  # its base was trained by ``jobs``
        name = variant(self.rcfg.dpo_base).name
        scores, _ = exp.evaluate(exp.base, name)
        self.results["dpo"]["base"] = {"name": name, **_scores(scores), **exp.sensitivity(exp.base, generate=False)}
        self._save()
        for run in self.rcfg.dpo_runs():
            hist = exp.train(run.variant, tag=run.tag, **run.overrides)
            d = exp.run_dir(run.variant, run.tag)
            scores, _ = exp.evaluate(d, d.name)
            logs = [h for h in hist if "rewards/chosen" in h]
            grad = [h["grad_norm"] for h in hist if "grad_norm" in h]
            self.results["dpo"][d.name.removeprefix("dpo-")] = {
                "variant": run.variant, "overrides": run.overrides, **_scores(scores), **exp.sensitivity(d, generate=False),
                "final_rewards": {k: logs[-1][f"rewards/{k}"] for k in ("chosen", "rejected", "margins", "center")},
                "grad_norm_median": float(np.median(grad)) if grad else None}
            self._save()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The regime study (results/<scale>/regimes.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                    help="which parts to run (the others' stored results are kept)")
    args = ap.parse_args(argv)
    study = RegimeStudy(args.scale)
    if study.out_path.is_file():  # keep the results of parts not rerun, where their settings are unchanged
        previous = json.loads(study.out_path.read_text())
        for keys, settings in ((("picd", "pretrain"), ("pretrain", "picd_lrs", "schedules")), (("dpo",), ("dpo_base", "dpo"))):
            if all(previous.get("config", {}).get(k) == as_written(study.rcfg).get(k) for k in settings):
                study.results.update({k: previous[k] for k in keys if k in previous})
    run_jobs(study.jobs(args.parts), desc="regime study")
    for part in args.parts:
        getattr(study, PARTS[part])()
    plot_regimes(study.results, study.dirs.figures / "regimes.png")
    print(f"wrote {study.out_path} and {study.dirs.figures / 'regimes.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
