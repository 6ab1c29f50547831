"""A regime grid closer to the paper's, at CPU cost (paper Sec. 5.1.3, 5.4; Tables 3-4).

The paper fine-tunes a *pretrained* Qwen3 at a small LR (eta_struct 5e-6); the default CPU run trains a 0.36M-parameter
Qwen3 from scratch at 2e-3. A one-seed study that changed the start and the LR together could not say which of the
two mattered, so this is a grid, every cell over several training seeds:

1. **PICD**: start {scratch, pretrained} x eta_struct (e.g. 2e-3, 4e-4, 1e-4; eta_polish keeps the scale's ratio) x
   schedule {cosine, constant, CALR}. *Pretrained*: the scale's initial model of that seed trained with a
   language-model objective on prompts only (rows of a separate simulated world, never a plan or reasoning, never a
   test row). From scratch at the scale's own eta_struct a cell is the seed study's run of that seed.
2. **DPO** from two bases (the seed study's PICD-CALR and PICD-cosine of each seed): vanilla DPO, SC-DPO and SC-DPO
   without the anchor (Eq. 9), the gap bounds (Eq. 10-11) or the centre term (Eq. 12).

Each cell records Acc@1, NDCG@3, NES, validity, Latent-Valid, the final JSON loss and the likelihood-based context
sensitivity; each DPO run also its final rewards and how often the gradient norm exceeded the clip. Every run
trains as a launched ``gplan train`` (one-thread workers side by side on a CPU) and is scored in a worker; each
result is stored under runs/<scale>/regimes/ with a key of its settings, and every stored result is also committed,
one line per run, in results/<scale>/regimes_runs.jsonl: the grid runs in parts (``--seeds``, ``--starts``, ...),
on one machine or over several (a new machine trains only the runs the committed file lacks, with the backbones and
DPO bases they need: weights are not committed), and ``regimes.json`` holds every seed stored so far. Results:
results/<scale>/regimes.json, regimes_runs.jsonl and a figure.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.config import as_written, published_dirs
from ..core.evidence import plot_regimes
from ..core.files import atomic_write, write_json
from ..core.paths import OUTPUTS
from ..core.prompt import build_messages
from ..core.provenance import provenance
from ..core.reporting import write_study
from ..picd.config import PICDConfig
from ..picd.experiment import VARIANTS, PICDExperiment, variant
from ..sc_dpo.config import SCDPOConfig
from ..sc_dpo.experiment import SCDPOExperiment, dpo_launch, likelihood_sensitivity, saved_pair_logps
from ..sc_dpo.trainer import encode_pairs, read_pairs
from ..synthesis.world import simulate_row
from ..training.checkpoints import checkpoint, config_key, train_or_reuse
from ..training.launch import Launch, train_argv
from ..training.modeling import chat_prompt, load_for_training
from ..training.parallel import Job, process_state, run_jobs
from ..training.trainer import right_pad, training_arguments, warmup_steps
from .config import DPORun, PretrainConfig, RegimesConfig
from .contrasts import contrasts
from .ledger import LEDGER, provenance_by_seed, read_ledger, write_ledger

METRICS = ("acc1", "ndcg3", "nes", "validity", "latent_valid")
SENSITIVITY = ("double_difference_positive", "double_difference_mean", "logp_chosen_mean")
#: What regimes.json keeps per seed of a PICD cell, and of a DPO run.
GRID_METRICS = (*METRICS, "final_train_loss_json", *SENSITIVITY)
DPO_METRICS = (*METRICS, *SENSITIVITY, "reward_accuracy", "grad_norm_median", "grad_share_above_clip")


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


def _stats(values: Sequence[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None]
    return {"mean": float(np.mean(vals)) if vals else None,
            "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}


@dataclass(frozen=True)
class Cell:
    """One PICD run of the grid: where it starts, its eta_struct, its schedule and its training seed."""

    start: str          # scratch | pretrained
    lr: float
    schedule: str       # cosine | constant | calr
    seed: int

    @property
    def group(self) -> str:
        return f"{self.start}, {self.schedule}, {self.lr:g}"

    @property
    def name(self) -> str:
        return f"{self.group}, seed {self.seed}"


def picd_where(scale: str, start: str, lr: float, seed: int) -> dict[str, Any]:
    """``PICDExperiment`` arguments of a grid cell. From scratch at the scale's own eta_struct: none (the seed study's
    runs); otherwise the runs go under checkpoints/<scale>/[seed-<s>/]regimes/<start>-lr<lr>/, eta_polish keeping the
    scale's ratio to eta_struct, from the seed's backbone when pretrained."""
    train = PICDConfig.from_scale(scale).train
    if start == "scratch" and lr == train.lr:
        return {}
    work = checkpoint(scale, "regimes", seed)
    return {"train_overrides": {"lr": lr, "polish_lr": lr * train.polish_lr / train.lr}, "work": work / f"{start}-lr{lr:g}",
            "init_from": work / "backbone" if start == "pretrained" else None}


def picd_experiment(scale: str, start: str, lr: float, seed: int) -> PICDExperiment:
    return PICDExperiment(scale, seed, **picd_where(scale, start, lr, seed))


def picd_launch(scale: str, cell: Cell, name: str, after: tuple[str, ...] = ()) -> Launch:
    """A cell's training as a ``gplan train`` launch (built without the experiment: a pretrained cell's backbone
    may not be trained yet)."""
    where = picd_where(scale, cell.start, cell.lr, cell.seed)
    slug = next(v.slug for v in VARIANTS if v.mode == "picd" and v.schedule == cell.schedule)
    return Launch(name, scale, train_argv(scale, cell.seed, slug, work=where.get("work"), init_from=where.get("init_from"),
                                          overrides=where.get("train_overrides")), after)


def dpo_where(scale: str, base: str, seed: int) -> dict[str, Path]:
    """Where DPO from the seed study's ``base`` student of ``seed`` starts and goes: from PICD-CALR, the seed
    study's own DPO folder (its vanilla and SC-DPO runs are the same runs, not trained twice); from another base,
    checkpoints/<scale>/[seed-<s>/]regimes/dpo-from-<base>/."""
    b = variant(base)
    if b.slug == "picd-calr":
        return {}
    return {"base": PICDExperiment(scale, seed).run_dir(b), "work": checkpoint(scale, "regimes", seed) / f"dpo-from-{b.slug}"}


def dpo_experiment(scale: str, base: str, seed: int) -> SCDPOExperiment:
    return SCDPOExperiment(scale, seed, **dpo_where(scale, base, seed))


def _stored(path: Path, key: str) -> dict[str, Any] | None:
    result = json.loads(path.read_text()) if path.is_file() else None
    return result if result and result.get("key") == key else None


def _store(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def _picd_sensitivity(exp: PICDExperiment, directory: Path) -> dict[str, Any]:
    """The likelihood-based context sensitivity of a PICD student on the scale's held-out pairs (no reference)."""
    cfg = SCDPOConfig.from_scale(exp.scale)
    records = read_pairs(exp.dirs.data / "pairs_test.jsonl")[: cfg.n_test_pairs]
    c, r = saved_pair_logps(directory, encode_pairs(records, exp.tokenizer, exp.options), exp.tokenizer.pad_token_id,
                            cfg.eval_batch_size)
    return {k: likelihood_sensitivity(c, r, records)[k] for k in SENSITIVITY}


