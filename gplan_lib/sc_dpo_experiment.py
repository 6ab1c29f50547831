"""The runs behind Table 4 (paper Sec. 5.4): PICD-CALR, + vanilla DPO, + SC-DPO, on the
bidirectional counterfactual pairs, with the context-sensitivity measures that need no LLM:
preference accuracy on held-out pairs and the generation-level flip rate."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data import GsisrRow
from .generation import MODEL_CARD, StudentPlanner
from .metrics import nes
from .modeling import load_for_training
from .parsing import parse_output
from .prompt import PromptOptions
from .runs import config_key, train_or_reuse
from .sc_dpo import SCDPOLoss, encode_pairs, make_dpo_trainer, pair_logps, read_pairs

VARIANTS = {"+ Vanilla DPO": "vanilla", "+ SC-DPO": "sc"}


class DPOExperiment:
    """SC-DPO and vanilla DPO from one PICD checkpoint, on the pairs of a synthetic dataset."""

    def __init__(self, cfg: dict[str, Any], base_dir: str | Path, data_dir: str | Path, work_dir: str | Path,
                 model_cfg: dict[str, Any], seed: int = 0):
        self.cfg, self.base, self.work, self.seed, self.model_cfg = cfg, Path(base_dir), Path(work_dir), seed, model_cfg
        card = json.loads((self.base / MODEL_CARD).read_text())
        self.base_key = card.get("key", str(self.base))
        self.options = PromptOptions(**card["prompt_options"])
        self.train_records = read_pairs(Path(data_dir) / "pairs_train.jsonl")[: cfg["n_pairs"]]
        self.test_records = read_pairs(Path(data_dir) / "pairs_test.jsonl")[: cfg["n_test_pairs"]]
        self.work.mkdir(parents=True, exist_ok=True)
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(self.base)
        self.train_pairs = encode_pairs(self.train_records, self.tokenizer, self.options)
        self.test_pairs = encode_pairs(self.test_records, self.tokenizer, self.options)
        self._reference()

    def _reference(self) -> None:
        """Reference log-probs of the PICD model on every training pair, computed once and cached."""
        cache = self.work / "reference_logps.json"
        key = config_key({"base": self.base_key, "pairs": self.cfg["n_pairs"]})
        ref = json.loads(cache.read_text()) if cache.is_file() else {}
        if ref.get("key") != key:
            model = load_for_training(self.base, self.tokenizer, self.model_cfg)
            c, r = pair_logps(model, self.train_pairs, self.tokenizer.pad_token_id, self.cfg["eval_batch_size"],
                              desc="reference log-probs")
            ref = {"key": key, "chosen": c.tolist(), "rejected": r.tolist()}
            cache.write_text(json.dumps(ref))
            del model
        for p, c, r in zip(self.train_pairs, ref["chosen"], ref["rejected"]):
            p.ref_chosen, p.ref_rejected = c, r

    def weights(self, variant: str) -> SCDPOLoss:
        w = SCDPOLoss(**self.cfg["loss"])
        return SCDPOLoss.vanilla(w.beta) if variant == "vanilla" else w

    def run_dir(self, variant: str) -> Path:
        return self.work / f"dpo-{variant}"

    def train(self, variant: str, retrain: bool = False) -> list[dict[str, float]]:
        """Train one variant from the PICD checkpoint (or reuse it); returns its log history."""
        def build(trainer_dir: str):
            torch.manual_seed(self.seed)
            model = load_for_training(self.base, self.tokenizer, self.model_cfg)
            return make_dpo_trainer(model, self.tokenizer, self.train_pairs, self.weights(variant), self.cfg["train"],
                                    trainer_dir, seed=self.seed)

        key = config_key({"base": self.base_key, "cfg": self.cfg, "variant": variant, "seed": self.seed})
        base_card = json.loads((self.base / MODEL_CARD).read_text())
        return train_or_reuse(self.run_dir(variant), key, retrain, build, self.tokenizer,
                              lambda tr: {**base_card, "dpo_variant": variant})

    def preference_accuracy(self, directory: str | Path) -> float:
        """Share of held-out pair records where log pi(y+|x) > log pi(y-|x)."""
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(directory)
        c, r = pair_logps(model, self.test_pairs, self.tokenizer.pad_token_id, self.cfg["eval_batch_size"], desc="held-out pairs")
        return float(np.mean(c > r))

    def flip_rate(self, directory: str | Path) -> dict[str, float]:
        """Generate under x and under x' for each held-out pair: the plan under x should be closer
        (NES) to y+ than to y-, and under x' the reverse. ``flip_rate``: both hold."""
        by_pair: dict[str, dict[str, dict]] = {}
        for rec in self.test_records:
            by_pair.setdefault(rec["pair_id"], {})[rec["direction"]] = rec
        pairs = [v for v in by_pair.values() if {"x", "x'"} <= set(v)]
        rows = [GsisrRow(p[d]["row"]) for p in pairs for d in ("x", "x'")]
        outs = StudentPlanner(directory).generate(rows, self.cfg["eval_batch_size"], self.cfg["max_new_tokens"],
                                                  desc="flip rate")
        matched, flips = [], []
        for i, p in enumerate(pairs):
            plan_x, plan_xp = parse_output(p["x"]["chosen"]).plan, parse_output(p["x'"]["chosen"]).plan
            g_x, g_xp = parse_output(outs[2 * i]["output"]).plan, parse_output(outs[2 * i + 1]["output"]).plan
            a, b = nes(g_x, plan_x) > nes(g_x, plan_xp), nes(g_xp, plan_xp) > nes(g_xp, plan_x)
            matched += [a, b]
            flips.append(a and b)
        return {"flip_rate": float(np.mean(flips)), "context_matched": float(np.mean(matched)), "pairs": len(pairs)}


def reward_histories(histories: dict[str, Sequence[dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """Per variant: step, r+, r-, gap and centre from the trainer logs (trl names)."""
    out = {}
    for name, hist in histories.items():
        logs = [h for h in hist if "rewards/chosen" in h]
        out[name] = {"step": [h["step"] for h in logs], "r+": [h["rewards/chosen"] for h in logs],
                     "r-": [h["rewards/rejected"] for h in logs], "gap": [h["rewards/margins"] for h in logs],
                     "center": [h["rewards/center"] for h in logs]}
    return out
