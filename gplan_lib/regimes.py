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
study (``seed_study``) is where claims are tested. Results: results/<scale>/regimes.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import load_scale, published_dirs
from .modeling import chat_prompt, load_for_training, save
from .paths import REPO
from .picd import right_pad, training_arguments, warmup_steps
from .picd_experiment import RUNS, Experiment, Run, evaluate_student
from .prompt import build_messages
from .runs import config_key
from .sc_dpo import encode_pairs, read_pairs
from .sc_dpo_experiment import DPOExperiment, likelihood_sensitivity, saved_pair_logps
from .world import simulate_row

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


def pretrain_backbone(exp: Experiment, hp: dict[str, Any], out: Path, seed: int = 0) -> Path:
    """LM pretraining of ``exp``'s initial model on prompts only; reused when its key matches.
    Writes weights, tokenizer, ``init_key.txt`` (so PICD runs key on it) and the log history."""
    from transformers import Trainer
    key = config_key({"init": (exp.init_dir / "init_key.txt").read_text(), "pretrain": hp, "seed": seed})
    stamp = out / "init_key.txt"
    if stamp.is_file() and stamp.read_text() == key:
        return out
    corpus = prompt_corpus(exp.tokenizer, exp.options, hp["world_seed"], hp["n_prompts"], exp.cfg["max_len"])
    torch.manual_seed(seed)
    model = load_for_training(exp.init_dir, exp.tokenizer, exp.cfg["model"])
    steps = -(-len(corpus) // hp["batch_size"]) * hp.get("epochs", 1)
    args = training_arguments(hp, str(out / "trainer"), seed, weight_decay=hp.get("weight_decay", 0.0),
                              lr_scheduler_type="cosine", warmup_steps=warmup_steps(steps, hp.get("warmup_ratio", 0.02)),
                              save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=corpus, data_collator=_lm_collate(exp.tokenizer.pad_token_id))
    trainer.train()
    save(model, exp.tokenizer, out)
    (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))
    stamp.write_text(key)
    return out


def _scores(scores) -> dict[str, float]:
    return {m: scores.means[m] for m in METRICS if m in scores.means} | {"ci95_acc1": list(scores.ci["acc1"])}


class RegimeStudy:
    """The three parts of the study at one scale (see the module docstring)."""

    def __init__(self, scale: str, seed: int = 0):
        self.scale, self.seed = scale, seed
        self.cfg, self.dirs = load_scale(scale), published_dirs(scale)
        if "regimes" not in self.cfg:
            raise ValueError(f"scale {scale!r} defines no regime study (a `regimes:` entry in configs/scales.yaml)")
        self.rcfg = self.cfg["regimes"]
        self.work = REPO / "checkpoints" / scale
        self.scratch = Experiment(self.cfg["picd"], self.dirs.data, self.work, seed=seed)
        self.out_path = self.dirs.results / "regimes.json"
        self.results: dict[str, Any] = {"scale": scale, "seed": seed, "config": self.rcfg, "picd": {}, "dpo": {}}
        records = read_pairs(self.dirs.data / "pairs_test.jsonl")[: self.cfg["sc_dpo"]["n_test_pairs"]]
        self.test_records = records
        self.test_pairs = encode_pairs(records, self.scratch.tokenizer, self.scratch.options)

    def _save(self) -> None:
        self.out_path.write_text(json.dumps(self.results, indent=1))

    def _dd(self, directory: Path) -> dict[str, Any]:
        c, r = saved_pair_logps(directory, self.test_pairs, self.scratch.tokenizer.pad_token_id,
                                self.cfg["sc_dpo"]["eval_batch_size"])
        return likelihood_sensitivity(c, r, self.test_records)

    def _picd_entry(self, exp: Experiment, run: Run, start: str, lr: float) -> dict[str, Any]:
        hist = exp.train(run)
        scores, _ = exp.evaluate(run)
        json_loss = [h["loss_json"] for h in hist if "loss_json" in h]
        return {"start": start, "schedule": run.schedule, "eta_struct": lr, **_scores(scores),
                "final_train_loss_json": json_loss[-1] if json_loss else None, **self._dd(exp.run_dir(run))}

    def _runs(self) -> list[Run]:
        return [r for r in RUNS if r.mode == "picd" and r.schedule in self.rcfg["schedules"]]

    def scratch_runs(self) -> None:
        """The from-scratch PICD runs at the scale's own LR (seed 0 of the seed study) for reference."""
        lr = self.cfg["picd"]["train"]["lr"]
        for run in self._runs():
            self.results["picd"][f"scratch, {run.schedule}, {lr:g}"] = self._picd_entry(self.scratch, run, "scratch", lr)
            self._save()

    def pretrained_runs(self) -> None:
        """Parts 1 and 2: the backbone, then PICD from it at each eta_struct (eta_polish keeps the
        scale's ratio to eta_struct)."""
        backbone = pretrain_backbone(self.scratch, self.rcfg["pretrain"], self.work / "regimes" / "backbone", self.seed)
        hist = json.loads((backbone / "log_history.json").read_text())
        self.results["pretrain"] = {"final_loss": [h["loss"] for h in hist if "loss" in h][-1],
                                    "n_prompts": self.rcfg["pretrain"]["n_prompts"]}
        hp = self.cfg["picd"]["train"]
        for lr in self.rcfg["picd_lrs"]:
            cfg = {**self.cfg["picd"], "train": {**hp, "lr": lr, "polish_lr": lr * hp["polish_lr"] / hp["lr"]}}
            exp = Experiment(cfg, self.dirs.data, self.work / "regimes" / f"pretrained-lr{lr:g}", self.seed,
                             init_from=backbone)
            for run in self._runs():
                self.results["picd"][f"pretrained, {run.schedule}, {lr:g}"] = self._picd_entry(exp, run, "pretrained", lr)
                self._save()

    def dpo(self) -> None:
        """Part 3: the DPO variants from the context-sensitive base."""
        base_run = next(r for r in RUNS if r.name == self.rcfg["dpo_base"])
        self.scratch.train(base_run)
        base = self.scratch.run_dir(base_run)
        exp = DPOExperiment(self.cfg["sc_dpo"], base, self.dirs.data, self.work / "regimes" / f"dpo-from-{base_run.slug}",
                            self.cfg["picd"]["model"], seed=self.seed)
        rows = self.scratch.test_rows
        scores, _ = evaluate_student(base, rows, self.cfg["picd"]["eval"], self.seed, desc=base_run.name)
        self.results["dpo"]["base"] = {"name": base_run.name, **_scores(scores), **exp.sensitivity(base, generate=False)}
        self._save()
        for spec in self.rcfg["dpo"]:
            spec = dict(spec)
            variant, tag = spec.pop("variant"), spec.pop("tag", "")
            hist = exp.train(variant, tag=tag, **spec)
            d = exp.run_dir(variant, tag)
            scores, _ = evaluate_student(d, rows, self.cfg["picd"]["eval"], self.seed, desc=d.name)
            logs = [h for h in hist if "rewards/chosen" in h]
            grad = [h["grad_norm"] for h in hist if "grad_norm" in h]
            self.results["dpo"][d.name.removeprefix("dpo-")] = {
                "variant": variant, "overrides": spec, **_scores(scores), **exp.sensitivity(d, generate=False),
                "final_rewards": {k: logs[-1][f"rewards/{k}"] for k in ("chosen", "rejected", "margins", "center")},
                "grad_norm_median": float(np.median(grad)) if grad else None}
            self._save()