def score_picd(scale: str, cell: Cell, key: str, path: Path) -> dict[str, Any]:
    """Score one trained grid cell on the held-out rows, with its likelihood sensitivity; stored at ``path``."""
    exp = picd_experiment(scale, cell.start, cell.lr, cell.seed)
    v = next(v for v in VARIANTS if v.mode == "picd" and v.schedule == cell.schedule)
    scores, _ = exp.evaluate(v)
    hist = json.loads((exp.run_dir(v) / "log_history.json").read_text())
    json_loss = [h["loss_json"] for h in hist if "loss_json" in h]
    return _store(path, {"key": key, **asdict(cell), **_scores(scores),
                         "final_train_loss_json": json_loss[-1] if json_loss else None,
                         **_picd_sensitivity(exp, exp.run_dir(v)), "provenance": provenance()})


def score_dpo(scale: str, base: str, run: DPORun | None, seed: int, key: str, path: Path) -> dict[str, Any]:
    """Score one DPO run of the grid (``run`` None: the base itself); stored at ``path``."""
    exp = dpo_experiment(scale, base, seed)
    name = "base" if run is None else run.label
    directory = exp.base if run is None else exp.run_dir(run.variant, run.tag)
    scores, _ = exp.evaluate(directory, f"{base} / {name}")
    sens = exp.sensitivity(directory, generate=False)
    out = {"key": key, "base": base, "variant": name, "seed": seed, **_scores(scores),
           **{k: sens.get(k) for k in (*SENSITIVITY, "reward_accuracy")}, "provenance": provenance()}
    if run is not None:
        hist = json.loads((directory / "log_history.json").read_text())
        logs = [h for h in hist if "rewards/chosen" in h]
        grad = np.array([h["grad_norm"] for h in hist if "grad_norm" in h])  # the norm before clipping
        clip = run.overrides.get("max_grad_norm", exp.cfg.train.max_grad_norm)
        out["final_rewards"] = {k: logs[-1][f"rewards/{k}"] for k in ("chosen", "rejected", "margins", "center")}
        out["grad_norm_median"] = float(np.median(grad)) if grad.size else None
        out["grad_share_above_clip"] = float(np.mean(grad > clip)) if grad.size and clip else None
    return _store(path, out)


