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

from .data import GsisrRow, load_rows
from .generation import StudentPlanner, batch1_latency, model_card
from .metrics import Scores, aggregate, score_sample
from .modeling import add_latent_tokens, load_for_training, load_pretrained, save, tiny_qwen3, train_tokenizer
from .picd import EncodedSample, Mode, Schedule, encode, make_trainer
from .prompt import PromptOptions, build_messages
from .runs import config_key, train_or_reuse


@dataclass(frozen=True)
class Run:
    name: str
    mode: Mode
    schedule: Schedule

    @property
    def slug(self) -> str:
        return f"{self.mode}-{self.schedule}"


#: Direct-SFT and CoT-SFT use the standard cosine schedule (the paper does not say otherwise).
RUNS = (Run("Direct-SFT", "direct", "cosine"), Run("CoT-SFT", "cot", "cosine"),
        Run("PICD (cosine)", "picd", "cosine"), Run("PICD (constant)", "picd", "constant"),
        Run("PICD (CALR)", "picd", "calr"))


def evaluate_student(directory: str | Path, rows: Sequence[GsisrRow], eval_cfg: dict[str, Any], seed: int = 0,
                     desc: str = "generate") -> tuple[Scores, list[dict]]:
    """Greedy outputs of a saved student on labelled rows, scored: Acc@1, NDCG@3, NES, validity,
    Latent-Valid and generated tokens per sample (with bootstrap intervals)."""
    records = StudentPlanner(directory).generate(rows, eval_cfg["batch_size"], eval_cfg["max_new_tokens"], desc=desc)
    per = [{**score_sample(rec["output"], row.plan, latent=True), "new_tokens": float(rec["new_tokens"])}
           for rec, row in zip(records, rows)]
    return aggregate(per, seed=seed), records


class Experiment:
    """One scale's PICD experiment: data, tokenizer, initial model, runs and their evaluation."""

    def __init__(self, cfg: dict[str, Any], data_dir: str | Path, work_dir: str | Path, seed: int = 0,
                 init_from: str | Path | None = None):
        """``init_from``: start every run from this saved model (with its tokenizer and an
        ``init_key.txt``, e.g. a pretrained backbone) instead of a fresh initialisation."""
        self.cfg, self.seed = cfg, seed
        self.data_dir, self.work = Path(data_dir), Path(work_dir)
        self.options = PromptOptions.named(cfg["prompt"])
        self.train_rows = load_rows(self.data_dir / "train.csv")[: cfg["n_train"]]
        self.test_rows = load_rows(self.data_dir / "test.csv")[: cfg["n_eval"]]
        self.work.mkdir(parents=True, exist_ok=True)
        self.init_dir = Path(init_from) if init_from else self.work / "init"
        from accelerate import PartialState
        if init_from:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(self.init_dir)
        else:
            with PartialState().main_process_first():  # under `accelerate launch`, rank 0 builds, the rest reuse
                self.tokenizer = self._init_model()
        self.samples: list[EncodedSample] = encode(self.train_rows, self.tokenizer, self.options, cfg["max_len"])

    def _init_model(self):
        """The tokenizer and initial weights every run starts from (built once, then reused)."""
        model_cfg = self.cfg["model"]
        key = config_key({"model": model_cfg, "seed": self.seed, "data": (self.data_dir / "manifest.json").read_text()
                     if (self.data_dir / "manifest.json").is_file() else str(self.data_dir), "prompt": self.cfg["prompt"]})
        stamp = self.init_dir / "init_key.txt"
        if stamp.is_file() and stamp.read_text() == key:
            from transformers import AutoTokenizer
            return AutoTokenizer.from_pretrained(self.init_dir)
        torch.manual_seed(self.seed)
        if model_cfg["kind"] == "tiny":
            corpus = [m["content"] for r in self.train_rows for m in build_messages(r, self.options)]
            tok = train_tokenizer(corpus + [r["raw_labels"] for r in self.train_rows], model_cfg["vocab_size"])
            add_latent_tokens(tok)
            model = tiny_qwen3(tok, model_cfg["arch"])
        else:
            model, tok = load_pretrained(model_cfg["name"], model_cfg.get("dtype", "bfloat16"))
        if self.init_dir.exists():
            shutil.rmtree(self.init_dir)
        save(model, tok, self.init_dir)
        stamp.write_text(key)
        return tok

    @property
    def n_parameters(self) -> int:
        """Parameters of the initial model (counted once, stored beside it)."""
        path = self.init_dir / "n_parameters.txt"
        if not path.is_file():
            from transformers import AutoModelForCausalLM
            path.write_text(str(sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(self.init_dir).parameters())))
        return int(path.read_text())

    def run_dir(self, run: Run) -> Path:
        return self.work / run.slug

    def run_key(self, run: Run) -> str:
        return config_key({"init": (self.init_dir / "init_key.txt").read_text(), "train": self.cfg["train"],
                      "n_train": self.cfg["n_train"], "run": asdict(run), "seed": self.seed})

    def train(self, run: Run, retrain: bool = False, deepspeed: str | None = None,
              out: str | Path | None = None) -> list[dict[str, float]]:
        """Train ``run`` from the initial weights (or reuse it); returns the trainer's log history.
        ``deepspeed``: a DeepSpeed config for multi-GPU runs (an execution setting, not part of the key);
        ``out``: the run's folder (default: ``run_dir(run)``)."""
        def build(trainer_dir: str):
            torch.manual_seed(self.seed)
            model = load_for_training(self.init_dir, self.tokenizer, self.cfg["model"])
            hp = {**self.cfg["train"], **({"deepspeed": deepspeed} if deepspeed else {})}
            return make_trainer(model, self.tokenizer, self.samples, run.mode, run.schedule, hp,
                                trainer_dir, seed=self.seed)

        return train_or_reuse(Path(out) if out else self.run_dir(run), self.run_key(run), retrain, build, self.tokenizer,
                              lambda tr: model_card(run.mode, self.options, schedule=run.schedule, b_star=tr.b_star,
                                                    steps_per_epoch=tr.steps_per_epoch))

    def evaluate(self, run: Run, rows: Sequence[GsisrRow] | None = None) -> tuple[Scores, list[dict]]:
        """Label metrics, validity and Latent-Valid of a run's greedy outputs (batched)."""
        return evaluate_student(self.run_dir(run), list(rows if rows is not None else self.test_rows),
                                self.cfg["eval"], self.seed, desc=run.name)

    def latency(self, run: Run, n: int | None = None) -> dict[str, float]:
        """Mean response time and generated tokens per request at batch 1 (greedy, KV cache)."""
        ev = self.cfg["eval"]
        return batch1_latency(StudentPlanner(self.run_dir(run)), self.test_rows[: n or ev["latency_requests"]],
                              ev["max_new_tokens"], desc=f"{run.name} latency")
