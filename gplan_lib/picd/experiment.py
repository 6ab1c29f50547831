"""The runs behind Tables 2, 3 and 5 (paper Sec. 5.4): Direct-SFT, CoT-SFT and PICD with the
cosine, constant and CALR schedules, all from one initialisation on the same data.

A run is reused when its directory holds a model card whose recorded config equals the current
one; otherwise it is trained (the trained weights are the user's product: a different config
never silently replaces them unless ``retrain`` is set).
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..core.config import as_written, output_dirs, replace
from ..core.data import GsisrRow, load_rows
from ..core.files import atomic_write, check_manifest
from ..core.metrics import Scores
from ..core.paper import PICD_SETTINGS
from ..core.scaffold import K
from ..core.prompt import PromptOptions, build_messages
from ..evaluation.latency import interleaved_batch1, latency_summary, table5_ratios
from ..training.checkpoints import checkpoint, config_key, data_checkpoint, is_trained, train_or_reuse
from ..training.generation import StudentPlanner, evaluate_student, model_card
from ..training.launch import Launch, require_device, train_argv
from ..training.modeling import add_latent_tokens, load_for_training, load_pretrained, save, tiny_qwen3, train_tokenizer
from ..training.parallel import process_state, run_jobs
from ..training.trainer import steps_per_epoch, warmup_steps
from .config import PICDConfig
from .trainer import EncodedSample, Mode, Schedule, b_star_of, compression_profile, encode, make_trainer


@dataclass(frozen=True)
class Variant:
    """One of the five trained variants: a table row name, what the target holds, the LR schedule."""

    name: str
    mode: Mode
    schedule: Schedule

    @property
    def slug(self) -> str:
        return f"{self.mode}-{self.schedule}"


#: Direct-SFT and CoT-SFT use the standard cosine schedule (the paper does not say otherwise).
VARIANTS = (Variant("Direct-SFT", "direct", "cosine"), Variant("CoT-SFT", "cot", "cosine"),
            Variant("PICD (cosine)", "picd", "cosine"), Variant("PICD (constant)", "picd", "constant"),
            Variant("PICD (CALR)", "picd", "calr"))
#: Slugs by training time (CoT-SFT's targets are longest, Direct-SFT's shortest): the order jobs start in.
LONGEST_FIRST = ("cot-cosine", "picd-constant", "picd-cosine", "picd-calr", "direct-cosine")


def variant(name_or_slug: str) -> Variant:
    """A variant by its table name (``PICD (CALR)``) or folder name (``picd-calr``)."""
    for v in VARIANTS:
        if name_or_slug in (v.name, v.slug):
            return v
    raise ValueError(f"unknown variant {name_or_slug!r}; choose one of {[v.slug for v in VARIANTS]}")


class PICDExperiment:
    """One scale's PICD experiment: data, tokenizer, initial model, the five variants and their evaluation."""

    def __init__(self, scale: str, seed: int = 0, *, train_overrides: dict[str, Any] | None = None,
                 work: str | Path | None = None, init_from: str | Path | None = None, data: str | Path | None = None):
        """``train_overrides``: the scale's ``picd.train`` settings changed (the regime study's LRs); ``work``: where
        the runs go (default ``checkpoint(scale, seed=seed)``); ``init_from``: start every run from this saved model
        (with its tokenizer and an ``init_key.txt``, e.g. a pretrained backbone) instead of a fresh one; ``data``:
        train on this dataset folder (any ``gplan synth`` output: the world's, real contexts', a mixture) instead of
        the scale's data/synth/<scale>/ (its first ``n_train`` rows, or all when it holds fewer - a learning curve's
        small datasets; its test.csv may hold fewer than ``n_eval``, or none)."""
        self.scale, self.seed = scale, seed
        self.cfg = PICDConfig.from_scale(scale)
        require_device(self.cfg.model, scale)  # before any download: a Qwen3 backbone needs a GPU
        if train_overrides:
            self.cfg = replace(self.cfg, train=replace(self.cfg.train, **train_overrides))
        self._launch = {"work": work, "init_from": init_from, "overrides": train_overrides, "data": data}  # `gplan train` rebuilds it
        self.dirs = output_dirs(scale)
        self.data_dir = Path(data) if data else self.dirs.data
        if not (self.data_dir / "train.csv").is_file():
            raise FileNotFoundError(f"{self.data_dir} has no dataset: " + ("write one with `gplan synth --out`" if data else
                                    f"run notebooks/01_synthesis.ipynb at scale {scale!r} first"))
        self.options = PromptOptions.named(self.cfg.prompt)
        check_manifest(self.data_dir, ("train.csv", "test.csv"))  # a changed or cut file is not trained on
        self.work = Path(work) if work else data_checkpoint(scale, data, seed) if data else checkpoint(scale, seed=seed)
        self.train_rows = load_rows(self.data_dir / "train.csv")[: self.cfg.n_train]
        self.test_rows = load_rows(self.data_dir / "test.csv")[: self.cfg.n_eval]
        for name, rows, need in (("train.csv", self.train_rows, 1 if data else self.cfg.n_train),
                                 ("test.csv", self.test_rows, 0 if data else self.cfg.n_eval)):
            if len(rows) < need:
                raise ValueError(f"{self.data_dir / name}: {len(rows)} rows; scale {scale!r} needs {need}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.init_dir = Path(init_from) if init_from else self.work / "init"
        if init_from:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(self.init_dir)
        else:
            with process_state().main_process_first():  # under torchrun / accelerate, rank 0 builds, the rest reuse
                self.tokenizer = self._init_model()
        self.samples: list[EncodedSample] = encode(self.train_rows, self.tokenizer, self.options, self.cfg.max_len)

    def _init_model(self):
        """The tokenizer and initial weights every run starts from (built once, then reused)."""
        m = self.cfg.model
        manifest = self.data_dir / "manifest.json"
        key = config_key({"model": as_written(m), "seed": self.seed,
                          "data": manifest.read_text() if manifest.is_file() else str(self.data_dir),
                          "prompt": self.cfg.prompt})
        stamp = self.init_dir / "init_key.txt"
        if stamp.is_file() and stamp.read_text() == key:
            from transformers import AutoTokenizer
            return AutoTokenizer.from_pretrained(self.init_dir)
        torch.manual_seed(self.seed)
        if m.kind == "tiny" and m.tokenizer == "qwen3":  # Qwen3's vocabulary and embedding rows, random weights
            from ..training.qwen3_tokenizer import qwen3_tokenizer
            tok = qwen3_tokenizer()
            model = tiny_qwen3(tok, m.arch, rows=m.vocab_size)
            add_latent_tokens(tok, model)  # into spare rows of the 151,936, as on the real checkpoint
        elif m.kind == "tiny":
            corpus = [msg["content"] for r in self.train_rows for msg in build_messages(r, self.options)]
            tok = train_tokenizer(corpus + [r["raw_labels"] for r in self.train_rows], m.vocab_size)
            add_latent_tokens(tok)
            model = tiny_qwen3(tok, m.arch)
        else:
            model, tok = load_pretrained(m.name, m.dtype)
        if self.init_dir.exists():
            shutil.rmtree(self.init_dir)
        save(model, tok, self.init_dir)
        atomic_write(stamp, key)
        return tok

    @property
    def n_parameters(self) -> int:
        """Parameters of the initial model (counted once, stored beside it)."""
        path = self.init_dir / "n_parameters.txt"
        if not path.is_file():
            from transformers import AutoModelForCausalLM
            atomic_write(path, str(sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(self.init_dir).parameters())))
        return int(path.read_text())

    @property
    def b_star(self) -> int:
        """B*: the scale's setting, else the p90 of B over the training set (Sec. 4.1.3)."""
        return self.cfg.train.b_star or b_star_of(self.samples)

    def schedule_inputs(self) -> dict[str, float]:
        """What ``views.plot_lr_schedules`` draws the three schedules from (steps as one process plans them)."""
        hp = self.cfg.train
        spe = steps_per_epoch(len(self.samples), hp.batch_size, hp.grad_accum)
        total = spe * hp.epochs
        return {"total": total, "steps_per_epoch": spe, "warmup": warmup_steps(total, hp.warmup_ratio),
                "b_star": self.b_star, "polish_ratio": hp.polish_lr / hp.lr, "eta": hp.lr}

    def settings(self) -> list[dict[str, Any]]:
        """The paper's PICD settings (Sec. 5.1.3) beside this scale's."""
        m, hp = self.cfg.model, self.cfg.train
        backbone = (m.name if m.kind == "pretrained" else
                    f"tiny Qwen3 from scratch ({(m.arch or {}).get('num_hidden_layers')} layers, "
                    f"hidden {(m.arch or {}).get('hidden_size')})")
        ours = {"backbone": backbone, "training samples": f"{len(self.samples):,}", "epochs": hp.epochs,
                "latent tokens per block K": K, "B* (p90 of B)": self.b_star, "η_struct": hp.lr, "η_polish": hp.polish_lr}
        return [{"setting": k, "paper": PICD_SETTINGS[k], f"this scale ({self.scale})": ours[k]} for k in PICD_SETTINGS]

    def compression_profile(self) -> list[dict[str, float]]:
        """Per epoch: blocks folded, share fully latent, CoT and JSON target tokens (``trainer.compression_profile``)."""
        return compression_profile(self.samples, self.cfg.train.epochs)

    def run_dir(self, v: Variant) -> Path:
        return self.work / v.slug

    def run_key(self, v: Variant) -> str:
        return config_key({"init": (self.init_dir / "init_key.txt").read_text(), "train": as_written(self.cfg.train),
                           "n_train": self.cfg.n_train, "run": asdict(v), "seed": self.seed})

    def train(self, v: Variant, retrain: bool = False, deepspeed: str | None = None,
              out: str | Path | None = None) -> list[dict[str, float]]:
        """Train ``v`` from the initial weights (or reuse it) in this process; returns the trainer's log history.
        ``deepspeed``: a DeepSpeed config for multi-GPU runs (an execution setting, not part of the key);
        ``out``: the run's folder (default: ``run_dir(v)``). Notebooks and studies launch ``gplan train``, which
        calls this (``jobs``, ``train_all``)."""
        m = self.cfg.model

        def build(trainer_dir: str):
            def model():
                torch.manual_seed(self.seed)
                return load_for_training(self.init_dir, self.tokenizer, m)
            return make_trainer(model, self.tokenizer, self.samples, v.mode, v.schedule, self.cfg.train,
                                trainer_dir, seed=self.seed, deepspeed=deepspeed)

        card = lambda tr: model_card(v.mode, self.options, schedule=v.schedule, b_star=tr.b_star,
                                     steps_per_epoch=tr.steps_per_epoch, **({"qlora": True} if m.qlora else {}))
        return train_or_reuse(Path(out) if out else self.run_dir(v), self.run_key(v), retrain, build, self.tokenizer,
                              card, save_dtype=None if m.kind == "tiny" else getattr(torch, m.dtype))

    def launch(self, v: Variant, retrain: bool = False, name: str | None = None, after: tuple[str, ...] = ()) -> Launch:
        """``v``'s training as a ``gplan train`` launch (``training.launch``) that rebuilds this experiment."""
        return Launch(name or v.name, self.scale, train_argv(self.scale, self.seed, v.slug, retrain=retrain,
                                                             **self._launch), after)

    def jobs(self, variants: Sequence[Variant] = VARIANTS, retrain: bool = False) -> list[Launch]:
        """The launches of those ``variants`` not trained yet, longest first."""
        todo = [v for v in variants if retrain or not is_trained(self.run_dir(v), self.run_key(v))]
        todo.sort(key=lambda v: LONGEST_FIRST.index(v.slug))
        return [self.launch(v, retrain) for v in todo]

    def train_all(self, variants: Sequence[Variant] = VARIANTS, retrain: bool = False,
                  workers: int | None = None) -> dict[str, list[dict[str, float]]]:
        """Train (or reuse) several variants, each a launched ``gplan train`` (on a CPU side by side, one thread
        each: the weights do not depend on the core count); returns each one's log history by name."""
        run_jobs(self.jobs(variants, retrain), workers, desc="PICD training")
        return {v.name: self.train(v) for v in variants}

    def evaluate(self, v: Variant, rows: Sequence[GsisrRow] | None = None) -> tuple[Scores, list[dict]]:
        """Label metrics, validity and Latent-Valid of a variant's greedy outputs (batched)."""
        return evaluate_student(self.run_dir(v), list(rows if rows is not None else self.test_rows),
                                self.cfg.eval, self.seed, desc=v.name)

    def latency(self, variants: Sequence[Variant], n: int | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
        """Table 5 at batch 1: the variants timed in turn, request by request (``interleaved_batch1``), on the
        first ``n`` (default ``eval.latency_requests``) rows; each one's mean time and tokens, and the ratios
        between them with intervals (``table5_ratios``)."""
        ev = self.cfg.eval
        records = interleaved_batch1({v.name: StudentPlanner(self.run_dir(v)) for v in variants},
                                     self.test_rows[: n or ev.latency_requests], ev.max_new_tokens, desc="Table 5 latency")
        return {name: latency_summary(r) for name, r in records.items()}, table5_ratios(records)