class RegimeGrid:
    """The grid of the module docstring at one scale: its launches, its scoring jobs and its summary."""

    def __init__(self, scale: str, seeds: Sequence[int] | None = None, only: dict[str, Sequence] | None = None):
        """``seeds``: the seeds to run (default: the config's); ``only``: run a part of the grid - ``starts``,
        ``picd_lrs``, ``schedules``, ``dpo_bases`` each restricted to the values given."""
        self.scale = scale
        self.rcfg = RegimesConfig.from_scale(scale)
        self.seeds = list(self.rcfg.seeds if seeds is None else seeds)
        self.only = {k: list(v) for k, v in (only or {}).items() if v}
        self.dirs = published_dirs(scale)
        self.store = OUTPUTS / scale / "regimes"
        self.ledger = self.dirs.results / LEDGER
        self.committed = read_ledger(self.ledger)
        from ..core.config import output_dirs, section
        manifest = output_dirs(scale).data / "manifest.json"
        self._base_key = {"picd": section(scale, "picd"), "sc_dpo": section(scale, "sc_dpo"),
                          "pretrain": as_written(self.rcfg.pretrain),
                          "data": manifest.read_text() if manifest.is_file() else None}

    def _axis(self, name: str) -> list:
        return [v for v in getattr(self.rcfg, name) if name not in self.only or v in self.only[name]]

    def cells(self, seeds: Sequence[int] | None = None) -> list[Cell]:
        return [Cell(start, lr, sched, s) for s in (self.seeds if seeds is None else seeds) for start in self._axis("starts")
                for lr in self._axis("picd_lrs") for sched in self._axis("schedules")]

    def _result(self, path: Path, key: str) -> dict[str, Any] | None:
        """A run's result stored on this machine, else its committed record, if either matches ``key``."""
        record = self.committed.get(f"{path.parent.name}/{path.stem}")
        return _stored(path, key) or (record if record and record["key"] == key else None)

    def _key(self, **what: Any) -> str:
        return config_key({**self._base_key, **what})

    def _cell_file(self, cell: Cell) -> tuple[str, Path]:
        return self._key(cell=asdict(cell)), self.store / f"seed-{cell.seed}" / f"{cell.start}-{cell.schedule}-lr{cell.lr:g}.json"

    def _dpo_file(self, base: str, run: DPORun | None, seed: int) -> tuple[str, Path]:
        key = self._key(base=base, run=None if run is None else asdict(run), seed=seed)
        return key, self.store / f"seed-{seed}" / f"dpo-{variant(base).slug}-{'base' if run is None else run.label}.json"

    def jobs(self, parts: Sequence[str] = ("picd", "dpo")) -> list[Job | Launch]:
        """Per seed: its backbone, every PICD cell (a launch, reused when trained) and its scoring job, then the DPO
        runs from each base with theirs; a cell or run whose stored result matches its key is left out."""
        out: list[Job | Launch] = []
        launched: dict[tuple[str, ...], str] = {}  # a training's arguments -> its launch (one launch per run folder)

        def train(launch: Launch) -> str:
            if launch.argv not in launched:
                out.append(launch)
                launched[launch.argv] = launch.name
            return launched[launch.argv]

        for s in self.seeds:
            backbone = f"seed {s}: backbone"
            cells = [c for c in self.cells() if c.seed == s] if "picd" in parts else []
            todo = [(c, key, path) for c in cells for key, path in [self._cell_file(c)] if self._result(path, key) is None]
            if any(c.start == "pretrained" for c, *_ in todo):
                out.append(Launch(backbone, self.scale, train_argv(self.scale, s, "backbone")))
            for c, key, path in todo:
                trained = train(picd_launch(self.scale, c, f"{c.name}: train", (backbone,) if c.start == "pretrained" else ()))
                out.append(Job(f"{c.name}: score", score_picd, (self.scale, c, key, path), (trained,)))
            for base in self._axis("dpo_bases") if "dpo" in parts else []:
                todo_dpo = [(run, *self._dpo_file(base, run, s)) for run in (None, *self.rcfg.dpo_runs())]
                todo_dpo = [t for t in todo_dpo if self._result(t[2], t[1]) is None]
                if not todo_dpo:
                    continue
                trained = train(Launch(f"seed {s}: {base}: train", self.scale, train_argv(self.scale, s, variant(base).slug)))
                where = dpo_where(self.scale, base, s)
                ref = dpo_launch(self.scale, s, "reference", f"seed {s}: {base}: reference", after=(trained,), **where)
                out.append(ref)
                for run, key, path in todo_dpo:
                    label, after = "base" if run is None else run.label, (ref.name,)
                    if run is not None:
                        launch = dpo_launch(self.scale, s, run.variant, f"seed {s}: {base} -> {label}: train", tag=run.tag,
                                            overrides=run.overrides, after=(ref.name,), **where)
                        out.append(launch)
                        after = (launch.name,)
                    out.append(Job(f"seed {s}: {base} -> {label}: score", score_dpo, (self.scale, base, run, s, key, path),
                                   after))
        return out

    def summarise(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """regimes.json from every stored or committed result that matches the current settings (a grid run in parts
        shows the seeds it has per cell): per cell and per DPO run, the per-seed values, their mean and sd, and the
        grid's ``contrasts`` on Acc@1; and those results by run name (the ledger's records)."""
        stored_seeds = {int(p.name.removeprefix("seed-")) for p in self.store.glob("seed-*") if p.name[5:].isdigit()}
        committed_seeds = {int(name.split("/")[0].removeprefix("seed-")) for name in self.committed}
        seeds = sorted(set(self.seeds) | stored_seeds | committed_seeds)
        runs: dict[str, dict[str, Any]] = {}
        picd: dict[str, Any] = {}
        machines: dict[int, dict[str, dict[str, Any]]] = {}  # seed -> run -> the provenance of its stored result
        for c in self.cells(seeds):
            key, path = self._cell_file(c)
            r = self._result(path, key)
            if r is None:
                continue
            runs[f"{path.parent.name}/{path.stem}"] = r
            g = picd.setdefault(c.group, {"start": c.start, "schedule": c.schedule, "eta_struct": c.lr, "seeds": [],
                                          "per_seed": {m: [] for m in GRID_METRICS}})
            g["seeds"].append(c.seed)
            machines.setdefault(c.seed, {})[c.group] = r.get("provenance")
            for m in GRID_METRICS:
                g["per_seed"][m].append(r.get(m))
        dpo: dict[str, Any] = {}
        for base in self.rcfg.dpo_bases:
            for run in (None, *self.rcfg.dpo_runs()):
                for s in seeds:
                    key, path = self._dpo_file(base, run, s)
                    r = self._result(path, key)
                    if r is None:
                        continue
                    runs[f"{path.parent.name}/{path.stem}"] = r
                    label = "base" if run is None else run.label
                    g = dpo.setdefault(f"{base} -> {label}", {"base": base, "variant": label, "seeds": [],
                                                              "per_seed": {m: [] for m in DPO_METRICS}})
                    g["seeds"].append(s)
                    machines.setdefault(s, {})[f"{base} -> {label}"] = r.get("provenance")
                    for m in DPO_METRICS:
                        g["per_seed"][m].append(r.get(m))
        for g in (*picd.values(), *dpo.values()):
            g["stats"] = {m: _stats(v) for m, v in g["per_seed"].items()}
        return {"scale": self.scale, "config": as_written(self.rcfg), "picd": picd, "dpo": dpo,
                "contrasts": contrasts(picd, dpo, self.rcfg.picd_lrs), "provenance": provenance_by_seed(machines),
                "design": (f"grid: start {self.rcfg.starts} x eta_struct {self.rcfg.picd_lrs} x schedule "
                           f"{self.rcfg.schedules}, DPO from {self.rcfg.dpo_bases}; training seeds {sorted(machines)} "
                           "(a backbone per seed); per cell the seeds stored so far")}, runs

    def write(self) -> None:
        """regimes.json and its figure, and the ledger (results/<scale>/): the runs regimes.json summarises, and any
        committed record made under other settings, kept as it was (not summarised, never dropped silently)."""
        summary, runs = self.summarise()
        write_study(self.scale, "regimes", summary, plot_regimes)
        other = {name: r for name, r in self.committed.items() if name not in runs}
        write_ledger(self.ledger, {**other, **runs})
        print(f"wrote {self.ledger} ({len(runs)} runs" + (f"; {len(other)} committed records of other settings kept, "
                                                          "not summarised)" if other else ")"))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The regime grid (results/<scale>/regimes.json)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the config's)")
    ap.add_argument("--parts", nargs="+", default=["picd", "dpo"], choices=["picd", "dpo"])
    ap.add_argument("--jobs", type=int, default=None, help="runs at once, one thread each (default: one per core)")
    ap.add_argument("--summarise-only", action="store_true", help="write regimes.json from the stored results only")
    for axis, kind in (("starts", str), ("picd_lrs", float), ("schedules", str), ("dpo_bases", str)):
        ap.add_argument(f"--{axis.replace('_', '-')}", type=kind, nargs="+", help=f"run only these {axis} of the config's")
    args = ap.parse_args(argv)
    try:
        grid = RegimeGrid(args.scale, args.seeds, {k: getattr(args, k) for k in ("starts", "picd_lrs", "schedules", "dpo_bases")})
    except ValueError as e:  # an unreadable ledger or scale config
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.summarise_only:
        for s in grid.seeds:  # each seed's tokenizer and initial weights, built here once before the workers read them
            PICDExperiment(args.scale, s)
        run_jobs(grid.jobs(args.parts), args.jobs, desc="regime grid")
    RegimeGrid(args.scale).write()  # every seed stored or committed so far, not only this call's
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