def regime_tables(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The PICD runs and the DPO variants as rows (for display with pandas)."""
    picd = [{"run": k, "Acc@1": round(v["acc1"], 3), "NDCG@3": round(v["ndcg3"], 3), "NES": round(v["nes"], 3),
             "Latent-Valid": round(v["latent_valid"], 3), "final L_json": round(v["final_train_loss_json"], 4),
             "DD > 0": round(v["double_difference_positive"], 3), "DD mean": round(v["double_difference_mean"], 3)}
            for k, v in results.get("picd", {}).items()]
    dpo = [{"run": k, "Acc@1": round(v["acc1"], 3), "NES": round(v["nes"], 3),
            "DD > 0": round(v["double_difference_positive"], 3), "DD mean": round(v["double_difference_mean"], 3),
            "reward acc.": v["reward_accuracy"] if v["reward_accuracy"] is None else round(v["reward_accuracy"], 3),
            "r+ / r- (final)": "-" if "final_rewards" not in v else
            f"{v['final_rewards']['chosen']:.3f} / {v['final_rewards']['rejected']:.3f}",
            "median grad norm": v.get("grad_norm_median") and round(v["grad_norm_median"], 2)}
           for k, v in results.get("dpo", {}).items()]
    return picd, dpo


def plot_regimes(results: dict[str, Any], path: str | Path | None = None):
    """Left: Acc@1 of each PICD run by start and eta_struct. Right: the double difference (share > 0)
    and Acc@1 of each DPO variant against its base."""
    import matplotlib.pyplot as plt

    from .plotting import save_figure
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.4))
    picd = results.get("picd", {})
    names = list(picd)
    a.bar(range(len(names)), [picd[n]["acc1"] for n in names],
          yerr=np.array([[picd[n]["acc1"] - picd[n]["ci95_acc1"][0], picd[n]["ci95_acc1"][1] - picd[n]["acc1"]]
                         for n in names]).T if names else None,
          color=["tab:orange" if picd[n]["schedule"] == "calr" else "tab:blue" for n in names], capsize=3)
    a.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    a.set_title("PICD Acc@1 (orange CALR, blue cosine; 95% CI; one seed)")
    dpo = results.get("dpo", {})
    keys = list(dpo)
    if len(keys) < 2:  # only the base was scored: the variants have not run
        b.text(0.5, 0.5, "DPO variants not run yet (`make regimes` runs them)", ha="center", transform=b.transAxes)
        b.set_axis_off()
        return save_figure(fig, path)
    x = np.arange(len(keys))
    b.bar(x - 0.2, [dpo[k]["double_difference_positive"] for k in keys], 0.4, label="DD > 0 (share of pairs)")
    b.bar(x + 0.2, [dpo[k]["acc1"] for k in keys], 0.4, label="Acc@1")
    b.set_xticks(x, keys, rotation=35, ha="right", fontsize=8)
    b.axhline(0.5, color="k", lw=0.5)
    b.legend(fontsize=8)
    b.set_title(f"DPO variants from {dpo.get('base', {}).get('name', 'the base')} (one seed)")
    return save_figure(fig, path)


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
            if all(previous.get("config", {}).get(k) == study.rcfg.get(k) for k in settings):
                study.results.update({k: previous[k] for k in keys if k in previous})
    for part in args.parts:
        getattr(study, PARTS[part])()
    plot_regimes(study.results, study.dirs.figures / "regimes.png")
    print(f"wrote {study.out_path} and {study.dirs.figures / 'regimes.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
